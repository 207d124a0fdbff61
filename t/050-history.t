# 050-history.t: the history API (PROTOCOL.md section 7) with
# read-your-writes: PostgreSQL merged with the Redis buffer of recent
# messages, paging, statuses, and lastSeq/lastMessage/unread in
# GET /conversations before the persistence worker wrote anything.
# No persistence worker runs here: rows in PostgreSQL are inserted by hand.

use lib 't/lib';
use Test::Chat;

# a port nobody listens on, for the "PostgreSQL is down" block
$ENV{TEST_NGINX_DEAD_PORT} ||= free_port();

plan_from_blocks();

# the shared location block, named in each block as $TEST_NGINX_CHAT_CONFIG
$ENV{TEST_NGINX_CHAT_CONFIG} = <<"_EOC_";
    location /chat/api/ {
        chat_api;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    }
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $ENV{TEST_NGINX_JWT_SECRET};
    }
_EOC_

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;

my $receipts = 0;

sub member {
    my ($user, %o) = @_;
    my $ack = delete $o{ack};
    my $c = stomp_connect('/ws/chat', user => $user, %o);
    $c->subscribe('/user/queue/messages', 'm', $ack // 'auto');
    $c->subscribe('/user/queue/errors', 'e');
    return $c;
}

sub conversation {
    my ($creator, $type, @members) = @_;
    my ($st, $c) = api(POST => '/conversations', $creator,
                       { type => $type, members => \@members });
    die "create: $st" unless $st == 201 || $st == 200;
    return $c->{conversationId};
}

# sends each content with a receipt and returns once every RECEIPT and
# the sender's own copy of every message came, with those messages
sub send_receipted {
    my ($c, $conv, @contents) = @_;
    my (%want, @got);

    for my $t (@contents) {
        my $r = 'r' . ++$receipts;
        $want{$r} = 1;
        $c->send_json('/app/chat.send',
                      { conversationId => $conv, content => $t },
                      receipt => $r);
    }

    while (%want || @got < @contents) {
        my $f = $c->stomp_recv(5)
            or die 'no RECEIPT for ' . join(' ', sort keys %want)
                   . ' or not all messages (' . scalar(@got) . ")\n";

        if ($f->{command} eq 'RECEIPT') {
            delete $want{ $f->{headers}{'receipt-id'} };

        } elsif ($f->{command} eq 'MESSAGE') {
            die "error: $f->{body}\n"
                if $f->{headers}{destination} eq '/user/queue/errors';
            push @got, json_decode($f->{body});
        }
    }

    return @got;
}

# GET .../messages?query as $user: ($status, $json)
sub history {
    my ($user, $conv, $query) = @_;
    my $q = defined $query ? "?$query" : '';
    return api(GET => "/conversations/$conv/messages$q", $user);
}

sub seqs { [ map { $_->{seq} } @{ $_[0]{messages} || [] } ] }

# a persisted row, as the persistence worker writes it
sub insert_row {
    my ($conv, $seq, $id, $sender, $content, $at) = @_;
    pg_do("INSERT INTO messages (id, conversation_id, seq, sender_id,"
          . " content, created_at) VALUES ($id, '$conv', $seq, '$sender',"
          . " '$content', '$at')");
}

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



=== TEST 2: paging with before, after, limit and hasMore
--- tests: 14
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
is(redis_cmd('LLEN', "chat:h:$conv"), 202,
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
--- tests: 2
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
--- tests: 12
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('alice8', 'direct', 'bob8');
my ($st, $j) = history('alice8', $conv, 'before=2&limit=200');
is($st, 200, 'limit 200 is fine');
for my $q ('before=0', 'before=-1', 'before=abc', 'before=', 'after=1x',
           'before=5&after=2', 'limit=0', 'limit=201', 'limit=x',
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
is($j->{conversations}[0]{unread}, 1, 'unread: lastSeq - lastReadSeq');
($st, $j) = api(GET => "/conversations/$one", 'bob9');
is($j->{lastSeq}, 4, 'GET /conversations/{id} too: lastSeq');
is($j->{lastMessage} && $j->{lastMessage}{content}, 'x4',
   'and lastMessage');
# a buffer written newest first (as before 2026-11-30) still names the newest
my $list = redis_cmd('LRANGE', "chat:h:$one", 0, -1);
redis_cmd('DEL', "chat:h:$one");
redis_cmd('RPUSH', "chat:h:$one", reverse @$list);
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
