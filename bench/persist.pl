#!/usr/bin/perl
# persist.pl: the persist scenario: chat-persist's sustained rows/s from
# Kafka into PostgreSQL and its lag, on a Kafka broker of its own.
#
# usage: perl bench/persist.pl --bin DIR --dir WORKDIR --dsn DSN
#            --count N [--convs C] [--json FILE] [--workers W]
#            [--persist-opt OPT]...
#
# 1. starts chat-kafka-broker and chat-persist (its own consumer group;
#    --workers W: W processes in that group, each with its partitions;
#    --persist-opt adds an option to each);
# 2. warms up: one message, waits until it is a row (the group is joined);
# 3. produces N messages as fast as chat-kafka-produce can (keyed by
#    conversation, C conversations) while chat-persist writes them;
# 4. polls the row count every 50 ms until all N are in PostgreSQL.
# rows/s = N / (last row - first produce); lag = last row - last produce
# (how far behind the worker was when the input stopped).
# CPU per row: the CPU time (user + system) chat-persist, its PostgreSQL
# backend(s), the producer and the broker used over the measure, per row;
# it moves much less than rows/s when the machine is shared.
#
# The count costs PostgreSQL little, on the same two cores as the worker:
# one psql session for the whole run (not one process and connection per
# poll), and each poll counts only the rows above the highest seq it saw
# per conversation (an index range scan of the new rows, not a scan of the
# table). A row that would come in below that mark is not counted, so the
# figure can only lag behind the table, never run ahead of it; when it
# stalls, and at the end, an exact count(*) decides.

use strict;
use warnings;
use Getopt::Long;
use IPC::Open2;
use POSIX qw(strftime :sys_wait_h);
use Time::HiRes qw(time sleep);

my %o = (convs => 100, json => '', timeout => 120, workers => 1,
         'persist-opt' => []);
GetOptions(\%o, 'bin=s', 'dir=s', 'dsn=s', 'count=i', 'convs=i', 'json=s',
           'timeout=i', 'workers=i', 'persist-opt=s@') or die "bad options\n";
$o{workers} >= 1 or die "--workers must be at least 1\n";
defined $o{$_} or die "--$_ is needed\n" for qw(bin dir dsn count);

my @kill;
my $dir = $o{dir};
system('rm', '-rf', $dir);
system('mkdir', '-p', $dir) == 0 or die "$dir: cannot create\n";

END {
    for my $p (reverse @kill) {
        kill 'TERM', $p;
        for (1 .. 50) { last if waitpid($p, WNOHANG); sleep 0.1 }
        kill 'KILL', $p;
        waitpid($p, 0);
    }
}

sub spawn {
    my ($log, @cmd) = @_;
    my $pid = fork() // die "fork: $!\n";
    if ($pid == 0) {
        open(STDOUT, '>', $log) or die;
        open(STDERR, '>&', \*STDOUT) or die;
        exec(@cmd) or die "exec $cmd[0]: $!\n";
    }
    push @kill, $pid;
    return $pid;
}

# one psql session; sql() sends a query and reads its one-line answer
my ($psql_out, $psql_in);
my $psql = open2($psql_out, $psql_in, 'psql', $o{dsn}, '-XAtq',
                 '-v', 'ON_ERROR_STOP=1')
    // die "psql: $!\n";
push @kill, $psql;

sub sql {
    my ($q) = @_;
    print $psql_in "$q;\n";
    $psql_in->flush();
    my $line = <$psql_out>;
    die "psql ended (PostgreSQL error?) on: $q\n" unless defined $line;
    chomp $line;
    return $line;
}

# the exact number of rows of the conversations of a prefix
sub rows {
    my ($prefix) = @_;
    my $n = sql("select count(*) from messages"
                . " where conversation_id like '$prefix%'");
    return $n =~ /^\d+$/ ? $n : -1;
}

# rows counted so far, per conversation: above $mark[c] nothing is counted
my (@mark, @counted);

sub rows_new {
    my ($prefix) = @_;
    my $convs = join(',', map { qq("$prefix$_") } 0 .. $o{convs} - 1);
    my $marks = join(',', map { $mark[$_] // 0 } 0 .. $o{convs} - 1);
    my $r = sql("select string_agg(x.n || ':' || coalesce(x.hi, c.b),"
                . " ',' order by c.i)"
                . " from unnest('{$convs}'::text[], '{$marks}'::bigint[])"
                . " with ordinality c (id, b, i)"
                . " cross join lateral (select count(*) n, max(m.seq) hi"
                . " from messages m where m.conversation_id = c.id"
                . " and m.seq > c.b) x");
    my @v = split /,/, $r;
    @v == $o{convs} or die "unexpected answer: $r\n";
    my $n = 0;
    for my $c (0 .. $#v) {
        my ($k, $hi) = split /:/, $v[$c];
        $counted[$c] = ($counted[$c] // 0) + $k;
        $mark[$c] = $hi;
        $n += $counted[$c];
    }
    return $n;
}

# CPU seconds (user + system, all threads) a process used so far; under
# load the rates move with the machine, the CPU per row much less
sub cpu_of {
    my ($pid) = @_;
    open(my $fh, '<', "/proc/$pid/stat") or return undef;
    my $st = <$fh>;
    close($fh);
    $st =~ s/^.*\) // or return undef;
    my @f = split / /, $st;
    return ($f[11] + $f[12]) / POSIX::sysconf(POSIX::_SC_CLK_TCK());
}

# the PostgreSQL backends of chat-persist (its application_name)
sub pg_cpu {
    my $pids = sql("select coalesce(string_agg(pid::text, ','), '')"
                   . " from pg_stat_activity"
                   . " where application_name = 'chat-persist'");
    my $t = 0;
    for my $p (split /,/, $pids) {
        $t += cpu_of($p) // 0;
    }
    return $t;
}

sub gen {
    my ($file, $prefix, $from, $to) = @_;
    open(my $fh, '>', $file) or die "$file: $!\n";
    my $t = time;
    my $ts = strftime('%Y-%m-%dT%H:%M:%S', gmtime $t)
             . sprintf('.%03dZ', ($t - int $t) * 1000);
    my $base = 7100000000000000000 + int(rand(1000000)) * 1000000000;
    for my $i ($from .. $to - 1) {
        my $c = $i % $o{convs};
        my $seq = int($i / $o{convs}) + 1;
        my $id = $base + $i;
        print $fh qq({"type":"message","messageId":"$id",),
                  qq("conversationId":"$prefix$c","seq":$seq,),
                  qq("senderId":"bench$c","content":"bench message $i ),
                  qq(with a little text to look like a chat line",),
                  qq("clientMsgId":"k$i","metadata":{},"createdAt":"$ts"}\n);
    }
    close($fh) or die "$file: $!\n";
}

my $bs = "$dir/bootstrap";
my $broker = spawn("$dir/broker.log", "$o{bin}/chat-kafka-broker",
      "--bootstrap-file=$bs", "--pid-file=$dir/broker.pid",
      '--log-level=warn');
for (1 .. 100) { last if -s $bs; sleep 0.1 }
-s $bs or die "the Kafka broker did not start (see $dir/broker.log)\n";

my $prefix = sprintf("bp%xm", int(rand(0xffffff)));
# fetch.wait.max.ms: the in-memory test broker holds an empty fetch for
# the whole wait (librdkafka's default 500 ms) even once records arrive,
# where a real Kafka broker answers as soon as there is data
my @persist;
for my $w (1 .. $o{workers}) {
    push @persist, spawn("$dir/persist" . ($w > 1 ? $w : '') . ".log",
          "$o{bin}/chat-persist",
          "--bootstrap-file=$bs", "--database=$o{dsn}",
          "--group-id=bench-$prefix", '--stats-interval=0',
          '--log-level=' . ($o{workers} > 1 ? 'info' : 'warn'),
          '--kafka.auto.offset.reset=earliest', '--session-timeout=6000',
          '--kafka.fetch.wait.max.ms=50', @{$o{'persist-opt'}});
}
my $persist = $persist[0];

# several workers: each has its partitions (the group's rebalances are
# over) before the measure
sub all_assigned {
    for my $w (1 .. $o{workers}) {
        my $log = "$dir/persist" . ($w > 1 ? $w : '') . ".log";
        open(my $fh, '<', $log) or return 0;
        my $last = '';
        while (<$fh>) {
            $last = $1 if /(assigned [1-9]\d* partition|revoked)/;
        }
        close($fh);
        return 0 unless $last =~ /^assigned/;
    }
    return 1;
}
if ($o{workers} > 1) {
    my $until = time + 30;
    until (all_assigned()) {
        die "chat-persist: not all $o{workers} workers have partitions"
            . " after 30 s (see $dir/persist*.log)\n" if time > $until;
        sleep 0.2;
    }
    sleep 1;
    all_assigned() or die "chat-persist: the group is still rebalancing\n";
}

# warm-up: the consumer group is joined once a first row arrives
gen("$dir/warm.json", "w${prefix}", 0, 1);
system("'$o{bin}/chat-kafka-produce' --bootstrap-file='$bs' "
       . "< '$dir/warm.json' > /dev/null 2>> '$dir/produce.log'") == 0
    or die "chat-kafka-produce failed (see $dir/produce.log)\n";
my $until = time + 30;
while (rows("w${prefix}") < 1) {
    die "chat-persist wrote no warm-up row in 30 s (see $dir/persist.log)\n"
        if time > $until;
    sleep 0.1;
}

gen("$dir/msgs.json", $prefix, 0, $o{count});

sub workers_cpu {
    my $t = 0;
    $t += cpu_of($_) // 0 for @persist;
    return $t;
}
my ($cpu_w0, $cpu_pg0, $cpu_b0) = (workers_cpu(), pg_cpu(),
                                   cpu_of($broker) // 0);
my @cpu_c0 = (POSIX::times())[3, 4];
my $t0 = time;
my $producer = fork() // die "fork: $!\n";
if ($producer == 0) {
    exec("'$o{bin}/chat-kafka-produce' --bootstrap-file='$bs' "
         . "< '$dir/msgs.json' > '$dir/produce.out' 2>> '$dir/produce.log'");
    exit 127;
}

my ($tp, $tdone, $n, @samples);
my ($last_n, $still) = (-1, time);
$until = $t0 + $o{timeout};
for (;;) {
    if (!defined $tp && waitpid($producer, WNOHANG) == $producer) {
        $tp = time;
        die "chat-kafka-produce failed (see $dir/produce.log)\n" if $?;
    }
    $n = rows_new($prefix);
    if ($n != $last_n) {
        ($last_n, $still) = ($n, time);
    } elsif (defined $tp && time - $still > 1) {
        # stalled below N (or a count would be above it): the exact count
        $n = rows($prefix);
        $still = time;
    }
    push @samples, [time - $t0, $n];
    if ($n >= $o{count} && defined $tp) {
        $tdone = time;
        last;
    }
    last if time > $until;
    sleep 0.05;
}

my ($cpu_w, $cpu_pg) = (workers_cpu() - $cpu_w0,
                        pg_cpu() - $cpu_pg0);
my $cpu_b = (cpu_of($broker) // 0) - $cpu_b0;
# the producer: the children reaped since (it alone)
my @cpu_c = (POSIX::times())[3, 4];
my $cpu_p = ($cpu_c[0] + $cpu_c[1] - $cpu_c0[0] - $cpu_c0[1])
            / POSIX::sysconf(POSIX::_SC_CLK_TCK());

# every row once: the exact count, after the measure
my $exact = rows($prefix);
warn "persist: $exact rows in PostgreSQL for $o{count} messages\n"
    if $exact != $o{count};
$n = $exact;

my $produced = `cat '$dir/produce.out' 2>/dev/null` // '';
my $ok = defined $tdone && $exact == $o{count};
$tdone //= time;
$tp //= $tdone;

my $secs = $tdone - $t0;
my $rate = $secs > 0 ? $n / $secs : 0;
my $lag = $tdone - $tp;
my $in_rate = $tp > $t0 ? $o{count} / ($tp - $t0) : 0;

# the steadiest second: the best rows/s over any 1 s of samples
my $best = 0;
for my $i (0 .. $#samples) {
    for my $j ($i + 1 .. $#samples) {
        my $dt = $samples[$j][0] - $samples[$i][0];
        next if $dt < 1;
        my $r = ($samples[$j][1] - $samples[$i][1]) / $dt;
        $best = $r if $r > $best;
        last;
    }
}

printf "== persist: chat-persist%s, %d messages over %d conversations ==\n",
       $o{workers} > 1 ? " ($o{workers} workers)" : '', $o{count}, $o{convs};
printf "  %-22s %.0f msg/s into Kafka (%s)\n", 'produced', $in_rate,
       $produced =~ /(delivered \d+ failed \d+)/ ? $1 : '?';
printf "  %-22s %d of %d rows in %.2f s: %.0f rows/s (best 1 s: %.0f)%s\n",
       'persisted', $n, $o{count}, $secs, $rate, $best,
       $ok ? '' : ' TIMED OUT';
printf "  %-22s %.2f s after the last message was produced\n", 'lag', $lag;
printf "  %-22s chat-persist %.1f us, its PostgreSQL backend(s) %.1f us;"
       . " producer %.1f us, broker %.1f us (load %s)\n", 'CPU per row',
       $cpu_w * 1e6 / ($n || 1), $cpu_pg * 1e6 / ($n || 1),
       $cpu_p * 1e6 / ($n || 1), $cpu_b * 1e6 / ($n || 1),
       (split / /, `cat /proc/loadavg`)[0];

if ($o{json}) {
    open(my $fh, '>', $o{json}) or die "$o{json}: $!\n";
    printf $fh <<'EOF', $ok ? 'true' : 'false', $o{count}, $o{convs},
{
  "tool": "persist.pl",
  "system": "ngx_chat",
  "scenario": "persist",
  "label": "",
  "complete": %s,
  "params": {"count": %d, "convs": %d, "workers": %d},
  "sessions": {"ready": %d},
  "throughput": {"measured_s": %.3f, "msg_per_s": %.1f,
                 "best_1s_per_s": %.1f, "produced_per_s": %.1f,
                 "deliveries_per_s": 0},
  "lag_s": %.3f,
  "cpu_us_per_row": {"worker": %.1f, "postgres": %.1f, "producer": %.1f,
                     "broker": %.1f},
  "latency_ms": {}
}
EOF
        $o{workers}, $n, $secs, $rate, $best, $in_rate, $lag,
        $cpu_w * 1e6 / ($n || 1),
        $cpu_pg * 1e6 / ($n || 1), $cpu_p * 1e6 / ($n || 1),
        $cpu_b * 1e6 / ($n || 1);
    close($fh) or die "$o{json}: $!\n";
}

exit($ok ? 0 : 1);
