# 096-bench-mqtt.t: the load generator's MQTT side (bench/cb_mqtt.c,
# --system mosquitto) against a real Mosquitto on loopback, configured as
# make bench configures it (bench/conf/mosquitto.conf.in): every scenario
# runs, every message reaches every subscriber exactly once (QoS 1, the
# PUBACK is the receipt), PINGREQ keeps idle sessions alive, bad options
# are refused, a sweep runs over two processes. No figure is asserted:
# benchmarks never gate CI.

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
my $mosq = $ENV{BENCH_MOSQUITTO_BIN} || '/usr/sbin/mosquitto';

ok(-x $tool, "chat_bench is built ($tool: make bench-tool)")
    or do { diag('no chat_bench'); done_testing(); exit; };
ok(-x $mosq, "mosquitto is installed ($mosq: make deps)")
    or do { diag('no mosquitto'); done_testing(); exit; };

my $dir = tempdir('bench-mqtt-XXXXXX', TMPDIR => 1, CLEANUP => 1);

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or die "no free port: $!";
    return $s->sockport;
}

my $port = free_port();
my $user = $> == 0 ? 'user root' : '';
{
    open(my $in, '<', "$root/bench/conf/mosquitto.conf.in") or die $!;
    open(my $out, '>', "$dir/mosquitto.conf") or die $!;
    while (<$in>) {
        my $mqtt = free_port();
        s/\@PORT\@/$port/g;
        s/\@MQTT_PORT\@/$mqtt/g;
        s/\@DIR\@/$dir/g;
        s/\@USER\@/$user/g;
        print $out $_;
    }
    close($out) or die $!;
}

my $pid = fork() // die "fork: $!";
if ($pid == 0) {
    open(STDOUT, '>', "$dir/server.log");
    open(STDERR, '>&', \*STDOUT);
    exec($mosq, '-c', "$dir/mosquitto.conf") or exit(127);
}

END {
    if ($pid) {
        kill('TERM', $pid);
        waitpid($pid, 0);
    }
}

my $up = 0;
for (1 .. 100) {
    if (IO::Socket::INET->new(PeerAddr => "127.0.0.1:$port")) {
        $up = 1;
        last;
    }
    sleep(0.1);
}
ok($up, 'mosquitto listens (WebSocket)')
    or diag(`cat $dir/server.log $dir/mosquitto.log 2>&1`);

my $n = 0;

# bench(args...): (decoded JSON or undef, exit code, output)
sub bench {
    my @args = @_;
    my $json = "$dir/r" . ++$n . '.json';
    my $cmd = join(' ', "timeout 60 '$tool' --system mosquitto"
                   . " --port $port --rss-pid $pid --max-time 40"
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
    is($j->{system}, 'mosquitto', "$sc: system named");
    is($j->{scenario}, $sc, "$sc: scenario named");
    is($j->{sessions}{ready}, $clients, "$sc: every session ready");
    is($j->{sessions}{failed}, 0, "$sc: no session failed");
    is($j->{sessions}{dropped}, 0, "$sc: no session dropped");
    is($j->{sessions}{error_frames}, 0, "$sc: no refused packet");
}

# direct: pairs on a conversation topic; each PUBLISH reaches both members
# (as the others' direct scenarios deliver the sender's own copy too)
for my $qos (1, 0) {
    my ($j, $rc, $out) = bench('--scenario', 'direct', '--clients', 20,
        '--rate', 100, '--duration', 1.5, '--warmup', 0.5, '--qos', $qos);
    common($j, $rc, $out, 'direct', 20);
    next unless $j;
    my $t = $j->{throughput};
    ok($t->{sent} > 50, "direct qos $qos: PUBLISHes sent in the window");
    is($t->{delivered_of_window}, 2 * $t->{sent},
       "direct qos $qos: every message delivered to both members once");
    ok($j->{latency_ms}{message}{count} >= $t->{sent},
       "direct qos $qos: a latency per delivery to the peer");
    ok($j->{latency_ms}{receipt}{count} >= $t->{sent}
       && $t->{receipts} >= $t->{sent},
       "direct qos $qos: a PUBACK per PUBLISH");
}

# fan-out: groups of 10, every member subscribed to the group's topic
{
    my ($j, $rc, $out) = bench('--scenario', 'fanout', '--clients', 30,
        '--group', 10, '--rate', 50, '--duration', 1.5, '--warmup', 0.5,
        '--window', 100);
    common($j, $rc, $out, 'fanout', 30);
    if ($j) {
        my $t = $j->{throughput};
        ok($t->{sent} > 30, 'fanout: PUBLISHes sent in the window');
        is($t->{delivered_of_window}, 10 * $t->{sent},
           'fanout: every message delivered to each of the 10 once');
        ok($t->{deliveries_per_s} > 0, 'fanout: deliveries per second');
    }
}

# density with a 1 s keep-alive held for 3 s: PINGREQs keep every session
# (Mosquitto closes a session silent for 1.5 keep-alives)
{
    my ($j, $rc, $out) = bench('--scenario', 'density', '--clients', 50,
        '--hold', 3, '--heartbeat', 1000);
    common($j, $rc, $out, 'density', 50);
    ok($j && exists $j->{memory}{bytes_per_session}
       && $j->{memory}{rss_kb} != 0, 'density: the broker\'s memory counted');
}

# storm: no keep-alive
{
    my ($j, $rc, $out) = bench('--scenario', 'storm', '--clients', 50,
        '--heartbeat', 0);
    common($j, $rc, $out, 'storm', 50);
    ok($j && $j->{sessions}{per_s} > 0, 'storm: sessions per second');
}

# --sweep over two processes, as make bench's capacity runs it (its table
# once named the system from a list without mosquitto: a crash)
{
    my ($j, $rc, $out) = bench('--scenario', 'direct', '--clients', 20,
        '--procs', 2, '--sweep', '50,100', '--duration', 1,
        '--warmup', 0.5, '--limit-ms', 20000);
    is($rc, 0, 'sweep: the tool exits 0') or diag($out);
    like($out, qr/^== chat_bench mosquitto direct sweep: 20 clients/m,
         'sweep: the table names the system');
    my @steps = $j ? @{ $j->{steps} // [] } : ();
    is(scalar @steps, 2, 'sweep: two steps in the JSON');
    is(scalar(grep { $_->{carried} && $_->{delivered} >= 0.98 } @steps), 2,
       'sweep: both steps carried, all delivered') or diag($out);
}

# bad options are refused with a message
{
    my (undef, $rc, $out) = bench('--scenario', 'direct', '--proto',
                                  'stomp');
    isnt($rc, 0, 'mosquitto with --proto stomp: refused');
    like($out, qr/MQTT only/, 'mosquitto with --proto stomp: said why');
    ($rc, $out) = (system("'$tool' --system rabbitmq --proto mqtt"
                          . " >$dir/bad.out 2>&1") >> 8,
                   `cat $dir/bad.out`);
    isnt($rc, 0, 'rabbitmq with --proto mqtt: refused');
    like($out, qr/only with --system mosquitto/,
         'rabbitmq with --proto mqtt: said why');
    (undef, $rc, $out) = bench('--scenario', 'direct', '--qos', 2);
    isnt($rc, 0, '--qos 2: refused');
}

ok(kill(0, $pid), 'mosquitto is still running');

done_testing();
