# chat_max_requests_in_flight: a session's requests waiting for the stores
# are capped; a SEND over the cap is refused with rate_limited on
# /user/queue/errors before it enters its conversation's FIFO (so nothing
# accepted is reordered), the session stays open, other users go on.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

# the SEND rate off: the in-flight cap alone (t/102 tests the rate)
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(ws => 'chat_send_rate off;',
                                           metrics => 1);
$ENV{TEST_NGINX_CHAT_CONFIG16} = chat_config(
    ws => 'chat_max_requests_in_flight 16; chat_send_rate off;',
    metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub limited {
    metric('ngx_chat_limited_total{limit="requests_in_flight"}') // -1e9;
}

sub uuid {
    sprintf('%08x-%04x-4%03x-8%03x-%012x', rand(2**32), rand(2**16),
            rand(2**12), rand(2**12), rand(2**48));
}

package main;

run_tests();

__DATA__

=== TEST 1: Redis stalls: of 40 pipelined SENDs the first 16 are accepted, in order; the other 24 get rate_limited with their receipts
--- tests: 7
--- config
$TEST_NGINX_CHAT_CONFIG16
--- perl
my $m = member('mallory1');
my $conv = conversation('mallory1', 'direct', 'bob1');
my $m0 = limited();
redis_cmd('CLIENT', 'PAUSE', 500);
send_pipelined($m, $conv, 'r', map { "m$_" } 1 .. 40);
my ($rc, $err, $own) = collect_answers($m, 40);
is(join(' ', sort { $a <=> $b } map { /(\d+)/ } keys %$rc),
   join(' ', 1 .. 16), 'RECEIPTs of the first 16');
is(join(' ', sort { $a <=> $b } map { /(\d+)/ } keys %$err),
   join(' ', 17 .. 40), 'rejections of the other 24, by receipt');
is(scalar(grep { $_->{code} eq 'rate_limited' } values %$err), 24,
   'all rate_limited');
like($err->{r17}{message} // '', qr/in flight/, 'the message says why');
my @more = eval { send_receipted($m, $conv, 'after') };
push @$own, @more ? $more[0]{content} : 'none';
is(join(' ', @$own), join(' ', (map { "m$_" } 1 .. 16), 'after'),
   'the accepted ones in send order; the session goes on');
is(limited() - $m0, 24, 'counted in ngx_chat_limited_total');
ok($m->stomp_silent(0.3), 'nothing more');
--- no_error_log
[error]



=== TEST 2: a COMMIT while the limit is reached is refused whole: rate_limited, none of its SENDs
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG16
--- perl
my $m = member('mallory2');
my $conv = conversation('mallory2', 'direct', 'bob2');
redis_cmd('CLIENT', 'PAUSE', 500);
send_pipelined($m, $conv, 'r', map { "m$_" } 1 .. 16);
my $body = json_encode({ conversationId => $conv, content => 'in tx' });
$m->send_raw(join '', map { ws_frame(opcode => 1, payload => $_) }
    stomp_frame('BEGIN', { transaction => 't1' }),
    stomp_frame('SEND', { destination => '/app/chat.send', transaction => 't1',
                          'content-type' => 'application/json' }, $body),
    stomp_frame('COMMIT', { transaction => 't1', receipt => 'c1' }));
my ($rc, $err, $own) = collect_answers($m, 17);
is($err->{c1} && $err->{c1}{code}, 'rate_limited',
   'the COMMIT is refused with rate_limited');
is(scalar keys %$rc, 16, 'the 16 SENDs have their RECEIPTs, not the COMMIT');
ok(!grep({ $_ eq 'in tx' } @$own), 'the transaction\'s SEND was dropped');
--- no_error_log
[error]



=== TEST 3: the audit's attack: 3,000 SENDs to random conversation ids in one go; the default cap (128) refuses most, a bystander's round trip stays low
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $alice = member('alice3');
my $aconv = conversation('alice3', 'direct', 'bob3');
my $m = member('mallory3');
my $m0 = limited();
my $n = 3000;
send_pipelined($m, [map { uuid() } 1 .. $n], 'r', map { "m$_" } 1 .. $n);
my $rtt = round_trip($alice, $aconv, 5);
my ($rc, $err) = collect_answers($m, $n, 60);
my %codes;
$codes{ $_->{code} }++ for values %$err;
is(keys(%$rc) + keys(%$err), $n, 'every SEND answered')
    or diag(join ' ', %codes);
cmp_ok($codes{rate_limited} // 0, '>', 0, 'some refused with rate_limited')
    or diag(join ' ', %codes);
cmp_ok($rtt, '<', 0.25, 'the bystander\'s round trip stays low');
is(limited() - $m0, $codes{rate_limited} // 0,
   'each refusal counted');
--- no_error_log
[error]
