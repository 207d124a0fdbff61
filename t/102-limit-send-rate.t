# chat_send_rate: a user's SENDs to /app/chat.send on a worker go through a
# token bucket in the style of limit_req (rate and burst); over it a SEND
# gets rate_limited on /user/queue/errors, the session stays open, and the
# other users are not slowed down.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1);
$ENV{TEST_NGINX_CHAT_CONFIG5} = chat_config(
    ws => 'chat_send_rate 5r/s burst=10;', metrics => 1);
$ENV{TEST_NGINX_CHAT_CONFIG_OFF} = chat_config(
    ws => 'chat_send_rate off;', metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub limited {
    metric('ngx_chat_limited_total{limit="send_rate"}') // -1e9;
}

sub uuid {
    sprintf('%08x-%04x-4%03x-8%03x-%012x', rand(2**32), rand(2**16),
            rand(2**12), rand(2**12), rand(2**48));
}

sub nums { join ' ', sort { $a <=> $b } map { /(\d+)$/ } keys %{ $_[0] } }

package main;

run_tests();

__DATA__

=== TEST 1: 5r/s burst=10: of 30 SENDs at once 11 pass, 19 get rate_limited; a second later five more pass
--- tests: 7
--- config
$TEST_NGINX_CHAT_CONFIG5
--- perl
my $m = member('mallory1');
my $conv = conversation('mallory1', 'direct', 'bob1');
my $m0 = limited();
send_pipelined($m, $conv, 'r', map { "m$_" } 1 .. 30);
my ($rc, $err, $own) = collect_answers($m, 30);
is(nums($rc), join(' ', 1 .. 11), 'the first 11 accepted');
is(nums($err), join(' ', 12 .. 30), 'the other 19 refused, by receipt');
is(scalar(grep { $_->{code} eq 'rate_limited' } values %$err), 19,
   'with rate_limited');
like($err->{r12}{message} // '', qr/chat_send_rate/, 'the message says why');
is(limited() - $m0, 19, 'counted in ngx_chat_limited_total');
select(undef, undef, undef, 1.1);
send_pipelined($m, $conv, 'x', map { "x$_" } 1 .. 10);
my ($rc2, $err2) = collect_answers($m, 10);
my $k = keys %$rc2;
ok($k >= 5 && $k <= 6 && nums($rc2) eq join(' ', 1 .. $k),
   '1.1 s later, 5r/s: the first 5 or 6 of 10 pass')
    or diag('passed: ' . nums($rc2));
is(nums($err2), join(' ', $k + 1 .. 10), 'and the others are refused');
--- no_error_log
[error]



=== TEST 2: the bucket is the user's: a second session of the user is limited too, another user is not
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG5
--- perl
my $m1 = member('mallory2');
my $m2 = member('mallory2');
my $alice = member('alice2');
my $conv = conversation('mallory2', 'group', { name => 'g' }, 'alice2');
send_pipelined($m1, $conv, 'r', map { "m$_" } 1 .. 11);
my ($rc) = collect_answers($m1, 11);
is(scalar keys %$rc, 11, 'the first session spent the burst');
send_pipelined($m2, $conv, 's', 'other session');
my (undef, $err) = collect_answers($m2, 1);
is($err->{s1} && $err->{s1}{code}, 'rate_limited',
   'the second session of the user is refused');
send_pipelined($alice, $conv, 'a', map { "a$_" } 1 .. 11);
my ($arc) = collect_answers($alice, 11);
is(scalar keys %$arc, 11, 'another user has a bucket of her own');
--- no_error_log
[error]



=== TEST 3: chat_send_rate off: 100 SENDs at once all pass
--- tests: 1
--- config
$TEST_NGINX_CHAT_CONFIG_OFF
--- perl
my $m = member('mallory3');
my $conv = conversation('mallory3', 'direct', 'bob3');
send_pipelined($m, $conv, 'r', map { "m$_" } 1 .. 100);
my ($rc, $err) = collect_answers($m, 100, 20);
is(scalar keys %$rc, 100, 'all accepted');
--- no_error_log
[error]



=== TEST 4: the audit's flood with the defaults (20r/s burst=100): 5,000 SENDs to random ids; 101 reach the stores, the rest are refused, a bystander's round trip stays low
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $alice = member('alice4');
my $aconv = conversation('alice4', 'direct', 'bob4');
my $m = member('mallory4');
my $n = 5000;
send_pipelined($m, [map { uuid() } 1 .. $n], 'r', map { "m$_" } 1 .. $n);
my $rtt = round_trip($alice, $aconv, 5);
my ($rc, $err) = collect_answers($m, $n, 60);
my %codes;
$codes{ $_->{code} }++ for values %$err;
is(keys(%$rc) + keys(%$err), $n, 'every SEND answered')
    or diag(join ' ', %codes);
cmp_ok($codes{not_found} // 0, '<=', 101 + 5,
       'only the burst reached the stores (not_found)')
    or diag(join ' ', %codes);
cmp_ok($codes{rate_limited} // 0, '>=', $n - 101 - 5 - 128,
       'the rest refused, by the rate or the in-flight cap')
    or diag(join ' ', %codes);
cmp_ok($rtt, '<', 0.25, 'the bystander\'s round trip stays low');
--- no_error_log
[error]
