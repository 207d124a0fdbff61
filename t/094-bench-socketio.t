# 094-bench-socketio.t: the load generator's Socket.IO side (bench/cb_sio.c,
# --system socketio) against the bench's Socket.IO server
# (bench/socketio/server.mjs: node's cluster, two workers, the Redis
# adapter) and a real Redis on loopback: every scenario runs, every
# message reaches every room member exactly once across the workers, the
# emit's ack is the receipt, Engine.IO's pings are answered, bad options
# are refused. No figure is asserted: benchmarks never gate CI.

use strict;
use warnings;
use Test::More;
use IO::Socket::INET;
use JSON::PP;
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep);
use Cwd qw(abs_path);

my $root = abs_path('.');
my $tool = $ENV{CHAT_BENCH_BIN} || "$root/build/bin/chat_bench";
my $sio = "$root/bench/socketio";

ok(-x $tool, "chat_bench is built ($tool: make bench-tool)")
    or do { diag('no chat_bench'); done_testing(); exit; };
ok(-d "$sio/node_modules/socket.io"
   && -d "$sio/node_modules/\@socket.io/redis-adapter",
   'Socket.IO and its Redis adapter are installed (make deps)')
    or do { diag('no bench/socketio/node_modules'); done_testing(); exit; };

my $dir = tempdir('bench-sio-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "no free port: $!";
    return $s->sockport;
}

sub wait_port {
    my ($port) = @_;
    for (1 .. 300) {
        return 1 if IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port");
        sleep(0.1);
    }
    return 0;
}

sub spawn {
    my ($log, @cmd) = @_;
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        open(STDOUT, '>', $log);
        open(STDERR, '>&', \*STDOUT);
        exec(@cmd) or exit(127);
    }
    return $pid;
}

my $rport = free_port();
my $port = free_port();
my @pids;

END {
    for my $p (reverse @pids) {
        kill('TERM', $p);
        waitpid($p, 0);
    }
}

push @pids, spawn("$dir/redis.log", 'redis-server', '--port', $rport,
                  '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
                  '--dir', $dir);
ok(wait_port($rport), 'Redis listens');

# two workers: a room's members are spread over both, the adapter relays;
# Engine.IO pings every 500 ms, a session that does not answer within
# 500 ms is closed (counted as dropped)
$ENV{SIO_WORKERS} = 2;
$ENV{SIO_PING_MS} = 500;
chdir($sio) or die "$sio: $!";
my $pid = spawn("$dir/server.log", 'node', 'server.mjs', $port, $rport);
chdir($root) or die "$root: $!";
push @pids, $pid;
ok(wait_port($port), 'the Socket.IO server listens')
    or diag(`cat $dir/server.log 2>&1`);
sleep(1);                       # the second worker too

my $n = 0;

# bench(args...): (decoded JSON or undef, exit code, output)
sub bench {
    my @args = @_;
    my $json = "$dir/r" . ++$n . '.json';
    my $cmd = join(' ', "timeout 60 '$tool' --system socketio"
                   . " --port $port --rss-master $pid --max-time 40"
                   . " --sources 2 --json '$json'", map { "'$_'" } @args);
    my $out = `$cmd 2>&1`;
    my $rc = $? >> 8;
    my $j;
    if (open(my $fh, '<', $json)) {
        local $/;
        $j = eval { decode_json(<$fh>) };
    }
    return ($j, $rc, $out);
}

sub common {
    my ($j, $rc, $out, $sc, $clients) = @_;
    is($rc, 0, "$sc: the tool exits 0") or diag($out);
    ok($j, "$sc: the JSON parses") or return;
    is($j->{system}, 'socketio', "$sc: system named");
    is($j->{scenario}, $sc, "$sc: scenario named");
    is($j->{sessions}{ready}, $clients, "$sc: every session ready");
    is($j->{sessions}{failed}, 0, "$sc: no session failed");
    is($j->{sessions}{dropped}, 0, "$sc: no session dropped");
    is($j->{sessions}{error_frames}, 0, "$sc: no unexpected packet");
}

{
    my ($j, $rc, $out) = bench('--scenario', 'direct', '--clients', 40,
        '--rate', 100, '--duration', 1.5, '--warmup', 0.5);
    common($j, $rc, $out, 'direct', 40);
    if ($j) {
        my $t = $j->{throughput};
        ok($t->{sent} > 50, 'direct: sends in the window');
        is($t->{delivered_of_window}, 2 * $t->{sent},
           'direct: every message delivered to both members once');
        ok($j->{latency_ms}{message}{count} >= $t->{sent},
           'direct: a latency per delivery to the peer');
        ok($j->{latency_ms}{receipt}{count} >= $t->{sent}
           && $t->{receipts} >= $t->{sent}, 'direct: an ack per send');
    }
}

{
    my ($j, $rc, $out) = bench('--scenario', 'fanout', '--clients', 30,
        '--group', 10, '--rate', 50, '--duration', 1.5, '--warmup', 0.5,
        '--window', 100);
    common($j, $rc, $out, 'fanout', 30);
    if ($j) {
        my $t = $j->{throughput};
        ok($t->{sent} > 30, 'fanout: sends in the window');
        is($t->{delivered_of_window}, 10 * $t->{sent},
           'fanout: every message delivered to each of the 10 once');
    }
}

{
    # held for 3 s: six pings, each answered, or the session is dropped
    my ($j, $rc, $out) = bench('--scenario', 'density', '--clients', 50,
        '--hold', 3);
    common($j, $rc, $out, 'density', 50);
    ok($j && exists $j->{memory}{bytes_per_session},
       'density: memory figures present');

    ($j, $rc, $out) = bench('--scenario', 'storm', '--clients', 50,
        '--heartbeat', 0);
    common($j, $rc, $out, 'storm', 50);
}

{
    my (undef, $rc, $out) = bench('--scenario', 'direct', '--proto',
                                  'mqtt');
    isnt($rc, 0, 'socketio with --proto mqtt: refused');
    like($out, qr/Socket\.IO only/, 'socketio with --proto mqtt: said why');
}

# --sweep over two processes, as make bench's capacity runs it
{
    my ($j, $rc, $out) = bench('--scenario', 'direct', '--clients', 20,
        '--procs', 2, '--sweep', '50,100', '--duration', 1,
        '--warmup', 0.5, '--limit-ms', 20000);
    is($rc, 0, 'sweep: the tool exits 0') or diag($out);
    like($out, qr/^== chat_bench socketio direct sweep: 20 clients/m,
         'sweep: the table names the system');
    my @steps = $j ? @{ $j->{steps} // [] } : ();
    is(scalar @steps, 2, 'sweep: two steps in the JSON');
    is(scalar(grep { $_->{carried} && $_->{delivered} >= 0.98 } @steps), 2,
       'sweep: both steps carried, all delivered') or diag($out);
}

ok(kill(0, $pid), 'the Socket.IO server is still running');

done_testing();
