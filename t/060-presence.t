# Presence (/topic/presence.<userId>: snapshot, changes, authorization,
# several devices on several servers, a killed gateway) and delivered
# receipts (on ACK, on auto subscriptions, only forward).

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

# the blocks' location blocks: $TEST_NGINX_CHAT_CONFIG
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();

# the presence TTL of TEST 8 (chat_presence_ttl), in seconds
$ENV{TEST_NGINX_PRESENCE_TTL} ||= 6;
$ENV{TEST_NGINX_PRESENCE_TTL_CONF} = "$ENV{TEST_NGINX_PRESENCE_TTL}s";

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub client {
    my ($user, %o) = @_;
    return stomp_connect('/ws/chat', user => $user, %o);
}

# the next presence event of $user on $c
sub presence {
    my ($c, $user, $timeout) = @_;
    return $c->stomp_message("/topic/presence.$user", $timeout // 3);
}

# the next receipt of $type on $c
sub receipt {
    my ($c, $type, $timeout) = @_;
    my $until = time + ($timeout // 3);
    while ((my $left = $until - time) > 0) {
        my $r = $c->stomp_message('/user/queue/receipts', $left) or last;
        return $r if $r->{type} eq $type;
    }
    return undef;
}

my $iso = qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
sub iso { return $iso }

package main;

run_tests();

__DATA__

=== TEST 1: a snapshot at SUBSCRIBE, then online and offline with lastSeen
--- tests: 10
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('bob1', 'direct', 'alice1');
# bob asked: alice's presence is his to see once she accepts (t/111-consent.t)
api(POST => "/conversations/$conv/accept", 'alice1');
my $bob = member('bob1');
ok($bob->subscribe('/topic/presence.alice1', 'p'), 'RECEIPT of the SUBSCRIBE');
my $p = presence($bob, 'alice1');
is($p && $p->{type}, 'presence', 'snapshot');
is($p && $p->{userId}, 'alice1', 'whose');
ok($p && $p->{online} eq '0', 'never seen: offline');
my $alice = client('alice1');
$p = presence($bob, 'alice1');
ok($p && $p->{online} eq '1', 'online when alice connects');
like($p && $p->{lastSeen}, iso(), 'lastSeen is RFC 3339');
ok($alice->disconnect, 'alice leaves');
$p = presence($bob, 'alice1');
ok($p && $p->{online} eq '0', 'offline at once');
like($p && $p->{lastSeen}, iso(), 'lastSeen');
my $bob2 = member('bob1');
$bob2->subscribe('/topic/presence.alice1', 'p');
my $s = presence($bob2, 'alice1');
is($s && $s->{lastSeen}, $p->{lastSeen}, 'a later snapshot has lastSeen');
--- no_error_log
[error]



=== TEST 2: two devices on two servers: online until the last one leaves
--- second_server
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('bob2', 'direct', 'alice2');
api(POST => "/conversations/$conv/accept", 'alice2');
my $bob = member('bob2');
$bob->subscribe('/topic/presence.alice2', 'p');
presence($bob, 'alice2');
my $a1 = client('alice2');
my $p = presence($bob, 'alice2');
ok($p && $p->{online} eq '1', 'online');
my $a2 = client('alice2', port => server_port2());
my $watch2 = member('bob2', port => server_port2());
$watch2->subscribe('/topic/presence.alice2', 'p');
$p = presence($watch2, 'alice2');
ok($p && $p->{online} eq '1', 'snapshot on the other server: online');
ok($bob->stomp_silent(0.5), 'a second device changes nothing');
$a1->disconnect;
ok($bob->stomp_silent(1), 'still online: one device left');
$a2->close(1000, 'bye');
$p = presence($bob, 'alice2');
ok($p && $p->{online} eq '0', 'offline when the last one leaves');
$p = presence($watch2, 'alice2');
ok($p && $p->{online} eq '0', 'on both servers');
--- no_error_log
[error]



=== TEST 3: presence of a stranger is forbidden: ERROR, the session closes
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
conversation('alice3', 'direct', 'bob3');
my $eve = client('eve3');
$eve->subscribe('/topic/presence.alice3', 'p', 'auto', no_receipt => 1,
                headers => { receipt => 'r-eve' });
my $f = $eve->stomp_expect('ERROR', 3);
ok($f, 'ERROR');
is($f && $f->{headers}{'receipt-id'}, 'r-eve', 'names the receipt');
ok(defined $eve->expect_close(3), 'the session closes');
my $bob = client('bob3');
ok($bob->subscribe('/topic/presence.alice3', 'p'), 'a member may');
--- no_error_log
[error]



=== TEST 4: oneself is allowed; frames after the SUBSCRIBE keep their order
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = client('alice4');
$a->send_raw(ws_frame(opcode => 1, masked => 1, payload => join '',
    stomp_frame('SUBSCRIBE', [[destination => '/topic/presence.alice4'],
                              [id => 'p'], [receipt => 'r1']]),
    stomp_frame('SUBSCRIBE', [[destination => '/user/queue/errors'],
                              [id => 'e'], [receipt => 'r2']])));
my @f = map { $a->stomp_recv(3) } 1 .. 3;
is($f[0] && "$f[0]{command} $f[0]{headers}{'receipt-id'}", 'RECEIPT r1',
   'the RECEIPT of the presence SUBSCRIBE first');
is($f[1] && $f[1]{command}, 'MESSAGE', 'then the snapshot');
my $p = $f[1] && json_decode($f[1]{body});
ok($p && $p->{online} eq '1', 'oneself is online');
is($f[1] && $f[1]{headers}{subscription}, 'p', 'on its subscription');
is($f[2] && "$f[2]{command} $f[2]{headers}{'receipt-id'}", 'RECEIPT r2',
   'then the next frame');
my $c = client('carol4');
ok($c->subscribe('/topic/presence.carol4', 'p'), 'SUBSCRIBE with a receipt');
--- no_error_log
[error]



=== TEST 5: delivered on ACK (client mode), none before it
--- tests: 5
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice5', 'direct', 'bob5');
my $a = member('alice5');
$a->subscribe('/user/queue/receipts', 'r');
my $b = member('bob5', ack => 'client');
send_msg($a, $conv, "m$_") for 1 .. 3;
my @f;
for (1 .. 3) {
    my ($m, $f) = $b->stomp_message('/user/queue/messages', 3);
    push @f, $f;
}
is(scalar(grep { $_ && $_->{headers}{ack} } @f), 3, 'three MESSAGEs to ACK');
ok(!receipt($a, 'delivered', 2), 'nothing delivered before the ACK');
$b->stomp_send('ACK', { id => $f[1]{headers}{ack} });
my $r = receipt($a, 'delivered', 3);
is($r && "$r->{userId} $r->{conversationId} $r->{seq}", "bob5 $conv 2",
   'delivered up to 2 (client mode ACKs what came before too)');
like($r && $r->{at}, iso(), 'at');
$b->stomp_send('ACK', { id => $f[2]{headers}{ack} });
$r = receipt($a, 'delivered', 3);
is($r && $r->{seq}, 3, 'then 3');
--- no_error_log
[error]



=== TEST 6: delivered on an auto subscription, on any server
--- second_server
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice6', 'group', 'bob6', 'carol6');
my $a = member('alice6');
$a->subscribe('/user/queue/receipts', 'r');
my $b = member('bob6', port => server_port2());
send_msg($a, $conv, 'hi');
$b->stomp_message('/user/queue/messages', 3);
my $r = receipt($a, 'delivered', 3);
is($r && "$r->{userId} $r->{seq}", 'bob6 1', 'bob got it');
ok(!receipt($a, 'delivered', 1.5), 'carol has no session: nothing');
--- no_error_log
[error]



=== TEST 6b: watermarks that move together travel together, none to its own user
--- workers: 2
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice6b', 'group', 'bob6b', 'carol6b');
my %c = map { my $c = member($_); $c->subscribe('/user/queue/receipts', 'r');
              ($_ => $c) } qw(alice6b bob6b carol6b);
send_msg($c{alice6b}, $conv, 'hi');
$c{$_}->stomp_message('/user/queue/messages', 3) for keys %c;
my %got;
for my $u (sort keys %c) {
    while (my $r = receipt($c{$u}, 'delivered', 2.5)) {
        push @{ $got{$u} }, "$r->{userId}:$r->{seq}";
    }
}
is(join(' ', sort @{ $got{alice6b} || [] }), 'bob6b:1 carol6b:1',
   'the sender hears of both others');
is(join(' ', sort @{ $got{bob6b} || [] }), 'alice6b:1 carol6b:1',
   'bob of alice and carol');
is(join(' ', sort @{ $got{carol6b} || [] }), 'alice6b:1 bob6b:1',
   'carol of alice and bob');
is(redis_cmd('HGET', "chat:dl:{$conv}", 'carol6b'), 1, 'recorded in Redis');
--- no_error_log
[error]



=== TEST 7: watermarks never move back (client-individual)
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice7', 'direct', 'bob7');
my $a = member('alice7');
$a->subscribe('/user/queue/receipts', 'r');
my $b = member('bob7', ack => 'client-individual');
send_msg($a, $conv, "m$_") for 1 .. 3;
my @f = map { ($b->stomp_message('/user/queue/messages', 3))[1] } 1 .. 3;
$b->stomp_send('ACK', { id => $f[2]{headers}{ack} });
my $r = receipt($a, 'delivered', 3);
is($r && $r->{seq}, 3, 'delivered up to 3');
$b->stomp_send('ACK', { id => $f[0]{headers}{ack} });
$b->stomp_send('NACK', { id => $f[1]{headers}{ack} });
ok(!receipt($a, 'delivered', 2), 'an older ACK moves nothing');
is(redis_cmd('HGET', "chat:dl:{$conv}", 'bob7'), 3, 'recorded: 3');
my $b2 = member('bob7');
send_msg($a, $conv, 'm4');
$r = receipt($a, 'delivered', 3);
is($r && $r->{seq}, 4, 'a newer one moves it');
--- no_error_log
[error]



=== TEST 8: a killed gateway's users go offline within the TTL and a few seconds
--- second_server
--- tests: 4
--- perl_timeout: 60
--- http_config
    chat_presence_ttl $TEST_NGINX_PRESENCE_TTL_CONF;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('bob8', 'direct', 'alice8');
api(POST => "/conversations/$conv/accept", 'alice8');
my $bob = member('bob8');
$bob->subscribe('/topic/presence.alice8', 'p');
presence($bob, 'alice8');
my $alice = client('alice8', port => server_port2());
my $p = presence($bob, 'alice8');
ok($p && $p->{online} eq '1', 'online on server 2');
my $master = nginx_pid(2);
my @workers = Test::Chat::_workers($master);
kill 'KILL', $master, @workers;
my $t0 = time;
my $ttl = $ENV{TEST_NGINX_PRESENCE_TTL};
$p = presence($bob, 'alice8', $ttl + 8);
my $took = time - $t0;
ok($p && $p->{online} eq '0', 'offline');
ok($took <= $ttl + 5, "within TTL + 5 s ($took s)");
like($p && $p->{lastSeen}, iso(), 'lastSeen');
--- no_error_log
[error]



=== TEST 9: a renewal puts back a session Redis lost, says online once, and moves the expiry on
--- tests: 6
--- perl_timeout: 30
--- http_config
    chat_presence_ttl 3s;
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('bob9', 'direct', 'alice9');
api(POST => "/conversations/$conv/accept", 'alice9');
my $alice = client('alice9');
my $bob = member('bob9');
$bob->subscribe('/topic/presence.alice9', 'p');
my $p = presence($bob, 'alice9');
ok($p && $p->{online} eq '1', 'online (snapshot)');
# Redis loses the session (the user goes offline on its own: no event)
redis_cmd('DEL', 'chat:p:{alice9}');
redis_cmd('ZREM', 'chat:p:expiry', 'alice9');
# renewals every second (a third of the TTL)
$p = presence($bob, 'alice9', 4);
ok($p && $p->{online} eq '1', 'the renewal says online again');
is(redis_cmd('ZCARD', 'chat:p:{alice9}'), 1, 'the session is back');
my $exp1 = redis_cmd('ZSCORE', 'chat:p:expiry', 'alice9') // 0;
ok($exp1 > 0, 'the user is back in the expiry set');
# the next renewals find the session: no event, a later expiry
$p = presence($bob, 'alice9', 2.5);
ok(!$p, 'no second online event');
my $exp2 = redis_cmd('ZSCORE', 'chat:p:expiry', 'alice9') // 0;
ok($exp2 > $exp1, "the expiry moves on ($exp1 -> $exp2)");
--- no_error_log
[error]
