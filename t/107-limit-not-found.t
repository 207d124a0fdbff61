# A "no such conversation" is remembered by the worker for a while: a flood
# of SENDs to an id that does not exist costs one database query, not one
# each; the senders still get not_found every time.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(
    ws => 'chat_send_rate off;', more => <<'_EOC_');
    location = /metrics {
        chat_metrics;
    }
_EOC_

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

# PostgreSQL queries the worker has made
sub queries { metric('ngx_chat_link_rtt_seconds_count{link="postgresql"}') // -1e9 }

package main;

run_tests();

__DATA__

=== TEST 1: 300 SENDs to one id that does not exist: 300 not_found, one query for the first batch and none after; a bystander's round trip stays low
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $alice = member('alice1');
my $aconv = conversation('alice1', 'direct', 'bob1');
round_trip($alice, $aconv, 1);
my $m = member('mallory1');
my $bad = 'c_00000000000000000000000000000bad';
my (%codes, $q0);
# in batches one after the other (a batch's SENDs share one rebuild anyway);
# the first asks the database, the other five must not
for my $batch (1 .. 6) {
    send_pipelined($m, [($bad) x 50], "b${batch}r", map { "m$_" } 1 .. 50);
    my ($rc, $err) = collect_answers($m, 50, 20);
    $codes{ $_->{code} }++ for values %$err;
    $codes{accepted} += keys %$rc;
    $q0 = queries() if $batch == 1;
}
is($codes{not_found}, 300, 'every one of them: not_found')
    or diag(join ' ', %codes);
my $q = queries() - $q0;
is($q, 0, 'after the first batch the database is not asked again');
cmp_ok(round_trip($alice, $aconv, 5), '<', 0.25,
       'the bystander\'s round trip stays low');
my ($st) = api(GET => "/conversations/$aconv/messages?limit=1", 'alice1');
is($st, 200, 'the API goes on');
--- no_error_log
[error]
