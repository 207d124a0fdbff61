# 131-search.t: GET /search (PROTOCOL.md section 11): PostgreSQL full-text
# search over the caller's conversations only, ranked, paged; the search
# column follows edits and deletes that chat-persist writes.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(ws => 'chat_send_rate off;');

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes qw(time sleep);

my $id = 1000;

# rows as chat-persist writes them: (conv, seq, sender, content)...
sub rows {
    my ($conv, @contents) = @_;
    my $seq = 0;
    insert_row($conv, ++$seq, ++$id, $_->[0], $_->[1], 'now')
        for @contents;
}

sub search {
    my ($user, $query) = @_;
    return api(GET => "/search?$query", $user);
}

# reads c's frames until the RECEIPT of id (5 s at most)
sub until_receipt {
    my ($c, $rid) = @_;
    my $until = time + 5;
    while (time < $until) {
        my $f = $c->stomp_recv(0.5) or next;
        return 1 if $f->{command} eq 'RECEIPT'
                    && $f->{headers}{'receipt-id'} eq $rid;
    }
    die "no RECEIPT $rid\n";
}

sub contents { [ map { $_->{content} } @{ $_[0]{results} || [] } ] }

package main;

run_tests();

__DATA__

=== TEST 1: a word is found in the caller's conversations only, case-insensitive, best match first
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $mine = conversation('alice1', 'group', 'bob1');
my $other = conversation('carol1', 'group', 'dave1');
rows($mine, ['bob1', 'the Banana bread recipe'], ['alice1', 'no fruit here'],
     ['alice1', 'banana banana banana']);
rows($other, ['carol1', 'banana split for carol']);
my ($st, $j) = search('alice1', 'q=banana');
is($st, 200, 'status 200');
is_deeply(contents($j), ['banana banana banana', 'the Banana bread recipe'],
          'both of mine, the better match first; not carol\'s');
ok(!$j->{hasMore}, 'hasMore false');
is($j->{results}[0]{conversationId}, $mine, 'a message as in history');
($st, $j) = search('carol1', 'q=BANANA');
is_deeply(contents($j), ['banana split for carol'], 'carol finds only hers');
($st, $j) = search('alice1', 'q=%22bread+recipe%22');
is_deeply(contents($j), ['the Banana bread recipe'], 'a phrase, URL-encoded');
--- no_error_log
[error]



=== TEST 2: paging, one conversation, and the errors
--- tests: 9
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c1 = conversation('alice2', 'group', 'bob2');
my $c2 = conversation('alice2', 'group', 'carol2');
rows($c1, map { ['alice2', "word number $_"] } 1 .. 5);
rows($c2, ['carol2', 'a word from carol']);
my ($st, $j) = search('alice2', 'q=word&limit=4');
is(scalar @{ $j->{results} }, 4, 'limit=4: four');
ok($j->{hasMore}, 'hasMore');
($st, $j) = search('alice2', 'q=word&limit=4&offset=4');
is(scalar @{ $j->{results} }, 2, 'offset=4: the last two');
ok(!$j->{hasMore}, 'no more');
($st, $j) = search('alice2', "q=word&conversationId=$c2");
is_deeply(contents($j), ['a word from carol'], 'conversationId: only that one');
($st) = search('bob2', "q=word&conversationId=$c2");
is($st, 403, 'not a member of it: 403');
($st) = search('bob2', 'q=word&conversationId=c_00000000000000000000000000000000');
is($st, 404, 'no such conversation: 404');
($st, $j) = search('alice2', 'limit=3');
is($st, 400, 'no q: 400');
($st) = search('alice2', 'q=word&limit=51');
is($st, 400, 'limit over 50: 400');
--- no_error_log
[error]



=== TEST 3: chat-persist keeps it up to date: an edit is found by its new words only, a deleted message and the changes are never found
--- tests: 4
--- perl_timeout: 180
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
# the group of t/130 (run just before): a new group would read the whole
# suite's backlog from the topic's beginning first
my $pid = start_persist('--group-id=t120');
my $a = member('alice3');
my $conv = conversation('alice3', 'group', 'bob3');
send_receipted($a, $conv, 'meet at the lighthouse', 'secret plan xyzzy');
for my $op (['/app/chat.edit', { seq => 1, content => 'meet at the harbour' }],
            ['/app/chat.delete', { seq => 2 }]) {
    $a->send_json($op->[0], { conversationId => $conv, %{ $op->[1] } },
                  receipt => "x$op->[0]");
    until_receipt($a, "x$op->[0]");
}
# the worker's group starts at the topic's beginning (the suite's whole
# backlog); the delete is the last of the 4 rows, applied with it
my $until = time + 120;
sleep 0.25 while time < $until
    && (pg_query("SELECT count(*) FROM messages"
                 . " WHERE conversation_id = '$conv'"))[0][0] < 4;
my ($st, $j) = search('bob3', 'q=harbour');
is_deeply(contents($j), ['meet at the harbour'], 'the new words');
($st, $j) = search('bob3', 'q=lighthouse');
is_deeply(contents($j), [], 'not the old ones (nor the edit event)');
($st, $j) = search('bob3', 'q=xyzzy');
is_deeply(contents($j), [], 'a deleted message is not found');
is((pg_query("SELECT count(*) FROM messages WHERE conversation_id = '$conv'"
             . " AND search IS NOT NULL"))[0][0], 1,
   'only the live message has a search vector');
kill 'TERM', $pid;
waitpid($pid, 0);
--- no_error_log
[error]
