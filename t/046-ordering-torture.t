# The ordering torture test (PROTOCOL.md section 6): several sessions per
# user on two servers of two workers each pipeline SENDs, with and without
# receipts and clientMsgIds, and edits and deletes of their earlier
# messages (section 10), into old and new conversations, while the test
# kills the gateways' Redis links, makes Redis forget its scripts and the
# membership caches, reloads nginx, retries SENDs and creates conversations.
# Then the whole contract is checked on every session and in history.
#
# Random, and replayable: each run prints its seed. TORTURE_SEED=N replays
# one run; TORTURE_RUNS (1) and TORTURE_ROUNDS (6) size it; `make torture`
# runs 20 seeds of 12 rounds.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

# the SEND rate limit off: a refused SEND tells nothing about the order
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(ws => 'chat_send_rate off;');

package Test::Chat::Sandbox;

# the test itself is Test::Chat::Torture's (t/126 runs it on a Redis
# Cluster)
use Test::Chat::Torture;

package main;

run_tests();

__DATA__

=== TEST 1: the ordering contract under reloads, link kills, cache and script loss
--- second_server
--- workers: 2
--- tests: 1
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
torture_main('t/046-ordering-torture.t');
--- no_error_log
[alert]
[crit]
