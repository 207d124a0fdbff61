# 095-bench-smoke.t: the load generator (bench/chat_bench) still builds
# and runs: a few seconds of each ngx_chat scenario, its JSON checked for
# structure and sanity, also with --procs (several load-generator
# processes whose figures are merged). No figure is asserted: benchmarks
# never gate CI.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

# the blocks' location blocks: $TEST_NGINX_CHAT_CONFIG
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();

my $tool = $ENV{CHAT_BENCH_BIN}
           || "$Test::Chat::ROOT/build/bin/chat_bench";

# make test builds everything but perhaps not the bench tool: build it
# here, next to the test's servroot, from the same sources
if (!-x $tool) {
    my $dir = servroot();
    system('mkdir', '-p', $dir);
    $tool = "$dir/chat_bench";
    my $root = $Test::Chat::ROOT;
    system("cc -O2 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE"
           . " -o '$tool' $root/bench/chat_bench.c $root/bench/cb_*.c"
           . " \$(pkg-config --cflags --libs openssl)"
           . " >'$dir/chat_bench.build.log' 2>&1") == 0
        or $tool = undef;
}

$ENV{TEST_NGINX_BENCH_TOOL} = $tool // '';

# bench/floor (the fan-out deliveries with no protocol), the same way
my $floor = "$Test::Chat::ROOT/build/bin/floor";

if (!-x $floor) {
    my $dir = servroot();
    system('mkdir', '-p', $dir);
    $floor = "$dir/floor";
    system("cc -O2 -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE"
           . " -o '$floor' $Test::Chat::ROOT/bench/floor.c"
           . " >'$dir/floor.build.log' 2>&1") == 0
        or $floor = undef;
}

$ENV{TEST_NGINX_FLOOR_BIN} = $floor // '';

plan_from_blocks();
run_tests();


# runs the tool with the block's arguments; returns the decoded JSON
sub bench_run {
    my ($name, @args) = @_;
    my $dir = servroot();
    my $json = "$dir/$name.json";

    unlink $json;
    die "chat_bench was not built (see $dir/chat_bench.build.log)\n"
        unless $ENV{TEST_NGINX_BENCH_TOOL};

    my $rc = system("timeout 60 '$ENV{TEST_NGINX_BENCH_TOOL}'"
                    . " --port " . server_port()
                    . " --secret '" . jwt_secret() . "'"
                    . " --max-time 40 --json '$json' "
                    . join(' ', map { "'$_'" } @args)
                    . " >'$dir/$name.out' 2>&1");

    open(my $fh, '<', $json) or return (undef, $rc);
    local $/;
    return (json_decode(<$fh>), $rc);
}


# --sweep: the JSON's steps, each with its figures and verdict
sub check_sweep {
    my ($j, $what, $clients, $steps) = @_;

    ok($j && $j->{sweep}, "$what: a sweep's JSON");
    return unless $j && $j->{sweep};
    is($j->{sessions}{ready}, $clients, "$what: every session ready");
    is(scalar @{$j->{steps}}, $steps, "$what: $steps step(s) ran");
    for my $s (@{$j->{steps}}) {
        ok($s->{sent} > 0 && $s->{measured_s} > 0
           && defined $s->{message}{p99} && defined $s->{receipt}{p99}
           && defined $s->{cpu}{self} && defined $s->{carried},
           "$what: step at $s->{rate} msg/s has its figures");
    }
}


sub check_common {
    my ($j, $scenario, $clients) = @_;

    ok($j, "$scenario: the JSON file parses");
    return unless $j;
    is($j->{scenario}, $scenario, "$scenario: scenario named");
    is($j->{system}, 'ngx_chat', "$scenario: system named");
    is($j->{sessions}{ready}, $clients, "$scenario: every session ready");
    is($j->{sessions}{failed}, 0, "$scenario: no session failed");
    for my $h (qw(message receipt setup)) {
        my $l = $j->{latency_ms}{$h};
        ok($l && defined $l->{p50} && defined $l->{p99}
           && defined $l->{p999} && defined $l->{max}
           && $l->{p50} <= $l->{p99} && $l->{p99} <= $l->{max},
           "$scenario: $h latency has ordered quantiles");
    }
}

__DATA__

=== TEST 1: direct: pairs send, MESSAGE and RECEIPT latencies are recorded
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my ($j, $rc) = main::bench_run('direct', '--scenario', 'direct',
    '--clients', 20, '--rate', 100, '--duration', 2, '--warmup', 0.5,
    '--sources', 2);
is($rc, 0, 'the tool exits 0');
main::check_common($j, 'direct', 20);
ok($j->{throughput}{sent} > 0, 'messages were sent in the window');
ok($j->{latency_ms}{message}{count} > 0, 'MESSAGE latencies recorded');
ok($j->{latency_ms}{receipt}{count} > 0, 'RECEIPT latencies recorded');
ok($j->{throughput}{deliveries_per_s} > 0, 'deliveries counted');
--- tests: 13
--- no_error_log
[alert]



=== TEST 2: fan-out, storm and density run and report their figures
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my ($j, $rc) = main::bench_run('fanout', '--scenario', 'fanout',
    '--clients', 30, '--group', 10, '--rate', 50, '--duration', 1.5,
    '--warmup', 0.5);
is($rc, 0, 'fanout: the tool exits 0');
main::check_common($j, 'fanout', 30);
ok($j->{throughput}{deliveries_per_s} > 0, 'fanout: deliveries counted');

($j, $rc) = main::bench_run('storm', '--scenario', 'storm',
    '--clients', 50, '--heartbeat', 0);
is($rc, 0, 'storm: the tool exits 0');
main::check_common($j, 'storm', 50);
ok($j->{sessions}{per_s} > 0, 'storm: sessions per second');

($j, $rc) = main::bench_run('density', '--scenario', 'density',
    '--clients', 50, '--hold', 0.5,
    '--rss-master', Test::Chat::nginx_pid(1));
is($rc, 0, 'density: the tool exits 0');
main::check_common($j, 'density', 50);
ok(exists $j->{memory}{bytes_per_session}
   && exists $j->{memory}{rss_kb} && exists $j->{memory}{sock_pages},
   'density: memory figures present');
--- tests: 30
--- no_error_log
[alert]



=== TEST 3: --procs: several processes over slices of the users, one report
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
# pairs split over processes (42 users, 4 processes: two slices end in
# the middle of a pair), so MESSAGEs cross from one process to another
my ($j, $rc) = main::bench_run('direct-procs', '--scenario', 'direct',
    '--clients', 42, '--rate', 100, '--duration', 1.5, '--warmup', 0.5,
    '--procs', 4, '--sources', 2);
is($rc, 0, 'direct --procs 4: the tool exits 0');
main::check_common($j, 'direct', 42);
is($j->{params}{procs}, 4, 'direct: the JSON names the processes');
ok($j->{throughput}{sent} > 0, 'direct: messages were sent in the window');
ok($j->{latency_ms}{message}{count} > 0, 'direct: MESSAGE latencies merged');
ok($j->{latency_ms}{receipt}{count} > 0, 'direct: RECEIPT latencies merged');
ok($j->{latency_ms}{setup}{count} == 42, 'direct: one setup per session');
ok($j->{cpu}{self} >= 0, 'direct: the load generators\' CPU present');

($j, $rc) = main::bench_run('density-procs', '--scenario', 'density',
    '--clients', 60, '--hold', 0.5, '--procs', 3,
    '--rss-master', Test::Chat::nginx_pid(1));
is($rc, 0, 'density --procs 3: the tool exits 0');
main::check_common($j, 'density', 60);
is($j->{params}{procs}, 3, 'density: the JSON names the processes');
ok(exists $j->{memory}{bytes_per_session}
   && $j->{memory}{sessions} == 60,
   'density: memory figures present, over every process\'s sessions');
open(my $fh, '<', main::servroot() . '/density-procs.out');
my $out = do { local $/; <$fh> } // '';
like($out, qr/60 ready, 0 failed/, 'density: one table, sessions summed');
--- tests: 27
--- no_error_log
[alert]



=== TEST 4: --sweep: steps over the same sessions, stops at the first not carried
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
# a limit no step can miss on loopback: every rate carried, the capacity
# is the last one and only a lower bound; the messages of every step are
# all delivered (a step's clientMsgIds are new, not retries of the last)
my ($j, $rc) = main::bench_run('sweep-all', '--scenario', 'direct',
    '--clients', 20, '--sweep', '20,40,60', '--duration', 2,
    '--warmup', 0.3, '--limit-ms', 20000, '--sources', 2);
is($rc, 0, 'sweep: the tool exits 0');
main::check_sweep($j, 'sweep', 20, 3);
is(scalar(grep { $_->{carried} && $_->{delivered} >= 0.98 }
          @{$j->{steps} // []}), 3, 'sweep: every step carried, all delivered');
is($j->{capacity}{rate}, 60, 'sweep: the capacity is the last rate');
ok($j->{capacity}{at_least}, 'sweep: ... and marked as a lower bound');
ok(!$j->{failed}, 'sweep: no rate failed');

# a limit no step can meet: the first step fails, the sweep stops there
($j, $rc) = main::bench_run('sweep-none', '--scenario', 'fanout',
    '--clients', 30, '--group', 10, '--sweep', '10,20,30', '--duration', 1,
    '--warmup', 0.3, '--limit-ms', 0.001, '--procs', 2);
is($rc, 0, 'sweep --procs 2: the tool exits 0');
main::check_sweep($j, 'sweep --procs 2', 30, 1);
ok($j && !defined $j->{capacity}, 'sweep --procs 2: no capacity');
is($j && $j->{failed} && $j->{failed}{rate}, 10,
   'sweep --procs 2: the first rate failed');
like($j && $j->{failed} && $j->{failed}{why}, qr/p99|deliveries/,
     'sweep --procs 2: ... on its p99 (or a late delivery)');

# over two processes, with every step carried (the parent starts the
# second step a little ahead: the children wait for it, then send)
($j, $rc) = main::bench_run('sweep-procs', '--scenario', 'fanout',
    '--clients', 30, '--group', 10, '--sweep', '100,200', '--duration', 2,
    '--warmup', 0.3, '--limit-ms', 20000, '--procs', 2);
is($rc, 0, 'sweep --procs 2, all carried: the tool exits 0');
main::check_sweep($j, 'sweep --procs 2, all carried', 30, 2);
is(scalar(grep { $_->{carried} && $_->{delivered} >= 0.98 }
          @{$j->{steps} // []}), 2,
   'sweep --procs 2: both steps carried, all delivered');
--- tests: 26
--- no_error_log
[alert]



=== TEST 5: bench/floor: frames to N sockets in groups, deliveries counted
--- config
--- tests: 5
--- perl
die "floor was not built (see the servroot's floor.build.log)\n"
    unless $ENV{TEST_NGINX_FLOOR_BIN};
my $dir = main::servroot();
system('mkdir', '-p', $dir);
my $json = "$dir/floor.json";
unlink $json;
my $rc = system("timeout 60 '$ENV{TEST_NGINX_FLOOR_BIN}' --clients 40"
                . " --group 10 --duration 1 --warmup 0.3 --sources 2"
                . " --label g10 --json '$json' >'$dir/floor.out' 2>&1");
is($rc, 0, 'floor exits 0');
open(my $fh, '<', $json);
my $j = json_decode(do { local $/; <$fh> } // 'null');
ok($j && $j->{tool} eq 'floor' && $j->{params}{group} == 10,
   'floor: its JSON names the tool and the group');
ok($j && $j->{throughput}{deliveries_per_s} > 0,
   'floor: deliveries received');
# what was received was written (the receivers lag by what is in flight)
ok($j && $j->{throughput}{deliveries_per_s}
         <= $j->{throughput}{written_per_s} * 1.1 + 1000,
   'floor: no more received than written');
ok($j && defined $j->{cpu}{senders} && defined $j->{cpu}{receivers},
   'floor: CPU of senders and receivers');
