# On a Redis Cluster of 3 primaries and 3 replicas (scripts/test-servers.sh
# cluster-start): GET /presence of users spread over every primary (one
# script call per slot, the answers merged in the order asked, MOVED and
# ASK followed while a slot moves), presence renewals grouped per slot,
# then the ordering torture test of t/046 (Test::Chat::Torture) with
# conversations on all three shards and its faults played on every node.
#
# TORTURE_SEED=N replays a run, TORTURE_RUNS and TORTURE_ROUNDS size it,
# as for t/046.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use Test::Chat::RedisCluster;

plan_from_blocks();

redis_cluster_start('126-cluster-torture');

# the SEND rate limit off: a refused SEND tells nothing about the order
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(
    ws => 'chat_send_rate off; chat_max_requests_in_flight 0;');

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Test::Chat::RedisCluster;
use Test::Chat::Torture;
use Time::HiRes qw(time sleep);

# the primary of a conversation's keys, or of a user's
sub shard_of { primary_of_slot(key_slot("{$_[0]}")) }

# the presence of users as alice sees it: [userId, online, lastSeen]...
sub presence_of {
    my ($who, @users) = @_;
    my ($st, $j) = api(GET => '/presence?users=' . join(',', @users), $who);
    die "GET /presence: $st\n" unless $st == 200;
    return [ map { [ $_->{userId}, $_->{online} ? 1 : 0, $_->{lastSeen} ] }
             @{ $j->{presence} } ];
}

# two users whose keys share a slot: names "<prefix><n>"
sub same_slot_pair {
    my ($prefix) = @_;
    my %by_slot;
    for my $i (1 .. 5000) {
        my $u = "$prefix$i";
        my $s = key_slot("{$u}");
        return ($by_slot{$s}, $u) if $by_slot{$s};
        $by_slot{$s} = $u;
    }
    die "no two users in one slot\n";
}

# what a presence answer says, the lastSeen of online users left out (it
# is "now")
sub presence_text {
    return join(' ', map { "$_->[0]:" . ($_->[1] ? 'on'
                           : 'off@' . ($_->[2] // 'null')) } @{ $_[0] });
}

package main;

run_tests();

__DATA__

=== TEST 1: GET /presence of users on every primary, two in one slot: one answer in the order asked, also while a slot moves (ASK, then MOVED)
--- need_module
--- workers: 2
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
is(key_slot('chat:p:{alice}'), rcli($ENV{TEST_NGINX_REDIS_CLUSTER_PORT},
                                  'CLUSTER', 'KEYSLOT', 'chat:p:{alice}'),
   'the slot computed here is the cluster\'s');

# two users in one slot, and one on each other primary
my @pair = same_slot_pair('p1u');
my $home = shard_of($pair[0]);
my %other;
for my $i (1 .. 200) {
    my $u = "p1v$i";
    my $pp = shard_of($u);
    $other{$pp} //= $u if $pp != $home;
    last if keys %other == 2;
}
my ($b, $c) = map { $other{$_} } sort keys %other;
my ($a, $d) = @pair;
is(scalar(grep { defined } $a, $b, $c, $d), 4,
   "users on three primaries, two in one slot ($a $d $b $c)");

# alice may see them all (each accepted her direct conversation)
for my $u ($a, $b, $c, $d) {
    my $conv = conversation('alice1', 'direct', $u);
    api(POST => "/conversations/$conv/accept", $u);
}

# a and c online; b was, and left; d never came
my @on = (member($a), member($c), member('alice1'));
my $gone = member($b);
$gone->disconnect;
$gone->close(1000);

my @ask = ($a, 'stranger1', $b, 'alice1', $d, $c);
my $want = "$a:on $b:off\@ alice1:on $d:off\@null $c:on";
my $got;
for (1 .. 50) {
    $got = presence_of('alice1', @ask);
    last if (presence_text($got) =~ s/(off\@)\S+(?= alice1)/$1/r) eq $want
            && defined $got->[1][2];
    sleep 0.1;
}
my $text = presence_text($got);
is($text =~ s/(off\@)\S+(?= alice1)/$1/r, $want,
   'in the order asked, the stranger left out, online as they are');
like($got->[1][2] // '', qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/,
     "$b, gone, has a lastSeen");

# the slot of b moves to another primary: ASK while its keys have moved
# and the slot is migrating, MOVED once it is the other's
my $slot = key_slot("{$b}");
my $from = shard_of($b);
my ($to) = grep { $_ != $from } sort keys %{ { map { shard_of($_) => 1 }
                                                 $a, $b, $c } };
my ($src, $dst) = map { rcli($_, 'CLUSTER', 'MYID') } $from, $to;
rcli($to, 'CLUSTER', 'SETSLOT', $slot, 'IMPORTING', $src);
rcli($from, 'CLUSTER', 'SETSLOT', $slot, 'MIGRATING', $dst);
my @keys = split /\n/, rcli($from, 'CLUSTER', 'GETKEYSINSLOT', $slot, 1000);
ok(scalar(grep { $_ eq "chat:ls:{$b}" } @keys), "the lastSeen of $b is in the slot");
is(rcli($from, 'MIGRATE', '127.0.0.1', $to, '', 0, 5000, 'KEYS', @keys),
   'OK', 'the slot\'s keys moved');
is(presence_text(presence_of('alice1', @ask)), $text,
   'the same answer while the slot migrates (ASK)');

rcli($_, 'CLUSTER', 'SETSLOT', $slot, 'NODE', $dst)
    for $to, $from, grep { $_ != $from && $_ != $to } cluster_primaries();
is(presence_text(presence_of('alice1', @ask)), $text,
   'the same answer once the slot moved (MOVED)');
is(shard_of($b), $to, "the slot of $b is served by the other primary");

# one user still works as before; the largest list too
is(presence_text(presence_of('alice1', $d)), "$d:off\@null", 'one user');
my %one = map { /^([^:]+):/ ? ($1 => $_) : () } split / /, $text;
my @many = ((map { "p1w$_" } 1 .. 95), $a, $b, $c, $d, 'alice1');
is(presence_text(presence_of('alice1', @many)),
   join(' ', map { $one{$_} } $a, $b, $c, $d, 'alice1'),
   '100 users asked: the five visible ones, in the order asked');
$_->close for @on;
--- tests: 11
--- no_error_log
[error]
Redis failed



=== TEST 2: presence renewals: one script per slot, with the sessions of every user of the slot; they stay online past the TTL
--- need_module
--- workers: 1
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
    chat_presence_ttl 3s;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my ($u, $v) = same_slot_pair('p2u');
my @s = (member($u), member($u), member($v));
my $t0 = time;
my $pp = shard_of($u);

# a renewal a second (a third of the TTL), seen on the slot's primary
my $mon = `timeout 2.5 redis-cli -h 127.0.0.1 -p $pp MONITOR 2>&1`;
my @renew = grep { /"EVALSHA" "[0-9a-f]{40}" "1" "chat:p:expiry:\{[^"]*\}" "3000" /
                   && /"\Q$u\E"/ } split /\n/, $mon;
ok(@renew >= 1, scalar(@renew) . " renewals of the slot of $u seen");
is(scalar(grep { my $l = $_; my $n = () = $l =~ /"\Q$u\E"/g;
                 $n == 2 && $l =~ /"\Q$v\E"/ } @renew), scalar(@renew),
   "each carries the two sessions of $u and the one of $v")
    or diag($renew[0]);

sleep 0.2 while time < $t0 + 7;
is(presence_text(presence_of($u, $u)), "$u:on", "$u online after two TTLs");
is(presence_text(presence_of($v, $v)), "$v:on", "$v too");
$_->close for @s;
--- tests: 4
--- no_error_log
[error]



=== TEST 3: the ordering torture test on the cluster: conversations on all three shards, the faults on every node
--- need_module
--- second_server
--- workers: 2
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 1
--- perl
torture_main('t/126-cluster-torture.t',
             redis => sub { cluster_all(@_) },
             key_cmd => sub {
                 my ($key, @args) = @_;
                 rcli(primary_of_slot(key_slot($key)), @args);
             },
             shard_of => \&shard_of, shards => 3);
--- no_error_log
[alert]
[crit]
