# chaos.t: faults injected one at a time, then in random combinations,
# into three gateway nodes behind the balancer, a primary PostgreSQL with
# a synchronous standby and a three-broker Kafka (scripts/chatctl with
# NODES=3 CHAT_PG_STANDBY=1), under a steady load of senders with receipts
# and receivers across the nodes. After each fault: every RECEIPTed
# message is in history and in PostgreSQL exactly once, seqs increase per
# conversation, each sender's order is kept (across its reconnects), each
# receiver is caught up (a message sent after the fault reaches it live),
# and no process crashed. Per fault it prints the unavailability window
# (the longest a sender sending every 50 ms went without a RECEIPT,
# reconnecting included) and the SENDs answered `unavailable`.
#
# make test runs the short version (CHAOS=short: two faults); make chaos
# the full one (CHAOS=full: every fault, then CHAOS_ROUNDS random
# combinations of two, seeded by CHAOS_SEED or the time, printed).
# CHAOS_FAULTS=a,b runs just those.

use strict;
use warnings;

use lib 't/lib';
use Test::Chat ();
use Test::Chat::Util;
use Test::Chat::WebSocket;
use Test::Chat::Order;
use Test::Chat::Cluster;
use Test::More;
use File::Path qw(remove_tree);
use IO::Socket::INET;
use Time::HiRes qw(time sleep);
use List::Util qw(max shuffle);

plan(skip_all => 'the development system runs Debian\'s nginx, not the'
                 . ' sanitizer build')
    if $ENV{CHAT_ASAN};

my $MODE = $ENV{CHAOS} // 'short';
my $SEED = $ENV{CHAOS_SEED} // (time() ^ $$) % 1000000;
my $ROUNDS = $ENV{CHAOS_ROUNDS} // 4;
my $LOAD_SECS = $ENV{CHAOS_LOAD_SECS} // ($MODE eq 'full' ? 5 : 3.5);
my $PERIOD = 0.05;              # each sender: a SEND every 50 ms

# the Kafka faults have t/123-kafka-replicated.t in make test
my @SHORT = qw(gateway-node-kill redis-restart);

my %FAULT = (
    'gateway-worker-kill' => [\&f_worker_kill, undef],
    'gateway-node-kill'   => [\&f_node_kill, \&heal_start],
    'persist-kill'        => [sub { kill_pidfile('persist.pid') },
                              \&heal_start],
    'push-kill'           => [sub { kill_pidfile('push.pid') },
                              \&heal_start],
    'redis-restart'       => [\&f_redis_stop, \&heal_start],
    'pg-failover'         => [\&f_pg_kill, \&h_pg_promote],
    'kafka-broker-down'   => [sub { kctl('kill 2') }, sub { kctl('up 2') }],
    'nginx-reload'        => [sub { kill 'HUP', node_master(1) }, undef],
    'binary-upgrade'      => [\&f_upgrade, \&h_upgrade],
    'sigstop'             => [\&f_stop, \&h_cont],
);
my @ORDER = qw(gateway-worker-kill gateway-node-kill persist-kill push-kill
               redis-restart kafka-broker-down nginx-reload binary-upgrade
               sigstop pg-failover);

my $VAR = cluster_var();
my %LOGPOS;
my $pg_failed_over = 0;
my $stopped;                    # the pid SIGSTOPped
my $upgrade_old;                # the old master of a binary upgrade


# ---------------------------------------------------------------- faults

sub pidfile {
    my ($f) = @_;
    open(my $fh, '<', "$VAR/$f") or return undef;
    my $pid = <$fh> // return undef;
    chomp $pid;
    return $pid =~ /^\d+$/ ? $pid : undef;
}

sub kill_pidfile {
    my $pid = pidfile($_[0]) or die "no $_[0]\n";
    kill 'KILL', $pid;
}

sub f_worker_kill {
    my ($w) = proc_children(node_master(2)) or die "no worker of node 2\n";
    kill 'KILL', $w;
}

sub f_node_kill { kill_tree('KILL', node_master(3)) }

sub f_redis_stop {
    system('redis-cli', '-h', '127.0.0.1', '-p', cport('CHAT_REDIS_PORT'),
           'SHUTDOWN', 'SAVE');
}

sub f_pg_kill {
    my $pid = pidfile('pg/postmaster.pid') or die "no primary\n";
    kill_tree('KILL', $pid);
}

sub h_pg_promote {
    my ($rc, $out) = chatctl('promote');
    die "promote: $out" if $rc;
    $pg_failed_over = 1;
}

# USR2: a new master with the same binary and configuration; QUIT: the
# old one drains (its sessions get 1001)
sub f_upgrade {
    $upgrade_old = node_master(2);
    kill 'USR2', $upgrade_old;
}

sub h_upgrade {
    my $until = time + 10;
    sleep 0.05 until -s "$VAR/nginx2/logs/nginx.pid.oldbin"
                     || time > $until;
    die "no new master after USR2\n"
        unless -s "$VAR/nginx2/logs/nginx.pid.oldbin";
    kill 'QUIT', $upgrade_old;
}

sub f_stop {
    ($stopped) = proc_children(node_master(1));
    kill 'STOP', $stopped;
}

sub h_cont { kill 'CONT', $stopped }

# whatever is missing is started again: what systemd would do
sub heal_start {
    my ($rc, $out) = chatctl('start');
    die "chatctl start: $out" if $rc;
}

# a command to the broker's control port
sub kctl {
    my ($cmd) = @_;
    open(my $f, '<', "$VAR/kafka/control") or die "no control file\n";
    my $addr = <$f>;
    chomp $addr;
    my $s = IO::Socket::INET->new(PeerAddr => $addr, Timeout => 5)
        or die "control $addr: $!\n";
    print $s "$cmd\n";
    my $a = <$s> // '';
    die "kafka control: $cmd: $a" unless $a =~ /^ok/;
}


# ------------------------------------------------------------------ load

# a client: a recording Order.pm session that comes back by itself
# (reconnecting to its port every 0.2-0.4 s) when its connection ends
sub client {
    my ($user, $port) = @_;
    my $c = { user => $user, port => $port, sessions => [] };
    connect_client($c);
    return $c;
}

sub connect_client {
    my ($c) = @_;
    my $s = eval { order_session($c->{user}, port => $c->{port},
                                 timeout => 2) };
    if ($s) {
        push @{ $c->{sessions} }, $s;
        $c->{s} = $s;
    } else {
        $c->{s} = undef;
        $c->{retry_at} = time + 0.2 + rand(0.2);
    }
    return $s;
}

sub live { my ($c) = @_; $c->{s} && !$c->{s}{closed} }

sub all_sessions { map { @{ $_->{sessions} } } @_ }

# the RECEIPTs a sender got so far, and its SENDs answered `unavailable`
sub answers {
    my ($c) = @_;
    my ($n, $unavailable) = (0, 0);
    for my $s (@{ $c->{sessions} }) {
        for my $f (@{ $s->{frames} }) {
            if ($f->{command} eq 'RECEIPT') {
                $n++;
            } elsif ($f->{command} eq 'MESSAGE'
                     && $f->{headers}{destination} eq '/user/queue/errors')
            {
                $unavailable++
                    if (json_decode($f->{body})->{code} // '') eq 'unavailable';
            }
        }
    }
    return ($n, $unavailable);
}

# one round: every pair's sender sends, every client reads; the longest
# time without a RECEIPT of each sender is kept (its unavailability)
sub step {
    my ($pairs, $send) = @_;
    my @clients = map { @$_{qw(a b)} } @$pairs;
    for my $c (@clients) {
        if (!live($c) && time >= ($c->{retry_at} // 0)) {
            connect_client($c);
        }
    }
    if ($send) {
        for my $p (@$pairs) {
            order_send($p->{a}{s}, $p->{conv}, 1, receipt => 1)
                if live($p->{a});
        }
    }
    order_pump([map { $_->{s} } grep { live($_) } @clients], $PERIOD);
    my $now = time;
    for my $p (@$pairs) {
        my ($n) = answers($p->{a});
        if ($n > ($p->{answers} // 0)) {
            $p->{answers} = $n;
            $p->{last} = $now;
        }
        $p->{last} //= $now;
        $p->{gap} = $now - $p->{last} if $now - $p->{last} > ($p->{gap} // 0);
    }
}

# four pairs: a sender on each node and one through the balancer, each
# with a receiver through the balancer, in a group of their own
my $round = 0;
sub new_pairs {
    $round++;
    my @ports = (cport('CHAT_PORT'), cport('CHAT_PORT2'), cport('CHAT_PORT3'),
                 cport('CHAT_LB_PORT'));
    my @pairs;
    for my $i (0 .. $#ports) {
        my ($a, $b) = ("s${round}n$i", "r${round}n$i");
        my ($st, $j) = api(POST => '/conversations', $a,
                           { type => 'group', name => "chaos$round.$i",
                             members => [$b] },
                           port => cport('CHAT_LB_PORT'));
        die "create: $st\n" unless $st == 201;
        push @pairs, { conv => $j->{conversationId},
                       a => client($a, $ports[$i]),
                       b => client($b, cport('CHAT_LB_PORT')) };
    }
    return \@pairs;
}


# ---------------------------------------------------------------- checks

sub wait_healthy {
    my ($secs) = @_;
    my $until = time + $secs;
    while (time < $until) {
        my $up = 0;
        for my $p (qw(CHAT_PORT CHAT_PORT2 CHAT_PORT3)) {
            my ($st) = eval { http_request(GET => '/chat/health', [], undef,
                                           port => cport($p), timeout => 1) };
            $up++ if ($st // 0) == 200;
        }
        return 1 if $up == 3;
        sleep 0.1;
    }
    return 0;
}

# the log lines written since the last call: crashes (a signal other than
# the 9 the fault sent itself), emergencies
sub new_crashes {
    my ($expect_kill) = @_;
    my @bad;
    for my $f (glob("$VAR/nginx[123]/logs/error.log"),
               "$VAR/persist.log", "$VAR/push.log")
    {
        open(my $fh, '<', $f) or next;
        seek($fh, $LOGPOS{$f} // 0, 0);
        while (my $l = <$fh>) {
            if ($l =~ /exited on signal (\d+)/) {
                push @bad, "$f: $l" unless $expect_kill && $1 == 9;
            }
            push @bad, "$f: $l" if $l =~ /\[emerg\]|core dumped|\bfatal\b/i;
        }
        $LOGPOS{$f} = tell($fh);
    }
    return @bad;
}

# the persisted rows of conv: content => count
sub pg_counts {
    my ($conv) = @_;
    my $lines = cluster_psql("SELECT content FROM messages"
                             . " WHERE conversation_id = '$conv'") || [];
    my %n;
    $n{$_}++ for @$lines;
    return \%n;
}

# run(name, faults...): the load, the faults, the heals, the checks
sub run_fault {
    my ($name, @names) = @_;
    my @f = map { $FAULT{$_} or die "no fault $_\n" } @names;
    my $pairs = new_pairs();
    my $t0 = time;
    my ($faulted, $healed) = (0, 0);

    while (time - $t0 < $LOAD_SECS) {
        my $t = time - $t0;
        if (!$faulted && $t >= 1) {
            $faulted = 1;
            $_->[0]->() for @f;
        }
        if (!$healed && $t >= 2.5) {
            $healed = 1;
            $_->[1] && $_->[1]->() for @f;
        }
        step($pairs, 1);
    }
    $_->[1] && $_->[1]->() for grep { !$healed } @f;

    my $healthy = wait_healthy(30);

    # settle: every live sender's SENDs answered
    my $until = time + 30;
    while (time < $until) {
        step($pairs, 0);
        last unless grep {
            my $s = $_->{a}{s};
            $s && !$s->{closed} && !order_settled([$s])->{cb}->()
        } @$pairs;
    }

    my @bad;
    push @bad, 'a node is not healthy 30 s after the fault' unless $healthy;

    # caught up: a message after the fault reaches each receiver live
    for my $p (@$pairs) {
        my $until2 = time + 15;
        step($p->{a} ? [$p] : [], 0) until (live($p->{a}) && live($p->{b}))
                                          || time > $until2;
        unless (live($p->{a}) && live($p->{b})) {
            push @bad, "$p->{a}{user}/$p->{b}{user}: not reconnected";
            next;
        }
        my $probe = "probe-$p->{conv}";
        send_probe($p, $probe) or push @bad, "$p->{b}{user} missed $probe";
    }

    my %convs = map { $_->{conv} => $_->{a}{user} } @$pairs;
    push @bad, order_check([all_sessions(map { @$_{qw(a b)} } @$pairs)],
                           \%convs, lossy => 1);

    # each sender's RECEIPTed messages, over all its sessions, in history
    # in the order sent; and in PostgreSQL once
    my ($sent, $receipted, $unavailable, $gap) = (0, 0, 0, 0);
    for my $p (@$pairs) {
        my ($h) = order_history($p->{a}{user}, $p->{conv});
        my %seq = map { $_->{content} => $_->{seq} } @{ $h || [] };
        my (%ok, $last);
        for my $s (@{ $p->{a}{sessions} }) {
            for my $f (@{ $s->{frames} }) {
                $ok{ $f->{headers}{'receipt-id'} } = 1
                    if $f->{command} eq 'RECEIPT';
            }
        }
        my @rc;
        for my $s (@{ $p->{a}{sessions} }) {
            for my $op (@{ $s->{sent} }) {
                $sent++;
                next unless $ok{ $op->{receipt} };
                push @rc, $op->{content};
                my $q = $seq{ $op->{content} };
                next unless defined $q;
                push @bad, "$p->{a}{user}: $op->{content} at seq $q after"
                           . " an earlier SEND at $last"
                    if defined $last && $q <= $last;
                $last = $q;
            }
        }
        $receipted += @rc;
        my (undef, $un) = answers($p->{a});
        $unavailable += $un;
        $gap = max($gap, $p->{gap} // 0);

        my $rows;
        my $until3 = time + 30;
        while (time < $until3) {
            $rows = pg_counts($p->{conv});
            last unless grep { !$rows->{$_} } @rc;
            sleep 0.25;
        }
        for my $c (@rc) {
            my $n = $rows->{$c} // 0;
            push @bad, "RECEIPTed $c in PostgreSQL $n times" if $n != 1;
        }
    }

    push @bad, new_crashes(scalar grep { /kill/ } @names);
    push @bad, grep { defined } map { process_missing($_) }
               qw(persist.pid push.pid);

    for my $p (@$pairs) {
        for my $c (@$p{qw(a b)}) {
            $c->{s}{c}->disconnect_tcp if live($c);
        }
    }

    my $line = sprintf('%-40s window %5.2f s  unavailable %3d  sent %4d'
                       . '  RECEIPTed %4d', $name, $gap, $unavailable,
                       $sent, $receipted);
    diag($line);
    is_deeply(\@bad, [], "$name: nothing RECEIPTed lost, doubled or"
                         . ' reordered; caught up; no crash')
        or diag(join("\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]));
    return $line;
}

sub process_missing {
    my ($f) = @_;
    my $pid = pidfile($f);
    return ($pid && kill(0, $pid)) ? undef : "$f: not running";
}

# sends one receipted message and waits for the receiver's copy
sub send_probe {
    my ($p, $text) = @_;
    my $a = $p->{a}{s};
    order_send($a, $p->{conv}, 1, receipt => 1) or return 0;
    my $want = $a->{sent}[-1]{content};
    my $until = time + 10;
    while (time < $until) {
        order_pump([$a, $p->{b}{s}], 0.1);
        return 1 if grep {
            $_->{command} eq 'MESSAGE'
            && $_->{headers}{destination} eq '/user/queue/messages'
            && (json_decode($_->{body})->{content} // '') eq $want
        } @{ $p->{b}{s}{frames} };
    }
    return 0;
}


# ------------------------------------------------------------------ main

remove_tree($VAR);
cluster_ports();
cluster_env(NODES => 3, CHAT_PG_STANDBY => 1);
$ENV{TEST_NGINX_SERVER_PORT} = cport('CHAT_LB_PORT');   # history reads
END { chatctl('stop') if defined $VAR && -f "$VAR/env" }   # not set when skipped

my ($rc, $out) = chatctl('start');
is($rc, 0, 'three nodes, a balancer, a PostgreSQL standby, three brokers')
    or do { diag($out); BAIL_OUT('chatctl start failed (its output above)') };
wait_healthy(30) or BAIL_OUT('the nodes are not healthy');
new_crashes();

my @singles = $ENV{CHAOS_FAULTS} ? split(/,/, $ENV{CHAOS_FAULTS})
            : $MODE eq 'full' ? @ORDER : @SHORT;
my @report;
push @report, run_fault($_, $_) for @singles;

if ($MODE eq 'full' && !$ENV{CHAOS_FAULTS}) {
    diag("random combinations: CHAOS_SEED=$SEED");
    srand($SEED);
    my @pool = grep { $_ ne 'pg-failover' } @ORDER;
    for (1 .. $ROUNDS) {
        my @two = (shuffle @pool)[0, 1];
        push @report, run_fault(join('+', @two), @two);
    }
}

diag("chaos report (CHAOS=$MODE"
     . ($MODE eq 'full' ? ", CHAOS_SEED=$SEED" : '') . "):");
diag("  $_") for @report;

done_testing();
