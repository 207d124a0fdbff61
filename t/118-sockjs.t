# SockJS 0.3 under /ws/chat: /info, the real sockjs-client (node) with
# @stomp/stompjs over websocket, xhr-streaming and xhr-polling against a
# WebSocket user, a polling session across a 20 s gap, CORS and Origin.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use Cwd qw(abs_path);
use File::Basename qw(dirname);

my $root = abs_path(dirname(abs_path(__FILE__)) . '/..');

# skipped only when node is missing (make deps installs it)
my $node = `command -v node 2>/dev/null`;
chomp $node;
if (!$node) {
    Test::More::plan(skip_all => 'no node (make browser-deps)');
}

$ENV{TEST_NGINX_BROWSER_DIR} = "$root/t/browser";
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();
$ENV{TEST_NGINX_PAGE_CONFIG} = chat_config(more => <<"_EOC_");
    location = /sockjs-test/ {
        default_type text/html;
        return 200 '<!doctype html><title>sockjs</title>
<script src="lib/sockjs-client/dist/sockjs.min.js"></script>
<script src="lib/\@stomp/stompjs/bundles/stomp.umd.min.js"></script>';
    }
    location /sockjs-test/lib/ {
        alias $root/t/browser/node_modules/;
        types {
            text/javascript js;
        }
    }
_EOC_
$ENV{TEST_NGINX_EXPIRY_CONFIG} =
    chat_config(ws => 'chat_sockjs_disconnect_delay 1s;');
$ENV{TEST_NGINX_ORIGIN_CONFIG} =
    chat_config(ws => 'chat_allowed_origins http://good.example;');

plan_from_blocks();

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use IO::Socket::INET;

# one HTTP/1.0 request: (status, headers (lower-case names), body)
sub http {
    my ($method, $path, $body, @headers) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => server_port(),
                                  Timeout => 5)
        or die "connect: $!\n";
    $body //= '';
    print $s "$method $path HTTP/1.0\r\nHost: localhost\r\n",
             map({ "$_\r\n" } @headers),
             "Content-Length: " . length($body) . "\r\n\r\n", $body;
    local $/;
    my $r = <$s> // '';
    my ($head, $b) = split /\r\n\r\n/, $r, 2;
    my ($st) = $head =~ m{^HTTP/1\.[01] (\d+)};
    my %h = map { /^([^:]+):\s*(.*)$/ ? (lc $1, $2) : () }
            split /\r\n/, $head;
    return ($st // 0, \%h, $b // '');
}

# runs sockjs.spec.mjs (or spec, with CHAT_URL the server's root) with
# %env; its output and exit code
sub run_node {
    my (%env) = @_;
    my $spec = delete $env{spec};
    local @ENV{ keys %env } = values %env;
    local $ENV{CHAT_URL} = 'http://127.0.0.1:' . server_port()
                           . ($spec ? '/' : '/ws/chat');
    $spec //= 'sockjs.spec.mjs';
    my $out = `node "$ENV{TEST_NGINX_BROWSER_DIR}/$spec" 2>&1`;
    return ($out, $? >> 8);
}

# a STOMP frame as a SockJS client sends it: ["frame"]
sub sockjs_msg { json_encode([ $_[0] ]) }

package main;

run_tests();

__DATA__

=== TEST 1: /info says websocket, cookie_needed, origins and some entropy, not cached
--- config
$TEST_NGINX_CHAT_CONFIG
--- request
GET /ws/chat/info
--- response_headers
Content-Type: application/json; charset=UTF-8
Access-Control-Allow-Origin: *
Cache-Control: ~ no-store
--- response_body_like: ^\{"websocket":true,"origins":\["\*:\*"\],"cookie_needed":false,"entropy":\d+\}$
--- no_error_log
[error]



=== TEST 2: unknown SockJS paths are 404; the plain WebSocket URL and the raw /websocket speak STOMP
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my ($st) = http(GET => '/ws/chat/nothing');
is($st, 404, 'an unknown endpoint');
($st) = http(POST => '/ws/chat/000/a.b/xhr');
is($st, 404, 'a session id with a dot');
($st) = http(POST => '/ws/chat/000/nosuch/xhr_send', sockjs_msg("x"));
is($st, 404, 'xhr_send to no session');
my $c = eval { stomp_connect('/ws/chat', user => 'plain1') };
ok($c, 'STOMP over WebSocket at /ws/chat still connects');
my $raw = eval { stomp_connect('/ws/chat/websocket', user => 'plain2') };
ok($raw, 'the raw /ws/chat/websocket is STOMP over WebSocket');
ok($raw && $raw->subscribe('/user/queue/errors', 'e'),
   'unframed STOMP there: a SUBSCRIBE gets its RECEIPT');
--- no_error_log
[error]



=== TEST 3: sockjs-client with stompjs: websocket, xhr-streaming, xhr-polling, eventsource each chat with a WebSocket user, in order, with RECEIPTs; a stream past 128 KiB
--- perl_timeout: 120
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('sj_alice', 'direct', 'sj_bob');
my ($out, $rc) = run_node(TOKEN_A => make_token('sj_alice'),
                          TOKEN_B => make_token('sj_bob'),
                          CONV => $conv, BULK => 40);
diag($out) if $rc != 0 || $ENV{TEST_VERBOSE};
is($rc, 0, 'the node test exits 0');
like($out, qr/^# all SockJS checks passed$/m, 'every SockJS check passed');
--- error_log
the client opens the next one
--- no_error_log
[error]



=== TEST 4: a polling session survives a 20 s gap between polls without losing a frame
--- perl_timeout: 60
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('gap_a', 'direct', 'gap_b');
my $b = member('gap_b');
my $base = '/ws/chat/123/gapsession';
my ($st, $h, $body) = http(POST => "$base/xhr");
is($body, "o\n", 'the first poll opens the session');
($st) = http(POST => "$base/xhr_send",
             sockjs_msg("CONNECT\naccept-version:1.2\nhost:localhost\n"
                        . "passcode:" . make_token('gap_a')
                        . "\nheart-beat:0,0\n\n\0")
             . '');
is($st, 204, 'xhr_send takes CONNECT');
(undef, undef, $body) = http(POST => "$base/xhr");
like($body, qr/^a\["CONNECTED\\n/, 'the next poll: CONNECTED');
http(POST => "$base/xhr_send",
     sockjs_msg("SUBSCRIBE\nid:m\ndestination:/user/queue/messages\n"
                . "receipt:s1\n\n\0"));
(undef, undef, $body) = http(POST => "$base/xhr");
like($body, qr/RECEIPT\\nreceipt-id:s1/, 'subscribed');
send_msg($b, $conv, 'during the gap 1');
send_msg($b, $conv, 'during the gap 2');
sleep 20;
(undef, undef, $body) = http(POST => "$base/xhr");
my @got = $body =~ /during the gap (\d)/g;
is("@got", '1 2', 'both messages sent during the gap come with the next '
                  . 'poll, in order');
($st) = http(POST => "$base/xhr_send", sockjs_msg("DISCONNECT\n\n\0"));
is($st, 204, 'the session is still there');
--- no_error_log
[error]



=== TEST 5: CORS: a preflight is answered; an Origin outside chat_allowed_origins is refused
--- tests: 6
--- config
$TEST_NGINX_ORIGIN_CONFIG
--- perl
my ($st, $h) = http(OPTIONS => '/ws/chat/000/cors1/xhr_send', '',
                    'Origin: http://good.example',
                    'Access-Control-Request-Headers: content-type');
is($st, 204, 'preflight answered');
is($h->{'access-control-allow-origin'}, 'http://good.example',
   'the origin is echoed');
is($h->{'access-control-allow-credentials'}, 'true', 'with credentials');
is($h->{'access-control-allow-headers'}, 'content-type',
   'the requested headers are allowed');
($st) = http(POST => '/ws/chat/000/cors2/xhr', '',
             'Origin: http://evil.example');
is($st, 403, 'another origin is refused');
($st, $h) = http(POST => '/ws/chat/000/cors3/xhr', '',
                 'Origin: http://good.example');
is($st, 200, 'the allowed origin opens a session');
--- no_error_log
[error]



=== TEST 6: a session with no receiving request for chat_sockjs_disconnect_delay ends
--- tests: 3
--- config
$TEST_NGINX_EXPIRY_CONFIG
--- perl
my ($st, $h, $body) = http(POST => '/ws/chat/000/expiring/xhr');
is($body, "o\n", 'opened');
($st) = http(POST => '/ws/chat/000/expiring/xhr_send', sockjs_msg("\n"));
is($st, 204, 'there while a poll is recent');
sleep 3;
($st) = http(POST => '/ws/chat/000/expiring/xhr_send', sockjs_msg("\n"));
is($st, 404, 'gone after the delay');
--- error_log
SockJS session "expiring" expired
--- no_error_log
[error]



=== TEST 7: Chromium without WebSocket: new SockJS('/ws/chat') falls back to xhr-streaming and chats with a WebSocket user
--- perl_timeout: 90
--- tests: 2
--- config
$TEST_NGINX_PAGE_CONFIG
--- perl
SKIP: {
    my $chromium = $ENV{CHROMIUM} || '/usr/bin/chromium';
    skip "no chromium at $chromium (make browser-deps)", 2 unless -x $chromium;
    my $conv = conversation('sjb_alice', 'direct', 'sjb_bob');
    my ($out, $rc) = run_node(spec => 'sockjs-browser.spec.mjs',
                              CONV => $conv,
                              SCREENSHOT_DIR => servroot() . '/../browser');
    diag($out) if $rc != 0 || $ENV{TEST_VERBOSE};
    is($rc, 0, 'the browser test exits 0');
    like($out, qr/^# all browser checks passed$/m,
         'every browser check passed');
}
--- no_error_log
[error]



=== TEST 8: bad frames get SockJS's errors and the session goes on; a second receiver is told; DISCONNECT closes with c[3000]
--- tests: 8
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $base = '/ws/chat/000/bad1';
my ($st, $h, $body) = http(POST => "$base/xhr");
is($body, "o\n", 'opened');
($st, $h, $body) = http(POST => "$base/xhr_send", '');
is("$st $body", '500 Payload expected.', 'an empty body');
($st, $h, $body) = http(POST => "$base/xhr_send", '["x", 1]');
is("$st $body", '500 Broken JSON encoding.', 'not an array of strings');
($st) = http(POST => "$base/xhr_send",
             sockjs_msg("CONNECT\naccept-version:1.2\nhost:localhost\n"
                        . "passcode:" . make_token('bad1')
                        . "\nheart-beat:0,0\n\n\0"));
is($st, 204, 'the session still takes frames');
(undef, undef, $body) = http(POST => "$base/xhr");
like($body, qr/^a\["CONNECTED\\n/, 'and answers them');

# a streaming receiver is held; a poll meanwhile is told
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => server_port(), Timeout => 5)
    or die "connect: $!\n";
print $s "POST $base/xhr_streaming HTTP/1.0\r\nHost: localhost\r\n"
         . "Content-Length: 0\r\n\r\n";
my $prelude = '';
while ($prelude !~ /h{2048}\n/) {
    my $n = sysread($s, $prelude, 4096, length $prelude);
    die "no prelude\n" unless $n;
}
(undef, undef, $body) = http(POST => "$base/xhr");
is($body, "c[2010,\"Another connection still open\"]\n",
   'a second receiver gets c[2010]');

http(POST => "$base/xhr_send", sockjs_msg("DISCONNECT\n\n\0"));
my $rest = '';
while ($rest !~ /c\[/) {
    my $n = sysread($s, $rest, 4096, length $rest);
    last unless $n;
}
like($rest, qr/c\[3000,"Go away!"\]\n/,
     'DISCONNECT: the stream gets c[3000,"Go away!"] and ends');
(undef, undef, $body) = http(POST => "$base/xhr");
is($body, "c[3000,\"Go away!\"]\n", 'and so does the next poll');
--- no_error_log
[error]
