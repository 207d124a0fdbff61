# 050-history.t: the history API (PROTOCOL.md section 7) with
# read-your-writes: PostgreSQL merged with the Redis buffer of recent
# messages, paging, statuses, and lastSeq/lastMessage/unread in
# GET /conversations before the persistence worker wrote anything.
# No persistence worker runs here: rows in PostgreSQL are inserted by hand.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

# a port nobody listens on, for the "PostgreSQL is down" block
$ENV{TEST_NGINX_DEAD_PORT} ||= free_port();

plan_from_blocks();

# the blocks' location blocks: $TEST_NGINX_CHAT_CONFIG (they fill the
# Redis buffer at full speed: no SEND rate, t/102 tests that)
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(ws => 'chat_send_rate off;');

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

# GET .../messages?query as $user: ($status, $json)
sub history {
    my ($user, $conv, $query) = @_;
    my $q = defined $query ? "?$query" : '';
    return api(GET => "/conversations/$conv/messages$q", $user);
}

sub seqs { [ map { $_->{seq} } @{ $_[0]{messages} || [] } ] }

package main;

run_tests();

__DATA__

=== TEST 1: read-your-writes: receipted messages are in the history at once
--- tests: 8
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice1');
my $conv = conversation('alice1', 'direct', 'bob1');
my @live = send_receipted($a, $conv, 'one', 'two', 'three');
my ($st, $j) = history('alice1', $conv);
is($st, 200, 'status 200');
is_deeply(seqs($j), [1, 2, 3], 'all three, in increasing seq');
is_deeply([map { $_->{content} } @{ $j->{messages} }],
          ['one', 'two', 'three'], 'contents');
is((pg_query("SELECT count(*) FROM messages"))[0][0], 0,
   'nothing is persisted: they came from Redis');
is_deeply([map { $_->{messageId} } @{ $j->{messages} }],
          [map { $_->{messageId} } @live], 'the messageIds of the live path');
ok(exists $j->{hasMore} && !$j->{hasMore}, 'hasMore false');
is($j->{messages}[0]{status}, 'sent', 'status sent (bob got nothing yet)');
my ($st2) = history('bob1', $conv);
is($st2, 200, 'the other member reads it too');
--- no_error_log
[error]



=== TEST 2: paging with before, after (0: from the start), limit and hasMore
--- tests: 18
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice2');
my $conv = conversation('alice2', 'group', 'bob2');
send_receipted($a, $conv, map { "m$_" } 1 .. 12);
my @cases = (
    ['limit=5',           [8 .. 12], 1],
    ['before=8&limit=5',  [3 .. 7],  1],
    ['before=3&limit=5',  [1, 2],    0],
    ['after=2&limit=5',   [3 .. 7],  1],
    ['after=10&limit=5',  [11, 12],  0],
    ['after=0&limit=5',   [1 .. 5],  1],
    ['after=0',           [1 .. 12], 0],
    ['limit=12',          [1 .. 12], 0],
    [undef,               [1 .. 12], 0],
);
for my $c (@cases) {
    my ($st, $j) = history('bob2', $conv, $c->[0]);
    my $q = $c->[0] // 'no query';
    is_deeply(seqs($j), $c->[1], "$q: seqs");
    is($j->{hasMore} ? 1 : 0, $c->[2], "$q: hasMore");
}
--- no_error_log
[error]



=== TEST 3: live order equals history order (two senders at once)
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice3');
my $b = member('bob3');
my $w = member('carol3');
my $conv = conversation('alice3', 'group', 'bob3', 'carol3');
for my $i (1 .. 15) {
    $a->send_json('/app/chat.send', { conversationId => $conv,
                                      content => "a$i" });
    $b->send_json('/app/chat.send', { conversationId => $conv,
                                      content => "b$i" });
}
my @live;
while (my $m = $w->stomp_message('/user/queue/messages', 5)) {
    push @live, $m->{messageId};
    last if @live == 30;
}
is(scalar @live, 30, 'carol saw all 30 live');
my ($st, $j) = history('carol3', $conv);
is_deeply([map { $_->{messageId} } @{ $j->{messages} }], \@live,
          'history lists the same messages in the same order');
--- no_error_log
[error]



=== TEST 4: rows persisted meanwhile merge with the buffer, without doubles
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice4');
my $conv = conversation('alice4', 'direct', 'bob4');
my @live = send_receipted($a, $conv, map { "m$_" } 1 .. 6);
# the persistence worker wrote the first four, as they were accepted
for my $m (@live[0 .. 3]) {
    insert_row($conv, $m->{seq}, $m->{messageId}, $m->{senderId},
               $m->{content}, $m->{createdAt});
}
is((pg_query("SELECT count(*) FROM messages"
            . " WHERE conversation_id = '$conv'"))[0][0],
   4, 'four rows in PostgreSQL');
my ($st, $j) = history('alice4', $conv);
is_deeply(seqs($j), [1 .. 6], 'each seq once, in order');
is_deeply([map { "$_->{messageId} $_->{content} $_->{createdAt}" }
           @{ $j->{messages} }],
          [map { "$_->{messageId} $_->{content} $_->{createdAt}" } @live],
          'the same messages as the live path');
($st, $j) = history('alice4', $conv, 'limit=3');
is_deeply(seqs($j), [4, 5, 6], 'a page across both sources');
--- no_error_log
[error]



=== TEST 5: messages older than the Redis buffer come from PostgreSQL
--- tests: 7
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl_timeout: 120
--- perl
my $conv = conversation('alice5', 'direct', 'bob5');
# five old messages, persisted long ago; the seq counter starts above them
for my $s (1 .. 5) {
    insert_row($conv, $s, 1000 + $s, 'bob5', "old$s",
               "2024-01-0${s}T10:00:00.000Z");
}
my $a = member('alice5');
my @live;
for my $k (0 .. 4) {
    push @live, send_receipted($a, $conv,
                               map { "new" . ($k * 41 + $_) } 1 .. 41);
}
is($live[0]{seq}, 6, 'the live sequence continues after PostgreSQL');
# the worker persisted what left the buffer (seq 6 to 10)
for my $m (@live[0 .. 4]) {
    insert_row($conv, $m->{seq}, $m->{messageId}, $m->{senderId},
               $m->{content}, $m->{createdAt});
}
is(redis_cmd('LLEN', "chat:h:{$conv}"), 202,
   'the buffer holds 200, trimmed at every 16th seq (the last: 208)');
my ($st, $j) = history('alice5', $conv, 'before=8&limit=10');
is_deeply(seqs($j), [1 .. 7], 'below the buffer: from PostgreSQL');
is_deeply([map { $_->{content} } @{ $j->{messages} }[0 .. 4]],
          [map { "old$_" } 1 .. 5], 'the persisted contents');
is($j->{messages}[0]{createdAt}, '2024-01-01T10:00:00.000Z',
   'createdAt of a persisted row');
ok(!exists $j->{messages}[0]{clientMsgId}, 'no clientMsgId: left out');
($st, $j) = history('alice5', $conv, 'limit=200');
is_deeply([seqs($j)->[0], seqs($j)->[-1], $j->{hasMore} ? 1 : 0],
          [11, 210, 1], 'the latest 200, and more below');
--- no_error_log
[error]



=== TEST 6: status: delivered/read once every other member got/read it
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
# client mode without ACKs: the messages come but are not delivered
my $a = member('alice6', ack => 'client');
my $b = member('bob6', ack => 'client');
my $conv = conversation('alice6', 'direct', 'bob6');
send_receipted($a, $conv, 'a1', 'a2', 'a3');
send_receipted($b, $conv, 'b4');
my ($st, $j) = history('alice6', $conv);
is_deeply([map { $_->{status} } @{ $j->{messages} }],
          [qw(sent sent sent sent)], 'nobody reached anything: sent');
pg_do("UPDATE conversation_members SET last_delivered_seq = 2,"
      . " last_read_seq = 1 WHERE conversation_id = '$conv'"
      . " AND user_id = 'bob6'");
pg_do("UPDATE conversation_members SET last_read_seq = 4"
      . " WHERE conversation_id = '$conv' AND user_id = 'alice6'");
($st, $j) = history('alice6', $conv);
is_deeply([map { $_->{status} } @{ $j->{messages} }],
          [qw(read delivered sent read)],
          "by the other member's watermarks, not the sender's");
is_deeply({ map { $_->{userId} => $_ } @{ $j->{receipts} } },
          { alice6 => { userId => 'alice6', delivered => 4, read => 4 },
            bob6 => { userId => 'bob6', delivered => 2, read => 1 } },
          'receipts: each member\'s watermarks (delivered at least read)');
--- no_error_log
[error]



=== TEST 7: non-members 403, unknown conversations 404
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice7', 'direct', 'bob7');
my ($st, $j) = history('eve7', $conv);
is($st, 403, 'not a member: 403');
is($j->{error}{code}, 'forbidden', 'forbidden');
($st, $j) = history('alice7', 'c_0123456789abcdef0123456789abcdef');
is($st, 404, 'unknown: 404');
is($j->{error}{code}, 'not_found', 'not_found');
--- no_error_log
[error]



=== TEST 8: bad before, after and limit: 400 bad_request
--- tests: 14
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice8', 'direct', 'bob8');
my ($st, $j) = history('alice8', $conv, 'before=2&limit=200');
is($st, 200, 'limit 200 is fine');
for my $q ('before=0', 'before=-1', 'before=abc', 'before=', 'after=1x',
           'after=-1', 'before=5&after=0', 'before=5&after=2', 'limit=0', 'limit=201', 'limit=x',
           'limit=', 'after=99999999999999999999') {
    ($st, $j) = history('alice8', $conv, $q);
    is($st . ' ' . ($j->{error}{code} // ''), '400 bad_request', $q);
}
--- no_error_log
[error]



=== TEST 9: GET /conversations: lastSeq, lastMessage, unread before persistence
--- tests: 10
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice9');
my $one = conversation('alice9', 'direct', 'bob9');
my $two = conversation('alice9', 'group', 'bob9');
send_receipted($a, $one, 'x1', 'x2', 'x3');
select(undef, undef, undef, 0.01);
send_receipted($a, $two, 'y1');
my ($st, $j) = api(GET => '/conversations', 'bob9');
my %c = map { $_->{conversationId} => $_ } @{ $j->{conversations} };
is($c{$one}{lastSeq}, 3, 'lastSeq from the Redis counter');
is($c{$one}{lastMessage} && $c{$one}{lastMessage}{content}, 'x3',
   'lastMessage from the Redis buffer');
is($c{$one}{unread}, 3, 'unread counts them');
is((pg_query("SELECT last_seq FROM conversations WHERE id = '$one'"))[0][0],
   0, 'PostgreSQL knows nothing of them');
is_deeply([map { $_->{conversationId} } @{ $j->{conversations} }],
          [$two, $one], 'most recently active first');
send_receipted($a, $one, 'x4');
($st, $j) = api(GET => '/conversations', 'bob9');
is_deeply([map { $_->{conversationId} } @{ $j->{conversations} }],
          [$one, $two], 'a new message moves it to the top');
pg_do("UPDATE conversation_members SET last_read_seq = 3"
      . " WHERE conversation_id = '$one' AND user_id = 'bob9'");
($st, $j) = api(GET => '/conversations', 'bob9');
is($j->{conversations}[0]{unread}, 1, 'unread: the others\' above lastReadSeq');
($st, $j) = api(GET => "/conversations/$one", 'bob9');
is($j->{lastSeq}, 4, 'GET /conversations/{id} too: lastSeq');
is($j->{lastMessage} && $j->{lastMessage}{content}, 'x4',
   'and lastMessage');
# a buffer written newest first (as before 2026-11-30) still names the newest
my $list = redis_cmd('LRANGE', "chat:h:{$one}", 0, -1);
redis_cmd('DEL', "chat:h:{$one}");
redis_cmd('RPUSH', "chat:h:{$one}", reverse @$list);
($st, $j) = api(GET => "/conversations/$one", 'bob9');
is($j->{lastMessage} && $j->{lastMessage}{content}, 'x4',
   'lastMessage from a list written newest first');
--- no_error_log
[error]



=== TEST 10: Redis unreachable: the history comes from PostgreSQL alone
--- no_chat_stores
--- http_config
    chat_redis 127.0.0.1:1;
    chat_postgres "$TEST_NGINX_PG_DSN";
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice10', 'direct', 'bob10');
insert_row($conv, 1, 2001, 'bob10', 'persisted',
           '2024-02-01T10:00:00.000Z');
my ($st, $j) = history('alice10', $conv);
is($st, 200, '200 all the same');
is_deeply(seqs($j), [1], 'the persisted message');
($st, $j) = api(GET => '/conversations', 'alice10');
is($j->{conversations}[0]{lastSeq}, 0, 'the list from PostgreSQL alone');
--- error_log
comes from PostgreSQL alone



=== TEST 11: PostgreSQL unavailable: 503 unavailable
--- no_chat_stores
--- http_config
    chat_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT;
    chat_postgres "host=127.0.0.1 port=$TEST_NGINX_DEAD_PORT dbname=chat";
    chat_postgres_timeout 1s;
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my ($st, $j) = history('alice11', 'c_0123456789abcdef0123456789abcdef');
is($st, 503, 'status 503');
is($j->{error}{code}, 'unavailable', 'unavailable');



=== TEST 12: unread never counts the caller's own messages, from any device
--- tests: 9
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a1 = member('alice12');
my $a2 = member('alice12');
my $b = member('bob12');
my $conv = conversation('alice12', 'group', 'bob12');
# "list/one": unread in GET /conversations and in GET /conversations/{id}
my $unread = sub {
    my ($user) = @_;
    my (undef, $l) = api(GET => '/conversations', $user);
    my ($c) = grep { $_->{conversationId} eq $conv } @{ $l->{conversations} };
    my (undef, $one) = api(GET => "/conversations/$conv", $user);
    return ($c->{unread} // 'none') . '/' . ($one->{unread} // 'none');
};
send_receipted($a1, $conv, 'the only message');
is($unread->('alice12'), '0/0', 'the sender: her only message is not unread');
is($unread->('bob12'), '1/1', 'the other member: 1 unread');
send_receipted($b, $conv, 'b2', 'b3');
send_receipted($a2, $conv, 'from her other device');
is($unread->('alice12'), '2/2', "alice: bob's two, none of hers");
is($unread->('bob12'), '2/2', "bob: alice's two, none of his");
$b->send_json('/app/chat.read', { conversationId => $conv, seq => 1 },
              receipt => 'read12');
my $f;
do { $f = $b->stomp_recv(5) } while ($f && $f->{command} ne 'RECEIPT');
is($unread->('bob12'), '1/1', 'bob read seq 1: alice\'s seq 4 is left');
# the persistence worker wrote them (they are still in the buffer too)
my (undef, $h) = history('alice12', $conv);
for my $m (@{ $h->{messages} }) {
    insert_row($conv, $m->{seq}, $m->{messageId}, $m->{senderId},
               $m->{content}, $m->{createdAt});
}
pg_do("UPDATE conversations SET last_seq = 4 WHERE id = '$conv'");
is($unread->('alice12'), '2/2', 'persisted and buffered: counted once');
# the buffer is gone: PostgreSQL's rows alone
redis_cmd('DEL', "chat:h:{$conv}");
is($unread->('alice12'), '2/2', 'alice, from PostgreSQL');
is($unread->('bob12'), '1/1', 'bob, from PostgreSQL');
pg_do("UPDATE conversation_members SET last_read_seq = 3"
      . " WHERE conversation_id = '$conv' AND user_id = 'alice12'");
is($unread->('alice12'), '0/0', 'alice read seq 3: nothing of bob\'s left');
--- no_error_log
[error]
