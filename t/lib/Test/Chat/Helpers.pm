# Test::Chat::Helpers: what the perl sections of the messaging test files
# share: the usual location blocks, a member's STOMP session, a
# conversation, a SEND, a SEND that waits for its RECEIPT.

package Test::Chat::Helpers;

use strict;
use warnings;

use Exporter 'import';

use Test::Chat::Util;
use Test::Chat::WebSocket;

our @EXPORT = qw(chat_config member conversation send_msg send_receipted
                 receipt_ok insert_row chat_bin start_persist round_trip
                 metric send_pipelined collect_answers);

use Time::HiRes ();


# insert_row(conv, seq, id, sender, content, at): a message row in
# PostgreSQL, as the persistence worker writes it (at: a timestamptz
# literal, 'now' included)
sub insert_row {
    my ($conv, $seq, $id, $sender, $content, $at) = @_;
    pg_do("INSERT INTO messages (id, conversation_id, seq, sender_id,"
          . " content, created_at) VALUES ($id, '$conv', $seq, '$sender',"
          . " '$content', '$at')");
}


# where make put the daemons and tools
sub chat_bin { $ENV{CHAT_BIN} || "$Test::Chat::ROOT/build/bin" }


# chat_config(%o): the usual location blocks, for a config section (the
# files put them in $ENV{TEST_NGINX_CHAT_CONFIG}): the REST API at
# /chat/api/ and STOMP at /ws/chat. o{ws}: more directives for the
# WebSocket location; o{metrics}: the metrics at /metrics; o{more}: more
# locations.
sub chat_config {
    my (%o) = @_;
    my $secret = $ENV{TEST_NGINX_JWT_SECRET} // '';
    my $ws = $o{ws} ? "        $o{ws}\n" : '';
    my $more = $o{more} // '';

    $more = "    location = /metrics {\n        chat_metrics;\n    }\n$more"
        if $o{metrics};

    return <<"_EOC_" . $more;
    location /chat/api/ {
        chat_api;
        chat_jwt_secret $secret;
    }
    location /ws/chat {
        chat_websocket;
        chat_jwt_secret $secret;
$ws    }
_EOC_
}


# member(user, %o): a STOMP session of user subscribed to its messages (id
# "m", o{ack} mode, default auto) and errors (id "e"); the other options
# go to stomp_connect()
sub member {
    my ($user, %o) = @_;
    my $ack = delete $o{ack};
    my $c = stomp_connect('/ws/chat', user => $user, %o);
    $c->subscribe('/user/queue/messages', 'm', $ack // 'auto');
    $c->subscribe('/user/queue/errors', 'e');
    return $c;
}


# conversation(creator, type, [\%fields,] members...): creates it through
# the REST API (or finds the direct one); its id. fields: more of the
# request body, e.g. { name => 'Team' }.
sub conversation {
    my ($creator, $type, @members) = @_;
    my %more = ref $members[0] eq 'HASH' ? %{ shift @members } : ();
    my ($st, $c) = api(POST => '/conversations', $creator,
                       { type => $type, members => \@members, %more });
    die "create: $st\n" unless $st == 201 || $st == 200;
    return $c->{conversationId};
}


# send_msg(c, conv, content, %o): a SEND to /app/chat.send; o{cmid}: the
# clientMsgId, the other options are headers (receipt, transaction...)
sub send_msg {
    my ($c, $conv, $content, %o) = @_;
    my $cmid = delete $o{cmid};
    return $c->send_json('/app/chat.send',
                         { conversationId => $conv, content => $content,
                           (defined $cmid ? (clientMsgId => $cmid) : ()) },
                         %o);
}


# receipt_ok(c, id, timeout): true when the next frame (within timeout,
# 3 s) is the RECEIPT of id; a diagnostic when another RECEIPT came
sub receipt_ok {
    my ($c, $id, $timeout) = @_;
    my $f = $c->stomp_expect('RECEIPT', $timeout // 3);

    return 1 if $f && ($f->{headers}{'receipt-id'} // '') eq $id;
    Test::More::diag("wanted RECEIPT $id") if $f;
    return 0;
}


my $receipts = 0;

# send_receipted(c, conv, contents...): sends each with a receipt and
# returns once every RECEIPT and the sender's own copy of every message
# (c is a member()) came, with those messages; dies on an error frame
sub send_receipted {
    my ($c, $conv, @contents) = @_;
    my (%want, @got);

    for my $t (@contents) {
        my $r = 'r' . ++$receipts;
        $want{$r} = 1;
        send_msg($c, $conv, $t, receipt => $r);
    }

    while (%want || @got < @contents) {
        my $f = $c->stomp_recv(5)
            or die 'no RECEIPT for ' . join(' ', sort keys %want)
                   . ' or not all messages (' . scalar(@got) . ")\n";

        if ($f->{command} eq 'RECEIPT') {
            delete $want{ $f->{headers}{'receipt-id'} };

        } elsif ($f->{command} eq 'MESSAGE') {
            die "error: $f->{body}\n"
                if $f->{headers}{destination} eq '/user/queue/errors';
            push @got, json_decode($f->{body});
        }
    }

    return @got;
}


# send_pipelined(c, conv, prefix, contents...): a SEND of each content to
# conv (or, conv an array, to its i-th) in one write, with receipts
# "<prefix><i>"; nothing waits for an answer
sub send_pipelined {
    my ($c, $conv, $prefix, @contents) = @_;
    my $w = '';
    my $i = 0;

    for my $t (@contents) {
        $i++;
        my $to = ref $conv ? $conv->[$i - 1] : $conv;
        my $body = json_encode({ conversationId => $to, content => "$t" });
        $w .= ws_frame(opcode => 1, payload => stomp_frame('SEND', {
                  destination => '/app/chat.send',
                  'content-type' => 'application/json',
                  receipt => "$prefix$i" }, $body));
    }

    return $c->send_raw($w);
}


# collect_answers(c, n, timeout): the answers to n receipted requests
# (\%RECEIPTs, \%rejections by receipt id, \@contents of c's own
# messages) once all n are answered, or after timeout (10 s)
sub collect_answers {
    my ($c, $n, $timeout) = @_;
    my (%rc, %err, @own);
    my $until = time + ($timeout // 10);

    while (keys(%rc) + keys(%err) < $n && time < $until) {
        my $f = $c->stomp_recv(1) or next;

        if ($f->{command} eq 'RECEIPT') {
            $rc{ $f->{headers}{'receipt-id'} } = 1;

        } elsif ($f->{command} eq 'MESSAGE') {
            my $j = json_decode($f->{body});
            if ($f->{headers}{destination} eq '/user/queue/errors') {
                $err{ $j->{receiptId} // '' } = $j;
            } else {
                push @own, $j->{content};
            }
        }
    }

    return (\%rc, \%err, \@own);
}


# round_trip(c, conv, n): the slowest of n SENDs (c a member() of conv),
# each waiting for its RECEIPT and its own copy, in seconds; 99 when one
# did not come back (the bystander of the limit tests: its round-trip
# time must stay low while another user attacks)
sub round_trip {
    my ($c, $conv, $n) = @_;
    my $worst = 0;

    for my $i (1 .. ($n // 5)) {
        my $t0 = Time::HiRes::time();
        my @got = eval { send_receipted($c, $conv, "ping $i") };
        return 99 unless @got == 1;
        my $t = Time::HiRes::time() - $t0;
        $worst = $t if $t > $worst;
    }

    return $worst;
}


# metric(sample, path): the value of one sample of the chat_metrics page
# at path (/metrics), e.g. 'ngx_chat_limited_total{limit="send_rate"}';
# undef when it is not there
sub metric {
    my ($sample, $path) = @_;
    my ($st, $h, $body) = http_request('GET', $path // '/metrics', []);

    return undef unless $st && $st == 200;

    for my $l (split /\n/, $body // '') {
        return $1 if $l =~ /^\Q$sample\E (\S+)$/;
    }

    return undef;
}


# start_persist(flags...): a persistence worker on the test's Kafka and
# PostgreSQL, small batches at once, no stats lines, the flags last (a
# flag given twice: the last wins); it logs to <servroot>/persist/
# worker.log. Its pid.
sub start_persist {
    my (@flags) = @_;
    my $dir = Test::Chat::servroot() . '/persist';
    system('mkdir', '-p', $dir);
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        open(STDOUT, '>>', "$dir/worker.log");
        open(STDERR, '>&', \*STDOUT);
        exec(chat_bin() . '/chat-persist',
             "--brokers=$ENV{TEST_NGINX_KAFKA_BROKERS}",
             "--database=$ENV{TEST_NGINX_PG_DSN}", '--session-timeout=6000',
             '--batch-wait=20', '--stats-interval=0', @flags);
        exit 127;
    }
    return $pid;
}


1;
