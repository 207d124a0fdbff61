#!/usr/bin/env perl
# chat-cli.pl: a small interactive chat client for trying ngx_chat by hand
# (STOMP over WebSocket plus the REST API), built on the test clients.
#
# usage: scripts/chat-cli.pl [--port 8080] [--secret S] [--token JWT] USER
#
# The port and the secret default to CHAT_PORT and CHAT_JWT_SECRET, else
# those of the instance make start runs (var/env), else 8080 and the
# development secret.
#
# commands (anything else is sent to the current conversation):
#   /direct USER          open (or create) a direct conversation, switch to it
#   /group NAME U1 U2..   create a group conversation, switch to it
#   /use ID               switch to a conversation
#   /list                 your conversations
#   /history [N]          the last N messages of the current conversation
#   /add USER             add a member to the current (group) conversation
#   /typing               send a typing event
#   /read SEQ             mark everything up to SEQ as read
#   /presence USER        subscribe to a user's presence
#   /quit
#
# Input and output are UTF-8. When the connection drops (a reload, a server
# restart), it reconnects with backoff (0.5 s doubling to 10 s, each wait
# 75% to 125% of it; after a close 1001, a drained node, at once within a
# second), prints the messages it missed meanwhile (from the history API)
# and sends again, with the same clientMsgId, what the server had not
# receipted.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::Bin/../t/lib";
use Encode qw(decode);
use IO::Select;
use Getopt::Long;
use Time::HiRes qw(time);

use Test::Chat::Util;
use Test::Chat::WebSocket;

binmode(STDOUT, ':encoding(UTF-8)');
binmode(STDERR, ':encoding(UTF-8)');
@ARGV = map { decode('UTF-8', $_) } @ARGV;

# the port and secret of the instance make start runs (var/env), unless
# the environment or the options say otherwise
my %env;
if (open(my $fh, '<', ($ENV{CHAT_VAR} // "$FindBin::Bin/../var") . '/env')) {
    %env = map { /^(\w+)=(.*)$/ ? ($1, $2) : () } <$fh>;
}

my $port = $ENV{CHAT_PORT} // $env{CHAT_PORT} // 8080;
my $secret = $ENV{CHAT_JWT_SECRET} // $env{CHAT_JWT_SECRET}
             // 'ngx-chat-dev-secret-change-me';
my ($token, $path) = (undef, '/ws/chat');

GetOptions('port=i' => \$port, 'secret=s' => \$secret,
           'token=s' => \$token, 'path=s' => \$path)
    or die "usage: $0 [--port P] [--secret S] [--token JWT] USER\n";

my $user = shift or die "usage: $0 [--port P] [--secret S] USER\n";
$token //= make_token($user, secret => $secret, ttl => 86400);
$| = 1;

my $BACKOFF_MIN = 0.5;
my $BACKOFF_MAX = 10;

my $c;                  # the STOMP client; undef while disconnected
my $current;            # the current conversation
my %last;               # conversationId -> the highest seq shown
my @outbox;             # sends not receipted yet: { receipt, body }
my $n = 0;
my $backoff = $BACKOFF_MIN;
my $next_try = 0;
my $ever_connected = 0;
my @presence;           # users whose presence is followed


sub rest {
    my ($method, $p, $data) = @_;
    my ($st, $j) = eval {
        api($method, $p, undef, $data, token => $token, port => $port);
    };
    if (!defined $st) {
        print "! $method $p: the server cannot be reached\n";
        return undef;
    }
    if ($st !~ /^2/) {
        my $e = ref $j ? ($j->{error}{message} // json_encode($j))
                       : ($j // '');
        print "! $method $p: $st $e\n";
        return undef;
    }
    return $j // {};
}


sub show_message {
    my ($j) = @_;
    my $conv = $j->{conversationId} // '';
    my $mark = ($current // '') eq $conv ? '' : " [$conv]";

    print "#$j->{seq}$mark <$j->{senderId}> $j->{content}\n";
    $last{$conv} = $j->{seq} if $j->{seq} > ($last{$conv} // 0);
}


# prints the messages of conv above the highest seq shown, up to seq upto
# (or all of them), from the history API
sub fill {
    my ($conv, $upto) = @_;

    while (1) {
        my $after = $last{$conv} // 0;
        last if defined $upto && $after >= $upto;

        my $j = rest(GET => "/conversations/$conv/messages?after=$after"
                            . "&limit=200") or return;
        my @m = grep { $_->{seq} > $after
                       && (!defined $upto || $_->{seq} <= $upto) }
                @{ $j->{messages} || [] };
        show_message($_) for @m;
        last unless $j->{hasMore} && @m;
    }
}


sub show {
    my ($f) = @_;
    my $d = $f->{headers}{destination} // '';
    my $j = json_decode($f->{body}) // {};
    my $t = $j->{type} // '';

    if ($t eq 'message') {
        my $conv = $j->{conversationId};
        my $seen = $last{$conv} // 0;
        return if $j->{seq} <= $seen;               # shown by a gap fill
        fill($conv, $j->{seq} - 1) if $j->{seq} > $seen + 1 && $seen;
        show_message($j);
    } elsif ($t eq 'typing') {
        print "... $j->{userId} is typing\n";
    } elsif ($t eq 'error') {
        @outbox = grep { $_->{receipt} ne ($j->{receiptId} // '') } @outbox;
        print "! $j->{code}: $j->{message}\n";
    } else {
        print "* $d $f->{body}\n";
    }
}


sub send_chat {
    my ($conv, $text) = @_;
    my $m = {
        receipt => 'send-' . $n++,
        body => { conversationId => $conv, content => $text,
                  clientMsgId => "cli-$$-" . int(time * 1000) . "-$n" },
    };

    push @outbox, $m;

    if (!$c) {
        print "(not connected: it is sent once the connection is back)\n";
        return;
    }

    $c->send_json('/app/chat.send', $m->{body}, receipt => $m->{receipt});
}


sub command {
    my ($line) = @_;

    if ($line =~ m{^/direct\s+(\S+)}) {
        my $j = rest(POST => '/conversations',
                     { type => 'direct', members => [$1] }) or return;
        $current = $j->{conversationId};
        $last{$current} //= $j->{lastSeq} // 0;
        print "now in $current (direct with $1)\n";
    } elsif ($line =~ m{^/group\s+(\S+)\s+(.+)}) {
        my $j = rest(POST => '/conversations',
                     { type => 'group', name => $1,
                       members => [split ' ', $2] }) or return;
        $current = $j->{conversationId};
        $last{$current} //= 0;
        print "now in $current (group $1)\n";
    } elsif ($line =~ m{^/use\s+(\S+)}) {
        $current = $1;
    } elsif ($line =~ m{^/list}) {
        my $j = rest(GET => '/conversations') or return;
        for (@{ $j->{conversations} || [] }) {
            printf "%s %-6s %-12s members:%s unread:%d\n",
                $_->{conversationId}, $_->{type}, $_->{name} // '',
                join(',', @{ $_->{members} || [] }), $_->{unread} // 0;
        }
    } elsif ($line =~ m{^/history\s*(\d*)}) {
        return print "! no conversation: /direct USER first\n"
            unless $current;
        my $j = rest(GET => "/conversations/$current/messages?limit="
                             . ($1 || 20)) or return;
        print "#$_->{seq} <$_->{senderId}> $_->{content} ($_->{status})\n"
            for @{ $j->{messages} || [] };
    } elsif ($line =~ m{^/add\s+(\S+)}) {
        rest(POST => "/conversations/$current/members", { userId => $1 });
    } elsif ($line =~ m{^/(typing|read|presence)\b} && !$c) {
        print "! not connected\n";
    } elsif ($line =~ m{^/typing}) {
        $c->send_json('/app/chat.typing', { conversationId => $current });
    } elsif ($line =~ m{^/read\s+(\d+)}) {
        $c->send_json('/app/chat.read',
                      { conversationId => $current, seq => $1 + 0 });
    } elsif ($line =~ m{^/presence\s+(\S+)}) {
        push @presence, $1;
        $c->subscribe("/topic/presence.$1", 'p' . $#presence, 'auto',
                      no_receipt => 1);
    } elsif ($line =~ m{^/quit}) {
        $c->disconnect if $c;
        exit 0;
    } elsif ($line =~ m{^/}) {
        print "! unknown command (see the top of $0)\n";
    } elsif ($line =~ /\S/) {
        return print "! no conversation: /direct USER first\n"
            unless $current;
        send_chat($current, $line);
    }
}


# connects and subscribes; after a reconnect, prints what was missed and
# sends again what was not receipted
sub connect_chat {
    my $s = eval {
        stomp_connect($path, port => $port, token => $token, timeout => 5);
    };

    if (!$s) {
        my $why = $@ || 'no answer';
        $why =~ s/\s+\z//;
        return (undef, $why);
    }

    my $k = 0;
    for my $d (qw(/user/queue/messages /user/queue/receipts
                  /user/queue/typing /user/queue/events /user/queue/errors))
    {
        $s->subscribe($d, $k++, 'auto') or return (undef, "SUBSCRIBE $d");
    }

    for my $i (0 .. $#presence) {
        $s->subscribe("/topic/presence.$presence[$i]", "p$i", 'auto',
                      no_receipt => 1);
    }

    return ($s, '');
}


sub connected {
    my $hello = $c->{connected}{headers};

    print(($ever_connected ? 'reconnected' : 'connected')
          . " as $hello->{'user-name'} (session $hello->{session},"
          . " $hello->{server})\n");

    my $j = rest(GET => '/conversations');

    for my $conv (@{ $j ? $j->{conversations} : [] }) {
        my $id = $conv->{conversationId};

        if (!$ever_connected) {
            $last{$id} = $conv->{lastSeq};
        } elsif (($conv->{lastSeq} // 0) > ($last{$id} // 0)) {
            fill($id);
        }
    }

    $ever_connected = 1;
    $backoff = $BACKOFF_MIN;

    for my $m (@outbox) {
        $c->send_json('/app/chat.send', $m->{body},
                      receipt => $m->{receipt});
    }
}


sub disconnected {
    my ($why, $code) = @_;
    $c = undef;
    # a drained node (close 1001): at once, spread over a second
    $next_try = (defined $code && $code == 1001 && $backoff == $BACKOFF_MIN)
                ? time + rand(1)
                : time + $backoff * (0.75 + rand(0.5));
    printf "! %s; reconnecting in %.1f s\n", $why, $next_try - time;
    $backoff = $backoff * 2 > $BACKOFF_MAX ? $BACKOFF_MAX : $backoff * 2;
}


my ($s, $why) = connect_chat();
die "cannot connect to ws://127.0.0.1:$port$path: $why\n" unless $s;
$c = $s;
connected();

my $stdin = '';
my $stdin_eof = 0;

while (1) {
    if (!$c && time >= $next_try) {
        ($s, $why) = connect_chat();
        if ($s) {
            $c = $s;
            connected();
        } else {
            disconnected("cannot connect ($why)");
        }
    }

    while ($c && (my $f = $c->stomp_recv(0))) {
        if ($f->{command} eq 'MESSAGE') {
            show($f);
        } elsif ($f->{command} eq 'RECEIPT') {
            my $r = $f->{headers}{'receipt-id'} // '';
            @outbox = grep { $_->{receipt} ne $r } @outbox;
        } elsif ($f->{command} eq 'ERROR') {
            print "! ERROR $f->{headers}{message}\n";
        }
    }

    if ($c && ($c->{eof} || defined $c->close_code)) {
        my $code = $c->close_code;
        disconnected('connection closed'
                     . (defined $code ? " ($code)" : ''), $code);
    }

    my $sel = IO::Select->new();
    $sel->add(\*STDIN) unless $stdin_eof;
    $sel->add($c->sock) if $c;

    my $wait = $c ? 1 : ($next_try - time);
    $wait = 0 if $wait < 0;
    $wait = 1 if $wait > 1;

    if (!$sel->count) {
        select(undef, undef, undef, $wait);
        next;
    }

    for my $fh ($sel->can_read($wait)) {
        next unless $fh == \*STDIN;

        my $got = sysread(STDIN, $stdin, 4096, length $stdin);

        if (!$got) {
            # input ended: send what waits, then leave
            $stdin_eof = 1;
            $stdin .= "\n" if length $stdin;
        }

        while ($stdin =~ s/\A([^\n]*)\n//) {
            my $line = decode('UTF-8', $1);
            $line =~ s/\r\z//;
            command($line);
        }
    }

    exit 0 if $stdin_eof && !@outbox;
}
