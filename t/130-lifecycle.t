# 130-lifecycle.t: replies, edits, deletes and reactions (PROTOCOL.md
# section 10): each change takes its own seq and reaches the members live,
# history after S returns it, history shows every message's current state
# (from the Redis buffer before chat-persist wrote it, and from PostgreSQL
# alone after), a delete leaves no content behind in either store, and
# who may change what.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(ws => 'chat_send_rate off;');

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes qw(time sleep);

my (%queue, $n);

# the next MESSAGE of c on /user/queue/messages (within 5 s), decoded
sub take {
    my ($c) = @_;
    my $q = $queue{$c} ||= [];
    my $until = time + 5;
    while (!@$q && time < $until) {
        my $f = $c->stomp_recv(0.5) or next;
        push @$q, json_decode($f->{body})
            if $f->{command} eq 'MESSAGE'
               && $f->{headers}{destination} eq '/user/queue/messages';
    }
    return shift @$q;
}

# a SEND of body to dest with a receipt: 'ok' when its RECEIPT came, else
# the code of its rejection ('none' if nothing came); the messages that
# came meanwhile wait for take()
sub req {
    my ($c, $dest, $body) = @_;
    my $r = 'q' . ++$n;
    $c->send_json($dest, $body, receipt => $r);
    my $until = time + 5;
    while (time < $until) {
        my $f = $c->stomp_recv(0.5) or next;
        return 'ok' if $f->{command} eq 'RECEIPT'
                       && $f->{headers}{'receipt-id'} eq $r;
        next unless $f->{command} eq 'MESSAGE';
        my $j = json_decode($f->{body});
        if ($f->{headers}{destination} eq '/user/queue/errors') {
            return $j->{code} if ($j->{receiptId} // '') eq $r;
        } else {
            push @{ $queue{$c} ||= [] }, $j;
        }
    }
    return 'none';
}

sub send1 {
    my ($c, $conv, $content, %more) = @_;
    my $rc = req($c, '/app/chat.send',
                 { conversationId => $conv, content => $content, %more });
    die "send: $rc\n" unless $rc eq 'ok';
    return take($c);
}

sub history {
    my ($user, $conv, $query) = @_;
    my ($st, $j) = api(GET => "/conversations/$conv/messages"
                              . (defined $query ? "?$query" : ''), $user);
    return $j;
}

# the history entry of seq
sub at_seq {
    my ($j, $seq) = @_;
    my ($m) = grep { $_->{seq} == $seq } @{ $j->{messages} || [] };
    return $m || {};
}

# waits until PostgreSQL holds n rows of the conversation
sub wait_rows {
    my ($conv, $want) = @_;
    my $until = time + 120;     # the suite's backlog comes first
    my $got = 0;
    while (time < $until) {
        $got = (pg_query("SELECT count(*) FROM messages"
                         . " WHERE conversation_id = '$conv'"))[0][0];
        return $got if $got >= $want;
        sleep 0.25;
    }
    return $got;
}

package main;

run_tests();

__DATA__

=== TEST 1: replyTo is echoed live and in history; a later or bad seq is refused
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice1');
my $conv = conversation('alice1', 'direct', 'bob1');
send1($a, $conv, 'question');
my $m = send1($a, $conv, 'answer', replyTo => 1);
is($m->{replyTo}, 1, 'live: replyTo');
is(at_seq(history('bob1', $conv), 2)->{replyTo}, 1, 'history: replyTo');
ok(!exists at_seq(history('bob1', $conv), 1)->{replyTo},
   'no replyTo on a message that is no reply');
is(req($a, '/app/chat.send', { conversationId => $conv, content => 'x',
                                replyTo => 3 }),
   'bad_request', 'replyTo its own seq or later: bad_request');
is(req($a, '/app/chat.send', { conversationId => $conv, content => 'x',
                                replyTo => 'one' }),
   'bad_request', 'replyTo not an integer: bad_request');
is(history('bob1', $conv)->{messages}[-1]{seq}, 2,
   'the refused ones took no seq');
--- no_error_log
[error]



=== TEST 2: an edit takes the next seq, reaches every member live, and history shows the new content, editedAt and the event
--- tests: 12
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice2');
my $b = member('bob2');
my $conv = conversation('alice2', 'group', 'bob2');
send1($a, $conv, 'helo');
take($b);
is(req($a, '/app/chat.edit', { conversationId => $conv, seq => 1,
                                content => 'hello' }), 'ok', 'RECEIPT');
my $e = take($b);
is($e->{type}, 'message.edited', 'the other member gets the event');
is($e->{seq}, 2, 'with its own seq');
is($e->{target}, 1, 'naming its message');
is($e->{content}, 'hello', 'and the new content');
is(take($a)->{seq}, 2, 'the editor gets it too');
my $h = history('bob2', $conv);
is(at_seq($h, 1)->{content}, 'hello', 'history: the current content');
ok(at_seq($h, 1)->{editedAt}, 'history: editedAt');
is(at_seq($h, 2)->{type}, 'message.edited', 'history: the event at seq 2');
is(req($b, '/app/chat.edit', { conversationId => $conv, seq => 1,
                                content => 'mine now' }),
   'forbidden', 'somebody else\'s message: forbidden');
is(req($a, '/app/chat.edit', { conversationId => $conv, seq => 2,
                                content => 'x' }),
   'bad_request', 'an event cannot be edited');
is(req($a, '/app/chat.edit', { conversationId => $conv, seq => 9,
                                content => 'x' }),
   'not_found', 'no such seq: not_found');
--- no_error_log
[error]



=== TEST 3: a delete leaves a tombstone, wipes the content (and its edits) from the Redis buffer, and the group's creator may delete anyone's
--- tests: 11
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice3');
my $b = member('bob3');
my $c = member('carol3');
my $conv = conversation('alice3', 'group', 'bob3', 'carol3');
send1($b, $conv, 'secret one');                                  # 1
is(req($b, '/app/chat.edit', { conversationId => $conv, seq => 1,
                                content => 'secret two' }), 'ok', 'edited');
send1($c, $conv, 'carol speaks');                                # 3
is(req($b, '/app/chat.delete', { conversationId => $conv, seq => 1 }),
   'ok', 'the sender deletes it');                               # 4
my $buf = join("\n", @{ redis_cmd('LRANGE', "chat:h:{$conv}", 0, -1) },
               @{ redis_cmd('LRANGE', "chat:hc:{$conv}", 0, -1) });
unlike($buf, qr/secret/, 'no content of it (nor of its edit) in Redis');
my $h = history('alice3', $conv);
ok(at_seq($h, 1)->{deleted}, 'history: a tombstone');
is(at_seq($h, 1)->{content}, '', 'with no content');
is(at_seq($h, 4)->{type}, 'message.deleted', 'the event at seq 4');
is(req($b, '/app/chat.edit', { conversationId => $conv, seq => 1,
                                content => 'back' }),
   'not_found', 'a deleted message cannot be edited');
is(req($b, '/app/chat.delete', { conversationId => $conv, seq => 3 }),
   'forbidden', 'a member may not delete another\'s message');
is(req($a, '/app/chat.delete', { conversationId => $conv, seq => 3 }),
   'ok', 'the group\'s creator may');
ok(at_seq(history('bob3', $conv), 3)->{deleted}, 'it is deleted');
is(scalar(grep { $_->{seq} == 5 } @{ history('bob3', $conv, 'after=4')
                                      ->{messages} }),
   1, 'after=4 returns the creator\'s delete');
--- no_error_log
[error]



=== TEST 4: reactions: one per user and emoji, who and how many in history, live events, removal
--- tests: 9
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $a = member('alice4');
my $b = member('bob4');
my $conv = conversation('alice4', 'group', 'bob4');
send1($a, $conv, 'lunch?');
take($b);
my $up = "\x{1F44D}";
is(req($b, '/app/chat.react', { conversationId => $conv, seq => 1,
                                 emoji => $up }), 'ok', 'bob reacts');
my $e = take($a);
is_deeply([@$e{qw(type seq target senderId)}],
          ['reaction.added', 2, 1, 'bob4'], 'live: the event');
is(req($b, '/app/chat.react', { conversationId => $conv, seq => 1,
                                 emoji => $up }), 'ok', 'again: answered');
is(req($a, '/app/chat.react', { conversationId => $conv, seq => 1,
                                 emoji => $up }), 'ok', 'alice reacts');
my $h = history('alice4', $conv);
is_deeply(at_seq($h, 1)->{reactions}, { $up => ['bob4', 'alice4'] },
          'history: who, in order (the count is its length)');
is($h->{messages}[-1]{seq}, 3, 'the repeated one took no seq');
is(req($b, '/app/chat.react', { conversationId => $conv, seq => 1,
                                 emoji => $up, remove => \1 }),
   'ok', 'bob removes his');
is_deeply(at_seq(history('alice4', $conv), 1)->{reactions},
          { $up => ['alice4'] }, 'history: only alice\'s left');
is(req($b, '/app/chat.react', { conversationId => $conv, seq => 1,
                                 emoji => 'x' x 33 }),
   'bad_request', 'an emoji over 32 bytes: bad_request');
--- no_error_log
[error]



=== TEST 5: chat-persist stores the changes once and applies them: PostgreSQL alone gives the same state, no deleted content left, catch-up after S
--- tests: 9
--- perl_timeout: 180
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $pid = start_persist('--group-id=t120');
my $a = member('alice5');
my $conv = conversation('alice5', 'group', 'bob5', 'carol5');
send1($a, $conv, 'typo heer');                                   # 1
send1($a, $conv, 'gone soon');                                   # 2
send1($a, $conv, 'a reply', replyTo => 1);                       # 3
req($a, '/app/chat.edit', { conversationId => $conv, seq => 1,
                            content => 'typo here' });           # 4
req($a, '/app/chat.edit', { conversationId => $conv, seq => 2,
                            content => 'gone sooner' });         # 5
req($a, '/app/chat.delete', { conversationId => $conv, seq => 2 }); # 6
my $bob = stomp_connect('/ws/chat', user => 'bob5');
$bob->subscribe('/user/queue/errors', 'e');
is(req($bob, '/app/chat.react', { conversationId => $conv, seq => 3,
                                   emoji => 'ok' }), 'ok', 'a reaction'); # 7
is(wait_rows($conv, 7), 7, 'PostgreSQL has the 7 entries');
is((pg_query("SELECT count(*) FROM messages WHERE conversation_id ="
             . " '$conv' AND content LIKE '%gone%'"))[0][0], 0,
   'no content of the deleted message, nor of its edit, in PostgreSQL');
redis_cmd('DEL', "chat:h:{$conv}");
my $h = history('carol5', $conv);
is(at_seq($h, 1)->{content}, 'typo here', 'from PostgreSQL: edited content');
ok(at_seq($h, 1)->{editedAt}, 'editedAt');
ok(at_seq($h, 2)->{deleted} && at_seq($h, 2)->{content} eq '',
   'the tombstone');
is(at_seq($h, 3)->{replyTo}, 1, 'replyTo');
is_deeply(at_seq($h, 3)->{reactions}, { ok => ['bob5'] }, 'reactions');
is_deeply([map { $_->{type} } @{ history('carol5', $conv, 'after=3')
                                 ->{messages} }],
          ['message.edited', 'message.edited', 'message.deleted',
           'reaction.added'],
          'carol, offline all along, catches up with after=3');
kill 'TERM', $pid;
waitpid($pid, 0);
--- no_error_log
[error]
