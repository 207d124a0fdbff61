# A push token registered by another user (PROTOCOL.md section 7, "Push
# tokens"): it moves, the user it was taken from is told on
# /user/queue/events (without who took it), that user's later DELETE
# answers 409 instead of 204, and each move is counted; a bystander keeps
# a low round trip while an attacker takes tokens in bulk.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use POSIX ();

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub moved {
    metric('ngx_chat_limited_total{limit="device_moved"}') // -1e9;
}

sub owner {
    my ($token) = @_;
    my @r = pg_query("SELECT user_id FROM devices WHERE token = '$token'");
    return @r ? $r[0][0] : 'none';
}

sub register {
    my ($user, $token, $platform) = @_;
    my ($st) = api(POST => '/devices', $user,
                   { platform => $platform // 'android', token => $token });
    return $st;
}

package main;

run_tests();

__DATA__

=== TEST 1: a token taken by another user: the holder is told, its DELETE answers 409 and deletes nothing, the move is counted
--- tests: 11
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = moved();
my $a = stomp_connect('/ws/chat', user => 'ann1');
$a->subscribe('/user/queue/events', 'ev');
is(register('ann1', 'tok1:a'), 201, 'ann registers her token');
is(register('mal1', 'tok1:a', 'web'), 201, 'mallory registers the same');
is(owner('tok1:a'), 'mal1', 'it moved');
my $f = $a->stomp_expect('MESSAGE', 3);
my $ev = json_decode($f ? $f->{body} : '{}');
is("$ev->{type} $ev->{token}", 'device.moved tok1:a',
   'ann\'s session is told: device.moved with the token');
ok(!grep({ /mal1/ } values %$ev) && $ev->{at}, 'when, but not who');
is(moved() - $m0, 1, 'counted');
my ($st, $j) = api(DELETE => '/devices/tok1:a', 'ann1');
is("$st $j->{error}{code}", '409 conflict', 'ann\'s DELETE: 409 conflict');
like($j->{error}{message} // '', qr/no longer yours.*not deleted/,
     'saying the token is no longer hers');
is(owner('tok1:a'), 'mal1', 'and it did not delete mallory\'s');
is(register('ann1', 'tok1:a'), 201, 'ann registers it again: hers');
($st) = api(DELETE => '/devices/tok1:a', 'ann1');
is("$st " . owner('tok1:a'), '204 none', 'now her DELETE deletes it');
--- no_error_log
[error]



=== TEST 2: the same user again, another platform, twice DELETE, a token never registered: no event, not counted, 204
--- tests: 5
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = moved();
my $b = stomp_connect('/ws/chat', user => 'bob2');
$b->subscribe('/user/queue/events', 'ev');
is(register('bob2', 'tok2:b') . ' ' . register('bob2', 'tok2:b', 'ios'),
   '201 201', 'registered twice by bob');
ok($b->stomp_silent(0.5), 'no event');
is(moved() - $m0, 0, 'not counted');
my ($s1) = api(DELETE => '/devices/tok2:b', 'bob2');
my ($s2) = api(DELETE => '/devices/tok2:b', 'bob2');
is("$s1 $s2", '204 204', 'DELETE twice: 204 both');
my ($s3) = api(DELETE => '/devices/tok2:never', 'bob2');
is($s3, 204, 'a token never registered: 204');
--- no_error_log
[error]



=== TEST 3: an attacker takes 100 users' tokens: each victim's DELETE says so, 100 counted, a bystander keeps a low round trip
--- tests: 4
--- perl_timeout: 90
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = moved();
register("vic3-$_", "tok3:$_") for 1 .. 100;
my $alice = member('alice3');
my $aconv = conversation('alice3', 'direct', 'bob3');
my @kids;
for my $k (0 .. 1) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        register('mal3', 'tok3:' . ($k * 50 + $_)) for 1 .. 50;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
my $rtt = round_trip($alice, $aconv, 5);
waitpid($_, 0) for @kids;
is(scalar(pg_query("SELECT 1 FROM devices WHERE user_id = 'mal3'")), 100,
   'all 100 moved');
is(moved() - $m0, 100, '100 counted');
my $n409 = grep { (api(DELETE => "/devices/tok3:$_", "vic3-$_"))[0] == 409 }
           1 .. 100;
is($n409, 100, 'every victim\'s DELETE answers 409');
cmp_ok($rtt, '<', 0.25, 'the bystander\'s round trip stays low')
    or diag("rtt: $rtt s");
--- no_error_log
[error]
