# 055-watermarks.t: the REST API's receipts are exact: history statuses,
# lastReadSeq and unread take, per member, the higher of PostgreSQL's and
# Redis's watermarks (chat:dl:{<id>}, chat:r:{<id>}), so they move as soon as
# the gateway records an ACK or a chat.read, before the persistence worker
# (none runs here) writes them; and GET /presence.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

# the blocks' location blocks: $TEST_NGINX_CHAT_CONFIG
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes qw(time sleep);

# the statuses of the history as $user, in seq order
sub statuses {
    my ($user, $conv) = @_;
    my ($st, $j) = api(GET => "/conversations/$conv/messages", $user);
    return join ' ', map { $_->{status} } @{ $j->{messages} || [] };
}

# polls statuses() until it is $want (delivered watermarks are coalesced:
# at most a second late); returns the last answer
sub statuses_become {
    my ($user, $conv, $want, $secs) = @_;
    my $until = time + ($secs // 3);
    my $got;

    while (1) {
        $got = statuses($user, $conv);
        return $got if $got eq $want || time > $until;
        sleep 0.1;
    }
}

# $user's entry of $conv in GET /conversations, and GET /conversations/{id}
sub listed {
    my ($user, $conv) = @_;
    my ($st, $j) = api(GET => '/conversations', $user);
    my ($c) = grep { $_->{conversationId} eq $conv }
                   @{ $j->{conversations} || [] };
    my ($st2, $one) = api(GET => "/conversations/$conv", $user);
    return ($c || {}, $one || {});
}

package main;

run_tests();

__DATA__

=== TEST 1: delivered on ACK, read on chat.read, from Redis alone
--- tests: 9
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice1', 'direct', 'bob1');
my $a = member('alice1', ack => 'client');
my $b = member('bob1', ack => 'client');
send_receipted($a, $conv, 'm1', 'm2', 'm3');
my @f = map { ($b->stomp_message('/user/queue/messages', 3))[1] } 1 .. 3;
is(statuses('alice1', $conv), 'sent sent sent', 'not ACKed: sent');
$b->stomp_send('ACK', { id => $f[1]{headers}{ack} });
is(statuses_become('alice1', $conv, 'delivered delivered sent'),
   'delivered delivered sent', 'ACK of 2: delivered up to 2');
my ($l, $one) = listed('bob1', $conv);
is("$l->{lastReadSeq} $l->{unread}", '0 3', 'bob: nothing read, unread 3');
$b->send_json('/app/chat.read', { conversationId => $conv, seq => 1 });
is(statuses_become('alice1', $conv, 'read delivered sent'),
   'read delivered sent', 'read up to 1');
($l, $one) = listed('bob1', $conv);
is("$l->{lastSeq} $l->{lastReadSeq} $l->{unread}", '3 1 2',
   'GET /conversations: lastReadSeq 1, unread 2');
is("$one->{lastReadSeq} $one->{unread}", '1 2',
   'GET /conversations/{id} too');
$b->send_json('/app/chat.read', { conversationId => $conv, seq => 3 });
is(statuses_become('alice1', $conv, 'read read read'), 'read read read',
   'read implies delivered');
($l) = listed('bob1', $conv);
is("$l->{lastReadSeq} $l->{unread}", '3 0', 'all read');
is((pg_query("SELECT max(last_read_seq) FROM conversation_members"
             . " WHERE conversation_id = '$conv'"))[0][0],
   0, 'PostgreSQL knows nothing of it');
--- no_error_log
[error]



=== TEST 2: auto delivery counts; a group waits for every other member
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice2', 'group', 'bob2', 'carol2');
my $a = member('alice2');
my $b = member('bob2');
send_receipted($a, $conv, 'hi');
$b->stomp_message('/user/queue/messages', 3);
sleep 1.5;
is(statuses('alice2', $conv), 'sent', 'carol has not got it: sent');
my $c = member('carol2', ack => 'client');
$c->send_json('/app/chat.read', { conversationId => $conv, seq => 1 });
is(statuses_become('alice2', $conv, 'delivered'), 'delivered',
   'carol read it, bob got it: delivered');
$b->send_json('/app/chat.read', { conversationId => $conv, seq => 1 });
is(statuses_become('alice2', $conv, 'read'), 'read', 'both read it');
--- no_error_log
[error]



=== TEST 3: without Redis's watermarks PostgreSQL's count; the higher wins
--- tests: 7
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice3', 'direct', 'bob3');
insert_row($conv, $_, 5000 + $_, 'alice3', "m$_", 'now') for 1 .. 4;
pg_do("UPDATE conversations SET last_seq = 4, last_message_at = now()"
      . " WHERE id = '$conv'");
pg_do("UPDATE conversation_members SET last_delivered_seq = 2,"
      . " last_read_seq = 1 WHERE conversation_id = '$conv'"
      . " AND user_id = 'bob3'");
redis_flushall();
is(statuses('alice3', $conv), 'read delivered sent sent',
   'the statuses from PostgreSQL');
my ($l, $one) = listed('bob3', $conv);
is("$l->{lastSeq} $l->{lastReadSeq} $l->{unread}", '4 1 3',
   'lastReadSeq and unread from PostgreSQL');
is("$one->{lastReadSeq} $one->{unread}", '1 3', 'GET /conversations/{id}');
# Redis behind PostgreSQL for delivered, ahead for read
redis_cmd('HSET', "chat:dl:{$conv}", 'bob3', 1);
redis_cmd('HSET', "chat:r:{$conv}", 'bob3', 3);
is(statuses('alice3', $conv), 'read read read sent',
   'the higher of both, per member');
($l, $one) = listed('bob3', $conv);
is("$l->{lastReadSeq} $l->{unread}", '3 1', 'lastReadSeq from Redis');
redis_cmd('HSET', "chat:r:{$conv}", 'eve3', 9);
redis_cmd('HSET', "chat:dl:{$conv}", 'eve3', 9);
is(statuses('alice3', $conv), 'read read read sent',
   'a non-member in Redis does not count');
($l) = listed('alice3', $conv);
is("$l->{lastReadSeq} $l->{unread}", '0 0',
   'alice read nothing, but the four are hers: none is unread');
--- no_error_log
[error]



=== TEST 4: GET /presence
--- tests: 12
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice4', 'direct', 'bob4');
my $conv2 = conversation('alice4', 'direct', 'carol4');
# alice asked: bob and carol accept, or she may not see them (t/111-consent.t)
api(POST => "/conversations/$_/accept", $_ eq $conv ? 'bob4' : 'carol4')
    for $conv, $conv2;
my $b = member('bob4');
my ($st, $j) = api(GET => '/presence?users=bob4,carol4,alice4', 'alice4');
is($st, 200, 'status 200');
my %p = map { $_->{userId} => $_ } @{ $j->{presence} || [] };
is_deeply([map { $_->{userId} } @{ $j->{presence} }],
          [qw(bob4 carol4 alice4)], 'in the order asked');
ok($p{bob4}{online} && !$p{carol4}{online}, 'bob online, carol not');
like($p{bob4}{lastSeen} // '', qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/,
     'lastSeen of an online user: now');
$b->disconnect;
$b->close(1000);
for (1 .. 30) {
    ($st, $j) = api(GET => '/presence?users=bob4', 'alice4');
    last if $j->{presence}[0] && !$j->{presence}[0]{online};
    sleep 0.1;
}
ok($j->{presence}[0] && !$j->{presence}[0]{online}, 'bob offline');
like($j->{presence}[0]{lastSeen} // '', qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/,
     'with lastSeen');
($st, $j) = api(GET => '/presence?users=bob4%2Cdave4', 'alice4');
is_deeply([map { $_->{userId} } @{ $j->{presence} }], ['bob4'],
          'no shared conversation: left out');
($st, $j) = api(GET => '/presence?users=dave4', 'dave4');
is_deeply([map { $_->{userId} } @{ $j->{presence} }], ['dave4'],
          'oneself always');
($st, $j) = api(GET => '/presence', 'alice4');
is("$st $j->{error}{code}", '400 bad_request', 'no users: 400');
($st) = api(GET => '/presence?users=a,,b', 'alice4');
is($st, 400, 'an empty userId: 400');
($st) = api(GET => '/presence?users=a%20b', 'alice4');
is($st, 400, 'an invalid userId: 400');
($st) = api(GET => '/presence?users=' . join(',', map { "u$_" } 1 .. 101),
            'alice4');
is($st, 400, '101 users: 400');
--- no_error_log
[error]
