# 085-cli.t: the command-line client, scripts/chat-cli.pl: UTF-8 in and out
# byte-exact, and reconnecting after a reload or a server restart with the
# gap filled from history.

use lib 't/lib';
use Test::Chat;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = <<"_EOC_";
    location /chat/api/ {
        chat_api;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    }
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    }
_EOC_

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use IPC::Open3 qw(open3);
use IO::Select;
use Symbol qw(gensym);
use Time::HiRes qw(time);

my @clis;

# cli(user, port): the client running as user; its stdin, stdout, stderr
sub cli {
    my ($user, $port) = @_;
    my ($in, $out, $err) = (undef, undef, gensym);
    my $pid = open3($in, $out, $err, $^X, 'scripts/chat-cli.pl',
                    '--port', $port // server_port(),
                    '--secret', $ENV{TEST_NGINX_JWT_SECRET}, $user);
    $in->autoflush(1);
    my $c = { pid => $pid, in => $in, out => $out, err => $err,
              seen => '', errors => '' };
    push @clis, $c;
    return $c;
}

# type(cli, line): a line typed in, as UTF-8 bytes
sub type {
    my ($c, $line) = @_;
    utf8::encode($line) if utf8::is_utf8($line);
    print { $c->{in} } "$line\n";
}

# expect(cli, regex, timeout): waits until the output (bytes) matches;
# the output up to the match is consumed
sub expect {
    my ($c, $re, $timeout) = @_;
    my $until = time + ($timeout // 5);
    my $sel = IO::Select->new($c->{out}, $c->{err});

    while (1) {
        if ($c->{seen} =~ $re) {
            my $m = $&;
            $c->{seen} = $';
            return $m;
        }
        my $left = $until - time;
        if ($left <= 0) {
            Test::More::diag("no $re in: $c->{seen}");
            return undef;
        }
        for my $fh ($sel->can_read($left)) {
            my $buf;
            my $n = sysread($fh, $buf, 65536);
            if (!$n) {
                $sel->remove($fh);
                next;
            }
            if ($fh == $c->{out}) {
                $c->{seen} .= $buf;
            } else {
                $c->{errors} .= $buf;
            }
        }
    }
}

sub quit {
    my ($c) = @_;
    type($c, '/quit');
    close $c->{in};
    waitpid($c->{pid}, 0);
    my $sel = IO::Select->new($c->{err});
    while ($sel->can_read(0.2)) {
        my $buf;
        last unless sysread($c->{err}, $buf, 65536);
        $c->{errors} .= $buf;
    }
    return $c->{errors};
}

END { kill 'TERM', map { $_->{pid} } @clis }

package main;

run_tests();

__DATA__

=== TEST 1: non-ASCII from the CLI, byte-exact over WebSocket and REST
--- tests: 8
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $text = "\x{fc}n\x{ef}c\x{f6}d\x{e9} \x{1F600} \x{2014}";
my $bytes = $text;
utf8::encode($bytes);
my $bob = stomp_connect('/ws/chat', user => 'bob1');
$bob->subscribe('/user/queue/messages', 'm');
my $c = cli('alice1');
ok(expect($c, qr/^connected as alice1/m), 'the CLI is connected');
type($c, '/direct bob1');
ok(expect($c, qr/^now in \S+/m), 'a direct conversation');
type($c, $text);
my $f = $bob->stomp_expect('MESSAGE', 5);
# the frame body as it came off the wire, decoded as UTF-8 JSON once
my $j = $f && json_decode($f->{body});
is($j && $j->{content}, $text, 'over WebSocket: the same characters');
my ($st, $list) = api(GET => '/conversations', 'bob1');
my $conv = $list->{conversations}[0]{conversationId};
my (undef, undef, $raw) = http_request(GET =>
    "/chat/api/conversations/$conv/messages",
    ['Authorization: Bearer ' . make_token('bob1')]);
ok(index($raw, $bytes) >= 0, 'over REST: the same UTF-8 bytes');
is(json_decode($raw)->{messages}[0]{content}, $text, 'and characters');
ok(expect($c, qr/^#1 <alice1> \Q$bytes\E$/m),
   'the CLI prints its echo as UTF-8');
$bob->send_json('/app/chat.send', { conversationId => $conv,
                                    content => "$text from bob" });
ok(expect($c, qr/^#2 <bob1> \Q$bytes\E from bob$/m),
   'and what others send');
unlike(quit($c), qr/Wide character|malformed/i, 'no encoding warnings');
--- no_error_log
[error]



=== TEST 2: a reload: the CLI reconnects and goes on receiving
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = cli('alice2');
ok(expect($c, qr/^connected as alice2/m), 'connected');
type($c, '/direct bob2');
expect($c, qr/^now in \S+/m);
nginx_reload();
ok(expect($c, qr/^reconnected as alice2/m, 10), 'reconnected after the reload');
my $bob = stomp_connect('/ws/chat', user => 'bob2');
my ($st, $list) = api(GET => '/conversations', 'bob2');
$bob->send_json('/app/chat.send',
                { conversationId => $list->{conversations}[0]{conversationId},
                  content => 'after the reload' });
ok(expect($c, qr/^#1 <bob2> after the reload$/m), 'a message arrives live');
type($c, 'and a reply');
ok(expect($c, qr/^#2 <alice2> and a reply$/m), 'sending works again');
quit($c);
--- no_error_log
[error]



=== TEST 3: a server restart: the CLI reconnects and prints what it missed
--- second_server
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = cli('alice3');
ok(expect($c, qr/^connected as alice3/m), 'connected to server 1');
type($c, '/direct bob3');
expect($c, qr/^now in (\S+)/m);
my $bob = stomp_connect('/ws/chat', user => 'bob3', port => server_port2());
$bob->subscribe('/user/queue/messages', 'm');
my ($st, $list) = api(GET => '/conversations', 'bob3');
my $conv = $list->{conversations}[0]{conversationId};
$bob->send_json('/app/chat.send', { conversationId => $conv,
                                    content => 'before' });
ok(expect($c, qr/^#1 <bob3> before$/m), 'live before the restart');
my $conf = do {
    local $/;
    open(my $fh, '<', servroot() . '/nginx/conf/nginx.conf') or die $!;
    <$fh>;
};
Test::Chat::nginx_stop(1);
ok(expect($c, qr/^! connection closed.*reconnecting/m), 'it notices');
# typed while the server is down: kept and sent once it is back
type($c, 'typed while away');
for my $t ('missed one', 'missed two') {
    $bob->send_json('/app/chat.send', { conversationId => $conv,
                                        content => $t });
}
sleep 1;
my ($ok, $msg) = Test::Chat::nginx_start(1, $conf);
die $msg unless $ok;
ok(expect($c, qr/^reconnected as alice3/m, 20), 'reconnected');
ok(expect($c, qr/^#2 <bob3> missed one\n#3 <bob3> missed two\n/m),
   'the gap filled from history, in order');
my $m = $bob->stomp_message('/user/queue/messages', 5);
$m = $bob->stomp_message('/user/queue/messages', 5)
    while $m && $m->{senderId} eq 'bob3';
is($m && $m->{content}, 'typed while away', 'the queued line was sent');
quit($c);
--- no_error_log
[error]
