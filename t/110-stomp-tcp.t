# 110-stomp-tcp.t: STOMP over plain TCP and TLS through nginx's stream
# module (chat_stomp, PROTOCOL.md section 3): stomp.py chatting with a
# WebSocket user both ways, a raw client for the byte stream (a frame byte
# by byte, pipelined frames, heart-beats as EOLs), bad credentials, a
# half-closed peer, a client that does not read, chat_stomp_user with a
# client certificate, and the metrics.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Util;
use Test::Chat::Helpers;
use File::Basename qw(dirname);
use File::Path qw(make_path);

# Debian's stream module (libnginx-mod-stream) and ours, beside
# ngx_chat_module.so
my $stream_so = $ENV{TEST_NGINX_STREAM_MODULE} // do {
    my ($dir) = `'$Test::Chat::BINARY' -V 2>&1` =~ /--modules-path=(\S+)/;
    ($dir // '/usr/lib/nginx/modules') . '/ngx_stream_module.so';
};
my $chat_stream_so = $ENV{TEST_NGINX_CHAT_STREAM_MODULE}
                     // dirname($Test::Chat::MODULE)
                        . '/ngx_chat_stream_module.so';

$ENV{TEST_NGINX_STOMP_PORT} ||= free_port();
$ENV{TEST_NGINX_STOMP_TLS_PORT} ||= free_port();
$ENV{TEST_NGINX_STOMP_MTLS_PORT} ||= free_port();
$ENV{TEST_NGINX_STOMP_PP_PORT} ||= free_port();
$ENV{TEST_NGINX_STOMP_DENY_PORT} ||= free_port();

# a CA, the server's certificate (127.0.0.1 and localhost) and a client's
# (CN=carol110), made for the run
my $certs = Test::Chat::servroot() . '/certs';
$ENV{TEST_NGINX_CERTS} = $certs;

sub make_certs {
    make_path($certs);
    my @cmds = (
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca"
        . " -keyout $certs/ca.key -out $certs/ca.crt",
        "openssl req -newkey rsa:2048 -nodes -subj /CN=localhost"
        . " -keyout $certs/server.key -out $certs/server.csr",
        "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n'"
        . " > $certs/server.ext",
        "openssl x509 -req -in $certs/server.csr -CA $certs/ca.crt"
        . " -CAkey $certs/ca.key -CAcreateserial -days 2"
        . " -extfile $certs/server.ext -out $certs/server.crt",
        "openssl req -newkey rsa:2048 -nodes -subj /O=Test/CN=carol110"
        . " -keyout $certs/client.key -out $certs/client.csr",
        "openssl x509 -req -in $certs/client.csr -CA $certs/ca.crt"
        . " -CAkey $certs/ca.key -CAcreateserial -days 2"
        . " -out $certs/client.crt",
    );
    for (@cmds) {
        system("$_ >/dev/null 2>&1") == 0 or die "certificates: $_ failed\n";
    }
}

make_certs() unless -f "$certs/client.crt";

# small limits and short timers, so that they can be seen
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1, ws => <<'_EOC_');
        chat_heartbeat 500ms;
        chat_heartbeat_grace 500ms;
        chat_send_buffer_limit 64k;
        chat_max_frame_size 8k;
_EOC_

$ENV{TEST_NGINX_STREAM_MODULE_SO} = $stream_so;
$ENV{TEST_NGINX_CHAT_STREAM_MODULE_SO} = $chat_stream_so;

$ENV{TEST_NGINX_STOMP_MAIN} = <<"_EOC_";
load_module $stream_so;
load_module $chat_stream_so;

stream {
    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_STOMP_PORT} sndbuf=8k;
        chat_stomp;
    }

    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_STOMP_TLS_PORT} ssl;
        ssl_certificate $certs/server.crt;
        ssl_certificate_key $certs/server.key;
        chat_stomp /ws/chat;
    }

    map \$ssl_client_s_dn \$chat_user {
        ~CN=(?<cn>[A-Za-z0-9_.-]+) \$cn;
        default "";
    }

    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_STOMP_MTLS_PORT} ssl;
        ssl_certificate $certs/server.crt;
        ssl_certificate_key $certs/server.key;
        ssl_client_certificate $certs/ca.crt;
        ssl_verify_client optional;
        chat_stomp;
        chat_stomp_user \$chat_user;
    }

    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_STOMP_PP_PORT} proxy_protocol;
        chat_stomp;
    }

    server {
        listen 127.0.0.1:$ENV{TEST_NGINX_STOMP_DENY_PORT};
        deny 127.0.0.1;
        chat_stomp;
    }
}
_EOC_


package Test::Chat::Sandbox;

use strict;
use warnings;
use Time::HiRes qw(time sleep);

BEGIN { Test::Chat->import }
use Test::Chat::Helpers;
use Test::Chat::StompTCP;


# runs t/tools/stomp-py-chat.py; its stdout, line by line
sub stomp_py {
    my (@args) = @_;
    my $py = "$Test::Chat::ROOT/t/tools/stomp-py-chat.py";

    open(my $fh, '-|', '/usr/bin/python3', $py, @args)
        or die "cannot run $py: $!\n";
    return $fh;
}


# reads lines of fh until one matches re (or EOF); all lines read
sub read_until {
    my ($fh, $re) = @_;
    my @lines;

    while (my $l = <$fh>) {
        chomp $l;
        push @lines, $l;
        last if $l =~ $re;
    }

    return @lines;
}


# stomp.py as user py over tcp or tls chats with a WebSocket user ws
sub py_chat {
    my ($py, $ws, $tls) = @_;
    my $n = 5;
    my $w = member($ws);
    my $conv = conversation($ws, 'direct', $py);
    my $port = $tls ? $ENV{TEST_NGINX_STOMP_TLS_PORT}
                    : $ENV{TEST_NGINX_STOMP_PORT};

    my $fh = stomp_py('127.0.0.1', $port, make_token($py), $conv, $n,
                      'py-', $ws, ($tls ? ('--tls', "$certs/ca.crt") : ()));

    my @lines = read_until($fh, qr/^(READY|ERROR)/);
    is($lines[-1] // 'nothing', 'READY', 'stomp.py connected, subscribed');

    # the WebSocket user's messages, each with a RECEIPT, while stomp.py
    # sends its own
    for my $i (1 .. $n) {
        send_msg($w, $conv, "ws-$i", receipt => "w$i");
    }

    my (@receipts, @own, @from_py);
    while (@receipts < $n || @own < $n || @from_py < $n) {
        my $f = $w->stomp_recv(5) or last;
        if ($f->{command} eq 'RECEIPT') {
            push @receipts, $f->{headers}{'receipt-id'};
        } elsif ($f->{command} eq 'MESSAGE') {
            my $m = json_decode($f->{body});
            push @{ $m->{senderId} eq $py ? \@from_py : \@own },
                 $m->{content};
        }
    }
    is_deeply([\@receipts, \@own],
              [[map { "w$_" } 1 .. $n], [map { "ws-$_" } 1 .. $n]],
              'the WebSocket user got its RECEIPTs and own copies, in order');
    is_deeply(\@from_py, [map { "py-$_" } 1 .. $n],
              'the WebSocket user got what stomp.py sent, in order');

    push @lines, read_until($fh, qr/^(DONE|ERROR)/);
    close $fh;

    is((grep { /^ERROR/ } @lines)[0] // '', '', 'stomp.py saw no error');
    is_deeply([map { /^RECEIPT (r\d+)/ ? $1 : () } @lines],
              [map { "r$_" } 1 .. $n],
              'stomp.py got a RECEIPT for each SEND, in order');
    is_deeply([map { /^MESSAGE \d+ \Q$ws\E (.*)/ ? $1 : () } @lines],
              [map { "ws-$_" } 1 .. $n],
              'stomp.py got the WebSocket user\'s messages, in order');
    my @seq = map { /^MESSAGE (\d+) / ? $1 : () } @lines;
    is_deeply(\@seq, [sort { $a <=> $b } @seq],
              'stomp.py saw seq grow');
    is($lines[-1], 'DONE', 'stomp.py disconnected with a RECEIPT');
}


package main;

plan_from_blocks();
run_tests();

__DATA__

=== TEST 1: stomp.py over TCP chats with a WebSocket user, both ways, in order, with RECEIPTs
--- tests: 8
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
py_chat('py1', 'ws1', 0);
--- no_error_log
[error]



=== TEST 2: stomp.py over TLS (the server's certificate verified) chats with a WebSocket user
--- tests: 8
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
py_chat('py2', 'ws2', 1);
--- no_error_log
[error]



=== TEST 3: a frame split byte by byte, then pipelined frames in one write
--- tests: 6
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $w = member('ws3');
my $conv = conversation('ws3', 'direct', 'raw3');
my $c = tcp_connect();
ok($c, 'connected');
$c->stomp_send('CONNECT', [['accept-version', '1.2'], ['host', 'localhost'],
                           ['passcode', make_token('raw3')]], '', split => 1);
my $f = $c->stomp_expect('CONNECTED', 5);
is($f && $f->{headers}{'user-name'}, 'raw3', 'CONNECT sent byte by byte');

# a SUBSCRIBE, three SENDs and a DISCONNECT in one write, plus EOLs
my $all = "\n\n" . stomp_frame('SUBSCRIBE', [[destination => '/user/queue/messages'],
                                    [id => 'm'], [receipt => 's']], '');
for my $i (1 .. 3) {
    $all .= stomp_frame('SEND', [[destination => '/app/chat.send'],
                                 ['content-type' => 'application/json'],
                                 [receipt => "r$i"]],
                        json_encode({ conversationId => $conv,
                                      content => "pipe-$i" })) . "\n";
}
$c->send_raw($all);
my @r;
while (my $f = $c->stomp_recv(5)) {
    push @r, $f->{headers}{'receipt-id'} if $f->{command} eq 'RECEIPT';
    last if @r == 4;
}
is_deeply(\@r, [qw(s r1 r2 r3)], 'four RECEIPTs, in order');
my @got;
while (@got < 3) {
    my $m = $w->stomp_message('/user/queue/messages', 5) or last;
    push @got, $m->{content};
}
is_deeply(\@got, [map { "pipe-$_" } 1 .. 3], 'the WebSocket user got them');

# a frame split into pieces of 7 bytes, with a body
$c->stomp_send('SEND', [[destination => '/app/chat.send'], [receipt => 'r4'],
                        ['content-type' => 'application/json']],
               json_encode({ conversationId => $conv, content => 'split' }),
               split => 7);
ok($c->stomp_wait(sub { $_->{command} eq 'RECEIPT'
                        && $_->{headers}{'receipt-id'} eq 'r4' }, 5),
   'a SEND in pieces of 7 bytes: RECEIPT');
my $m = $w->stomp_message('/user/queue/messages', 5);
is($m && $m->{content}, 'split', 'and its message');
--- no_error_log
[error]



=== TEST 4: bad credentials: an ERROR frame, then the server closes
--- tests: 6
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
for my $case (['no passcode', undef, qr/no credentials/],
              ['a forged token', make_token('bad4', secret => 'other'),
               qr/./],
              ['a frame before CONNECT', 'send', qr/expected CONNECT/]) {
    my ($what, $token, $re) = @$case;
    my $c = tcp_connect();
    if (defined $token && $token eq 'send') {
        $c->stomp_send('SEND', [[destination => '/app/chat.send']], '{}');
    } else {
        $c->stomp_send('CONNECT', [['accept-version', '1.2'],
                                   (defined $token ? ['passcode', $token]
                                                   : ())], '');
    }
    my $f = $c->stomp_expect('ERROR', 5);
    like($f ? ($f->{headers}{message} // '') . ' '
              . ($f->{body} // '') : '(no ERROR frame)',
         $re, "$what: ERROR frame");
    ok($c->is_eof(5), "$what: then the connection closes");
}
--- no_error_log
[error]



=== TEST 5: heart-beats over TCP: EOLs both ways, and a silent client is cut off
--- tests: 4
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = tcp_stomp_connect(user => 'hb5', heart_beat => '500,500');
is($c->{connected}{headers}{'heart-beat'}, '500,500',
   'CONNECTED offers 500,500');
# we send EOLs for 2 s: the session stays, and the server's EOLs come
my $until = time + 2;
while (time < $until) {
    $c->send_raw("\n");
    $c->stomp_recv(0.2);
}
ok($c->{heartbeats} >= 2, "the server sent EOLs ($c->{heartbeats})");
ok(!$c->{eof}, 'the session stayed while we sent ours');
# now silent: heart-beat (500) plus grace (500) later it closes
my $t0 = time;
my $f;
$f = $c->stomp_recv(3) while !$c->{eof} && time - $t0 < 4
                             && !($f && $f->{command} eq 'ERROR');
ok($f && $f->{command} eq 'ERROR'
   && ($f->{headers}{message} // '') =~ /heart-beat/,
   'a silent client gets "heart-beat timeout"');
--- no_error_log
[error]



=== TEST 6: a half-closed client: what it sent is answered, then the server closes
--- tests: 4
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $w = member('ws6');
my $conv = conversation('ws6', 'direct', 'half6');
my $c = tcp_stomp_connect(user => 'half6');
send_msg($c, $conv, 'last words', receipt => 'r1');
$c->shutdown_write;
ok(receipt_ok($c, 'r1', 5), 'the RECEIPT of the SEND before the FIN');
ok($c->is_eof(5), 'then the server closes');
my $m = $w->stomp_message('/user/queue/messages', 5);
is($m && $m->{content}, 'last words', 'the message was delivered');
# an idle connected session half-closed: closed at once
my $d = tcp_stomp_connect(user => 'half6b');
$d->shutdown_write;
ok($d->is_eof(3), 'an idle half-closed session is closed');
--- no_error_log
[error]



=== TEST 7: a client that does not read is cut off at chat_send_buffer_limit; others go on
--- tests: 4
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl_timeout: 90
--- perl
my $w = member('ws7');
my $conv = conversation('ws7', 'direct', 'other7');
my $slow = tcp_stomp_connect(user => 'slow7');
setsockopt($slow->sock, Socket::SOL_SOCKET(), Socket::SO_RCVBUF(), 4096);
# requests whose answers (RECEIPTs with long ids) it never reads: the
# kernel's buffers fill (sndbuf=8k), then the 64k of chat_send_buffer_limit
my $id = 'r' x 1000;
my $chunk = join '', map { "BEGIN\ntransaction:t$_\nreceipt:$id\n\n\0"
                           . "ABORT\ntransaction:t$_\n\n\0" } 1 .. 50;
for (1 .. 400) {
    last unless $slow->send_raw($chunk);
    last if wait_for_log('STOMP client too slow', 0.001);
}
ok(wait_for_log(qr/STOMP client too slow: \d+ bytes queued/, 10),
   'the slow reader is cut off');
ok($slow->is_eof(10), 'when it reads again: what was written, then EOF');
my @got = eval { send_receipted($w, $conv, 'still here') };
is(scalar @got, 1, 'a WebSocket user goes on meanwhile');
like($slow->{stomp_buf}, qr/\0\n*\z/,
     'what it read ends with a whole frame (none was cut)');
--- no_error_log
[error]



=== TEST 8: chat_stomp_user: the client certificate's CN is the user; without one, the passcode
--- tests: 3
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $port = $ENV{TEST_NGINX_STOMP_MTLS_PORT};
my $certs = $ENV{TEST_NGINX_CERTS};
my $c = tcp_stomp_connect(tls => 1, port => $port,
                          cert => "$certs/client.crt",
                          key => "$certs/client.key");
is($c->{connected}{headers}{'user-name'}, 'carol110',
   'no passcode: the user is the certificate\'s CN');
my $d = tcp_stomp_connect(tls => 1, port => $port, user => 'dave110');
is($d->{connected}{headers}{'user-name'}, 'dave110',
   'no certificate: the passcode\'s user');
my $e = tcp_connect(tls => 1, port => $port);
$e->stomp_send('CONNECT', [['accept-version', '1.2']], '');
my $f = $e->stomp_expect('ERROR', 5);
ok($f, 'neither: ERROR');
--- no_error_log
[error]



=== TEST 9: the metrics count STOMP over TCP/TLS connections apart
--- tests: 3
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
# the earlier blocks' connections are gone (or going)
my $open;
for (1 .. 40) {
    $open = metric('ngx_chat_stomp_tcp_connections', '/metrics');
    last if defined $open && $open == 0;
    sleep 0.1;
}
my $before = metric('ngx_chat_stomp_tcp_connections_total', '/metrics') // 0;
my $ws_before = metric('ngx_chat_connections_total', '/metrics') // 0;
my $c = tcp_stomp_connect(user => 'm9');
my $d = tcp_stomp_connect(user => 'm9b', tls => 1);
is(metric('ngx_chat_stomp_tcp_connections_total', '/metrics'), $before + 2,
   'two more accepted');
is(metric('ngx_chat_stomp_tcp_connections', '/metrics'), ($open // 0) + 2,
   'two more open');
is(metric('ngx_chat_connections_total', '/metrics'), $ws_before,
   'not counted as WebSocket connections');
--- no_error_log
[error]



=== TEST 10: nginx's stream phases run first: proxy_protocol, access rules
--- tests: 3
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = tcp_connect(port => $ENV{TEST_NGINX_STOMP_PP_PORT});
$c->send_raw("PROXY TCP4 192.0.2.7 127.0.0.1 40000 61613\r\n");
$c->stomp_send('CONNECT', [['accept-version', '1.2'],
                           ['passcode', make_token('pp10')]], '');
my $f = $c->stomp_expect('CONNECTED', 5);
is($f && $f->{headers}{'user-name'}, 'pp10',
   'proxy_protocol: the PROXY line, then STOMP');
my $d = tcp_connect(port => $ENV{TEST_NGINX_STOMP_DENY_PORT});
$d->stomp_send('CONNECT', [['accept-version', '1.2'],
                           ['passcode', make_token('deny10')]], '');
ok($d->is_eof(5), 'deny: closed');
is($d->{stomp_buf}, '', 'without a STOMP byte');
--- error_log
access forbidden by rule
--- no_error_log
[crit]
unauthorized STOMP session



=== TEST 11: reload: the old worker closes its idle STOMP connections and exits
--- tests: 4
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = tcp_stomp_connect(user => 'reload11');
ok($c->subscribe('/user/queue/messages', 'm'), 'a session');
my @old = Test::Chat::_workers(nginx_pid(1));
nginx_reload();
ok($c->is_eof(5), 'closed on reload');
my %now = map { $_ => 1 } Test::Chat::_workers(nginx_pid(1));
ok(!grep({ $now{$_} } @old), 'the old worker exited');
my $d = tcp_stomp_connect(user => 'reload11');
ok($d->subscribe('/user/queue/messages', 'm'), 'the new workers take STOMP');
--- no_error_log
[error]



=== TEST 12: chat_stomp needs the chat_websocket location it names: nginx refuses to start
--- main_config
load_module $TEST_NGINX_STREAM_MODULE_SO;
load_module $TEST_NGINX_CHAT_STREAM_MODULE_SO;
stream {
    server {
        listen 127.0.0.1:$TEST_NGINX_STOMP_PORT;
        chat_stomp /nowhere;
    }
}
--- config
$TEST_NGINX_CHAT_CONFIG
--- must_die
--- error_log
"chat_stomp" takes the settings of a "chat_websocket" location /nowhere, and http{} has none in



=== TEST 13: the chat_websocket location's limits apply: a frame over chat_max_frame_size (8k)
--- tests: 4
--- main_config
$TEST_NGINX_STOMP_MAIN
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = tcp_stomp_connect(user => 'big13');
$c->stomp_send('SEND', { destination => '/app/chat.send' }, 'x' x 9000,
               content_length => 0);
my $f = $c->stomp_expect('ERROR', 5);
like($f ? $f->{headers}{message} // '' : '(no ERROR frame)', qr/./,
     '9000 bytes in pieces of one read: ERROR');
ok($c->is_eof(5), 'then the connection closes');
my $d = tcp_stomp_connect(user => 'big13');
$d->subscribe('/user/queue/errors', 'e');
$d->stomp_send('SEND', { destination => '/app/chat.send', receipt => 'ok',
                         'content-type' => 'application/json' },
               json_encode({ conversationId => 'c_none', content => 'y' x 7000 }));
$f = $d->stomp_recv(5);
ok($f && $f->{command} eq 'MESSAGE'
   && $f->{headers}{destination} eq '/user/queue/errors',
   '7000 bytes pass the frame limit (to be rejected as a request)')
    or diag($f ? "$f->{command} " . ($f->{headers}{message} // '') : 'nothing');
ok(!$d->{eof}, 'and the session stays');
--- no_error_log
[error]
