# chat_max_subscription_id: a SUBSCRIBE whose id is longer is refused at
# once with an ERROR frame (it used to get a RECEIPT, then every MESSAGE
# for it was dropped), and the connection closes.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1);
$ENV{TEST_NGINX_CHAT_CONFIG256} = chat_config(
    ws => 'chat_max_subscription_id 256;', metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub limited {
    metric('ngx_chat_limited_total{limit="subscription_id"}') // -1e9;
}

# SUBSCRIBE to the user's messages with id, with a receipt: the frame that
# answers
sub subscribe_id {
    my ($c, $id) = @_;
    $c->stomp_send('SUBSCRIBE', [[destination => '/user/queue/messages'],
                                 [id => $id], [receipt => 'sub']]);
    return $c->stomp_recv(3);
}

package main;

run_tests();

__DATA__

=== TEST 1: the default (128): an id of 128 bytes gets its messages; 129 bytes: ERROR "subscription id too long", closed
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = limited();
my $c = stomp_connect('/ws/chat', user => 'mallory1');
my $f = subscribe_id($c, 'i' x 128);
is($f && $f->{command}, 'RECEIPT', '128 bytes: RECEIPT');
my $conv = conversation('mallory1', 'direct', 'bob1');
my $bob = member('bob1');
send_msg($bob, $conv, 'to you');
my ($j, $mf) = $c->stomp_message('/user/queue/messages', 3);
is($mf && $mf->{headers}{subscription}, 'i' x 128,
   'and gets its MESSAGE, named by the id');
my $c2 = stomp_connect('/ws/chat', user => 'mallory1');
$f = subscribe_id($c2, 'i' x 129);
is($f && $f->{command}, 'ERROR', '129 bytes: ERROR');
is($f && $f->{headers}{message}, 'subscription id too long',
   'which says why');
ok(defined $c2->expect_close(3) && $c2->is_eof(3), 'then the close');
is(limited() - $m0, 1, 'counted in ngx_chat_limited_total');
--- no_error_log
[error]



=== TEST 2: 256 (the most): an id of 256 bytes that needs escaping still gets its messages; the audit's 1,000 bytes are refused
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG256
--- perl
my $id = ':\\' x 128;
my $c = stomp_connect('/ws/chat', user => 'mallory2');
my $f = subscribe_id($c, $id);
is($f && $f->{command}, 'RECEIPT', '256 bytes: RECEIPT');
my $conv = conversation('mallory2', 'direct', 'bob2');
my $bob = member('bob2');
send_msg($bob, $conv, 'to you');
my ($j, $mf) = $c->stomp_message('/user/queue/messages', 3);
is($mf && $mf->{headers}{subscription}, $id, 'and gets its MESSAGE');
my $c2 = stomp_connect('/ws/chat', user => 'mallory2');
$f = subscribe_id($c2, 'i' x 1000);
is($f && $f->{headers}{message}, 'subscription id too long',
   '1,000 bytes: ERROR');
--- no_error_log
[error]
