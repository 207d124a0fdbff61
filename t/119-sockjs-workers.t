# SockJS HTTP sessions across nginx workers (worker_processes 2): every
# request on a new TCP connection to a reuseport listener, so that the
# kernel spreads them over both workers; the access log ($pid) shows which
# worker served each. The worker that does not hold a session hands its
# requests over to the one that does (through Redis).

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

# a second listener with a socket per worker: new connections go to
# either worker by the hash of their addresses
$ENV{TEST_NGINX_SPREAD_PORT} = free_port();
$ENV{TEST_NGINX_BROWSER_DIR} = "$root/t/browser";
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(ws => 'add_header X-Worker $pid always;',
                                           more => <<"_EOC_");
    listen 127.0.0.1:$ENV{TEST_NGINX_SPREAD_PORT} reuseport;
    access_log logs/sjw.log sjw;
_EOC_

# two nodes (one worker each) sharing Redis, no listener in common
$ENV{TEST_NGINX_NODE_CONFIG} =
    chat_config(ws => 'add_header X-Worker $pid always;');

plan_from_blocks();

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use IO::Socket::INET;
use Time::HiRes qw(sleep);

# one HTTP/1.0 request on a new connection to the reuseport listener (or
# to $port): (status, body, the pid of the worker that answered)
our $port;

sub http {
    my ($method, $path, $body) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $port
                                              // $ENV{TEST_NGINX_SPREAD_PORT},
                                  Timeout => 5)
        or die "connect: $!\n";
    $body //= '';
    print $s "$method $path HTTP/1.0\r\nHost: localhost\r\n",
             "Content-Length: " . length($body) . "\r\n\r\n", $body;
    local $/;
    my $r = <$s> // '';
    my ($head, $b) = split /\r\n\r\n/, $r, 2;
    my ($st) = $head =~ m{^HTTP/1\.[01] (\d+)};
    my ($pid) = $head =~ m{\r\nX-Worker: (\d+)}i;
    return ($st // 0, $b // '', $pid // 0);
}

# a receiving request held open on a new connection: (socket, pid, what
# came after the header)
sub open_stream {
    my ($path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_SPREAD_PORT},
                                  Timeout => 5)
        or die "connect: $!\n";
    print $s "POST $path HTTP/1.0\r\nHost: localhost\r\n"
             . "Content-Length: 0\r\n\r\n";
    my $r = '';
    while ($r !~ /\r\n\r\n/) {
        sysread($s, $r, 4096, length $r) or die "no header\n";
    }
    my ($head, $rest) = split /\r\n\r\n/, $r, 2;
    my ($pid) = $head =~ m{\r\nX-Worker: (\d+)}i;
    return ($s, $pid // 0, $rest);
}

# an HTTP/1.1 poll on the kept-alive connection k: (pid, body), the body
# read to its last chunk; '' if it did not end within 5 s
sub poll11 {
    my ($k, $path) = @_;
    print $k "POST $path HTTP/1.1\r\nHost: localhost\r\n"
             . "Content-Length: 0\r\n\r\n";
    my $r = '';
    my $until = time + 5;
    while ($r !~ /\r\n0\r\n\r\n\z/ && time < $until) {
        my $rin = '';
        vec($rin, fileno($k), 1) = 1;
        next unless select($rin, undef, undef, 0.2);
        sysread($k, $r, 65536, length $r) or last;
    }
    my ($pid) = $r =~ m{\r\nX-Worker: (\d+)}i;
    return ($pid // 0, $r =~ /\r\n0\r\n\r\n\z/ ? $r : '');
}

# reads s until EOF (or timeout): what came
sub read_all {
    my ($s, $timeout) = @_;
    my $got = '';
    my $until = time + ($timeout // 10);
    while (time < $until) {
        my $rin = '';
        vec($rin, fileno($s), 1) = 1;
        next unless select($rin, undef, undef, 0.2);
        sysread($s, $got, 65536, length $got) or last;
    }
    return $got;
}

# a STOMP frame as a SockJS client sends it: ["frame"]
sub sockjs_msg { json_encode([ $_[0] ]) }

# the access log's lines of session sid: [pid, method, kind, status]
sub served {
    my ($sid) = @_;
    open(my $fh, '<', servroot() . '/nginx/logs/sjw.log') or return ();
    return map { m{^(\d+) (\w+) /ws/chat/[^/]+/\Q$sid\E/(\w+) (\d+)$}
                 ? [$1, $2, $3, $4] : () } <$fh>;
}

# the sessions in the access log: sid -> its receiving request's kind
sub sessions {
    open(my $fh, '<', servroot() . '/nginx/logs/sjw.log') or return ();
    my %s;
    for (<$fh>) {
        $s{$1} = $2 if m{^\d+\ \w+\ /ws/chat/[^/]+/([^/]+)/
                         (xhr|xhr_streaming|eventsource)\ }x;
    }
    return %s;
}

sub pids { my %p = map { $_->[0] => 1 } @_; return scalar keys %p }

# the access log starts again (nginx appends: O_APPEND)
sub log_reset { truncate(servroot() . '/nginx/logs/sjw.log', 0) }

# a session id of this run (Redis keeps chat:sj:<id> across runs)
sub sid { "$_[0]" . time . "x$$" }

package main;

run_tests();

__DATA__

=== TEST 1: sockjs-client (new connection per request) over xhr-streaming, xhr-polling and eventsource chats with a WebSocket user, in order, with RECEIPTs, its requests served by both workers
--- workers: 2
--- perl_timeout: 150
--- tests: 11
--- http_config
    log_format sjw '$pid $request_method $uri $status';
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
log_reset();
my $conv = conversation('sjw_alice', 'direct', 'sjw_bob');
local $ENV{CHAT_URL} = "http://127.0.0.1:$ENV{TEST_NGINX_SPREAD_PORT}/ws/chat";
# one SEND (one xhr_send), one RECEIPT at a time: every session makes
# dozens of requests, each on a new connection
my $out = `TOKEN_A='${\ make_token('sjw_alice')}' TOKEN_B='${\ make_token('sjw_bob')}' CONV='$conv' COUNT=12 ONE_BY_ONE=1 BULK=40 NO_KEEPALIVE=1 TRANSPORTS=xhr-streaming,xhr-polling,eventsource node "$ENV{TEST_NGINX_BROWSER_DIR}/sockjs.spec.mjs" 2>&1`;
my $rc = $? >> 8;
diag($out) if $rc != 0 || $ENV{TEST_VERBOSE};
is($rc, 0, 'the node test exits 0');
like($out, qr/^# all SockJS checks passed$/m, 'every SockJS check passed');
sleep 1;
my %kinds = reverse sessions();
for my $kind (qw(xhr_streaming xhr eventsource)) {
    my $sid = $kinds{$kind};
    ok($sid, "a $kind session in the access log");
    my @r = served($sid // '-');
    my @sends = grep { $_->[2] eq 'xhr_send' } @r;
    is(pids(@r), 2, "$kind: the session's " . scalar(@r)
                    . " requests were served by both workers");
    is(join(',', sort { $a <=> $b } keys %{{ map { $_->[3] => 1 } @sends }}),
       '204', "$kind: every xhr_send (" . scalar(@sends) . ") was taken");
}
--- error_log
the client opens the next one
--- no_error_log
[error]



=== TEST 2: a polling session moves between workers with every poll and loses nothing; a second receiver on either worker is told c[2010]; DISCONNECT ends it on both
--- workers: 2
--- perl_timeout: 60
--- tests: 11
--- http_config
    log_format sjw '$pid $request_method $uri $status';
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('sjw_c', 'direct', 'sjw_d');
my $d = member('sjw_d');
my $sid = sid('moving');
my $base = "/ws/chat/000/$sid";
my ($st, $body) = http(POST => "$base/xhr");
is($body, "o\n", 'the first poll opens the session');
($st) = http(POST => "$base/xhr_send",
             sockjs_msg("CONNECT\naccept-version:1.2\nhost:localhost\n"
                        . "passcode:" . make_token('sjw_c')
                        . "\nheart-beat:0,0\n\n\0"));
is($st, 204, 'xhr_send takes CONNECT');
(undef, $body) = http(POST => "$base/xhr");
like($body, qr/^a\["CONNECTED\\n/, 'a poll: CONNECTED');
http(POST => "$base/xhr_send",
     sockjs_msg("SUBSCRIBE\nid:m\ndestination:/user/queue/messages\n"
                . "receipt:s1\n\n\0"));
(undef, $body) = http(POST => "$base/xhr");
like($body, qr/RECEIPT\\nreceipt-id:s1/, 'subscribed, with a RECEIPT');

# the WebSocket user to the polling one: one message between polls
my @got;
for my $i (1 .. 8) {
    send_msg($d, $conv, "moving $i");
    my $until = time + 5;
    while (time < $until) {
        (undef, $body) = http(POST => "$base/xhr");
        my @now = $body =~ /moving (\d)/g;
        push @got, @now;
        last if @now;
    }
}
is("@got", '1 2 3 4 5 6 7 8', 'every message came, once, in order');

# and back, with receipts: each SEND on its own connection, at least four
# and until both workers have taken one (the kernel spreads the
# connections; 24 at most)
my ($sent, $n, %send_pids) = (0, 0);
for my $i (1 .. 24) {
    my ($st2, undef, $pid) =
        http(POST => "$base/xhr_send",
             sockjs_msg("SEND\ndestination:/app/chat.send\n"
                        . "content-type:application/json\n"
                        . "receipt:r$i\n\n"
                        . json_encode({ conversationId => $conv,
                                        content => "back $i" }) . "\0"));
    $n = $i;
    if ($st2 == 204) {
        $sent++;
        $send_pids{$pid} = 1;
    }
    last if $i >= 4 && keys %send_pids == 2;
}
my @receipts;
my $until = time + 10;
while (time < $until && @receipts < $n) {
    (undef, $body) = http(POST => "$base/xhr");
    push @receipts, $body =~ /receipt-id:r(\d+)/g;
}
is("$sent @receipts", "$n " . join(' ', 1 .. $n),
   "$n SENDs taken, their RECEIPTs in order");
my @back;
while (@back < $n) {
    my $m = $d->stomp_message('/user/queue/messages', 5) or last;
    push @back, $m->{content} if $m->{content} =~ /^back/;
}
is("@back", join(' ', map { "back $_" } 1 .. $n),
   'the WebSocket user got them in order');

# a held stream; polls meanwhile are told, whichever worker they reach
my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                              PeerPort => $ENV{TEST_NGINX_SPREAD_PORT},
                              Timeout => 5)
    or die "connect: $!\n";
print $s "POST $base/xhr_streaming HTTP/1.0\r\nHost: localhost\r\n"
         . "Content-Length: 0\r\n\r\n";
my $prelude = '';
while ($prelude !~ /h{2048}\n/) {
    my $n = sysread($s, $prelude, 4096, length $prelude);
    die "no prelude\n" unless $n;
}
my %told;
for (1 .. 12) {
    (undef, $body) = http(POST => "$base/xhr");
    $told{$body}++;
}
is(join('|', keys %told), "c[2010,\"Another connection still open\"]\n",
   'twelve more receivers get c[2010]');

http(POST => "$base/xhr_send", sockjs_msg("DISCONNECT\n\n\0"));
my $rest = '';
while ($rest !~ /c\[/) {
    my $n = sysread($s, $rest, 4096, length $rest);
    last unless $n;
}
like($rest, qr/c\[3000,"Go away!"\]\n/,
     'DISCONNECT: the stream gets c[3000,"Go away!"] and ends');
my %after;
for (1 .. 6) {
    (undef, $body) = http(POST => "$base/xhr");
    $after{$body}++;
}
is(join('|', keys %after), "c[3000,\"Go away!\"]\n",
   'and so do polls on either worker');
sleep 0.5;
my @r = served($sid);
my %polls = map { $_->[0] => 1 } grep { $_->[2] eq 'xhr' } @r;
my %sends = map { $_->[0] => 1 } grep { $_->[2] eq 'xhr_send' } @r;
is(scalar(keys %polls) . ' ' . scalar(keys %sends), '2 2',
   'polls and sends of the session were served by both workers ('
   . scalar(@r) . ' requests)');
--- no_error_log
[error]



=== TEST 3: the session's worker dies: an xhr_send is 404; a receiving request on the other takes the id over and opens a new session (SockJS: the client sees "o" again); an unknown session is 404 on both
--- workers: 2
--- tests: 6
--- http_config
    log_format sjw '$pid $request_method $uri $status';
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my %unknown;
for (1 .. 8) {
    my ($st) = http(POST => '/ws/chat/000/' . sid('nosuch') . '/xhr_send',
                    sockjs_msg("x"));
    $unknown{$st}++;
}
is(join(',', keys %unknown), '404', 'xhr_send to no session: 404 on both');
my $sid = sid('orphan');
my ($st, $body) = http(POST => "/ws/chat/000/$sid/xhr");
is($body, "o\n", 'opened');
sleep 0.3;
my ($owner) = map { $_->[0] } served($sid);
ok($owner && kill('KILL', $owner), "its worker ($owner) killed");
sleep 1;
($st) = http(POST => "/ws/chat/000/$sid/xhr_send", sockjs_msg("\n"));
is($st, 404, 'an xhr_send: 404, the session is gone');
(undef, $body) = http(POST => "/ws/chat/000/$sid/xhr");
is($body, "o\n", 'a poll: the id is taken over, a new session opens');
my %sends;
for (1 .. 6) {
    ($st) = http(POST => "/ws/chat/000/$sid/xhr_send", sockjs_msg("\n"));
    $sends{$st}++;
}
is(join(',', keys %sends), '204', 'and takes frames on either worker');
--- error_log
exited on signal 9
--- no_error_log
[error]



=== TEST 4: a streaming receiver on the worker that does not hold the session: the frames come relayed, in order; the stream ends after 128 KiB and polls get the rest; a client that goes away detaches
--- workers: 2
--- perl_timeout: 90
--- tests: 9
--- http_config
    log_format sjw '$pid $request_method $uri $status';
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('sjw_e', 'direct', 'sjw_f');
my $f = member('sjw_f');
my $base = '/ws/chat/000/' . sid('relayed');
my ($st, $body, $owner) = http(POST => "$base/xhr");
is($body, "o\n", "opened (worker $owner)");
http(POST => "$base/xhr_send",
     sockjs_msg("CONNECT\naccept-version:1.2\nhost:localhost\n"
                . "passcode:" . make_token('sjw_e')
                . "\nheart-beat:0,0\n\n\0"));
http(POST => "$base/xhr_send",
     sockjs_msg("SUBSCRIBE\nid:m\ndestination:/user/queue/messages\n"
                . "receipt:s1\n\n\0"));
my $got = '';
for (1 .. 5) {
    (undef, $body) = http(POST => "$base/xhr");
    $got .= $body;
    last if $got =~ /receipt-id:s1/;
}
like($got, qr/CONNECTED.*RECEIPT\\nreceipt-id:s1/s, 'connected, subscribed');

# a stream on the other worker (the kernel picks: try until one is)
my ($s, $pid, $rest);
for (1 .. 30) {
    ($s, $pid, $rest) = open_stream("$base/xhr_streaming");
    last if $pid != $owner && $rest !~ /c\[/;
    close $s;
    undef $s;
    sleep 0.2;
}
ok($s && $pid != $owner, "a stream held by worker $pid, not $owner");

my $pad = 'y' x 4000;
send_msg($f, $conv, "big $_ $pad") for 1 .. 40;
my $stream = $rest . read_all($s, 10);
my @first = $stream =~ /big (\d+) /g;
ok(@first >= 20 && @first < 40 && length($stream) >= 128 * 1024,
   'the relayed stream ended after 128 KiB (' . length($stream)
   . ' bytes, ' . scalar(@first) . ' messages)');
my @all = @first;
my $until = time + 10;
while (@all < 40 && time < $until) {
    (undef, $body) = http(POST => "$base/xhr");
    push @all, $body =~ /big (\d+) /g;
}
is("@all", join(' ', 1 .. 40), 'polls got the rest: all 40, once, in order');

# a relayed stream whose client goes away: the session takes the next
($s, $pid) = (undef, 0);
for (1 .. 30) {
    ($s, $pid, $rest) = open_stream("$base/xhr_streaming");
    last if $pid != $owner && $rest !~ /c\[/;
    close $s;
    undef $s;
    sleep 0.2;
}
ok($s && $pid != $owner, "another stream held by worker $pid");
close $s;
sleep 0.5;
send_msg($f, $conv, 'after the stream');
(undef, $body) = http(POST => "$base/xhr");
like($body, qr/after the stream/, 'the next poll is the receiver: '
                                  . 'no c[2010]');

# HTTP/1.1 with keep-alive, on the other worker: a relayed poll ends with
# its frame (the last chunk), and the connection takes the next request
my ($ok, $b1, $b2, $p1) = (0, '', '');
for my $i (1 .. 30) {
    send_msg($f, $conv, "kept $i");
    my $k = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $ENV{TEST_NGINX_SPREAD_PORT},
                                  Timeout => 5)
        or die "connect: $!\n";
    ($p1, $b1) = poll11($k, "$base/xhr");
    next if $p1 == $owner;
    send_msg($f, $conv, 'kept again');
    (undef, $b2) = poll11($k, "$base/xhr");
    $ok = 1;
    last;
}
ok($ok && $b1 =~ /kept \d/ && $b2 =~ /kept again/,
   "HTTP/1.1: two relayed polls on one connection to worker $p1, each "
   . 'ended by its frame');
($st) = http(POST => "$base/xhr_send", sockjs_msg("DISCONNECT\n\n\0"));
is($st, 204, 'the session is still there');
--- no_error_log
[error]



=== TEST 5: the worker of a relayed stream dies: the session's worker hears nobody took its next frame and takes the next receiver
--- workers: 2
--- perl_timeout: 60
--- tests: 4
--- http_config
    log_format sjw '$pid $request_method $uri $status';
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('sjw_g', 'direct', 'sjw_h');
my $base = '/ws/chat/000/' . sid('widowed');
my ($st, $body, $owner) = http(POST => "$base/xhr");
is($body, "o\n", "opened (worker $owner)");
http(POST => "$base/xhr_send",
     sockjs_msg("CONNECT\naccept-version:1.2\nhost:localhost\n"
                . "passcode:" . make_token('sjw_g')
                . "\nheart-beat:0,0\n\n\0"));
http(POST => "$base/xhr_send",
     sockjs_msg("SUBSCRIBE\nid:m\ndestination:/user/queue/messages\n"
                . "receipt:s1\n\n\0"));
my $got = '';
for (1 .. 5) {
    (undef, $body) = http(POST => "$base/xhr");
    $got .= $body;
    last if $got =~ /receipt-id:s1/;
}
my ($s, $pid, $rest);
for (1 .. 30) {
    ($s, $pid, $rest) = open_stream("$base/xhr_streaming");
    last if $pid != $owner && $rest !~ /c\[/;
    close $s;
    undef $s;
    sleep 0.2;
}
ok($s && $pid != $owner, "a stream held by worker $pid, not $owner");
kill 'KILL', $pid;
sleep 1;
# (the sender connects now: to a live worker)
my $h = member('sjw_h');
send_msg($h, $conv, 'into the void');
sleep 0.5;
send_msg($h, $conv, 'to the next receiver');
my $until = time + 10;
$got = '';
while ($got !~ /next receiver/ && time < $until) {
    (undef, $body) = http(POST => "$base/xhr");
    $got .= $body;
    last if $body =~ /^c\[/;
}
like($got, qr/to the next receiver/, 'a poll after it gets the next message');
unlike($got, qr/c\[2010/, 'not c[2010]');
--- error_log
exited on signal 9
the worker of its receiving request is gone
--- no_error_log
[error]



=== TEST 6: two nodes sharing Redis: the same relay serves a session whose requests alternate between them
--- second_server
--- tests: 6
--- config
$TEST_NGINX_NODE_CONFIG
--- perl
my $conv = conversation('sjn_a', 'direct', 'sjn_b');
my $b = member('sjn_b');
my $base = '/ws/chat/000/' . sid('twonodes');
my ($one, $two) = (server_port(), server_port2());
my ($st, $body);
{ local $Test::Chat::Sandbox::port = $one; ($st, $body) = http(POST => "$base/xhr"); }
is($body, "o\n", 'opened on node 1');
{
    local $Test::Chat::Sandbox::port = $two;
    ($st) = http(POST => "$base/xhr_send",
                 sockjs_msg("CONNECT\naccept-version:1.2\nhost:localhost\n"
                            . "passcode:" . make_token('sjn_a')
                            . "\nheart-beat:0,0\n\n\0"));
}
is($st, 204, 'CONNECT through node 2');
{ local $Test::Chat::Sandbox::port = $two; (undef, $body) = http(POST => "$base/xhr"); }
like($body, qr/^a\["CONNECTED\\n/, 'CONNECTED polled from node 2');
{
    local $Test::Chat::Sandbox::port = $one;
    http(POST => "$base/xhr_send",
         sockjs_msg("SUBSCRIBE\nid:m\ndestination:/user/queue/messages\n"
                    . "receipt:s1\n\n\0"));
}
{ local $Test::Chat::Sandbox::port = $two; (undef, $body) = http(POST => "$base/xhr"); }
like($body, qr/RECEIPT\\nreceipt-id:s1/, 'SUBSCRIBE on node 1, its RECEIPT '
                                        . 'polled from node 2');
send_msg($b, $conv, 'across nodes');
{ local $Test::Chat::Sandbox::port = $two; (undef, $body) = http(POST => "$base/xhr"); }
like($body, qr/across nodes/, 'a message polled from node 2');
{
    local $Test::Chat::Sandbox::port = $two;
    ($st) = http(POST => "$base/xhr_send", sockjs_msg("DISCONNECT\n\n\0"));
}
is($st, 204, 'DISCONNECT through node 2');
--- no_error_log
[error]
