# 000-harness.t: the test harness tests itself (plain nginx, the clients,
# the plan), then a first real handshake when the module is there.

use lib 't/lib';
use Test::Chat;

plan_from_blocks();
run_tests();

__DATA__

=== TEST 1: plain nginx answers, headers and body are checked
--- config
    location = /hello {
        add_header X-Hello world;
        return 200 "hello\n";
    }
--- request
GET /hello
--- response_headers
X-Hello: world
Content-Type: text/plain
!X-Absent
--- response_body
hello
--- no_error_log
[error]



=== TEST 2: request body and more_headers reach nginx
--- config
    location = /echo {
        return 200 "$request_method $content_length $http_x_test";
    }
--- request
POST /echo

abcdef
--- more_headers
X-Test: $TEST_NGINX_SERVER_PORT
--- response_body_like: ^POST 6 \d+$



=== TEST 3: error_code and a token placeholder
--- config
    location = /who {
        return 403 "$http_authorization";
    }
--- request
GET /who
--- more_headers
Authorization: Bearer ${token:alice}
--- error_code: 403
--- response_body_like: ^Bearer [\w-]+\.[\w-]+\.[\w-]+$



=== TEST 4: error_log lines are found, no_error_log lines are not
--- config
    location = /missing {
        root /nonexistent-ngx-chat;
    }
--- request
GET /missing
--- error_code: 404
--- error_log
[error]
qr/open\(\) ".*missing" failed/
--- no_error_log
[crit]



=== TEST 5: a bad configuration can be expected to fail
--- config
    location / {
        no_such_directive_here;
    }
--- must_die
--- error_log
unknown directive "no_such_directive_here"



=== TEST 6: a second server with the same configuration
--- second_server
--- workers: 2
--- config
    location = /port {
        return 200 "$server_port";
    }
--- tests: 4
--- perl
my ($st, $h, $body) = http_request(GET => '/port');
is($st, 200, 'server 1 answers');
is($body, server_port(), 'on its port');
($st, $h, $body) = http_request(GET => '/port', [], undef,
                                port => server_port2());
is($st, 200, 'server 2 answers');
is($body, server_port2(), 'on its port');



=== TEST 7: tokens are HS256 JWTs a verifier accepts
--- config
--- tests: 6
--- perl
use Digest::SHA qw(hmac_sha256);
my $t = make_token('bob', ttl => 60, name => 'Bob');
my ($h, $p, $s) = split /\./, $t;
is(b64url(hmac_sha256("$h.$p", 'secret')), $s, 'signature');
my $hd = json_decode(b64url_decode($h));
is($hd->{alg}, 'HS256', 'alg');
my $c = json_decode(b64url_decode($p));
is($c->{sub}, 'bob', 'sub');
is($c->{name}, 'Bob', 'name');
ok($c->{exp} > time && $c->{exp} <= time + 61, 'exp');
my $bad = make_token('bob', secret => 'other', alg => 'none');
like($bad, qr/\.$/, 'alg none has no signature');



=== TEST 8: the WebSocket and STOMP client against a tiny echo server
--- config
--- tests: 19
--- perl
my $port = free_port();
my $pid = Test::Chat::Selftest::echo_server($port);
wait_port($port, 5) or die "echo server did not start\n";

my $c = ws_connect('/echo', port => $port, protocols => ['v12.stomp']);
is($c->status, 101, 'handshake 101');
ok($c->{accept_ok}, 'Sec-WebSocket-Accept verified');
is($c->protocol, 'v12.stomp', 'protocol');

$c->send_text("h\x{e9}llo \x{263a}");
my $f = $c->recv_frame(2);
is($f->{opcode}, 1, 'text frame back');
is($f->{payload}, "h\xc3\xa9llo \xe2\x98\xba", 'payload back (UTF-8)');
ok(!$f->{masked}, 'server frames are not masked');

$c->send_frame(opcode => 2, payload => 'x' x 70000, mask => "\1\2\3\4");
$f = $c->recv_frame(2);
is(length $f->{payload}, 70000, '64-bit length frame');

# two STOMP frames in one message, then one split over two messages
$c->send_text("\nMESSAGE\ndestination:/a\\cb\n\nfirst\0"
              . "RECEIPT\nreceipt-id:7\n\n\0\n");
$f = $c->stomp_expect('MESSAGE', 2);
is($f && $f->{headers}{destination}, '/a:b', 'header unescaped');
is($f && $f->{body}, 'first', 'body');
$f = $c->stomp_expect('RECEIPT', 2);
is($f && $f->{headers}{'receipt-id'}, '7', 'second frame of the message');
ok($c->stomp_send('MESSAGE', { destination => '/x' }, "split body",
                  split => 7), 'split send');
$f = $c->stomp_recv(2);
is($f && $f->{body}, 'split body', 'frame over several messages');
is($f && $f->{headers}{'content-length'}, 10, 'content-length added');
ok($c->{heartbeats} >= 2, 'heart-beat EOLs counted');

$c->ping('p');
$f = $c->recv_frame(2);
is($f->{opcode}, 10, 'pong');
is($f->{payload}, 'p', 'pong payload');

$c->close(1000, 'bye');
is($c->expect_close(2), 1000, 'close code echoed');
ok($c->is_eof(2), 'then EOF');

my $r = ws_connect('/echo', port => $port, no_upgrade_headers => 1);
is($r->status, 400, 'not an upgrade: 400');

kill 'TERM', $pid;
waitpid($pid, 0);

package Test::Chat::Selftest;
use Digest::SHA qw(sha1);
use MIME::Base64 qw(encode_base64);

# forks a server that answers handshakes and echoes every frame unmasked
sub echo_server {
    my ($port) = @_;
    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                  LocalPort => $port, Listen => 5,
                                  ReuseAddr => 1) or die "listen: $!\n";
    my $pid = fork // die "fork: $!\n";
    return $pid if $pid;

    while (my $s = $l->accept) {
        my $buf = '';
        while ($buf !~ /\r\n\r\n/) {
            last unless sysread($s, $buf, 65536, length $buf);
        }
        next unless $buf =~ /\r\n\r\n/;
        my ($head) = split /\r\n\r\n/, $buf, 2;
        $buf = substr($buf, length($head) + 4);
        my ($key) = $head =~ /Sec-WebSocket-Key: (\S+)/i;
        unless ($key) {
            syswrite($s, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0"
                         . "\r\nConnection: close\r\n\r\n");
            close $s;
            next;
        }
        my $acc = encode_base64(sha1($key
                      . '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'), '');
        syswrite($s, "HTTP/1.1 101 Switching Protocols\r\n"
                     . "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     . "Sec-WebSocket-Accept: $acc\r\n"
                     . "Sec-WebSocket-Protocol: v12.stomp\r\n\r\n");
        my $c = bless { sock => $s, rbuf => $buf, eof => 0 },
                      'Test::Chat::WebSocket';
        while (my $f = $c->recv_frame(5)) {
            my $op = $f->{opcode} == 9 ? 10 : $f->{opcode};
            $c->send_frame(opcode => $op, payload => $f->{payload},
                           masked => 0);
            last if $op == 8;
        }
        close $s;
    }
    exit 0;
}



=== TEST 9: init code runs before the block, Redis and PostgreSQL helpers
--- need_module
--- init
redis_cmd('SET', 'harness:init', 'yes');
--- config
--- tests: 4
--- perl
is(redis_cmd('GET', 'harness:init'), 'yes', 'init ran, redis_cmd works');
my @r = pg_query('SELECT 1 + 1');
is($r[0][0], 2, 'pg_query works');
@r = pg_query('SELECT count(*) FROM schema_migrations');
ok($r[0][0] >= 1, 'migrations applied');
reset_db();
redis_flushall();
is(redis_cmd('GET', 'harness:init'), undef, 'flushed');



=== TEST 10: a WebSocket handshake against the module, then STOMP
--- need_module
--- config
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
--- tests: 6
--- perl
my $c = ws_connect('/ws/chat', protocols => ['v10.stomp', 'v12.stomp']);
is($c->status, 101, '101 Switching Protocols');
ok($c->{accept_ok}, 'Sec-WebSocket-Accept is right');
is($c->protocol, 'v12.stomp', 'the highest STOMP version offered');
$c->close(1000);
is($c->expect_close(3), 1000, 'close answered');

my $s = eval { stomp_connect('/ws/chat', user => 'alice') };
ok($s, 'STOMP CONNECT with a token') or diag($@);
is($s && $s->{connected}{headers}{'user-name'}, 'alice', 'user-name');
--- no_error_log
[error]



=== TEST 11: restarts and outages: nginx, Redis and PostgreSQL come back
--- need_module
--- config
    location = /ping {
        return 200 "pong";
    }
--- tests: 8
--- perl
my $pid = nginx_pid();
ok(nginx_restart(), 'nginx restarted');
isnt(nginx_pid(), $pid, 'a new master');
my ($st, $h, $b) = http_request(GET => '/ping');
is($b, 'pong', 'answers again');

redis_cmd('SET', 'harness:k', 'v');
ok(redis_stop() && redis_start(), 'Redis stopped and started');
is(redis_cmd('PING'), 'PONG', 'Redis answers again');

ok(pg_stop(), 'PostgreSQL stopped');
ok(!eval { pg_query('SELECT 1'); 1 }, 'and is down');
pg_start();
is((pg_query('SELECT 41 + 1'))[0][0], 42, 'PostgreSQL answers again');
