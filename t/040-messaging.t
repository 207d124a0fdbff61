# Messages, typing and read receipts: validation, seq, fan-out through Redis
# to every session on every worker of every server, and the failure paths.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

# the blocks' location blocks: $TEST_NGINX_CHAT_CONFIG
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(ws => 'chat_max_content_size 100;');

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

# SENDs in one write: all of them reach the worker before any answer
sub send_batch {
    my ($c, $conv, $prefix, $n, %o) = @_;
    my $w = '';
    for my $i (1 .. $n) {
        my $body = json_encode({ conversationId => $conv,
                                 content => "$prefix$i" });
        my %h = (destination => '/app/chat.send',
                 'content-type' => 'application/json');
        $h{receipt} = "$o{receipt}$i" if defined $o{receipt};
        $w .= ws_frame(opcode => 1,
                       payload => stomp_frame('SEND', \%h, $body));
    }
    return $c->send_raw($w);
}

package main;

run_tests();

__DATA__

=== TEST 1: a message reaches every member, the sender included, with seq 1
--- tests: 10
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice1');
my $b = member('bob1');
my $conv = conversation('alice1', 'direct', 'bob1');
send_msg($a, $conv, 'hello', cmid => 'k1', receipt => 'r1');
my ($m, $f) = $b->stomp_message('/user/queue/messages', 3);
is($m->{type}, 'message', 'type');
is($m->{seq}, 1, 'first seq is 1');
is($m->{senderId}, 'alice1', 'sender');
is($m->{content}, 'hello', 'content');
is($m->{clientMsgId}, 'k1', 'clientMsgId');
like($m->{messageId}, qr/^[0-9]{15,19}$/, 'messageId is a decimal string');
is($f->{headers}{'message-id'}, $m->{messageId},
   'message-id header is the messageId');
like($m->{createdAt}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/,
     'createdAt is RFC 3339 with milliseconds');
my $own = $a->stomp_message('/user/queue/messages', 3);
is($own && $own->{messageId}, $m->{messageId},
   "the sender's own session gets it too");
ok($a->{skipped_frames}
   && grep({ $_->{command} eq 'RECEIPT'
             && $_->{headers}{'receipt-id'} eq 'r1' }
           @{ $a->{skipped_frames} })
   || $a->stomp_wait(sub { $_->{command} eq 'RECEIPT' }, 2),
   'the sender gets its RECEIPT');
--- no_error_log
[error]



=== TEST 2: seq grows by one per message across senders
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice2');
my $b = member('bob2');
my $conv = conversation('alice2', 'group', 'bob2');
for my $i (1 .. 5) {
    send_msg($a, $conv, "a$i");
    send_msg($b, $conv, "b$i");
}
my @seq;
while (my $m = $b->stomp_message('/user/queue/messages', 3)) {
    push @seq, $m->{seq};
    last if @seq == 10;
}
is_deeply(\@seq, [1 .. 10], 'seq 1..10 in order, no gaps');
my @ids;
while (my $m = $a->stomp_message('/user/queue/messages', 3)) {
    push @ids, $m->{messageId};
    last if @ids == 10;
}
my %u = map { $_ => 1 } @ids;
is(scalar keys %u, 10, 'ten distinct messageIds');
--- no_error_log
[error]



=== TEST 3: a non-member's SEND is rejected with not_member, no RECEIPT, session stays
--- tests: 5
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice3');
my $eve = member('eve3');
my $conv = conversation('alice3', 'direct', 'bob3');
send_msg($eve, $conv, 'let me in', cmid => 'x1', receipt => 'r-eve');
my $e = $eve->stomp_message('/user/queue/errors', 3);
is($e && $e->{code}, 'not_member', 'not_member');
is($e && $e->{clientMsgId}, 'x1', 'names the clientMsgId');
is($e && $e->{receiptId}, 'r-eve', 'names the receipt');
ok(!grep({ $_->{command} eq 'RECEIPT' } @{ $eve->{skipped_frames} || [] }),
   'no RECEIPT');
ok($a->stomp_silent(0.5), 'the members got nothing');
--- no_error_log
[error]



=== TEST 4: bad bodies are rejected with bad_request or too_large; the session goes on
--- tests: 8
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice4');
my $conv = conversation('alice4', 'direct', 'bob4');
my @bad = (
    ['not json', 'bad_request'],
    ['[1,2]', 'bad_request'],
    ['{"conversationId":"' . $conv . '"}', 'bad_request'],
    ['{"conversationId":"' . $conv . '","content":""}', 'bad_request'],
    ['{"conversationId":5,"content":"x"}', 'bad_request'],
    ['{"conversationId":"' . $conv . '","content":"x","metadata":[1]}',
     'bad_request'],
    ['{"conversationId":"' . $conv . '","content":"' . ('y' x 101) . '"}',
     'too_large'],
);
for my $b (@bad) {
    $a->send_json('/app/chat.send', $b->[0]);
    my $e = $a->stomp_message('/user/queue/errors', 3);
    is($e && $e->{code}, $b->[1], "$b->[1] for $b->[0]");
}
send_msg($a, $conv, 'still here');
my $m = $a->stomp_message('/user/queue/messages', 3);
is($m && $m->{content}, 'still here', 'a valid SEND still works');
--- no_error_log
[error]



=== TEST 5: an unknown conversation is not_found
--- tests: 1
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice5');
send_msg($a, 'c_doesnotexist', 'anyone?');
my $e = $a->stomp_message('/user/queue/errors', 3);
is($e && $e->{code}, 'not_found', 'not_found');
--- no_error_log
[error]



=== TEST 6: every session of a user gets the message, on every worker
--- workers: 2
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice6');
my @b = map { member('bob6') } 1 .. 6;
my $conv = conversation('alice6', 'direct', 'bob6');
send_msg($a, $conv, 'to all of you');
for my $i (0 .. 5) {
    my $m = $b[$i]->stomp_message('/user/queue/messages', 3);
    is($m && $m->{content}, 'to all of you', "session $i");
}
--- no_error_log
[error]



=== TEST 7: two servers sharing Redis deliver to each other
--- second_server
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice7');
my $b = member('bob7', port => server_port2());
my $conv = conversation('alice7', 'direct', 'bob7');
send_msg($a, $conv, 'across');
my $m = $b->stomp_message('/user/queue/messages', 3);
is($m && $m->{content}, 'across', 'server 1 to server 2');
send_msg($b, $conv, 'and back');
$m = $a->stomp_message('/user/queue/messages', 3);
$m = $a->stomp_message('/user/queue/messages', 3)
    if $m && $m->{content} eq 'across';
is($m && $m->{content}, 'and back', 'server 2 to server 1');
is($m && $m->{seq}, 2, 'one sequence across servers');
my ($a_id) = $m->{messageId};
ok($a_id, 'ids from both servers');
--- no_error_log
[error]



=== TEST 8: concurrent senders on two servers: every session sees seq 1..N in order
--- second_server
--- workers: 2
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $n = 60;
my $s1 = member('alice8');
my $s2 = member('bob8', port => server_port2());
my @watch = (member('carol8'), member('carol8', port => server_port2()));
my $conv = conversation('alice8', 'group', 'bob8', 'carol8');
for my $i (1 .. $n) {
    send_msg($s1, $conv, "a$i");
    send_msg($s2, $conv, "b$i");
}
for my $c ($s1, $s2, @watch) {
    my @seq;
    while (my $m = $c->stomp_message('/user/queue/messages', 5)) {
        push @seq, $m->{seq};
        last if @seq == 2 * $n;
    }
    is_deeply(\@seq, [1 .. 2 * $n], 'strictly increasing, no gaps');
}
--- no_error_log
[error]



=== TEST 9: typing reaches the others, not the typer, and is not a message
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice9');
my $b = member('bob9');
$_->subscribe('/user/queue/typing', 't') for $a, $b;
my $conv = conversation('alice9', 'direct', 'bob9');
$a->send_json('/app/chat.typing', { conversationId => $conv });
my $t = $b->stomp_message('/user/queue/typing', 3);
is($t && $t->{type}, 'typing', 'typing event');
is($t && $t->{userId}, 'alice9', 'who types');
is($t && $t->{conversationId}, $conv, 'where');
ok($a->stomp_silent(0.5), 'not echoed to the typer');
--- no_error_log
[error]



=== TEST 10: read receipts go to the others and only move forward
--- tests: 4
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice10');
my $b = member('bob10');
$b->subscribe('/user/queue/receipts', 'r');
my $conv = conversation('alice10', 'direct', 'bob10');
send_msg($b, $conv, "m$_") for 1 .. 3;
$a->stomp_message('/user/queue/messages', 3) for 1 .. 3;
$a->send_json('/app/chat.read', { conversationId => $conv, seq => 2 });
my $r = $b->stomp_message('/user/queue/receipts', 3);
is($r && "$r->{type} $r->{userId} $r->{seq}", 'read alice10 2',
   'read up to 2');
$a->send_json('/app/chat.read', { conversationId => $conv, seq => 1 });
ok($b->stomp_silent(0.5), 'going back is not relayed');
$a->send_json('/app/chat.read', { conversationId => $conv, seq => 99 });
$r = $b->stomp_message('/user/queue/receipts', 3);
is($r && $r->{seq}, 3, 'capped at the last seq');
$a->send_json('/app/chat.read', { conversationId => $conv, seq => 0 });
my $e = $a->stomp_message('/user/queue/errors', 3);
is($e && $e->{code}, 'bad_request', 'seq 0 is a bad request');
--- no_error_log
[error]



=== TEST 11: a retried clientMsgId is acknowledged again but delivered once
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice11');
my $conv = conversation('alice11', 'direct', 'bob11');
send_msg($a, $conv, 'once', cmid => 'same', receipt => 'first');
send_msg($a, $conv, 'once', cmid => 'same', receipt => 'second');
my %r;
my @m;
while (my $f = $a->stomp_recv(1)) {
    $r{ $f->{headers}{'receipt-id'} } = 1 if $f->{command} eq 'RECEIPT';
    push @m, $f if $f->{command} eq 'MESSAGE';
}
ok($r{first}, 'first RECEIPT');
ok($r{second}, 'the retry gets a RECEIPT too');
is(scalar @m, 1, 'one message delivered');
--- no_error_log
[error]



=== TEST 12: a removed member can no longer send; the cache follows PostgreSQL
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice12');
my $b = member('bob12');
my $conv = conversation('alice12', 'group', 'bob12');
send_msg($b, $conv, 'in');
my $m = $a->stomp_message('/user/queue/messages', 3);
is($m && $m->{content}, 'in', 'member sends');
my ($st) = api(DELETE => "/conversations/$conv/members/bob12", 'alice12');
send_msg($b, $conv, 'out');
my $e = $b->stomp_message('/user/queue/errors', 3);
is($e && $e->{code}, 'not_member', 'removed member is refused');
api(POST => "/conversations/$conv/members", 'alice12', { userId => 'bob12' });
send_msg($b, $conv, 'back');
$m = $b->stomp_message('/user/queue/messages', 3);
is($m && $m->{content}, 'back', 'added again, sends again');
--- no_error_log
[error]



=== TEST 13: the membership cache is rebuilt from PostgreSQL after FLUSHALL
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice13');
my $conv = conversation('alice13', 'direct', 'bob13');
send_msg($a, $conv, 'before');
$a->stomp_message('/user/queue/messages', 3);
redis_cmd('DEL', "chat:m:{$conv}");
send_msg($a, $conv, 'after');
my $m = $a->stomp_message('/user/queue/messages', 3);
is($m && $m->{content}, 'after', 'delivered after the cache was lost');
is($m && $m->{seq}, 2, 'seq continues');
--- no_error_log
[error]



=== TEST 14: Redis unreachable: SEND gets unavailable, the session stays
--- no_chat_stores
--- http_config
    chat_redis 127.0.0.1:1;
    chat_postgres "host=127.0.0.1 port=$TEST_NGINX_PG_PORT dbname=chat";
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice14');
send_msg($a, 'c_whatever', 'hello?', cmid => 'u1');
my $e = $a->stomp_message('/user/queue/errors', 3);
is($e && $e->{code}, 'unavailable', 'unavailable');
is($e && $e->{clientMsgId}, 'u1', 'names the clientMsgId');



=== TEST 15: Redis links come back after being killed; delivery resumes
--- tests: 2
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice15');
my $b = member('bob15');
my $conv = conversation('alice15', 'direct', 'bob15');
redis_cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
redis_cmd('CLIENT', 'KILL', 'TYPE', 'normal');
my $m;
for my $try (1 .. 30) {
    select(undef, undef, undef, 0.2);
    send_msg($a, $conv, "try $try");
    $m = $b->stomp_message('/user/queue/messages', 0.5);
    last if $m;
}
ok($m, 'a message arrives after the reconnect');
send_msg($a, $conv, 'steady');
my $n;
while (my $x = $b->stomp_message('/user/queue/messages', 2)) {
    $n = $x;
    last if $x->{content} eq 'steady';
}
is($n && $n->{content}, 'steady', 'and the next one too');



=== TEST 16: Redis lost its data: old conversations jump forward once, new ones start at 1
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my $a = member('alice16');
my $conv = conversation('alice16', 'direct', 'bob16');
send_msg($a, $conv, "m$_") for 1 .. 2;
$a->stomp_message('/user/queue/messages', 3) for 1 .. 2;
redis_cmd('FLUSHALL');
send_msg($a, $conv, 'after the loss');
my $m = $a->stomp_message('/user/queue/messages', 3);
cmp_ok($m && $m->{seq}, '>', 1000000, 'the sequence jumped past 1000000');
send_msg($a, $conv, 'next');
my $n = $a->stomp_message('/user/queue/messages', 3);
is($n && $n->{seq}, $m->{seq} + 1, 'then grows by one again');
select(undef, undef, undef, 1.1);
my $fresh = conversation('alice16', 'direct', 'carol16');
send_msg($a, $fresh, 'new');
$m = $a->stomp_message('/user/queue/messages', 3);
is($m && $m->{conversationId}, $fresh, 'a new conversation');
is($m && $m->{seq}, 1, 'starts at 1');
--- no_error_log
[error]



=== TEST 17: a burst of typing events is relayed once per interval
--- config
    location /chat/api/ {
        chat_api;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
    }
    location = /ws/chat {
        chat_websocket;
        chat_jwt_secret $TEST_NGINX_JWT_SECRET;
        chat_typing_interval 600ms;
    }
--- tests: 3
--- perl
my $a = member('alice17');
my $b = member('bob17');
$b->subscribe('/user/queue/typing', 't');
my $conv = conversation('alice17', 'direct', 'bob17');
$a->send_json('/app/chat.typing', { conversationId => $conv }) for 1 .. 5;
my @got;
while (my $t = $b->stomp_message('/user/queue/typing', 0.4)) {
    push @got, $t;
}
is(scalar @got, 1, 'five typing events in a burst: one relayed');
select(undef, undef, undef, 0.5);
$a->send_json('/app/chat.typing', { conversationId => $conv });
my $t = $b->stomp_message('/user/queue/typing', 2);
ok($t, 'after the interval the next one is relayed');
ok($b->stomp_silent(0.3), 'and nothing more');
--- no_error_log
[error]



=== TEST 18: one publish per worker: a user's routes name the workers with sessions
--- workers: 2
--- tests: 7
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
sub routes {
    my $r = redis_cmd('HGET', 'chat:routes', $_[0]);
    return [sort split / /, $r // ''];
}
sub wait_routes {
    my ($user, $want) = @_;
    my $r;
    for (1 .. 50) {
        $r = routes($user);
        return $r if $want->($r);
        select(undef, undef, undef, 0.1);
    }
    return $r;
}
my $a = member('alice18');
my @b = map { member('bob18') } 1 .. 6;
my $conv = conversation('alice18', 'direct', 'bob18');
my $r = wait_routes('bob18', sub { @{$_[0]} >= 1 });
ok(@$r >= 1 && @$r <= 2 && !grep(!/^[0-9a-f]{16}$/, @$r),
   'one route per worker with sessions of the user: ' . join(',', @$r));
# a worker that died without saying so left its route behind
redis_cmd('HSET', 'chat:routes', 'bob18',
          join(' ', @$r, 'deadbeefdeadbeef'));
send_msg($a, $conv, 'routed');
my $got = grep { my $m = $_->stomp_message('/user/queue/messages', 3);
                 $m && $m->{content} eq 'routed' } @b;
is($got, 6, 'every session got the message once');
is_deeply(routes('bob18'), $r, 'the dead route was dropped by the publish');
ok(!(grep { $_->stomp_message('/user/queue/messages', 0.3) } @b),
   'and no session got it twice');
# routes lost (Redis lost them): the user's own channel still delivers
redis_cmd('DEL', 'chat:routes');
send_msg($a, $conv, 'no route');
$got = grep { my $m = $_->stomp_message('/user/queue/messages', 3);
              $m && $m->{content} eq 'no route' } @b;
is($got, 6, 'without routes the user channel delivers');
# the pub/sub links come back: the workers put their users back
redis_cmd('CLIENT', 'KILL', 'TYPE', 'pubsub');
is_deeply(wait_routes('bob18', sub { @{$_[0]} == @$r }), $r,
          'routes are back after the pub/sub link reconnected');
$_->close for @b;
is_deeply(wait_routes('bob18', sub { !@{$_[0]} }), [],
          'the last session gone, no route is left');
--- no_error_log
[alert]
[crit]
segfault



=== TEST 19: SENDs that miss the membership cache share one rebuild, in order
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice19');
my $b = member('bob19');
my $conv = conversation('alice19', 'direct', 'bob19');
redis_cmd('DEL', "chat:m:{$conv}");
send_batch($a, $conv, 'm', 50, receipt => 'r');
my (@receipts, @own, @seqs, @contents);
while (@receipts < 50 || @own < 50) {
    my $f = $a->stomp_recv(5) or last;
    push @receipts, $f->{headers}{'receipt-id'} if $f->{command} eq 'RECEIPT';
    push @own, json_decode($f->{body})->{seq}
        if $f->{command} eq 'MESSAGE'
           && $f->{headers}{destination} eq '/user/queue/messages';
}
for (1 .. 50) {
    my $m = $b->stomp_message('/user/queue/messages', 5) or last;
    push @seqs, $m->{seq};
    push @contents, $m->{content};
}
is_deeply(\@receipts, [map { "r$_" } 1 .. 50], 'every SEND got its RECEIPT');
is_deeply(\@seqs, [1 .. 50], 'the other member got seqs 1..50');
is_deeply(\@contents, [map { "m$_" } 1 .. 50], 'in the order they were sent');
is_deeply(\@own, [1 .. 50], 'the sender got them in order too');
my $log = error_log_since_block();
my $n = () = $log =~ /membership rebuild of "\Q$conv\E"/g;
ok($n >= 1, "the cache was rebuilt from PostgreSQL ($n)");
ok($n <= 2, "by few queries, not one per SEND ($n)");
--- no_error_log
[error]



=== TEST 20: a session closed while its SENDs wait for a rebuild
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice20');
my $b = member('bob20');
my $c = member('carol20');
my $conv = conversation('alice20', 'group', 'bob20', 'carol20');
redis_cmd('DEL', "chat:m:{$conv}");
send_batch($a, $conv, 'a', 20);
send_batch($b, $conv, 'b', 20, receipt => 'rb');
$a->disconnect_tcp;
my @got;
while (@got < 20) {
    my $f = $b->stomp_wait(sub { $_->{command} eq 'RECEIPT' }, 5) or last;
    push @got, $f->{headers}{'receipt-id'};
}
is_deeply(\@got, [map { "rb$_" } 1 .. 20],
          'the other session got all its RECEIPTs, in order');
my @bs;
while (1) {
    my $m = $c->stomp_message('/user/queue/messages', 1) or last;
    push @bs, $m->{content} if $m->{content} =~ /^b/;
}
is_deeply(\@bs, [map { "b$_" } 1 .. 20], 'and its messages were delivered');
my $d = member('alice20');
send_msg($d, $conv, 'after', receipt => 'r-after');
ok($d->stomp_wait(sub { $_->{command} eq 'RECEIPT' }, 5),
   'the conversation works afterwards');
--- no_error_log
[alert]
[crit]
segfault
