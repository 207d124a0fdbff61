#!/usr/bin/perl
# persist.pl: the persist scenario: chat-persist's sustained rows/s from
# Kafka into PostgreSQL and its lag, on a Kafka broker of its own.
#
# usage: perl bench/persist.pl --bin DIR --dir WORKDIR --dsn DSN
#            --count N [--convs C] [--json FILE]
#
# 1. starts chat-kafka-broker and chat-persist (its own consumer group);
# 2. warms up: one message, waits until it is a row (the group is joined);
# 3. produces N messages as fast as chat-kafka-produce can (keyed by
#    conversation, C conversations) while chat-persist writes them;
# 4. polls the row count every 50 ms until all N are in PostgreSQL.
# rows/s = N / (last row - first produce); lag = last row - last produce
# (how far behind the worker was when the input stopped).
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

my %o = (convs => 100, json => '', timeout => 120);
GetOptions(\%o, 'bin=s', 'dir=s', 'dsn=s', 'count=i', 'convs=i', 'json=s',
           'timeout=i') or die "bad options\n";
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
spawn("$dir/broker.log", "$o{bin}/chat-kafka-broker", "--bootstrap-file=$bs",
      "--pid-file=$dir/broker.pid", '--log-level=warn');
for (1 .. 100) { last if -s $bs; sleep 0.1 }
-s $bs or die "the Kafka broker did not start (see $dir/broker.log)\n";

my $prefix = sprintf("bp%xm", int(rand(0xffffff)));
# fetch.wait.max.ms: the in-memory test broker holds an empty fetch for
# the whole wait (librdkafka's default 500 ms) even once records arrive,
# where a real Kafka broker answers as soon as there is data
my $persist = spawn("$dir/persist.log", "$o{bin}/chat-persist",
      "--bootstrap-file=$bs", "--database=$o{dsn}",
      "--group-id=bench-$prefix", '--stats-interval=0', '--log-level=warn',
      '--kafka.auto.offset.reset=earliest', '--session-timeout=6000',
      '--kafka.fetch.wait.max.ms=50');

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

printf "== persist: chat-persist, %d messages over %d conversations ==\n",
       $o{count}, $o{convs};
printf "  %-22s %.0f msg/s into Kafka (%s)\n", 'produced', $in_rate,
       $produced =~ /(delivered \d+ failed \d+)/ ? $1 : '?';
printf "  %-22s %d of %d rows in %.2f s: %.0f rows/s (best 1 s: %.0f)%s\n",
       'persisted', $n, $o{count}, $secs, $rate, $best,
       $ok ? '' : ' TIMED OUT';
printf "  %-22s %.2f s after the last message was produced\n", 'lag', $lag;

if ($o{json}) {
    open(my $fh, '>', $o{json}) or die "$o{json}: $!\n";
    printf $fh <<'EOF', $ok ? 'true' : 'false', $o{count}, $o{convs}, $n,
{
  "tool": "persist.pl",
  "system": "ngx_chat",
  "scenario": "persist",
  "label": "",
  "complete": %s,
  "params": {"count": %d, "convs": %d},
  "sessions": {"ready": %d},
  "throughput": {"measured_s": %.3f, "msg_per_s": %.1f,
                 "best_1s_per_s": %.1f, "produced_per_s": %.1f,
                 "deliveries_per_s": 0},
  "lag_s": %.3f,
  "latency_ms": {}
}
EOF
        $secs, $rate, $best, $in_rate, $lag;
    close($fh) or die "$o{json}: $!\n";
}

exit($ok ? 0 : 1);
