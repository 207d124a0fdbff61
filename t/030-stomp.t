# 030-stomp.t: the STOMP 1.2 session layer (PROTOCOL.md sections 2-4):
# CONNECT and version negotiation, identity, framing, receipts, heart-beats,
# subscriptions, transactions, ack modes, DISCONNECT and protocol errors.

use lib 't/lib';
use Test::Chat;

# most blocks share one configuration, so nginx is started once for them:
# small limits and short timers make the limits and timers testable
$ENV{TEST_NGINX_STOMP_CONF} = <<"CONF";
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
        chat_max_frame_size 2k;
        chat_max_subscriptions 6;
        chat_heartbeat 500ms;
        chat_heartbeat_grace 500ms;
        chat_connect_timeout 1s;
    }

    location /chat/api/ {
        chat_api;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    }
CONF


package Test::Chat::Sandbox;

use strict;
use warnings;
use Time::HiRes qw(time sleep);

BEGIN { Test::Chat->import }
use Test::Chat::Helpers;


# a WebSocket client that sent CONNECT (or command) with exactly these
# headers: for the cases stomp_connect() does not build
sub raw_connect {
    my ($headers, %o) = @_;
    my $cmd = delete $o{command} // 'CONNECT';
    my $c = ws_connect('/ws/chat', %o);

    die "raw_connect: no connection\n" unless $c;
    die "raw_connect: handshake answered " . ($c->status // 'nothing')
        . "\n" unless $c->upgraded;

    $c->stomp_send($cmd, $headers, '') if $headers;

    return $c;
}


# true when the server sends its close frame and then closes the TCP
# connection within timeout
sub closes {
    my ($c, $timeout) = @_;
    my $code = $c->expect_close($timeout // 3);

    return defined $code && $c->is_eof($timeout // 3);
}


# two tests: an ERROR frame whose message matches re, then the close
sub error_closes {
    my ($c, $re, $what) = @_;
    my $f = $c->stomp_expect('ERROR', 3);

    like($f ? $f->{headers}{message} // '(none)' : '(no ERROR frame)', $re,
         "$what: ERROR with message");
    ok(closes($c), "$what: then the connection closes");
}


package main;

plan_from_blocks();
run_tests();

__DATA__

=== TEST 1: CONNECTED: version, heart-beat, session, server, user-name, limit
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 7
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
my $h = $c->{connected}{headers};
is($h->{version}, '1.2', 'version:1.2');
is($h->{'heart-beat'}, '500,500', 'heart-beat: chat_heartbeat both ways');
like($h->{session} // '', qr/^\S+$/, 'a session id');
like($h->{server} // '', qr{^ngx_chat/\d+\.\d+\.\d+$}, 'server');
is($h->{'user-name'}, 'alice', 'user-name: the token\'s sub');
is($h->{'max-content-size'}, 16384, 'max-content-size: chat_max_content_size');
my $d = stomp_connect('/ws/chat', user => 'alice');
isnt($d->{connected}{headers}{session}, $h->{session},
     'every session has its own id');
--- no_error_log
[error]



=== TEST 2: accept-version 1.1 gives STOMP 1.1
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 1
--- perl
# (not stomp_connect(): it hands its "version" to ws_connect() too)
my $c = raw_connect([['accept-version' => '1.1'], [host => 'localhost'],
                     [passcode => make_token('alice')]]);
my $f = $c->stomp_expect('CONNECTED');
is($f && $f->{headers}{version}, '1.1', 'version:1.1');
--- no_error_log
[error]



=== TEST 3: accept-version 1.0,1.1,1.2 gives the highest, 1.2
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 1
--- perl
my $c = raw_connect([['accept-version' => '1.0,1.1,1.2'],
                     [host => 'localhost'],
                     [passcode => make_token('alice')]]);
my $f = $c->stomp_expect('CONNECTED');
is($f && $f->{headers}{version}, '1.2', 'version:1.2');
--- no_error_log
[error]



=== TEST 4: no accept-version: a STOMP 1.0 client
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = raw_connect([[host => 'localhost'],
                     [passcode => make_token('alice')]]);
my $f = $c->stomp_expect('CONNECTED');
is($f && $f->{headers}{version}, '1.0', 'version:1.0');
# STOMP 1.0 has no header escapes: a backslash is just a byte
$c->stomp_send('SUBSCRIBE', [[destination => '/user/queue/messages'],
                             [id => 's\\t'], [receipt => 'r\\t']], '',
               raw_headers => 1);
$f = $c->stomp_recv;
is($f && $f->{command}, 'RECEIPT', 'a backslash is no escape in 1.0');
is($f && $f->{header_list}[0][1], 'r\\t', 'the receipt id as it was');
--- no_error_log
[error]



=== TEST 5: accept-version 2.0 only: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = raw_connect([['accept-version' => '2.0'], [host => 'localhost'],
                     [passcode => make_token('alice')]]);
error_closes($c, qr/version/, 'accept-version:2.0');
--- no_error_log
[error]



=== TEST 6: sub-protocols: v12.stomp chosen over v11.stomp; none offered
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 4
--- perl
my $c = ws_connect('/ws/chat', protocols => ['v11.stomp', 'v12.stomp']);
is($c->status, 101, 'upgraded');
is($c->protocol, 'v12.stomp', 'v12.stomp chosen');
$c = ws_connect('/ws/chat', protocols => []);
is($c->status, 101, 'none offered: upgraded all the same');
ok(!defined $c->protocol, 'none offered: no Sec-WebSocket-Protocol');
--- no_error_log
[error]



=== TEST 7: STOMP instead of CONNECT, no sub-protocol, no host (stomp.py)
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = raw_connect([['accept-version' => '1.1,1.2'],
                     [passcode => make_token('pyuser')]],
                    command => 'STOMP', protocols => []);
my $f = $c->stomp_expect('CONNECTED');
ok($f, 'CONNECTED');
is($f && $f->{headers}{'user-name'}, 'pyuser', 'user-name');
--- no_error_log
[error]



=== TEST 8: CONNECT without host (stompjs)
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = raw_connect([['accept-version' => '1.2,1.1,1.0'],
                     ['heart-beat' => '10000,10000'],
                     [passcode => make_token('jsuser')]]);
my $f = $c->stomp_expect('CONNECTED');
is($f && $f->{headers}{version}, '1.2', 'CONNECTED 1.2');
is($f && $f->{headers}{'user-name'}, 'jsuser', 'user-name');
--- no_error_log
[error]



=== TEST 9: identity from the passcode header
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 1
--- perl
my $c = stomp_connect('/ws/chat', user => 'pass.user', via => 'passcode');
is($c->{connected}{headers}{'user-name'}, 'pass.user', 'user-name');
--- no_error_log
[error]



=== TEST 10: identity from CONNECT's Authorization: Bearer header
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 1
--- perl
my $c = stomp_connect('/ws/chat', user => 'auth.user',
                      via => 'authorization');
is($c->{connected}{headers}{'user-name'}, 'auth.user', 'user-name');
--- no_error_log
[error]



=== TEST 11: identity from the access_token query parameter
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 1
--- perl
my $c = stomp_connect('/ws/chat', user => 'query.user', via => 'query');
is($c->{connected}{headers}{'user-name'}, 'query.user', 'user-name');
--- no_error_log
[error]



=== TEST 12: identity from the handshake's Authorization header
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 1
--- perl
my $c = stomp_connect('/ws/chat', user => 'hs.user', via => 'handshake');
is($c->{connected}{headers}{'user-name'}, 'hs.user', 'user-name');
--- no_error_log
[error]



=== TEST 13: login equal to the token's sub is accepted
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 1
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice', login => 'alice');
is($c->{connected}{headers}{'user-name'}, 'alice', 'CONNECTED');
--- no_error_log
[error]



=== TEST 14: login other than the token's sub: ERROR unauthorized
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = raw_connect([['accept-version' => '1.2'], [login => 'mallory'],
                     [passcode => make_token('alice')]]);
error_closes($c, qr/^unauthorized$/, 'login mallory, sub alice');
--- no_error_log
[error]



=== TEST 15: no credentials at all: ERROR unauthorized
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = raw_connect([['accept-version' => '1.2'], [host => 'localhost']]);
error_closes($c, qr/^unauthorized$/, 'no token');
--- no_error_log
[error]



=== TEST 16: bad tokens in every place: ERROR unauthorized, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 40
--- perl
my %bad = (
    malformed => 'not-a-jwt',
    'wrong signature' => make_token('alice', secret => 'not the secret'),
    expired => make_token('alice', exp => int(time) - 60),
    'alg none' => make_token('alice', alg => 'none'),
    'no sub' => make_token(undef),
);
for my $what (sort keys %bad) {
    for my $via (qw(passcode authorization query handshake)) {
        my $t = $bad{$what};
        my (@h, %o);
        push @h, ['accept-version' => '1.2'];
        push @h, [passcode => $t] if $via eq 'passcode';
        push @h, [Authorization => "Bearer $t"] if $via eq 'authorization';
        %o = (headers => ["Authorization: Bearer $t"])
            if $via eq 'handshake';
        my $path = $via eq 'query' ? "/ws/chat?access_token=$t" : undef;
        my $c = $path ? ws_connect($path) : ws_connect('/ws/chat', %o);
        $c->stomp_send('CONNECT', \@h, '');
        error_closes($c, qr/^unauthorized$/, "$what via $via");
    }
}
--- no_error_log
[error]



=== TEST 17: chat_identity from a variable: no token needed
--- need_module
--- config
    location = /ws/arg {
        chat_websocket;
        chat_identity $arg_user;
    }

    location = /ws/set {
        chat_websocket;
        set $chat_user "set.user";
        chat_identity $chat_user;
    }
--- tests: 4
--- perl
my $c = ws_connect('/ws/arg?user=arg.user');
$c->stomp_send('CONNECT', [['accept-version' => '1.2']], '');
my $f = $c->stomp_expect('CONNECTED');
is($f && $f->{headers}{'user-name'}, 'arg.user', '$arg_user');
$c = ws_connect('/ws/set');
$c->stomp_send('CONNECT', [['accept-version' => '1.2']], '');
$f = $c->stomp_expect('CONNECTED');
is($f && $f->{headers}{'user-name'}, 'set.user', 'a set variable');
$c = ws_connect('/ws/arg');
$c->stomp_send('CONNECT', [['accept-version' => '1.2']], '');
error_closes($c, qr/^unauthorized$/, 'the variable is empty');
--- no_error_log
[error]



=== TEST 18: a frame before CONNECT: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = raw_connect(undef);
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 0 }, '');
error_closes($c, qr/CONNECT/, 'SUBSCRIBE first');
--- no_error_log
[error]



=== TEST 19: a second CONNECT: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('CONNECT', [['accept-version' => '1.2'],
                           [passcode => make_token('alice')]], '');
error_closes($c, qr/connected/, 'CONNECT again');
--- no_error_log
[error]



=== TEST 20: an unknown command: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->send_text("PUBLISH\ndestination:/x\n\n\0");
error_closes($c, qr/./, 'PUBLISH');
--- no_error_log
[error]



=== TEST 21: a server command from the client: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('MESSAGE', { destination => '/user/queue/messages',
                            'message-id' => 1, subscription => 0 }, 'x');
error_closes($c, qr/./, 'MESSAGE from a client');
--- no_error_log
[error]



=== TEST 22: a header line without a colon: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->send_text("SUBSCRIBE\nid:0\ndestination/user/queue/messages\n\n\0");
error_closes($c, qr/malformed/, 'no colon');
--- no_error_log
[error]



=== TEST 23: an invalid escape (\t) in a header: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->send_text("SUBSCRIBE\nid:a\\tb\ndestination:/user/queue/messages\n\n\0");
error_closes($c, qr/malformed/, '\t');
--- no_error_log
[error]



=== TEST 24: a frame over chat_max_frame_size: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 4
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('SEND', { destination => '/app/chat.send' }, 'x' x 3000,
               content_length => 0);
error_closes($c, qr/./, '3000 bytes, no content-length');
$c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('SEND', { destination => '/app/chat.send',
                         'content-length' => 100000 }, 'x' x 10);
error_closes($c, qr/./, 'content-length:100000, announced');
--- no_error_log
[error]



=== TEST 25: frames under the limit pass even when a message holds more
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
my $pad = 'p' x 1500;
$c->send_text(join '', map {
    stomp_frame('SUBSCRIBE', [[destination => '/user/queue/messages'],
                              [id => "s$_"], [pad => $pad],
                              [receipt => "r$_"]])
} 1 .. 3);
ok(receipt_ok($c, "r$_"), "RECEIPT r$_") for 1 .. 3;
--- no_error_log
[error]



=== TEST 26: too many headers: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('SUBSCRIBE', [[destination => '/user/queue/messages'],
                             [id => 0], map { ["x-$_" => $_] } 1 .. 40],
               '');
error_closes($c, qr/./, '42 headers');
--- no_error_log
[error]



=== TEST 27: RECEIPT for SUBSCRIBE, UNSUBSCRIBE, BEGIN, COMMIT, ABORT
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 6
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 'm', receipt => 'r-sub' });
ok(receipt_ok($c, 'r-sub'), 'SUBSCRIBE');
$c->stomp_send('UNSUBSCRIBE', { id => 'm', receipt => 'r-unsub' });
ok(receipt_ok($c, 'r-unsub'), 'UNSUBSCRIBE');
$c->stomp_send('BEGIN', { transaction => 't1', receipt => 'r-begin' });
ok(receipt_ok($c, 'r-begin'), 'BEGIN');
$c->stomp_send('ABORT', { transaction => 't1', receipt => 'r-abort' });
ok(receipt_ok($c, 'r-abort'), 'ABORT');
$c->stomp_send('BEGIN', { transaction => 't2', receipt => 'r-begin2' });
ok(receipt_ok($c, 'r-begin2'), 'BEGIN again');
$c->stomp_send('COMMIT', { transaction => 't2', receipt => 'r-commit' });
ok(receipt_ok($c, 'r-commit'), 'COMMIT');
--- no_error_log
[error]



=== TEST 28: header escaping round trip: a receipt id with ':', EOL, '\'
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
my $rid = "a:b\nc\\d\re";
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 'm', receipt => $rid });
my $m = $c->recv_message;
like($m ? $m->{payload} : '', qr/^RECEIPT\nreceipt-id:a\\cb\\nc\\\\d\\re\n/,
     'escaped on the wire');
$c->{stomp_buf} .= $m->{payload} if $m;
my $f = $c->stomp_recv;
is($f && $f->{headers}{'receipt-id'}, $rid, 'the same id after unescaping');
--- no_error_log
[error]



=== TEST 29: several STOMP frames in one WebSocket message
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->send_text(join '', map {
    stomp_frame('SUBSCRIBE', { destination => '/user/queue/messages',
                               id => "s$_", receipt => "r$_" })
} 1 .. 3);
ok(receipt_ok($c, "r$_"), "RECEIPT r$_, in order") for 1 .. 3;
--- no_error_log
[error]



=== TEST 30: one STOMP frame split over many WebSocket messages
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = ws_connect('/ws/chat');
$c->stomp_send('CONNECT', [['accept-version' => '1.2'],
                           [passcode => make_token('alice')]], '',
               split => 7);
ok($c->stomp_expect('CONNECTED'), 'CONNECT in 7-byte pieces');
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 's', receipt => 'split' }, '',
               split => 7);
ok(receipt_ok($c, 'split'), 'SUBSCRIBE in 7-byte pieces');
--- no_error_log
[error]



=== TEST 31: binary WebSocket messages are accepted
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = ws_connect('/ws/chat');
$c->stomp_send('CONNECT', [['accept-version' => '1.2'],
                           [passcode => make_token('alice')]], '',
               binary => 1);
ok($c->stomp_expect('CONNECTED'), 'CONNECT in a binary message');
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 's', receipt => 'bin' }, '',
               binary => 1, split => 5);
ok(receipt_ok($c, 'bin'), 'SUBSCRIBE in binary pieces');
--- no_error_log
[error]



=== TEST 32: lone EOLs (heart-beats) between and around frames
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->send_text("\n");
$c->send_text("\r\n");
$c->send_text("\n\n"
              . stomp_frame('SUBSCRIBE', { destination =>
                                           '/user/queue/messages',
                                           id => 'a', receipt => 'r1' })
              . "\r\n\n\r\n"
              . stomp_frame('SUBSCRIBE', { destination =>
                                           '/user/queue/typing',
                                           id => 'b', receipt => 'r2' })
              . "\n");
$c->send_text("\n");
ok(receipt_ok($c, 'r1'), 'the frame after EOLs');
ok(receipt_ok($c, 'r2'), 'the frame between EOLs');
$c->stomp_send('UNSUBSCRIBE', { id => 'a', receipt => 'r3' }, '',
               eol => "\r\n");
ok(receipt_ok($c, 'r3'), 'a frame with CRLF line ends');
--- no_error_log
[error]



=== TEST 33: SUBSCRIBE to every /user/queue destination
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 5
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
my $i = 0;
for my $d (qw(messages receipts typing events errors)) {
    ok($c->subscribe("/user/queue/$d", $i++), "/user/queue/$d");
}
--- no_error_log
[error]



=== TEST 34: SUBSCRIBE to an unknown or forbidden destination: ERROR, close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 12
--- perl
for my $d ('/topic/foo', '/user/queue/other', '/queue/x',
           '/topic/presence.someone.else', '/user/queue/messages/x',
           '/user/queue/Messages')
{
    my $c = stomp_connect('/ws/chat', user => 'alice');
    $c->stomp_send('SUBSCRIBE', { destination => $d, id => 0 });
    error_closes($c, qr/destination/, $d);
}
--- no_error_log
[error]



=== TEST 35: a duplicate subscription id: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
ok($c->subscribe('/user/queue/messages', 'dup'), 'first SUBSCRIBE');
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/typing',
                              id => 'dup' });
error_closes($c, qr/duplicate/, 'the same id again');
--- no_error_log
[error]



=== TEST 36: UNSUBSCRIBE of an unknown id: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('UNSUBSCRIBE', { id => 'nope' });
error_closes($c, qr/subscription/, 'UNSUBSCRIBE nope');
--- no_error_log
[error]



=== TEST 37: more than chat_max_subscriptions: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 10
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
ok($c->subscribe('/user/queue/messages', "s$_"), "subscription $_")
    for 1 .. 6;
$c->stomp_send('UNSUBSCRIBE', { id => 's3', receipt => 'u3' });
ok(receipt_ok($c, 'u3'), 'one UNSUBSCRIBEd makes room');
ok($c->subscribe('/user/queue/messages', 's7'), 'for one more');
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 's8' });
error_closes($c, qr/too many/, 'the 7th');
--- no_error_log
[error]



=== TEST 38: heart-beat 0,100: the server sends EOLs, every 500 ms
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 4
--- perl
# the server's 500 ms is the larger, so it wins
my $c = stomp_connect('/ws/chat', user => 'alice', heart_beat => '0,100');
is($c->{connected}{headers}{'heart-beat'}, '500,500', 'CONNECTED heart-beat');
ok(!$c->stomp_recv(1.8), 'no frame, only heart-beats');
cmp_ok($c->{heartbeats}, '>=', 2, 'EOLs came');
cmp_ok($c->{heartbeats}, '<=', 4, 'one each 500 ms, not each 100 ms');
--- no_error_log
[error]



=== TEST 39: heart-beat 0,0: the server sends none
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice', heart_beat => '0,0');
ok(!$c->stomp_recv(1.2), 'no frame');
is($c->{heartbeats}, 0, 'no EOL');
--- no_error_log
[error]



=== TEST 40: a client that promised 500,0 and stays silent is closed
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice', heart_beat => '500,0');
my $t0 = time;
my $f = $c->stomp_expect('ERROR', 4);
my $dt = time - $t0;
like($f ? $f->{headers}{message} : '', qr/heart-beat/, 'ERROR heart-beat');
ok($dt > 0.8 && $dt < 2.5, 'after interval + grace (1 s)')
    or diag("after $dt s");
ok(closes($c), 'then the connection closes');
--- no_error_log
[error]



=== TEST 41: a client that keeps sending EOLs stays connected
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice', heart_beat => '500,0');
for (1 .. 8) {
    $c->send_text("\n");
    sleep 0.3;
}
ok(!$c->{eof} && !defined $c->close_code, 'still open after 2.4 s');
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 0, receipt => 'alive' });
ok(receipt_ok($c, 'alive'), 'and working');
--- no_error_log
[error]



=== TEST 42: no CONNECT within chat_connect_timeout: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = raw_connect(undef);
my $t0 = time;
my $f = $c->stomp_expect('ERROR', 4);
my $dt = time - $t0;
like($f ? $f->{headers}{message} : '', qr/CONNECT/, 'ERROR');
ok($dt > 0.7 && $dt < 2.5, 'after about 1 s') or diag("after $dt s");
ok(closes($c), 'then the connection closes');
--- no_error_log
[error]



=== TEST 43: a SEND inside a transaction takes effect at COMMIT
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 6
--- perl
my $conv = conversation('txa1', 'direct', 'txb1');
my $b = stomp_connect('/ws/chat', user => 'txb1');
ok($b->subscribe('/user/queue/messages', 'm'), 'bob subscribed');
my $a = stomp_connect('/ws/chat', user => 'txa1');
$a->stomp_send('BEGIN', { transaction => 'tx', receipt => 'b' });
ok(receipt_ok($a, 'b'), 'BEGIN');
send_msg($a, $conv, 'in tx', transaction => 'tx', receipt => 's');
ok(receipt_ok($a, 's'), 'SEND in the transaction');
ok($b->stomp_silent(1), 'bob gets nothing before COMMIT');
$a->stomp_send('COMMIT', { transaction => 'tx', receipt => 'c' });
ok(receipt_ok($a, 'c', 5), 'COMMIT: RECEIPT once the SEND is done');
my $j = $b->stomp_message('/user/queue/messages', 5);
is($j && $j->{content}, 'in tx', 'bob gets it after COMMIT');
--- no_error_log
[error]



=== TEST 44: a SEND inside a transaction is dropped by ABORT
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $conv = conversation('txa2', 'direct', 'txb2');
my $b = stomp_connect('/ws/chat', user => 'txb2');
ok($b->subscribe('/user/queue/messages', 'm'), 'bob subscribed');
my $a = stomp_connect('/ws/chat', user => 'txa2');
$a->stomp_send('BEGIN', { transaction => 'tx' });
send_msg($a, $conv, 'aborted', transaction => 'tx');
$a->stomp_send('ABORT', { transaction => 'tx', receipt => 'ab' });
ok(receipt_ok($a, 'ab'), 'ABORT');
send_msg($a, $conv, 'after');
my $j = $b->stomp_message('/user/queue/messages', 5);
is($j && $j->{content}, 'after', 'bob\'s next message is the one after');
--- no_error_log
[error]



=== TEST 45: a SEND inside a transaction is dropped by DISCONNECT
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $conv = conversation('txa3', 'direct', 'txb3');
my $b = stomp_connect('/ws/chat', user => 'txb3');
ok($b->subscribe('/user/queue/messages', 'm'), 'bob subscribed');
my $a = stomp_connect('/ws/chat', user => 'txa3');
$a->stomp_send('BEGIN', { transaction => 'tx' });
send_msg($a, $conv, 'never committed', transaction => 'tx');
ok($a->disconnect, 'DISCONNECT');
$a = stomp_connect('/ws/chat', user => 'txa3');
send_msg($a, $conv, 'after');
my $j = $b->stomp_message('/user/queue/messages', 5);
is($j && $j->{content}, 'after', 'bob\'s next message is the one after');
--- no_error_log
[error]



=== TEST 46: an unknown transaction: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 6
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
send_msg($c, 'c_none', 'x', transaction => 'nope');
error_closes($c, qr/transaction/, 'SEND in an unknown transaction');
$c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('COMMIT', { transaction => 'nope' });
error_closes($c, qr/transaction/, 'COMMIT of an unknown one');
$c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('ABORT', { transaction => 'nope' });
error_closes($c, qr/transaction/, 'ABORT of an unknown one');
--- no_error_log
[error]



=== TEST 47: BEGIN twice with the same name: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('BEGIN', { transaction => 'tx', receipt => 'b1' });
ok(receipt_ok($c, 'b1'), 'the first BEGIN');
$c->stomp_send('BEGIN', { transaction => 'tx', receipt => 'b2' });
error_closes($c, qr/transaction/, 'the second');
--- no_error_log
[error]



=== TEST 48: ERROR frames carry the receipt-id of the frame they answer
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
for my $cmd (qw(BEGIN COMMIT SUBSCRIBE)) {
    my $c = stomp_connect('/ws/chat', user => 'alice');
    if ($cmd eq 'BEGIN') {
        $c->stomp_send('BEGIN', { transaction => 'tx' });
    }
    $c->stomp_send($cmd, { transaction => 'tx', receipt => "e-$cmd",
                           destination => '/topic/nope', id => 1 });
    my $f = $c->stomp_expect('ERROR');
    is($f && $f->{headers}{'receipt-id'}, "e-$cmd", "$cmd: receipt-id");
}
--- no_error_log
[error]



=== TEST 49: ack:client: MESSAGE carries ack and message-id; ACK, NACK
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 6
--- perl
my $conv = conversation('acka1', 'direct', 'ackb1');
my $b = stomp_connect('/ws/chat', user => 'ackb1');
ok($b->subscribe('/user/queue/messages', 'm', 'client'), 'ack:client');
my $a = stomp_connect('/ws/chat', user => 'acka1');
send_msg($a, $conv, 'one');
send_msg($a, $conv, 'two');
my ($j1, $f1) = $b->stomp_message('/user/queue/messages');
my ($j2, $f2) = $b->stomp_message('/user/queue/messages');
ok($f1 && length($f1->{headers}{ack} // ''), 'an ack header');
like($f1 ? $f1->{headers}{'message-id'} : '', qr/^\d+$/, 'a message-id');
is($f1 && $f1->{headers}{'message-id'}, $j1 && $j1->{messageId},
   'message-id is the messageId');
$b->stomp_send('NACK', { id => $f1 ? $f1->{headers}{ack} : 'x',
                         receipt => 'n1' });
ok(receipt_ok($b, 'n1'), 'NACK with the ack id: RECEIPT');
$b->stomp_send('ACK', { id => $f2 ? $f2->{headers}{ack} : 'x',
                        receipt => 'a2' });
ok(receipt_ok($b, 'a2'), 'ACK with the ack id: RECEIPT');
--- no_error_log
[error]



=== TEST 50: ack:client-individual: ack header, ACK and NACK each
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 5
--- perl
my $conv = conversation('acka2', 'direct', 'ackb2');
my $b = stomp_connect('/ws/chat', user => 'ackb2');
ok($b->subscribe('/user/queue/messages', 'm', 'client-individual'),
   'ack:client-individual');
my $a = stomp_connect('/ws/chat', user => 'acka2');
send_msg($a, $conv, 'one');
send_msg($a, $conv, 'two');
my (undef, $f1) = $b->stomp_message('/user/queue/messages');
my (undef, $f2) = $b->stomp_message('/user/queue/messages');
ok($f1 && $f2 && length($f1->{headers}{ack} // '')
   && length($f2->{headers}{ack} // ''), 'ack headers');
isnt($f1 && $f1->{headers}{ack}, $f2 && $f2->{headers}{ack}, 'distinct');
$b->stomp_send('ACK', { id => $f2 ? $f2->{headers}{ack} : 'x',
                        receipt => 'a2' });
ok(receipt_ok($b, 'a2'), 'ACK of the second: RECEIPT');
$b->stomp_send('NACK', { id => $f1 ? $f1->{headers}{ack} : 'x',
                         receipt => 'n1' });
ok(receipt_ok($b, 'n1'), 'NACK of the first: RECEIPT');
--- no_error_log
[error]



=== TEST 51: ack:auto: MESSAGE without an ack header
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $conv = conversation('acka3', 'direct', 'ackb3');
my $b = stomp_connect('/ws/chat', user => 'ackb3');
ok($b->subscribe('/user/queue/messages', 'm', 'auto'), 'ack:auto');
my $a = stomp_connect('/ws/chat', user => 'acka3');
send_msg($a, $conv, 'one');
my (undef, $f) = $b->stomp_message('/user/queue/messages');
ok($f && !exists $f->{headers}{ack}, 'no ack header');
--- no_error_log
[error]



=== TEST 52: an invalid ack mode: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 0, ack => 'sometimes' });
error_closes($c, qr/ack/, 'ack:sometimes');
--- no_error_log
[error]



=== TEST 53: DISCONNECT with a receipt: RECEIPT, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('DISCONNECT', { receipt => 'bye' });
ok(receipt_ok($c, 'bye'), 'RECEIPT');
is($c->expect_close(3), 1000, 'close 1000');
ok($c->is_eof(3), 'the connection is closed');
--- no_error_log
[error]



=== TEST 54: DISCONNECT's RECEIPT follows the requests still in flight
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 4
--- perl
my $conv = conversation('dsca', 'direct', 'dscb');
my $b = stomp_connect('/ws/chat', user => 'dscb');
$b->subscribe('/user/queue/messages', 'm');
my $c = stomp_connect('/ws/chat', user => 'dsca');
$c->send_text(stomp_frame('SEND', { destination => '/app/chat.send',
                                    receipt => 'sent' },
                          json_encode({ conversationId => $conv,
                                        content => 'last words' }))
              . stomp_frame('DISCONNECT', { receipt => 'bye' }));
ok(receipt_ok($c, 'sent', 5), 'the SEND\'s RECEIPT first');
ok(receipt_ok($c, 'bye'), 'then DISCONNECT\'s');
is($c->expect_close(3), 1000, 'close 1000');
my $j = $b->stomp_message('/user/queue/messages', 5);
is($j && $j->{content}, 'last words', 'the message went out');
--- no_error_log
[error]



=== TEST 55: a RECEIPT for CONNECT follows CONNECTED
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = raw_connect([['accept-version' => '1.2'],
                     [passcode => make_token('alice')],
                     [receipt => 'hello']]);
ok($c->stomp_expect('CONNECTED'), 'CONNECTED');
ok(receipt_ok($c, 'hello'), 'RECEIPT');
--- no_error_log
[error]



=== TEST 56: DISCONNECT without a receipt: close, nothing else
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 3
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->stomp_send('DISCONNECT', {});
ok(!$c->stomp_recv(3), 'no frame');
is($c->close_code, 1000, 'close 1000');
ok($c->is_eof(3), 'the connection is closed');
--- no_error_log
[error]



=== TEST 57: SEND to an unknown destination: ERROR, then close
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 2
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice');
$c->send_json('/app/chat.nothing', { conversationId => 'x' });
error_closes($c, qr/destination/, '/app/chat.nothing');
--- no_error_log
[error]



=== TEST 58: SEND with content-length and NULs in the body: bad_request
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 4
--- perl
my $conv = conversation('nula', 'direct', 'nulb');
my $c = stomp_connect('/ws/chat', user => 'nula');
ok($c->subscribe('/user/queue/errors', 'e'), 'subscribed to errors');
my $body = "{\"conversationId\":\"$conv\",\"content\":\"a\0b\"}";
$c->stomp_send('SEND', { destination => '/app/chat.send',
                         'content-type' => 'application/json',
                         'content-length' => length $body }, $body);
my $j = $c->stomp_message('/user/queue/errors', 5);
is($j && $j->{code}, 'bad_request', 'bad_request on /user/queue/errors');
$c->stomp_send('SUBSCRIBE', { destination => '/user/queue/messages',
                              id => 'm', receipt => 'still' });
ok(receipt_ok($c, 'still'), 'the session stays open');
ok(!$c->{eof} && !defined $c->close_code, 'not closed');
--- no_error_log
[error]



=== TEST 59: the session survives rejections: a valid SEND after them works
--- need_module
--- config
$TEST_NGINX_STOMP_CONF
--- tests: 5
--- perl
my $conv = conversation('sura', 'direct', 'surb');
my $c = stomp_connect('/ws/chat', user => 'sura');
ok($c->subscribe('/user/queue/errors', 'e'), 'subscribed to errors');
ok($c->subscribe('/user/queue/messages', 'm'), 'and to messages');
$c->send_json('/app/chat.send', '{"conversationId":', receipt => 'bad');
my $j = $c->stomp_message('/user/queue/errors', 5);
is($j && $j->{code}, 'bad_request', 'bad JSON: bad_request');
$c->send_json('/app/chat.send', { conversationId => $conv });
$j = $c->stomp_message('/user/queue/errors', 5);
is($j && $j->{code}, 'bad_request', 'no content: bad_request');
send_msg($c, $conv, 'fine after all');
$j = $c->stomp_message('/user/queue/messages', 5);
is($j && $j->{content}, 'fine after all', 'a valid SEND works');
--- no_error_log
[error]
