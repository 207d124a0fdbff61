# The durable pipeline end to end: RECEIPT only after Kafka holds the
# message, the persistence worker stores every receipted message exactly
# once across Redis losing its data, PostgreSQL restarting and kill -9 of
# the worker, and history from PostgreSQL matches the live order.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

# the blocks' location blocks: $TEST_NGINX_CHAT_CONFIG (they send 150
# messages at once: no SEND rate and no cap on requests in flight, t/101
# and t/102 test those)
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(
    ws => 'chat_send_rate off; chat_max_requests_in_flight 0;');

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes qw(time sleep);

my $worker_n = 0;

# a SEND whose clientMsgId is its content, with receipt "r-<content>"
sub send_durable {
    my ($c, $conv, $content) = @_;
    return send_msg($c, $conv, $content, cmid => $content,
                    receipt => "r-$content");
}

# the RECEIPT ids and MESSAGE bodies a client got within the time
sub drain {
    my ($c, $secs) = @_;
    my (%r, @m, @e);
    my $until = time + $secs;
    while (time < $until) {
        my $f = $c->stomp_recv(0.3) or next;
        $r{ $f->{headers}{'receipt-id'} } = 1 if $f->{command} eq 'RECEIPT';
        if ($f->{command} eq 'MESSAGE') {
            my $j = json_decode($f->{body});
            push @m, $j if $f->{headers}{destination} =~ /messages/;
            push @e, $j if $f->{headers}{destination} =~ /errors/;
        }
    }
    return (\%r, \@m, \@e);
}

# a persistence worker of this test, with a pid file; its pid
sub start_worker {
    my $pidf = servroot() . '/persist/worker' . ++$worker_n . '.pid';
    return start_persist('--group-id=t070', "--pid-file=$pidf");
}

sub stop_worker {
    my ($pid, $sig) = @_;
    kill $sig // 'TERM', $pid;
    waitpid($pid, 0);
}

# waits until PostgreSQL holds n messages of the conversation
sub wait_rows {
    my ($conv, $n, $secs) = @_;
    my $got = 0;
    my $until = time + $secs;
    while (time < $until) {
        $got = (pg_query("SELECT count(*) FROM messages"
                         . " WHERE conversation_id = '$conv'"))[0][0];
        return $got if $got >= $n;
        sleep 0.25;
    }
    return $got;
}

package main;

run_tests();

__DATA__

=== TEST 1: Kafka unreachable: no RECEIPT, an unavailable error naming the receipt and clientMsgId
--- http_config
    chat_kafka 127.0.0.1:1;
    chat_kafka_timeout 1s;
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my $a = member('alice1');
my $conv = conversation('alice1', 'direct', 'bob1');
send_msg($a, $conv, 'lost?', cmid => 'k1', receipt => 'r1');
my ($r, $m, $e) = drain($a, 3.5);
ok(!$r->{r1}, 'no RECEIPT while Kafka cannot hold the message');
is($e->[0] && $e->[0]{code}, 'unavailable', 'unavailable');
is($e->[0] && $e->[0]{receiptId}, 'r1', 'names the receipt');
is($e->[0] && $e->[0]{clientMsgId}, 'k1', 'names the clientMsgId');



=== TEST 2: a RECEIPT means Kafka holds the message, keyed by conversation, with every field
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my $a = member('alice2');
my $conv = conversation('alice2', 'direct', 'bob2');
send_msg($a, $conv, 'durable', cmid => 'k2', receipt => 'r2');
my ($r) = drain($a, 1.5);
ok($r->{r2}, 'RECEIPT');
my @lines = `${\ chat_bin()}/chat-kafka-consume --brokers=$ENV{TEST_NGINX_KAFKA_BROKERS} --group-id=t070-look --full=true --idle=3000 --commit=false 2>/dev/null`;
my ($line) = grep { /"clientMsgId":"k2"/ } @lines;
ok($line, 'the message is in chat.messages');
my ($part, $off, $key, $json) = split / /, $line // '', 4;
is($key, $conv, 'keyed by conversationId');
my $j = json_decode($json // '{}');
is(join(',', sort keys %$j),
   'clientMsgId,content,conversationId,createdAt,messageId,metadata,'
   . 'senderId,seq,type', 'every field of PROTOCOL.md section 5');



=== TEST 3: the worker stores what was receipted; history from PostgreSQL equals the live order
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl_timeout: 90
--- perl
my $a = member('alice3');
my $b = member('bob3');
my $conv = conversation('alice3', 'group', 'bob3');
for my $i (1 .. 15) {
    send_durable($a, $conv, "a3-$i");
    send_durable($b, $conv, "b3-$i");
}
my (undef, $live) = drain($b, 2);
my $w = start_worker();
is(wait_rows($conv, 30, 40), 30, 'all 30 messages in PostgreSQL');
stop_worker($w);
redis_cmd('DEL', "chat:h:{$conv}");
my (undef, $h) = api(GET => "/conversations/$conv/messages?limit=50",
                     'alice3');
is_deeply([map { "$_->{seq}:$_->{messageId}" } @{ $h->{messages} }],
          [map { "$_->{seq}:$_->{messageId}" } @$live],
          'history (from PostgreSQL alone) is the live order');
my $dups = (pg_query("SELECT count(*) - count(DISTINCT seq) FROM messages"
                     . " WHERE conversation_id = '$conv'"))[0][0];
is($dups, 0, 'no (conversation, seq) twice');



=== TEST 4: Redis loses everything under load: every receipted message stored once, no seq reused
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl_timeout: 90
--- perl
my $a = member('alice4');
my $b = member('bob4');
my $conv = conversation('alice4', 'group', 'bob4');
my %receipted;
for my $i (1 .. 40) {
    send_durable($a, $conv, "a4-$i");
    send_durable($b, $conv, "b4-$i");
    redis_cmd('FLUSHALL') if $i == 20;
    sleep 0.01;
}
for my $c ($a, $b) {
    my ($r) = drain($c, 2);
    /^r-(.*)$/ and $receipted{$1} = 1 for keys %$r;
}
cmp_ok(scalar keys %receipted, '>=', 60, 'most messages receipted');
my $w = start_worker();
my $want = scalar keys %receipted;
my $until = time + 40;
my %stored;
while (time < $until) {
    %stored = map { $_->[0] => 1 } pg_query(
        "SELECT client_msg_id FROM messages WHERE conversation_id = '$conv'");
    last unless grep { !$stored{$_} } keys %receipted;
    sleep 0.5;
}
stop_worker($w);
my @missing = grep { !$stored{$_} } sort keys %receipted;
is("@missing", '', 'no receipted message lost (a reused seq would lose one)');
my $dups = (pg_query("SELECT count(*) - count(DISTINCT seq) FROM messages"
                     . " WHERE conversation_id = '$conv'"))[0][0];
is($dups, 0, 'no (conversation, seq) twice');



=== TEST 5: kill -9 of the worker mid-stream, PostgreSQL restarted: every message exactly once
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl_timeout: 120
--- perl
my $a = member('alice5');
my $conv = conversation('alice5', 'direct', 'bob5');
send_durable($a, $conv, "m5-$_") for 1 .. 150;
my ($r) = drain($a, 2);
is(scalar(grep { /^r-m5-/ } keys %$r), 150, '150 RECEIPTs');
my $w = start_worker();
my $until = time + 30;
sleep 0.05 while time < $until && wait_rows($conv, 1, 0.05) < 1;
stop_worker($w, 'KILL');
pg_stop();
send_durable($a, $conv, "n5-$_") for 1 .. 50;
pg_start();
$w = start_worker();
is(wait_rows($conv, 200, 60), 200, 'all 200 in PostgreSQL');
stop_worker($w);
my $dups = (pg_query("SELECT count(*) - count(DISTINCT client_msg_id)"
                     . " FROM messages WHERE conversation_id = '$conv'"))[0][0];
is($dups, 0, 'each exactly once');
