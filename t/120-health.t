# Health: the chat_health location says whether the answering worker's
# Redis, PostgreSQL and Kafka links are up (200) or not (503), in JSON.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(more => <<'_EOC_');
    location = /chat/health {
        chat_health;
    }
_EOC_

$ENV{TEST_NGINX_DEAD_PORT} ||= free_port();

# a broker of this file's own, with a control port, to take all its
# brokers down and up again (the suite's is shared)
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
    select(undef, undef, undef, 0.1);
}
$ENV{TEST_NGINX_KAFKA3} = do {
    open(my $f, '<', "$KDIR/bootstrap") or die "the broker did not start\n";
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
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

# ctl(command): the own broker's answer line
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

# polls /chat/health until its status is $want and, if given, the store
# $store says $state (or $secs pass): the last (status, decoded body)
sub health_until {
    my ($want, $secs, $store, $state) = @_;
    my ($st, $j);
    my $until = time + $secs;
    while (1) {
        my ($s, undef, $body) = http_request('GET', '/chat/health');
        ($st, $j) = ($s, json_decode($body) || {});
        last if $st == $want
                && (!defined $store || ($j->{$store} // '') eq $state);
        last if time > $until;
        sleep 0.1;
    }
    return ($st, $j);
}

package main;

run_tests();

__DATA__

=== TEST 1: every link up: 200 and each store "up"
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my ($st, $j) = health_until(200, 10);
is($st, 200, '200 once the links are up');
is_deeply([@$j{qw(status redis postgres kafka)}], [qw(up up up up)],
          'status, redis, postgres, kafka up');
like($j->{pid}, qr/^\d+$/, 'the answering worker says its pid');
--- no_error_log
[error]


=== TEST 2: no chat_kafka: Kafka is "off" and does not count
--- need_module
--- no_kafka
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my ($st, $j) = health_until(200, 10);
is($st, 200, '200 without Kafka');
is($j->{kafka}, 'off', 'kafka off');
my ($s, $h) = http_request('GET', '/chat/health');
is($h->{'content-type'}, 'application/json', 'JSON');
--- no_error_log
[error]


=== TEST 3: Redis stopped: 503 with redis "down", 200 again once it is back
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 5
--- perl
my ($st, $j) = health_until(200, 10);
is($st, 200, 'up before');
redis_stop();
($st, $j) = health_until(503, 10, redis => 'down');
redis_start();
is($st, 503, '503 while Redis is stopped');
is($j->{redis}, 'down', 'redis down');
is($j->{postgres}, 'up', 'postgres still up');
($st, $j) = health_until(200, 15);
is($st, 200, '200 once Redis is back');


=== TEST 4: PostgreSQL stopped: 503 with postgres "down", then 200 again
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 5
--- perl
my ($st, $j) = health_until(200, 10);
is($st, 200, 'up before');
pg_stop();
($st, $j) = health_until(503, 10, postgres => 'down');
pg_start();
is($st, 503, '503 while PostgreSQL is stopped');
is($j->{postgres}, 'down', 'postgres down');
is($j->{redis}, 'up', 'redis still up');
($st, $j) = health_until(200, 20);
is($st, 200, '200 once PostgreSQL is back');


=== TEST 5: no broker reachable: 503 with kafka "down"
--- need_module
--- no_kafka
--- http_config
chat_kafka 127.0.0.1:$TEST_NGINX_DEAD_PORT;
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my ($st, $j) = health_until(503, 15, kafka => 'down');
is($st, 503, 'unavailable');
is($j->{kafka}, 'down', 'kafka down');
is($j->{status}, 'down', 'status down');


=== TEST 6: only GET and HEAD
--- need_module
--- config
$TEST_NGINX_CHAT_CONFIG
--- request
POST /chat/health
x
--- error_code: 405
--- no_error_log
[error]


=== TEST 7: chat_health twice in a location is refused
--- need_module
--- config
location = /h {
    chat_health;
    chat_health;
}
--- must_die
--- error_log
"chat_health" directive is duplicate


=== TEST 8: every broker down, then up again with nothing produced: 503, then 200 by itself
--- need_module
--- no_kafka
--- http_config
chat_kafka $TEST_NGINX_KAFKA3;
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 5
--- perl
my ($st, $j) = health_until(200, 10);
is($st, 200, 'up with the three brokers');
my @down = map { ctl("down $_") } 1 .. 3;
is(scalar(grep { /^ok/ } @down), 3, 'the three brokers down');
($st, $j) = health_until(503, 20, kafka => 'down');
my @up = map { ctl("up $_") } 1 .. 3;
is($j->{kafka}, 'down', 'kafka down once no broker answers');
is(scalar(grep { /^ok/ } @up), 3, 'and up again');
($st, $j) = health_until(200, 20);
is($st, 200, 'the statistics bring it back without a delivery');
