# A session's SENDs keep their order (PROTOCOL.md section 6) on the cold
# paths that used to break it: fresh workers, a Redis that has no scripts
# loaded yet, new conversations, first frames pipelined without waiting.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use Test::Chat::Order;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Test::Chat::Order;

sub new_group {
    conversation($_[0], 'group', { name => 'order' }, @_[1 .. $#_]);
}

# a cold start: fresh workers (nginx restarted) and a Redis that has
# forgotten its scripts, as after a deploy on a new Redis
sub cold_start {
    my (@servers) = @_;
    redis_cmd('SCRIPT', 'FLUSH');
    nginx_restart($_) for @servers;
}

package main;

run_tests();

__DATA__

=== TEST 1: cold start, one sender pipelines 30 SENDs with receipts: history in send order
--- workers: 2
--- restart
--- tests: 1
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my @bad;
my @pace = (0, 0.0002, 0.0005, 0.001, 0.002, 0.005);
for my $round (1 .. 6) {
    cold_start(1);
    my $a = order_session("alice1r$round");
    my $b = order_session("bob1r$round");
    my $conv = new_group("alice1r$round", "bob1r$round");
    order_send($a, $conv, 30, receipt => 1, pace => $pace[$round - 1]);
    order_pump([$a, $b], 20, order_settled([$a]));
    order_pump([$a, $b], 0.3);
    push @bad, map { "round $round: $_" }
               order_check([$a, $b], { $conv => "bob1r$round" });
}
ok(!@bad, 'six cold starts: every SEND in order, RECEIPTs in order')
    or diag(join "\n", @bad[0 .. ($#bad < 19 ? $#bad : 19)]);
--- no_error_log
[error]



=== TEST 2: cold start on two servers: two senders pipeline 40 SENDs each into a new group
--- second_server
--- workers: 2
--- restart
--- tests: 1
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my @bad;
for my $round (1 .. 4) {
    cold_start(1, 2);
    my $a = order_session("alice2r$round");
    my $b = order_session("bob2r$round", port => server_port2());
    my @watch = (order_session("carol2r$round"),
                 order_session("carol2r$round", port => server_port2()));
    my $conv = new_group("alice2r$round", "bob2r$round", "carol2r$round");
    if ($round % 2) {
        order_send($a, $conv, 40, receipt => 0.5);
        order_send($b, $conv, 40, receipt => 0.5);
    } else {
        order_send($a, $conv, 40, receipt => 0.5, split => 1,
                   pace => 0.0005 * $round, also => [[$b, $conv]]);
    }
    my $all = [$a, $b, @watch];
    order_pump($all, 20, { cb => sub {
        !grep { (grep { $_->{command} eq 'MESSAGE' } @{ $_->{frames} })
                < 80 } @$all
    } });
    order_pump($all, 0.3);
    push @bad, map { "round $round: $_" }
               order_check($all, { $conv => "carol2r$round" });
}
ok(!@bad, 'four cold starts: 1..80 everywhere, each sender in its order')
    or diag(join "\n", @bad[0 .. ($#bad < 19 ? $#bad : 19)]);
--- no_error_log
[error]



=== TEST 3: a cache rebuild and a retried clientMsgId keep the order
--- workers: 2
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = order_session('alice3');
my $a2 = order_session('alice3');
my $b = order_session('bob3');
my $conv = new_group('alice3', 'bob3');
order_send($a, $conv, 10, receipt => 1, cmid => 1);
order_pump([$a, $a2, $b], 10, order_settled([$a]));
redis_cmd('DEL', "chat:m:{$conv}");
order_send($a, $conv, 20, receipt => 1, cmid => 1);
order_send($a2, $conv, 20, receipt => 1, cmid => 1);
order_retry($a, 25);
order_pump([$a, $a2, $b], 20, order_settled([$a, $a2]));
order_pump([$a, $a2, $b], 0.3);
my @bad = order_check([$a, $a2, $b], { $conv => 'bob3' });
ok(!@bad, 'order kept across a rebuild, retries answered again, no duplicate')
    or diag(join "\n", @bad[0 .. ($#bad < 19 ? $#bad : 19)]);
my ($h) = order_history('bob3', $conv);
is(scalar @$h, 50, 'fifty messages, the retries added none');
--- no_error_log
[error]



=== TEST 4: Redis forgets its scripts and the membership cache in the middle of pipelined SENDs
--- second_server
--- workers: 2
--- tests: 1
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my @bad;
for my $round (1 .. 8) {
    my @s = (order_session("alice4r$round"),
             order_session("alice4r$round", port => server_port2()),
             order_session("bob4r$round", port => server_port2()));
    my $conv = new_group("alice4r$round", "bob4r$round");
    order_send($s[0], $conv, 2, receipt => 1);
    order_pump(\@s, 10, order_settled(\@s));
    for my $half (1, 2) {
        order_send($s[0], $conv, 12, receipt => 1, split => 1,
                   also => [[$s[1], $conv], [$s[2], $conv]]);
        last if $half == 2;
        redis_cmd('SCRIPT', 'FLUSH');
        redis_cmd('DEL', "chat:m:{$conv}");
    }
    order_pump(\@s, 20, order_settled(\@s));
    order_pump(\@s, 0.3);
    push @bad, map { "round $round: $_" }
               order_check(\@s, { $conv => "bob4r$round" });
    $_->{c}->disconnect_tcp for @s;
}
ok(!@bad, 'eight rounds: every session kept its order')
    or diag(join "\n", @bad[0 .. ($#bad < 19 ? $#bad : 19)]);
--- no_error_log
[error]
