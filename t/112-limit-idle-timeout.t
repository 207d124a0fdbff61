# chat_idle_timeout: a session that sends no heart-beats (heart-beat 0,0,
# or STOMP 1.0) and no frame for that long gets an ERROR "idle timeout"
# and is closed (1008); a session with heart-beats keeps the heart-beat
# rule; another user's round trip stays low while a crowd of silent
# sessions is cut off.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes ();

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(
    ws => 'chat_idle_timeout 1s; chat_heartbeat 2s; '
          . 'chat_heartbeat_grace 500ms;',
    metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub limited {
    metric('ngx_chat_limited_total{limit="idle_timeout"}') // -1e9;
}

# the ERROR frame that closed c within timeout: "message: detail (code)"
sub closed_by {
    my ($c, $timeout) = @_;
    my $f = $c->stomp_wait(sub { $_[0]{command} eq 'ERROR' }, $timeout)
        or return 'no ERROR';
    my $code = $c->expect_close(2) // 'none';
    return "$f->{headers}{message}: $f->{body} ($code)";
}

package main;

run_tests();

__DATA__

=== TEST 1: heart-beat 0,0 and silent: ERROR "idle timeout" after chat_idle_timeout, closed 1008, counted
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = limited();
my $t0 = Time::HiRes::time();
my $c = stomp_connect('/ws/chat', user => 'sam1', heart_beat => '0,0');
my $why = closed_by($c, 4);
my $t = Time::HiRes::time() - $t0;
like($why, qr/^idle timeout: .*chat_idle_timeout.*heart-beats/s,
     'the ERROR says why');
like($why, qr/\(1008\)$/, 'closed with 1008');
ok($t >= 0.9 && $t < 2.5, 'after about a second') or diag("$t s");
is(limited() - $m0, 1, 'counted');
--- no_error_log
[error]



=== TEST 2: STOMP 1.0 (no heart-beats at all) is held to it as well
--- tests: 1
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = stomp_connect('/ws/chat', user => 'sam2', version => '1.0');
like(closed_by($c, 4), qr/^idle timeout: /, 'idle timeout');
--- no_error_log
[error]



=== TEST 3: a session without heart-beats that sends a frame now and then stays
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = member('sam3');
my $conv = conversation('sam3', 'direct', 'tom3');
for my $i (1 .. 5) {
    Time::HiRes::sleep(0.5);
    $c->send_json('/app/chat.typing', { conversationId => $conv });
}
my @got = eval { send_receipted($c, $conv, 'still here') };
is(scalar @got, 1, 'open after 2.5 s: a SEND goes through');
$c->send_raw(ws_frame(opcode => 1, payload => "\n"));
Time::HiRes::sleep(0.6);
$c->send_raw(ws_frame(opcode => 1, payload => "\n"));
Time::HiRes::sleep(0.6);
@got = eval { send_receipted($c, $conv, 'and now') };
is(scalar @got, 1, 'lone end-of-lines keep it open too');
--- no_error_log
[error]



=== TEST 4: a session with heart-beats keeps the heart-beat rule: silent, it is open after 1.5 s and closed by "heart-beat timeout"
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = stomp_connect('/ws/chat', user => 'sam4', heart_beat => '2000,0');
my $f = $c->stomp_wait(sub { $_[0]{command} eq 'ERROR' }, 1.5);
ok(!$f, 'no ERROR within 1.5 s');
like(closed_by($c, 3), qr/^heart-beat timeout/, 'then heart-beat timeout');
--- no_error_log
[error]



=== TEST 5: 200 silent sessions of 200 users are all cut off; meanwhile and after, a bystander's round trip stays low
--- tests: 3
--- perl_timeout: 90
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = limited();
my @idle = map { stomp_connect('/ws/chat', user => "idle5-$_") } 1 .. 200;
my $alice = member('alice5');
my $aconv = conversation('alice5', 'direct', 'bob5');
my $worst = 0;
for (1 .. 6) {
    my $rtt = round_trip($alice, $aconv, 1);
    $worst = $rtt if $rtt > $worst;
    Time::HiRes::sleep(0.3);
}
my $closed = grep { defined $_->expect_close(3) } @idle;
is($closed, 200, 'every silent session closed');
is(limited() - $m0, 200, 'each counted');
cmp_ok($worst, '<', 0.25, 'the bystander (sending) kept a low round trip')
    or diag("rtt: $worst s");
--- no_error_log
[error]
