# 123-kafka-replicated.t: the development broker runs 3 brokers and its
# topics have replication factor 3. Under a steady load of SENDs with
# receipts (the gateway's producer: acks=all, idempotent), a broker goes
# down and comes back (rd_kafka_mock_broker_set_down/up), the partition
# leaders move (rd_kafka_mock_partition_set_leader), and a broker is
# killed with its leadership moved to the others; each time every
# RECEIPTed message is in history and in PostgreSQL exactly once, in the
# sender's order, and chat-persist keeps up. The faults go through the
# broker's control port (chat-kafka-broker --control-file).

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use Test::Chat::Order;
use Time::HiRes qw(time sleep);

plan_from_blocks();

# three senders at 50 SENDs/s each: over the per-user rate limit; and
# while a leader is down for 1.5 s, a slow machine holds more than the
# default 128 SENDs of a session in flight, whose refusal (rate_limited,
# answered at once) is not what this file tests
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(
    ws => 'chat_send_rate off; chat_max_requests_in_flight 0;');

# a broker of this file's own: the faults would disturb the suite's
our $KDIR = servroot() . '/kafka3';
our $KPID;

system('rm', '-rf', $KDIR);
system('mkdir', '-p', $KDIR);
$KPID = fork();
die "fork: $!" unless defined $KPID;
if ($KPID == 0) {
    open(STDOUT, '>', "$KDIR/stdout");
    open(STDERR, '>', "$KDIR/broker.log");
    exec(Test::Chat::Helpers::chat_bin() . '/chat-kafka-broker',
         "--bootstrap-file=$KDIR/bootstrap", "--control-file=$KDIR/control");
    exit 127;
}
for (1 .. 100) {
    last if -s "$KDIR/bootstrap" && -s "$KDIR/control";
    sleep 0.1;
}
die "the broker did not start\n" unless -s "$KDIR/bootstrap";
$ENV{TEST_NGINX_KAFKA_BROKERS} = do {
    open(my $f, '<', "$KDIR/bootstrap") or die;
    my $l = <$f>;
    chomp $l;
    $l;
};

END {
    if ($KPID) {
        kill 'TERM', $KPID;
        waitpid($KPID, 0);
    }
}

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Test::Chat::Order;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

my $persist;

# ctl(command): the broker's answer line
sub ctl {
    my ($cmd) = @_;
    open(my $f, '<', "$main::KDIR/control") or die "no control file\n";
    my $addr = <$f>;
    chomp $addr;
    my $s = IO::Socket::INET->new(PeerAddr => $addr, Timeout => 5)
        or die "control $addr: $!\n";
    print $s "$cmd\n";
    my $answer = <$s> // '';
    chomp $answer;
    return $answer;
}

sub broker_log {
    open(my $f, '<', "$main::KDIR/broker.log") or return '';
    local $/;
    return <$f>;
}

# every partition of both topics led by broker id
sub lead_all {
    my ($id) = @_;
    my $ok = 0;
    for my $t (qw(chat.messages chat.receipts)) {
        $ok += ctl("leader $t $_ $id") =~ /^ok/ ? 1 : 0 for 0 .. 5;
    }
    return $ok;
}

sub ensure_persist {
    $persist //= start_persist('--group-id=t113');
    return $persist;
}

END { if ($persist) { kill 'TERM', $persist; waitpid($persist, 0) } }

# PostgreSQL's rows of conv: content => how many times
sub pg_counts {
    my ($conv) = @_;
    my %n;
    $n{ $_->[0] }++ for pg_query("SELECT content FROM messages"
                                 . " WHERE conversation_id = '$conv'");
    return \%n;
}

# load(name, secs, [at, code]...): three senders, each in a group of its
# own with a receiver (so that three partitions carry the load), send one
# SEND with a receipt every 20 ms for secs seconds; each code runs at its
# time. Then: every SEND answered, Order.pm's contract, and every
# RECEIPTed message once in PostgreSQL. Returns (what broke, SENDs,
# RECEIPTed, unavailable, the longest time in seconds with SENDs waiting
# and no answer coming).
sub load {
    my ($name, $secs, @faults) = @_;
    ensure_persist();
    my (@senders, @all, %convs);
    for my $i (1 .. 3) {
        my ($a, $b) = ("a$i$name", "b$i$name");
        my $conv = conversation($a, 'group', { name => "$name$i" }, $b);
        my $s = order_session($a);
        $s->{conv} = $conv;
        push @senders, $s;
        push @all, $s, order_session($b);
        $convs{$conv} = $a;
    }
    my $t0 = time;
    my ($answers, $progress, $gap) = (0, time, 0);
    my $watch = sub {
        my $n = 0;
        $n += grep { $_->{command} eq 'RECEIPT'
                     || ($_->{command} eq 'MESSAGE'
                         && $_->{headers}{destination} =~ /errors/) }
              @{ $_->{frames} } for @senders;
        my $now = time;
        if ($n > $answers) {
            $answers = $n;
            $progress = $now;
        }
        $gap = $now - $progress if $now - $progress > $gap;
        return 0;
    };
    while (time - $t0 < $secs) {
        while (@faults && time - $t0 >= $faults[0][0]) {
            my $f = shift @faults;
            $f->[1]->();
        }
        order_send($_, $_->{conv}, 1, receipt => 1) or die "send failed\n"
            for @senders;
        order_pump(\@all, 0.02);
        $watch->();
    }
    $_->[1]->() for @faults;
    my $done = order_settled(\@senders);
    my $settled = order_pump(\@all, 30,
                             { cb => sub { $watch->(); $done->{cb}->() } });
    my @bad = $settled ? () : ('not every SEND answered within 30 s');
    push @bad, order_check(\@all, \%convs, lossy => 1);

    my ($sent, $unavailable, @receipted) = (0, 0);
    for my $s (@senders) {
        my %rcpt;
        for my $f (@{ $s->{frames} }) {
            if ($f->{command} eq 'RECEIPT') {
                $rcpt{ $f->{headers}{'receipt-id'} } = 1;
            } elsif ($f->{command} eq 'MESSAGE'
                     && $f->{headers}{destination} eq '/user/queue/errors')
            {
                my $j = json_decode($f->{body});
                $unavailable++ if ($j->{code} // '') eq 'unavailable';
            }
        }
        $sent += @{ $s->{sent} };
        push @receipted, map { [$s->{conv}, $_->{content}] }
                         grep { $rcpt{ $_->{receipt} } } @{ $s->{sent} };
    }

    my $until = time + 30;
    my %rows;
    while (time < $until) {
        %rows = map { $_ => pg_counts($_) } keys %convs;
        last unless grep { !$rows{ $_->[0] }{ $_->[1] } } @receipted;
        sleep 0.25;
    }
    for my $r (@receipted) {
        my $n = $rows{ $r->[0] }{ $r->[1] } // 0;
        push @bad, "RECEIPTed $r->[1] is in PostgreSQL $n times" if $n != 1;
    }
    return (\@bad, $sent, scalar @receipted, $unavailable, $gap);
}


package main;

run_tests();

__DATA__

=== TEST 1: three brokers, topics with replication factor 3, leaders spread
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my $log = broker_log();
like($log, qr/3 broker\(s\) listening/, 'three brokers');
my @rf = $log =~ /topic "chat\.\w+": \d+ partitions, replication factor 3/g;
is(scalar @rf, 2, 'both topics replicated 3 ways');
like(ctl('leaders'), qr/^ok chat\.messages:1,2,3,1,2,3 /,
     'the leaders spread over the brokers');
like(ctl('down 7'), qr/^error: /, 'a bad command is refused');
--- no_error_log
[error]


=== TEST 2: a broker down and up again under load: nothing RECEIPTed lost, doubled or reordered
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 5
--- perl_timeout: 120
--- perl
is(lead_all(2), 12, 'broker 2 leads every partition');
my ($bad, $sent, $ok, $unavailable, $gap) = load('down', 4,
    [1, sub { like(ctl('down 2'), qr/^ok/, 'broker 2 down') }],
    [2.5, sub { like(ctl('up 2'), qr/^ok/, 'broker 2 up') }]);
diag(sprintf("broker 2 down 1.5 s: %d SENDs, %d RECEIPTed, %d unavailable,"
             . " no answer for %.2f s", $sent, $ok, $unavailable, $gap));
is_deeply($bad, [], 'every RECEIPTed message once, in order, persisted')
    or diag(join("\n", @$bad));
ok($gap >= 1, 'no RECEIPT while the leader was down (acks=all)');



=== TEST 3: the partition leaders move under load
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 2
--- perl_timeout: 120
--- perl
my $moved = 0;
my ($bad, $sent, $ok, $unavailable, $gap) = load('leader', 3,
    [1, sub {
        for my $t (qw(chat.messages chat.receipts)) {
            $moved += ctl("leader $t $_ " . (3 - $_ % 3)) =~ /^ok/ ? 1 : 0
                for 0 .. 5;
        }
    }]);
is($moved, 12, 'every partition got another leader');
diag(sprintf("leaders moved: %d SENDs, %d RECEIPTed, %d unavailable,"
             . " no answer for %.2f s", $sent, $ok, $unavailable, $gap));
is_deeply($bad, [], 'every RECEIPTed message once, in order, persisted')
    or diag(join("\n", @$bad));


=== TEST 4: a broker killed, its leadership moved to the others, then back
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl_timeout: 120
--- perl
lead_all(1);
my ($bad, $sent, $ok, $unavailable, $gap) = load('kill', 4,
    [1, sub { like(ctl('kill 1'), qr/^ok broker 1 down, 12 leader/,
                   'broker 1 killed, its partitions led by others') }],
    [2.5, sub { like(ctl('up 1'), qr/^ok/, 'broker 1 back') }]);
diag(sprintf("broker 1 killed 1.5 s: %d SENDs, %d RECEIPTed, %d unavailable,"
             . " no answer for %.2f s", $sent, $ok, $unavailable, $gap));
is_deeply($bad, [], 'every RECEIPTed message once, in order, persisted')
    or diag(join("\n", @$bad));
