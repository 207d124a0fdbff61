# 010-websocket.t: RFC 6455 conformance of the WebSocket layer, our own
# stand-in for the Autobahn testsuite's case categories: handshake,
# framing, ping/pong, reserved bits, opcodes, masking, fragmentation,
# UTF-8, limits, the close handshake, wss, reload/shutdown, slow clients.
# The endpoint speaks STOMP, so the payloads are STOMP frames whose
# RECEIPTs tell that a message arrived whole.

use lib 't/lib';
use Test::Chat;

use File::Temp ();

$ENV{TEST_NGINX_WS_CONF} = <<"CONF";
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
        chat_max_message_size 100k;
        chat_max_frame_size 100k;
        chat_max_header_length 80k;
    }

    location = /ws/origin {
        chat_websocket;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
        chat_allowed_origins https://a.example https://b.example;
    }

    location /chat/api/ {
        chat_api;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    }
CONF

# a self-signed certificate for the wss blocks
my $certs = File::Temp::tempdir('ngx-chat-ws-XXXXXX', TMPDIR => 1,
                                CLEANUP => 1);
chmod 0755, $certs;
system('openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost'
       . " -keyout $certs/key.pem -out $certs/cert.pem >/dev/null 2>&1") == 0
    or die "openssl could not make a certificate\n";
chmod 0644, "$certs/key.pem";
$ENV{TEST_NGINX_CERTS} = $certs;

$ENV{TEST_NGINX_WSS_PORT} ||= free_port();
$ENV{TEST_NGINX_SLOW_PORT} ||= free_port();

# a TLS server, and one with a small socket send buffer (a client that does
# not read fills it quickly): the last blocks
$ENV{TEST_NGINX_MORE_SERVERS} = <<"CONF";
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_WSS_PORT} ssl;
        server_name localhost;
        ssl_certificate $ENV{TEST_NGINX_CERTS}/cert.pem;
        ssl_certificate_key $ENV{TEST_NGINX_CERTS}/key.pem;
$ENV{TEST_NGINX_WS_CONF}
    }

    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_SLOW_PORT} sndbuf=8k;
        server_name localhost;

        location = /ws/slow {
            chat_websocket;
            chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
            chat_send_buffer_limit 16k;
        }
    }
CONF



package Test::Chat::Sandbox;

use strict;
use warnings;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha1);
use MIME::Base64 qw(encode_base64);
use Socket qw(IPPROTO_TCP TCP_NODELAY);

BEGIN { Test::Chat->import }
use Test::Chat::Helpers;

my $users = 0;


# a raw handshake request: the usual headers, o{set} replaces (or with an
# undef value removes) headers, o{add} appends; method, version, path, key
sub hs_request {
    my (%o) = @_;
    my $key = $o{key} // 'dGhlIHNhbXBsZSBub25jZQ==';
    my @h = (['Host', 'localhost'], ['Upgrade', 'websocket'],
             ['Connection', 'Upgrade'], ['Sec-WebSocket-Key', $key],
             ['Sec-WebSocket-Version', '13']);

    for my $s (@{ $o{set} || [] }) {
        my ($n, $v) = @$s;
        @h = grep { lc $_->[0] ne lc $n } @h;
        push @h, [$n, $v] if defined $v;
    }

    push @h, @{ $o{add} || [] };

    my $req = ($o{method} // 'GET') . ' ' . ($o{path} // '/ws/chat') . ' '
              . ($o{version} // 'HTTP/1.1') . "\r\n";
    $req .= "$_->[0]: $_->[1]\r\n" for @h;

    return "$req\r\n";
}


# the handshake answer to hs_request(%o)
sub hs {
    my (%o) = @_;
    return ws_connect($o{path} // '/ws/chat', raw => hs_request(%o));
}


sub accept_for {
    my ($key) = @_;
    return encode_base64(sha1($key . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'),
                         '');
}


# a STOMP session of a new user
sub session {
    my (%o) = @_;
    return stomp_connect($o{path} // '/ws/chat',
                         user => 'ws' . $$ . '_' . ++$users, %o);
}


# a WebSocket connection without CONNECT (the WebSocket layer does not
# care), for the cases that end in a WebSocket close
sub upgraded {
    my (%o) = @_;
    my $c = ws_connect($o{path} // '/ws/chat', %o);

    die "no WebSocket connection: " . ($c ? $c->status // 'nothing' : 'TCP')
        . "\n" unless $c && $c->upgraded;
    return $c;
}


# STOMP bytes that are answered with RECEIPT <tag> and change nothing
sub probe_bytes {
    my ($tag) = @_;
    return "BEGIN\ntransaction:t-$tag\nreceipt:$tag\n\n\0"
           . "ABORT\ntransaction:t-$tag\n\n\0";
}


# a probe in one text message, and its RECEIPT
sub probe {
    my ($c, $tag) = @_;
    $c->send_frame(opcode => 1, payload => probe_bytes($tag));
    return receipt_ok($c, $tag);
}


# true when the server's close frame has code and then the TCP connection
# closes (the client answers the close frame, as a client does)
sub fails_with {
    my ($c, $code, $timeout) = @_;
    my $got = $c->expect_close($timeout // 3);

    unless (defined $got && $got == $code) {
        Test::More::diag("wanted close $code, got "
                         . ($got // ($c->{eof} ? 'EOF' : 'nothing')));
        return 0;
    }

    return 1 if $c->is_eof(3);
    Test::More::diag("close $code came, but not the end of the connection");
    return 0;
}


# true when nothing but frames of the given opcodes comes for timeout s
sub quiet {
    my ($c, $timeout) = @_;
    my $f = $c->recv_frame($timeout // 0.3);
    return 1 unless $f || $c->{eof};
    Test::More::diag($f ? "unexpected frame, opcode $f->{opcode}"
                        : "unexpected EOF");
    return 0;
}


sub nodelay {
    my ($c) = @_;
    setsockopt($c->sock, IPPROTO_TCP, TCP_NODELAY, 1);
}


# seconds until none of pids is alive (undef if still alive after max)
sub gone_after {
    my ($max, @pids) = @_;
    my $start = time;

    while (time - $start < $max) {
        return time - $start unless grep { kill 0, $_ } @pids;
        sleep 0.05;
    }

    return undef;
}


package main;

plan_from_blocks();
run_tests();

__DATA__

=== TEST 1: handshake: 101 with the Sec-WebSocket-Accept of RFC 6455's example
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 7
--- perl
my $c = hs();
is($c->status, 101, '101 Switching Protocols');
is($c->header('sec-websocket-accept'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=',
   'Sec-WebSocket-Accept of the RFC example key');
like($c->header('upgrade') // '', qr/^websocket$/i, 'Upgrade: websocket');
like($c->header('connection') // '', qr/\bupgrade\b/i,
     'Connection: upgrade');
my $d = ws_connect('/ws/chat', headers => [
    'Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits']);
ok($d->{accept_ok}, 'Accept right for a random key too');
ok(!defined $d->header('sec-websocket-extensions'),
   'no extension is accepted (permessage-deflate offered)');
ok(!defined $d->header('content-length')
   && !defined $d->header('transfer-encoding'), 'no body framing headers');
--- no_error_log
[error]



=== TEST 2: handshake: Upgrade and Connection tokens in any case and in lists
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $c = hs(set => [[Upgrade => 'WebSocket'], [Connection => 'UPGRADE']]);
is($c->status, 101, 'upper and mixed case');
$c = hs(set => [[Connection => 'keep-alive, Upgrade']]);
is($c->status, 101, 'Connection: keep-alive, Upgrade');
$c = hs(set => [[Connection => 'keep-alive,upgrade']]);
is($c->status, 101, 'a list without spaces');
$c = hs(set => [[Connection => 'keep-alive']],
        add => [[Connection => 'Upgrade']]);
is($c->status, 101, 'the token in a second Connection header');
--- no_error_log
[error]



=== TEST 3: handshake: no Upgrade or Connection token, no key, bad keys: refused
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 8
--- perl
my $c = hs(set => [[Upgrade => undef]]);
is($c->status, 426, 'no Upgrade header: 426');
$c = hs(set => [[Connection => 'keep-alive']]);
is($c->status, 400, 'Connection without upgrade: 400');
$c = hs(set => [['Sec-WebSocket-Key' => undef]]);
is($c->status, 400, 'no key: 400');
$c = hs(key => 'abc');
is($c->status, 400, 'short key: 400');
$c = hs(key => 'dGhlIHNhbXBsZSBub25jZQ');
is($c->status, 400, 'key without its padding: 400');
$c = hs(key => 'dGhlIHNhbXBsZSBub25jZXh4eA==');
is($c->status, 400, 'key of more than 16 bytes: 400');
$c = hs(key => 'dGhlIHNhbXBsZSBub25j*Q==');
is($c->status, 400, 'key not base64: 400');
$c = hs(add => [['Sec-WebSocket-Key' => 'dGhlIHNhbXBsZSBub25jZQ==']]);
is($c->status, 400, 'two keys: 400');
--- no_error_log
[error]



=== TEST 4: handshake: version 8 gets 426 with Sec-WebSocket-Version: 13
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $c = hs(set => [['Sec-WebSocket-Version' => '8']]);
is($c->status, 426, 'version 8: 426');
is($c->header('sec-websocket-version'), '13', 'names version 13');
$c = hs(set => [['Sec-WebSocket-Version' => undef]]);
is($c->status, 400, 'no version: 400');
$c = hs(set => [['Sec-WebSocket-Version' => '14']]);
is($c->status, 426, 'version 14: 426');
--- no_error_log
[error]



=== TEST 5: handshake: POST gets 405, HTTP/1.0 gets 400
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $c = hs(method => 'POST', add => [['Content-Length' => 0]]);
is($c->status, 405, 'POST: 405');
is($c->header('allow'), 'GET', 'Allow: GET');
$c = hs(version => 'HTTP/1.0');
is($c->status, 400, 'HTTP/1.0: 400');
--- no_error_log
[error]



=== TEST 6: handshake: the Origin allow-list
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 5
--- perl
my $c = hs(path => '/ws/origin', add => [[Origin => 'https://a.example']]);
is($c->status, 101, 'first allowed origin');
$c = hs(path => '/ws/origin', add => [[Origin => 'https://b.example']]);
is($c->status, 101, 'second allowed origin');
$c = hs(path => '/ws/origin', add => [[Origin => 'https://evil.example']]);
is($c->status, 403, 'another origin: 403');
$c = hs(path => '/ws/origin', add => [[Origin => 'https://a.example.evil']]);
is($c->status, 403, 'an allowed origin as a prefix: 403');
$c = hs(path => '/ws/origin');
is($c->status, 101, 'no Origin (not a browser): allowed');
--- no_error_log
[error]



=== TEST 7: handshake: the sub-protocol is the highest STOMP version offered
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 9
--- perl
my $c = ws_connect('/ws/chat',
                   protocols => ['v10.stomp', 'v12.stomp', 'v11.stomp']);
is($c->protocol, 'v12.stomp', 'v12 over v11 and v10');
$c = ws_connect('/ws/chat', protocols => ['v10.stomp', 'v11.stomp']);
is($c->protocol, 'v11.stomp', 'v11 over v10');
$c = ws_connect('/ws/chat', protocols => ['v10.stomp']);
is($c->protocol, 'v10.stomp', 'v10 alone');
$c = ws_connect('/ws/chat', raw => hs_request(add => [
    ['Sec-WebSocket-Protocol' => 'v10.stomp'],
    ['Sec-WebSocket-Protocol' => 'mqtt, v11.stomp']]));
is($c->header('sec-websocket-protocol'), 'v11.stomp',
   'offers in two headers');
$c = ws_connect('/ws/chat', protocols => []);
is($c->status, 101, 'none offered: 101');
ok(!defined $c->header('sec-websocket-protocol'), 'none offered: no header');
$c = ws_connect('/ws/chat', protocols => ['mqtt', 'wamp.2.json']);
is($c->status, 101, 'unknown ones only: 101');
ok(!defined $c->header('sec-websocket-protocol'),
   'unknown ones only: no header');
my $s = session(protocols => []);
is($s->{connected}{headers}{version}, '1.2', 'none offered: STOMP 1.2');
--- no_error_log
[error]



=== TEST 8: framing: a STOMP session, RECEIPTs in text and in binary messages
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $s = session();
ok($s->{connected}, 'CONNECTED');
ok(probe($s, 'text'), 'RECEIPT for a text message');
$s->send_frame(opcode => 2, payload => probe_bytes('bin'));
ok(receipt_ok($s, 'bin'), 'RECEIPT for a binary message');
my $f = $s->recv_frame(0.3);
ok(!$f, 'nothing more');
--- no_error_log
[error]



=== TEST 9: framing: payload lengths 0, 125, 126, 65535, 65536 (7/16/64-bit)
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 10
--- perl
my $s = session();
$s->send_frame(opcode => 1, payload => '');
ok(probe($s, 'after-empty'), 'an empty text message, then a probe');
$s->send_frame(opcode => 2, payload => '');
ok(probe($s, 'after-empty-bin'), 'an empty binary message, then a probe');
for my $n (125, 126, 65535, 65536) {
    my $p = probe_bytes("len$n");
    # heart-beat EOLs pad the message to n bytes
    my $m = ("\n" x ($n - length $p)) . $p;
    my $bytes = ws_frame(opcode => 1, payload => $m);
    is(length($bytes) - $n, $n < 126 ? 6 : $n < 65536 ? 8 : 14,
       "$n bytes: header size");
    $s->send_raw($bytes);
    ok(receipt_ok($s, "len$n"), "$n bytes: RECEIPT");
}
--- no_error_log
[error]



=== TEST 10: framing: server frames of 16- and 64-bit lengths (long RECEIPTs)
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 5
--- perl
my $s = session();
for my $n (200, 70000) {
    my $id = 'r' x $n;
    $s->send_frame(opcode => 1,
                   payload => "BEGIN\ntransaction:t\nreceipt:$id\n\n\0"
                              . "ABORT\ntransaction:t\n\n\0");
    my $f = $s->recv_frame(5);
    ok($f && $f->{length} > ($n < 65536 ? 125 : 65535),
       "$n: one frame of that length");
    my $r = $f ? $f->{payload} : '';
    ok(index($r, "RECEIPT\nreceipt-id:$id\n") == 0, "$n: the RECEIPT whole");
}
# a ping right behind: its pong comes after the big frame, not inside it
my $id = 'q' x 70000;
$s->send_raw(ws_frame(opcode => 1,
                      payload => "BEGIN\ntransaction:t\nreceipt:$id\n\n\0"
                                 . "ABORT\ntransaction:t\n\n\0")
             . ws_frame(opcode => 9, payload => 'after'));
my @f = map { $s->recv_frame(5) } 1 .. 2;
ok($f[0] && $f[0]{opcode} == 1 && $f[0]{length} > 70000
   && $f[1] && $f[1]{opcode} == 10 && $f[1]{payload} eq 'after',
   'the RECEIPT, then the pong');
--- no_error_log
[error]



=== TEST 11: framing: frames sent one byte at a time
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $s = session();
nodelay($s);
my $bytes = ws_frame(opcode => 1, payload => probe_bytes('slow'))
            . ws_frame(opcode => 9, payload => 'p');
for my $i (0 .. length($bytes) - 1) {
    $s->send_raw(substr($bytes, $i, 1));
    sleep 0.003;
}
ok(receipt_ok($s, 'slow'), 'RECEIPT');
my $f = $s->recv_frame(2);
ok($f && $f->{opcode} == 10 && $f->{payload} eq 'p', 'and the pong');
my $p = 'x' x 125;
$bytes = ws_frame(opcode => 9, payload => $p)
         . ws_frame(opcode => 8, payload => pack('n', 1000) . ('y' x 123));
for my $i (0 .. length($bytes) - 1) {
    $s->send_raw(substr($bytes, $i, 1));
    sleep 0.002;
}
$f = $s->recv_frame(2);
ok($f && $f->{opcode} == 10 && $f->{payload} eq $p,
   'a 125-byte ping one byte at a time');
ok(fails_with($s, 1000), 'a 125-byte close one byte at a time');
--- no_error_log
[error]



=== TEST 12: framing: frames in the handshake's packet, and many in one write
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 5
--- perl
my $connect = stomp_frame('CONNECT', [['accept-version', '1.2'],
                                      ['host', 'localhost'],
                                      ['passcode', make_token('wsearly')],
                                      ['heart-beat', '0,0']], '');
my $c = ws_connect('/ws/chat',
                   extra => ws_frame(opcode => 1, payload => $connect)
                            . ws_frame(opcode => 1,
                                       payload => probe_bytes('early')));
ok($c->stomp_expect('CONNECTED', 3), 'CONNECTED for a CONNECT sent with '
                                     . 'the handshake');
ok(receipt_ok($c, 'early'), 'and the RECEIPT of the next frame');
$c->send_raw(join '', map { ws_frame(opcode => 1, payload => probe_bytes($_)) }
                          1 .. 50);
my $n = 0;
for (1 .. 50) { $n++ if receipt_ok($c, $_) }
is($n, 50, '50 frames in one write: 50 RECEIPTs in order');
# 300 KB of pings of every size and probes: frames straddle every read
my ($bytes, @want) = ('');
for my $i (1 .. 3000) {
    my $len = $i % 126;
    $bytes .= ws_frame(opcode => 9, payload => chr(65 + $i % 26) x $len);
    push @want, [10, chr(65 + $i % 26) x $len];
    next if $i % 10;
    $bytes .= ws_frame(opcode => 1, payload => probe_bytes("b$i"));
    push @want, [1, "RECEIPT\nreceipt-id:b$i\n\n\0"];
}
$c->send_raw($bytes);
my $bad = 0;
for my $w (@want) {
    my $f = $c->recv_frame(3);
    next if $f && $f->{opcode} == $w->[0] && $f->{payload} eq $w->[1];
    $bad++;
    diag("wanted opcode $w->[0] $w->[1], got "
         . ($f ? "$f->{opcode} $f->{payload}" : 'nothing'));
    last;
}
is($bad, 0, '3000 pings and 300 probes in one write: every answer in order');
ok(quiet($c), 'nothing more');
--- no_error_log
[error]



=== TEST 13: ping: answered by a pong with the same payload (0 and 125 bytes)
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $c = upgraded();
$c->ping('');
my $f = $c->recv_frame(2);
ok($f && $f->{opcode} == 10 && $f->{payload} eq '' && $f->{fin},
   'empty ping: empty pong');
my $p = join '', map { chr } 0 .. 124;
$c->ping($p);
$f = $c->recv_frame(2);
ok($f && $f->{opcode} == 10 && $f->{payload} eq $p, '125 bytes: the same');
ok($f && !$f->{masked}, 'server frames are not masked');
$c->ping('a') for 1 .. 10;
my $n = 0;
while (my $g = $c->recv_frame(1)) {
    $n++ if $g->{opcode} == 10;
    last if $n == 10;
}
is($n, 10, 'ten pings, ten pongs');
--- no_error_log
[error]



=== TEST 14: ping: a ping of 126 bytes gets close 1002
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 2
--- perl
my $c = upgraded();
$c->ping('x' x 126);
ok(fails_with($c, 1002), '126-byte ping: 1002');
$c = upgraded();
$c->send_frame(opcode => 10, payload => 'x' x 126);
ok(fails_with($c, 1002), '126-byte pong: 1002');
--- no_error_log
[error]



=== TEST 15: pong: an unsolicited pong is ignored
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $s = session();
$s->send_frame(opcode => 10, payload => 'unsolicited');
ok(quiet($s), 'no answer');
$s->send_frame(opcode => 10, payload => '');
ok(probe($s, 'p'), 'the session goes on');
ok(quiet($s), 'nothing more');
--- no_error_log
[error]



=== TEST 16: ping: answered in the middle of a fragmented message
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $s = session();
my $p = probe_bytes('frag');
$s->send_frame(opcode => 1, fin => 0, payload => substr($p, 0, 10));
$s->ping('mid');
my $f = $s->recv_frame(2);
ok($f && $f->{opcode} == 10 && $f->{payload} eq 'mid',
   'pong before the message is complete');
$s->send_frame(opcode => 10, fin => 1, payload => 'pong too');
$s->send_frame(opcode => 0, fin => 0, payload => substr($p, 10, 10));
$s->ping('mid2');
$f = $s->recv_frame(2);
ok($f && $f->{opcode} == 10 && $f->{payload} eq 'mid2', 'and again');
$s->send_frame(opcode => 0, fin => 1, payload => substr($p, 20));
ok(receipt_ok($s, 'frag'), 'the message is whole');
--- no_error_log
[error]



=== TEST 17: reserved bits: RSV1, RSV2, RSV3 on data and control frames get 1002
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 8
--- perl
for my $rsv (1 .. 7) {
    my $s = session();
    $s->send_frame(opcode => 1, rsv => $rsv, payload => probe_bytes('r'));
    ok(fails_with($s, 1002), "text with RSV $rsv: 1002");
}
my $s = session();
ok(probe($s, 'ok') && do {
       $s->send_frame(opcode => 9, rsv => 4, payload => 'p');
       fails_with($s, 1002)
   }, 'a valid message, then a ping with RSV1: RECEIPT, then 1002');
--- no_error_log
[error]



=== TEST 18: opcodes: 3-7 and 0xB-0xF get 1002
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 10
--- perl
for my $op (3 .. 7, 0xb .. 0xf) {
    my $c = upgraded();
    $c->send_frame(opcode => $op, payload => $op < 8 ? 'data' : '');
    ok(fails_with($c, 1002), sprintf('opcode 0x%x: 1002', $op));
}
--- no_error_log
[error]



=== TEST 19: masking: an unmasked client frame gets 1002
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $s = session();
$s->send_frame(opcode => 1, masked => 0, payload => probe_bytes('u'));
ok(fails_with($s, 1002), 'unmasked text: 1002');
$s = session();
$s->send_frame(opcode => 9, masked => 0, payload => 'p');
ok(fails_with($s, 1002), 'unmasked ping: 1002');
$s = session();
$s->send_frame(opcode => 1, mask => "\0\0\0\0", payload => probe_bytes('z'));
ok(receipt_ok($s, 'z'), 'a zero mask is still a mask');
--- no_error_log
[error]



=== TEST 20: fragmentation: a STOMP frame in 3 fragments, with empty ones too
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $s = session();
my $p = probe_bytes('three');
$s->send_frame(opcode => 1, fin => 0, payload => substr($p, 0, 7));
$s->send_frame(opcode => 0, fin => 0, payload => substr($p, 7, 20));
$s->send_frame(opcode => 0, fin => 1, payload => substr($p, 27));
ok(receipt_ok($s, 'three'), 'text in 3 fragments');
$p = probe_bytes('bin');
$s->send_frame(opcode => 2, fin => 0, payload => '');
$s->send_frame(opcode => 0, fin => 0, payload => substr($p, 0, 30));
$s->send_frame(opcode => 0, fin => 0, payload => '');
$s->send_frame(opcode => 0, fin => 1, payload => substr($p, 30));
ok(receipt_ok($s, 'bin'), 'binary in fragments, some empty');
$p = probe_bytes('each');
$s->send_frame(opcode => 1, fin => 0, payload => substr($p, 0, 1));
$s->send_frame(opcode => 0, fin => 0, payload => substr($p, $_, 1))
    for 1 .. length($p) - 2;
$s->send_frame(opcode => 0, fin => 1, payload => substr($p, -1));
ok(receipt_ok($s, 'each'), 'one byte per fragment');
--- no_error_log
[error]



=== TEST 21: fragmentation: continuation without a start gets 1002
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $c = upgraded();
$c->send_frame(opcode => 0, fin => 1, payload => 'x');
ok(fails_with($c, 1002), 'final continuation first: 1002');
$c = upgraded();
$c->send_frame(opcode => 0, fin => 0, payload => 'x');
ok(fails_with($c, 1002), 'non-final continuation first: 1002');
my $s = session();
$s->send_frame(opcode => 1, payload => probe_bytes('a'));
$s->send_frame(opcode => 0, fin => 1, payload => "\n");
ok(receipt_ok($s, 'a') && fails_with($s, 1002),
   'continuation after a complete message: RECEIPT, then 1002');
--- no_error_log
[error]



=== TEST 22: fragmentation: a new message inside a fragmented one gets 1002
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 2
--- perl
my $c = upgraded();
$c->send_frame(opcode => 1, fin => 0, payload => "\n");
$c->send_frame(opcode => 1, fin => 1, payload => "\n");
ok(fails_with($c, 1002), 'text inside text: 1002');
$c = upgraded();
$c->send_frame(opcode => 1, fin => 0, payload => "\n");
$c->send_frame(opcode => 2, fin => 0, payload => "\n");
ok(fails_with($c, 1002), 'binary inside text: 1002');
--- no_error_log
[error]



=== TEST 23: fragmentation: fragmented control frames get 1002
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $c = upgraded();
$c->send_frame(opcode => 9, fin => 0, payload => 'a');
$c->send_frame(opcode => 0, fin => 1, payload => 'b');
ok(fails_with($c, 1002), 'fragmented ping: 1002');
$c = upgraded();
$c->send_frame(opcode => 10, fin => 0, payload => 'a');
ok(fails_with($c, 1002), 'fragmented pong: 1002');
$c = upgraded();
$c->send_frame(opcode => 8, fin => 0, payload => pack('n', 1000));
ok(fails_with($c, 1002), 'fragmented close: 1002');
--- no_error_log
[error]



=== TEST 24: UTF-8: multi-byte characters (2, 3 and 4 bytes) in STOMP frames
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $text = "\x{3ba}\x{1f79}\x{3c3}\x{3bc}\x{3b5} \x{20ac} \x{1d11e} "
           . "\x{1f600} \x{10ffff} \x{fffd}";
my $id = $text;
utf8::encode($id);
my $s = session();
$s->send_frame(opcode => 1, payload => probe_bytes($id));
ok(receipt_ok($s, $id), 'a receipt id in UTF-8 comes back the same');
my $alice = 'wsu' . $$;
my ($st, $conv) = api(POST => '/conversations', $alice,
                      { type => 'direct', members => ["${alice}b"] });
is($st, 201, 'a conversation');
my $a = session(user => $alice);
$a->subscribe('/user/queue/messages', 'm');
$a->send_json('/app/chat.send', { conversationId => $conv->{conversationId},
                                  content => $text });
my $m = $a->stomp_message('/user/queue/messages', 5);
is($m && $m->{content}, $text, 'a message body in UTF-8 comes back the same');
ok(quiet($a, 0.2), 'no close');
--- no_error_log
[error]



=== TEST 25: UTF-8: invalid sequences in a text message get 1007
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 8
--- perl
my %bad = ('lone continuation byte' => "\x80",
           'byte 0xff' => "\xff",
           'overlong /' => "\xc0\xaf",
           'overlong 3-byte' => "\xe0\x80\xaf",
           'surrogate' => "\xed\xa0\x80",
           'above U+10FFFF' => "\xf4\x90\x80\x80",
           'truncated at the end' => "\xe2\x82",
           'truncated before ASCII' => "\xe2\x82x");
for my $what (sort keys %bad) {
    my $s = session();
    $s->send_frame(opcode => 1,
                   payload => "BEGIN\ntransaction:x\nreceipt:$bad{$what}");
    ok(fails_with($s, 1007), "$what: 1007");
}
--- no_error_log
[error]



=== TEST 26: UTF-8: fail fast, in a later fragment and inside one frame
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $s = session();
$s->send_frame(opcode => 1, fin => 0, payload => "BEGIN\n");
$s->send_frame(opcode => 0, fin => 0, payload => "transaction:\xff");
ok(fails_with($s, 1007), 'bad byte in the second of three fragments: 1007 '
                         . 'before the last is sent');
$s = session();
my $bytes = ws_frame(opcode => 1, payload => "BEGIN\ntransaction:\xed\xa0"
                                            . ('x' x 200));
$s->send_raw(substr($bytes, 0, 8 + 20));
ok(fails_with($s, 1007), 'bad byte early in a frame: 1007 before the rest '
                         . 'of the frame is sent');
$s = session();
$s->send_frame(opcode => 1, fin => 0, payload => "BEGIN\n\xe2");
$s->send_frame(opcode => 0, fin => 1, payload => "\x82");
ok(fails_with($s, 1007), 'message ends inside a character: 1007');
--- no_error_log
[error]



=== TEST 27: UTF-8: a character split across fragments is fine
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 2
--- perl
my $s = session();
my $p = probe_bytes("euro\xe2\x82\xac");
my $i = index($p, "\xe2") + 1;
$s->send_frame(opcode => 1, fin => 0, payload => substr($p, 0, $i));
$s->send_frame(opcode => 0, fin => 1, payload => substr($p, $i));
ok(receipt_ok($s, "euro\xe2\x82\xac"), '3-byte character split in two');
$p = probe_bytes("face\xf0\x9f\x98\x80");
$i = index($p, "\xf0");
$s->send_frame(opcode => 1, fin => 0, payload => substr($p, 0, $i + 1));
$s->send_frame(opcode => 0, fin => 0, payload => substr($p, $i + 1, 1));
$s->send_frame(opcode => 0, fin => 0, payload => '');
$s->send_frame(opcode => 0, fin => 0, payload => substr($p, $i + 2, 1));
$s->send_frame(opcode => 0, fin => 1, payload => substr($p, $i + 3));
ok(receipt_ok($s, "face\xf0\x9f\x98\x80"),
   '4-byte character over four fragments');
--- no_error_log
[error]



=== TEST 28: UTF-8: binary messages are not checked
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 2
--- perl
my $s = session();
# a STOMP body may hold any bytes: in a binary message, bytes that are not
# UTF-8 reach STOMP
my $body = "\xff\xfe\xc0\xaf\xed\xa0\x80";
$s->send_frame(opcode => 2, payload =>
               "BEGIN\ntransaction:b\nreceipt:b\ncontent-length:"
               . length($body) . "\n\n$body\0ABORT\ntransaction:b\n\n\0");
my $f = $s->stomp_recv(3);
ok($f && $f->{command} eq 'RECEIPT', 'RECEIPT, no close 1007')
    or diag($f ? "$f->{command} $f->{headers}{message}"
               : 'close ' . ($s->close_code // 'none'));
ok(!defined $s->close_code, 'no close frame');
--- no_error_log
[error]



=== TEST 29: limits: a message over chat_max_message_size gets 1009
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 5
--- perl
my $s = session();
my $max = 100 * 1024;
my $p = probe_bytes('max');
$s->send_frame(opcode => 1, payload => ("\n" x ($max - length $p)) . $p);
ok(receipt_ok($s, 'max', 5), 'exactly the limit: fine');
$s->send_frame(opcode => 1, payload => "\n" x ($max + 1));
ok(fails_with($s, 1009), 'one byte more: 1009');
$s = session();
$s->send_frame(opcode => 1, fin => 0, payload => "\n" x 60000);
$s->send_frame(opcode => 0, fin => 1, payload => "\n" x 60000);
ok(fails_with($s, 1009), 'fragments under the limit, the message over: 1009');
$s = session();
$s->send_raw(substr(ws_frame(opcode => 2, payload => '', length => 1 << 40),
                    0, 14));
ok(fails_with($s, 1009), 'a frame announcing 1 TB: 1009 at once');
$s = session();
$s->send_raw(pack('CCNN', 0x82, 0xff, 0x80000000, 1) . "\1\2\3\4");
ok(fails_with($s, 1002), 'a 64-bit length with the top bit set: 1002');
--- no_error_log
[error]



=== TEST 30: close: the client's close 1000 is echoed and the server closes TCP
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 5
--- perl
my $s = session();
$s->close(1000);
my $f = $s->recv_frame(3);
ok($f && $f->{opcode} == 8, 'a close frame');
is($f && length $f->{payload} >= 2 ? unpack('n', $f->{payload}) : undef,
   1000, 'code 1000');
my $t = time;
ok($s->is_eof(3), 'then EOF');
ok(time - $t < 1, 'at once');
$s = session();
$s->close(1000, 'bye now');
ok(fails_with($s, 1000), 'close with a reason: 1000');
--- no_error_log
[error]



=== TEST 31: close: an empty close frame is answered with an empty one
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 2
--- perl
my $s = session();
$s->close();
my $f = $s->recv_frame(3);
ok($f && $f->{opcode} == 8 && $f->{payload} eq '', 'empty close frame');
ok($s->is_eof(3), 'then EOF');
--- no_error_log
[error]



=== TEST 32: close: invalid close codes get 1002
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 11
--- perl
for my $code (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000) {
    my $c = upgraded();
    $c->close($code);
    ok(fails_with($c, 1002), "close $code: 1002");
}
--- no_error_log
[error]



=== TEST 33: close: valid close codes are echoed
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 13
--- perl
for my $code (1000 .. 1003, 1007 .. 1011, 3000, 3999, 4000, 4999) {
    my $c = upgraded();
    $c->close($code, 'why');
    ok(fails_with($c, $code), "close $code: echoed");
}
--- no_error_log
[error]



=== TEST 34: close: a 1-byte payload gets 1002, a reason of bad UTF-8 1007
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $c = upgraded();
$c->send_frame(opcode => 8, payload => "\x03");
ok(fails_with($c, 1002), '1-byte close: 1002');
$c = upgraded();
$c->close(1000, "bad \xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80");
ok(fails_with($c, 1007), 'reason of invalid UTF-8: 1007');
$c = upgraded();
$c->close(1000, "\xce\xba" x 61 . 'x');
ok(fails_with($c, 1000), 'a 123-byte UTF-8 reason is fine');
--- no_error_log
[error]



=== TEST 35: close: after a STOMP ERROR the close follows it, nothing is lost
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 6
--- perl
my $s = session();
$s->send_frame(opcode => 1, payload => "NONSENSE\n\n\0");
my $f = $s->recv_frame(3);
like($f && $f->{opcode} == 1 ? $f->{payload} : '', qr/^ERROR\n/,
     'the ERROR frame first');
$f = $s->recv_frame(3);
ok($f && $f->{opcode} == 8, 'then the close frame');
# the same while the client goes on sending: the ERROR must not be lost to
# a connection reset
$s = session();
$s->send_raw(ws_frame(opcode => 1, payload => "NONSENSE\n\n\0")
             . join('', map { ws_frame(opcode => 1, payload => "\n" x 8000) }
                            1 .. 40));
my $got = '';
my $code;
while (my $g = $s->recv_frame(3)) {
    if ($g->{opcode} == 8) {
        $code = unpack('n', $g->{payload});
        last;
    }
    $got .= $g->{payload};
}
like($got, qr/^ERROR\n/, 'busy client: the ERROR frame arrives');
ok(defined $code, 'and the close frame after it');
# and when a bad WebSocket frame follows the bad STOMP frame at once
$s = session();
$s->send_raw(ws_frame(opcode => 1, payload => "NONSENSE\n\n\0")
             . ws_frame(opcode => 1, rsv => 2, payload => "\n"));
$f = $s->recv_frame(3);
like($f && $f->{opcode} == 1 ? $f->{payload} : '', qr/^ERROR\n/,
     'a bad frame behind: the ERROR frame still arrives');
$f = $s->recv_frame(3);
ok($f && $f->{opcode} == 8, 'and the close frame');
--- no_error_log
[error]



=== TEST 36: close: a server-initiated close ends without the client's help
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 3
--- perl
my $s = session();
$s->send_frame(opcode => 1, rsv => 1, payload => "\n");
my $f = $s->recv_frame(3);
ok($f && $f->{opcode} == 8, 'close frame');
# the client does not answer: the server closes the connection itself
ok($s->is_eof(5), 'EOF without the client\'s close frame');
$s = session();
$s->send_frame(opcode => 1, rsv => 1, payload => "\n");
$f = $s->recv_frame(3);
$s->close(1002);
my $t = time;
ok($s->is_eof(3) && time - $t < 1, 'EOF at once after the client\'s close');
--- no_error_log
[error]



=== TEST 37: close: frames after the client's close frame are ignored
--- need_module
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $s = session();
$s->send_raw(ws_frame(opcode => 8, payload => pack('n', 1000))
             . ws_frame(opcode => 1, payload => probe_bytes('late'))
             . ws_frame(opcode => 9, payload => 'late'));
ok(fails_with($s, 1000), 'close 1000 echoed');
ok(!grep({ $_->{opcode} != 8 } @{ $s->{skipped} || [] }),
   'no RECEIPT or pong for what came after');
$s = session();
$s->send_frame(opcode => 1, fin => 0, payload => "BEGIN\n");
$s->close(1000);
ok(fails_with($s, 1000), 'close inside a fragmented message: echoed');
$s = session();
$s->send_raw(ws_frame(opcode => 8, payload => pack('n', 1001))
             . ws_frame(opcode => 8, payload => pack('n', 1000)));
ok(fails_with($s, 1001), 'two close frames: the first one counts');
--- no_error_log
[error]



=== TEST 38: slow consumer: a client that does not read is cut off with 1008
--- need_module
--- http_config
$TEST_NGINX_MORE_SERVERS
--- config
$TEST_NGINX_WS_CONF
--- tests: 2
--- perl_timeout: 90
--- perl
my $s = session(path => '/ws/slow', rcvbuf => 4096,
                port => $ENV{TEST_NGINX_SLOW_PORT});
my $id = 'r' x 1000;
my $chunk = join '', map { "BEGIN\ntransaction:t$_\nreceipt:$id\n\n\0"
                           . "ABORT\ntransaction:t$_\n\n\0" } 1 .. 50;
my $frame = ws_frame(opcode => 1, payload => $chunk);
for (1 .. 400) {
    last unless $s->send_raw($frame);
    last if wait_for_log('WebSocket client too slow', 0.001);
}
is($s->expect_close(10), 1008, 'close 1008');
ok($s->is_eof(5), 'then EOF');
--- error_log
WebSocket client too slow
--- no_error_log
[error]



=== TEST 39: wss: a STOMP session over TLS
--- need_module
--- http_config
$TEST_NGINX_MORE_SERVERS
--- config
$TEST_NGINX_WS_CONF
--- tests: 7
--- perl
my $port = $ENV{TEST_NGINX_WSS_PORT};
my $s = session(ssl => 1, port => $port);
ok($s->{connected}, 'CONNECTED over TLS');
ok($s->sock->isa('IO::Socket::SSL'), 'really TLS');
ok(probe($s, 'tls'), 'a RECEIPT');
my $p = probe_bytes('tls-big');
$s->send_frame(opcode => 1, payload => ("\n" x (70000 - length $p)) . $p);
ok(receipt_ok($s, 'tls-big', 5), 'a 70000-byte message');
my $id = 'r' x 70000;
$s->send_frame(opcode => 1, payload => "BEGIN\ntransaction:t\nreceipt:$id"
                                       . "\n\n\0ABORT\ntransaction:t\n\n\0");
ok(receipt_ok($s, $id, 5), 'a 70000-byte RECEIPT');
$s->ping('tls');
my $f = $s->recv_frame(3);
ok($f && $f->{opcode} == 10 && $f->{payload} eq 'tls', 'pong');
$s->close(1000);
ok(fails_with($s, 1000), 'the close handshake');
--- no_error_log
[error]



=== TEST 40: reload: an idle session gets close 1001 and the old worker exits
--- need_module
--- http_config
$TEST_NGINX_MORE_SERVERS
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $s = session();
ok(probe($s, 'before'), 'a session');
my @old = Test::Chat::_workers(nginx_pid(1));
nginx_signal('HUP');
is($s->expect_close(5), 1001, 'close 1001 on reload');
ok($s->is_eof(3), 'then EOF');
my $t = gone_after(5, @old);
ok(defined $t, 'the old worker exits') or diag("old workers: @old");
--- no_error_log
[error]



=== TEST 41: shutdown: sessions get 1001, nginx stops without waiting for them
--- need_module
--- http_config
$TEST_NGINX_MORE_SERVERS
--- config
$TEST_NGINX_WS_CONF
--- tests: 4
--- perl
my $s = session();
my $c = upgraded();
$c->send_frame(opcode => 1, fin => 0, payload => "\n");
my $t = time;
nginx_restart(1, 'QUIT');
ok(time - $t < 6, 'graceful stop in ' . sprintf('%.1f', time - $t) . ' s');
is($s->expect_close(3), 1001, 'a session gets 1001');
is($c->expect_close(3), 1001, 'a connection in a fragmented message too');
my $d = session();
ok(probe($d, 'again'), 'the restarted nginx works');
--- no_error_log
[error]



=== TEST 42: the handshake's request is released: large headers, frames in its packet, ws and wss
--- need_module
--- http_config
$TEST_NGINX_MORE_SERVERS
--- config
access_log logs/ws_access.log;
$TEST_NGINX_WS_CONF
--- tests: 9
--- perl
# a 3000-byte header takes a large header buffer; the frames that come in
# the handshake's packet are read from it before the request is freed
my $log = servroot() . '/nginx/logs/ws_access.log';
my $start = -s $log // 0;
for my $ssl (0, 1) {
    my $how = $ssl ? 'wss' : 'ws';
    my $connect = stomp_frame('CONNECT', [['accept-version', '1.2'],
                                          ['host', 'localhost'],
                                          ['passcode', make_token("rel$ssl")],
                                          ['heart-beat', '0,0']], '');
    my $c = ws_connect('/ws/chat',
                       ($ssl ? (ssl => 1, port => $ENV{TEST_NGINX_WSS_PORT})
                             : ()),
                       headers => ['X-Pad: ' . ('p' x 3000)],
                       extra => ws_frame(opcode => 1, payload => $connect)
                                . ws_frame(opcode => 1,
                                           payload => probe_bytes("e$ssl")));
    ok($c && $c->stomp_expect('CONNECTED', 3),
       "$how: CONNECTED for a CONNECT in the handshake's packet");
    ok(receipt_ok($c, "e$ssl"), "$how: the RECEIPT of the next frame");

    if (!$ssl) {
        # logged when released, while the session goes on
        my $t = time;
        my $line = '';
        while (time - $t < 3) {
            if (open my $fh, '<', $log) {
                local $/;
                seek $fh, $start, 0;
                $line = <$fh> // '';
            }
            last if $line =~ m{"GET /ws/chat HTTP/1\.1" 101 };
            select undef, undef, undef, 0.05;
        }
        like($line, qr{"GET /ws/chat HTTP/1\.1" 101 },
             'the 101 is in the access log while the session is open');
    }

    my $p = probe_bytes("big$ssl");
    $c->send_frame(opcode => 1, payload => ("\n" x (70000 - length $p)) . $p);
    ok(receipt_ok($c, "big$ssl", 5), "$how: then a 70000-byte message");
    $c->close(1000);
    ok(fails_with($c, 1000), "$how: the close handshake");
}
--- no_error_log
[error]
