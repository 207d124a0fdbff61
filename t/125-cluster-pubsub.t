# The fan-out of a Redis Cluster on sharded pub/sub (README.md, "Redis
# Cluster"), against a real cluster of 3 primaries and 3 replicas on
# loopback: a message is published once on its conversation's channel in
# its shard (SPUBLISH chat:c:{<conv>}), the workers of its members'
# sessions SSUBSCRIBE to it (and to their users' own channels,
# chat:u:{<user>}), learnt at CONNECT and from membership events, and drop
# it with the last session. The slot move and the failover with a
# receiver on the other server are t/124-redis-cluster.t's (tests 3, 5).
# Presence rides the user's sharded channel chat:presence:{<user>}.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

use Test::Chat::RedisCluster;

plan_from_blocks();

# the cluster of this file
redis_cluster_start('125-cluster-pubsub');

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(
    ws => 'chat_send_rate off; chat_max_requests_in_flight 0;');

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes qw(time sleep);
use File::Temp ();
use Test::Chat::RedisCluster;

my $port = $ENV{TEST_NGINX_REDIS_CLUSTER_PORT};
our $cluster_dir = redis_cluster_dir();

# the pid file of the node on a port
sub cluster_pidfile { "$cluster_dir/cluster/$_[0]/redis.pid" }


# PUBSUB SHARDNUMSUB of a channel on the primary of its slot
sub shard_subs {
    my ($channel) = @_;
    my ($tag) = $channel =~ /(\{[^}]*\})/;
    my $pp = primary_of_slot(slot_of($tag));
    my @l = split /\n/, rcli($pp, 'PUBSUB', 'SHARDNUMSUB', $channel);
    return $l[1] // 0;
}

# waits until the channel's subscriber count is n (within 5 s); the count
sub wait_subs {
    my ($channel, $n) = @_;
    my $got;
    for (1 .. 50) {
        $got = shard_subs($channel);
        return $got if $got == $n;
        sleep 0.1;
    }
    return $got;
}

# every plain (not sharded) channel with subscribers, on every primary
sub plain_channels {
    my %ch;
    for my $n (0 .. 5) {
        my $role = (split /\n/, rcli($port + $n, 'ROLE'))[0] // '';
        next unless $role eq 'master';
        $ch{$_} = 1 for grep { $_ ne '' }
                        split /\n/, rcli($port + $n, 'PUBSUB', 'CHANNELS', 'chat:*');
    }
    return sort keys %ch;
}

# the MESSAGE frames of one destination a session gets within secs (at most
# n): their decoded bodies
sub recv_dest {
    my ($c, $dest, $n, $secs) = @_;
    my @got;
    my $until = time + $secs;
    while (@got < $n && time < $until) {
        my $f = $c->stomp_recv(0.5) or next;
        push @got, json_decode($f->{body})
            if $f->{command} eq 'MESSAGE'
               && $f->{headers}{destination} eq $dest;
    }
    return @got;
}

package main;

run_tests();

__DATA__

=== TEST 1: one SPUBLISH per message in the conversation's shard reaches the members on two servers; typing and read receipts ride the same channel; no plain channel of users or workers is subscribed
--- need_module
--- workers: 2
--- second_server
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $g = conversation('ann1', 'group', { name => 'g1' }, 'ben1', 'cat1');
my $a = member('ann1');
my $b = member('ben1', port => server_port2());
my $c = member('cat1', port => server_port2());
$_->subscribe('/user/queue/typing', 't') for $b, $c;
$a->subscribe('/user/queue/receipts', 'r');

my $subs = shard_subs("chat:c:{$g}");
ok($subs >= 2, "the conversation's channel has subscribers on its primary"
   . " (a worker of each server: $subs)");
ok(shard_subs('chat:u:{ben1}') >= 1, "ben1's own channel is sharded, in ben1's slot");
my @plain = grep { /^chat:(u|w|c):/ } plain_channels();
is(join(' ', @plain), '', 'no plain user, worker or conversation channel is subscribed');

my @sent = send_receipted($a, $g, qw(one two three));
is(join(',', map { $_->{seq} } @sent), '1,2,3', 'seqs 1..3 (ann1 got her own)');
for my $s ([$b, 'ben1'], [$c, 'cat1']) {
    my @m = recv_dest($s->[0], '/user/queue/messages', 3, 5);
    is(join(',', map { "$_->{seq}:$_->{content}" } @m), '1:one,2:two,3:three',
       "$s->[1] (server 2) got them in order");
}

$a->send_json('/app/chat.typing', { conversationId => $g });
for my $s ([$b, 'ben1'], [$c, 'cat1']) {
    my ($t) = recv_dest($s->[0], '/user/queue/typing', 1, 5);
    is($t && $t->{userId}, 'ann1', "$s->[1] saw ann1 typing");
}

$b->send_json('/app/chat.read', { conversationId => $g, seq => 3 });
my @r;
for (1 .. 3) {
    push @r, grep { $_->{type} eq 'read' && $_->{userId} eq 'ben1' }
             recv_dest($a, '/user/queue/receipts', 5, 2);
    last if @r;
}
is(@r && $r[0]{seq}, 3, "ann1 got ben1's read receipt");
--- tests: 9
--- no_error_log
[error]



=== TEST 2: added to a group while online: the next message arrives without reconnecting; removed: the worker's subscription goes
--- need_module
--- workers: 2
--- second_server
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
# ann2 only on server 2, dan2 only on server 1: one worker each
my $g = conversation('ann2', 'group', { name => 'g2' }, 'eve2');
my $a = member('ann2', port => server_port2());
my $d = member('dan2');
$d->subscribe('/user/queue/events', 'ev');
is(wait_subs("chat:c:{$g}", 1), 1, "only ann2's worker listens to the group");

my ($st) = api(POST => "/conversations/$g/members", 'ann2', { userId => 'dan2' });
is($st, 200, 'dan2 added');
my ($ev) = recv_dest($d, '/user/queue/events', 1, 5);
is($ev && "$ev->{type} $ev->{conversationId}", "member.added $g",
   'dan2 got the event');
is(wait_subs("chat:c:{$g}", 2), 2, "dan2's worker subscribed to the group");

send_receipted($a, $g, 'welcome');
my ($m) = recv_dest($d, '/user/queue/messages', 1, 5);
is($m && $m->{content}, 'welcome', 'dan2 got the next message, same session');

($st) = api(DELETE => "/conversations/$g/members/dan2", 'ann2');
is($st, 204, 'dan2 removed');
is(wait_subs("chat:c:{$g}", 1), 1, "dan2's worker dropped the group's channel");
send_receipted($a, $g, 'after');
is(scalar(recv_dest($d, '/user/queue/messages', 1, 1.5)), 0,
   'dan2 gets nothing of it');
--- tests: 8
--- no_error_log
[error]



=== TEST 3: the last session of a worker's users gone: its conversation and user channels are unsubscribed
--- need_module
--- workers: 2
--- second_server
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('fay3', 'direct', 'gus3');
my $f = member('fay3');
my $f2 = member('fay3');
my $g = member('gus3', port => server_port2());
is(wait_subs("chat:c:{$conv}", 2) >= 2 ? 1 : 0, 1,
   'the workers of both servers listen');
my $n = shard_subs("chat:c:{$conv}");
$g->close;
is(wait_subs("chat:c:{$conv}", $n - 1), $n - 1, "gus3's worker unsubscribed");
is(wait_subs('chat:u:{gus3}', 0), 0, "and from gus3's own channel");
$f->close;
send_receipted($f2, $conv, 'still here');
ok(shard_subs("chat:c:{$conv}") >= 1, "fay3's other session keeps it");
$f2->close;
is(wait_subs("chat:c:{$conv}", 0), 0, 'nobody listens after the last session');
is(wait_subs('chat:u:{fay3}', 0), 0, "nor to fay3's own channel");
--- tests: 6
--- no_error_log
[error]



=== TEST 4: cold: CONNECTED waits for the SSUBSCRIBEs of all the user's conversations; a message sent right after it arrives
--- need_module
--- workers: 1
--- second_server
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
# (a creator each: conversations are created at a limited rate per user)
my @convs = map { conversation("mk4x$_", 'group', { name => "g$_" }, 'hal4', 'ivy4') }
            1 .. 40;
my $h = member('hal4');
my $i = member('ivy4', port => server_port2());
# right after CONNECTED: one message to each
send_pipelined($h, \@convs, 'c', map { "to-$_" } 1 .. 40);
my @m = recv_dest($i, '/user/queue/messages', 40, 10);
is(scalar(@m), 40, 'ivy4 got the message of each of 40 conversations');
is(scalar(grep { shard_subs("chat:c:{$_}") == 2 } @convs), 40,
   'each conversation has a subscriber on each server');
--- tests: 2
--- no_error_log
[error]



=== TEST 5: presence on the user's sharded channel, across servers: online, offline, and a block's cut
--- need_module
--- workers: 2
--- second_server
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('kim5', 'direct', 'lou5');
api(POST => "/conversations/$conv/accept", 'lou5');
my $k = member('kim5', port => server_port2());
ok($k->subscribe('/topic/presence.lou5', 'p'), 'RECEIPT of the SUBSCRIBE');
my $p = $k->stomp_message('/topic/presence.lou5', 3);
ok($p && $p->{online} eq '0', 'snapshot: offline');
ok(shard_subs('chat:presence:{lou5}') >= 1,
   "lou5's presence channel is sharded, in lou5's slot");
is(join(' ', grep { /^chat:presence:/ } plain_channels()), '',
   'no plain presence channel');
my $l = member('lou5');
$p = $k->stomp_message('/topic/presence.lou5', 5);
ok($p && $p->{online} eq '1', 'online, seen on the other server');
$l->disconnect;
$p = $k->stomp_message('/topic/presence.lou5', 5);
ok($p && $p->{online} eq '0', 'offline');
my ($st) = api(POST => '/blocks/kim5', 'lou5');
is($st, 204, 'lou5 blocks kim5');
my $f;
for (1 .. 10) {
    $f = $k->stomp_recv(0.5) or next;
    last if $f->{command} eq 'MESSAGE'
            && $f->{headers}{destination} eq '/user/queue/errors';
}
like($f && $f->{body}, qr/blocked/, "the block ended kim5's presence subscription");
--- tests: 8
--- no_error_log
[error]



=== TEST 6: a large group (more than 64 members): the publish names no members, each worker delivers to its members of it, and typing skips the typist
--- need_module
--- workers: 2
--- second_server
--- no_chat_stores
--- http_config
    chat_redis cluster $TEST_NGINX_CLUSTER_SEEDS;
    chat_postgres "$TEST_NGINX_PG_DSN";
    chat_kafka $TEST_NGINX_KAFKA_BROKERS;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $g = conversation('max6', 'group', { name => 'big' }, map { "m6x$_" } 1 .. 70);
my $a = member('max6');
$a->subscribe('/user/queue/typing', 't');
my @m = map { member("m6x$_", port => $_ % 2 ? server_port2() : undef) } 1 .. 4;
$_->subscribe('/user/queue/typing', 't') for @m;
my (undef, $mon) = File::Temp::tempfile(UNLINK => 1);
my $pp = primary_of_slot(slot_of("{$g}"));
system("timeout 4 redis-cli -p $pp monitor > $mon 2>&1 &");
sleep 0.3;
send_receipted($a, $g, 'hello all');
my $ok = 0;
for my $c (@m) {
    my ($msg) = recv_dest($c, '/user/queue/messages', 1, 5);
    $ok++ if $msg && $msg->{content} eq 'hello all';
}
is($ok, 4, 'the members on both servers got it');
$m[0]->send_json('/app/chat.typing', { conversationId => $g });
my ($t) = recv_dest($a, '/user/queue/typing', 1, 5);
is($t && $t->{userId}, 'm6x1', 'max6 saw m6x1 typing');
is(scalar(recv_dest($m[0], '/user/queue/typing', 1, 1)), 0,
   'the typist does not get its own typing');
sleep 0.5;
open(my $fh, '<', $mon) or die "monitor: $!\n";
my @pubs = grep { /"SPUBLISH" "chat:c:\{\Q$g\E\}"/ } <$fh>;
close $fh;
unlink $mon;
ok(@pubs >= 1 && !grep({ !/"SPUBLISH" "chat:c:\{[^}]*\}" "\*/ } @pubs),
   'its publishes name no members (' . scalar(@pubs) . ')');
--- tests: 4
--- no_error_log
[error]
