# chat_max_transaction_size: the bytes a session's open transactions hold
# (the SENDs waiting for their COMMIT) are capped; past the cap the session
# gets an ERROR frame "transaction too large" and is closed, the other
# sessions go on. COMMIT and ABORT give the bytes back.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1);
$ENV{TEST_NGINX_CHAT_CONFIG4K} = chat_config(
    ws => 'chat_max_transaction_size 4k;', metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub limited {
    metric('ngx_chat_limited_total{limit="transaction_size"}') // -1e9;
}

# a SEND of content to conv in transaction tx
sub tx_send {
    my ($c, $tx, $conv, $content) = @_;
    return $c->send_json('/app/chat.send',
                         { conversationId => $conv, content => $content },
                         transaction => $tx);
}

# the ERROR frame's message, then whether the connection closed
sub error_and_close {
    my ($c) = @_;
    my $f = $c->stomp_wait(sub { $_->{command} eq 'ERROR' }, 5);
    my $code = $c->expect_close(3);
    return ($f ? $f->{headers}{message} : 'no ERROR', $f ? $f->{body} : '',
            defined $code && $c->is_eof(3));
}

package main;

run_tests();

__DATA__

=== TEST 1: 4k: bytes come back at COMMIT and ABORT; the SEND that passes 4k closes the session with "transaction too large"
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG4K
--- perl
my $m = member('mallory1');
my $conv = conversation('mallory1', 'direct', 'bob1');
my $m0 = limited();
my $k = 'k' x 1000;
for my $round (1 .. 3) {
    $m->stomp_send('BEGIN', { transaction => "t$round" });
    tx_send($m, "t$round", $conv, "$k$_") for 1 .. 3;
    $m->stomp_send($round == 2 ? 'ABORT' : 'COMMIT',
                   { transaction => "t$round", receipt => "c$round" });
    $m->stomp_wait(sub { $_->{command} eq 'RECEIPT'
                         && $_->{headers}{'receipt-id'} eq "c$round" }, 5);
}
ok(!$m->{eof}, 'three transactions of 3 KB, one after the other: open');
my $other = member('mallory1');
$m->stomp_send('BEGIN', { transaction => 'a' });
$m->stomp_send('BEGIN', { transaction => 'b' });
tx_send($m, 'a', $conv, "$k$_") for 1 .. 2;
tx_send($m, 'b', $conv, "$k$_") for 1 .. 2;
my ($msg, $body, $closed) = error_and_close($m);
is($msg, 'transaction too large', 'the fourth KB held in two transactions: ERROR');
like($body, qr/chat_max_transaction_size/, 'which says the limit');
ok($closed, 'and the connection closes');
ok(eval { send_receipted($other, $conv, 'still here') },
   'the user\'s other session goes on');
is(limited() - $m0, 1, 'counted in ngx_chat_limited_total');
--- no_error_log
[error]



=== TEST 2: the audit's attack with the default (256k): 8 transactions of 60 KB SENDs; the fifth SEND closes the session, a bystander's round trip stays low
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $alice = member('alice2');
my $aconv = conversation('alice2', 'direct', 'bob2');
my $m = member('mallory2');
my $conv = conversation('mallory2', 'direct', 'bob2');
my $big = 'x' x (60 * 1024);
my $sent = 0;
TX: for my $t (1 .. 8) {
    $m->stomp_send('BEGIN', { transaction => "t$t" }) or last;
    for (1 .. 128) {
        tx_send($m, "t$t", $conv, $big) or last TX;
        $sent++;
    }
}
my ($msg, undef, $closed) = error_and_close($m);
is($msg, 'transaction too large', 'ERROR "transaction too large"')
    or diag("SENDs written: $sent");
ok($closed, 'the connection closes');
cmp_ok(round_trip($alice, $aconv, 5), '<', 0.25,
       'the bystander\'s round trip stays low');
--- no_error_log
[error]
