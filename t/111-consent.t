# Conversation requests and blocking (PROTOCOL.md, "Requests and
# blocking"): a stranger who opens a conversation cannot watch the one it
# invited until that one accepts (explicitly, by asking for the same
# direct conversation, or by sending in it), declines leave, contacts are
# accepted at once, and a block stops messages, presence and requests,
# cutting the presence subscriptions already open on every worker.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();

# helpers for the perl sections (they run in this package)
package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub client {
    my ($user, %o) = @_;
    return stomp_connect('/ws/chat', user => $user, %o);
}

# the next presence event of $user on $c
sub presence {
    my ($c, $user, $timeout) = @_;
    return $c->stomp_message("/topic/presence.$user", $timeout // 3);
}

# SUBSCRIBE to the presence of $user: 'receipt', or 'ERROR' and the
# session closed
sub watch {
    my ($c, $user) = @_;
    $c->subscribe("/topic/presence.$user", "p-$user", 'auto',
                  no_receipt => 1, headers => { receipt => "r-$user" });
    my $f = $c->stomp_wait(sub { $_->{command} ne 'MESSAGE' }, 3);
    return 'receipt' if $f && $f->{command} eq 'RECEIPT'
                        && $f->{headers}{'receipt-id'} eq "r-$user";
    return 'ERROR' if $f && $f->{command} eq 'ERROR'
                      && defined $c->expect_close(3);
    return $f ? $f->{command} : 'nothing';
}

# the userIds GET /presence answers $who about
sub visible {
    my ($who, @users) = @_;
    my ($st, $j) = api(GET => '/presence?users=' . join(',', @users), $who);
    return "status $st" unless $st == 200;
    return join(',', map { $_->{userId} } @{ $j->{presence} || [] });
}

# $user's view of conversation $conv in GET /conversations (undef: absent)
sub listed {
    my ($user, $conv) = @_;
    my ($st, $j) = api(GET => '/conversations', $user);
    return undef unless $st == 200;
    my ($c) = grep { $_->{conversationId} eq $conv }
                   @{ $j->{conversations} || [] };
    return $c;
}

# the next error on /user/queue/errors
sub error_of {
    my ($c, $timeout) = @_;
    return $c->stomp_message('/user/queue/errors', $timeout // 3);
}

# the next event of $type on /user/queue/events
sub event {
    my ($c, $type, $timeout) = @_;
    my $until = time + ($timeout // 3);
    while ((my $left = $until - time) > 0) {
        my $e = $c->stomp_message('/user/queue/events', $left) or last;
        return $e if $e->{type} eq $type;
    }
    return undef;
}

# the next MESSAGE to $dest about $user (its body's userId), or undef
sub about {
    my ($c, $dest, $user, $timeout) = @_;
    my $f = $c->stomp_wait(sub {
        $_->{command} eq 'MESSAGE'
        && ($_->{headers}{destination} // '') eq $dest
        && ((json_decode($_->{body}) || {})->{userId} // '') eq $user
    }, $timeout // 3);
    return $f ? json_decode($f->{body}) : undef;
}

package main;

run_tests();

__DATA__

=== TEST 1: a stranger's direct conversation is a request: it cannot watch the one it invited, who can watch it
--- tests: 12
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $vic = client('vic110a');
my ($st, $c) = api(POST => '/conversations', 'eve110a',
                   { type => 'direct', members => ['vic110a'] });
is($st, 201, 'anyone may still open a direct conversation');
ok(!$c->{request}, 'not a request for its creator');
is_deeply($c->{pending}, ['vic110a'], 'the invitee has not accepted');
my $v = listed('vic110a', $c->{conversationId});
ok($v && $v->{request}, 'a request in the invitee\'s list');
is($v && $v->{invitedBy}, 'eve110a', 'saying who asks');
my $eve = client('eve110a');
is(watch($eve, 'vic110a'), 'ERROR',
   'SUBSCRIBE to the invitee\'s presence: ERROR, the session closes');
is(visible('eve110a', 'vic110a', 'eve110a'), 'eve110a',
   'GET /presence leaves the invitee out');
my $w = client('vic110a');
is(watch($w, 'eve110a'), 'receipt',
   'the invitee may watch the stranger, who showed itself');
my $p = presence($w, 'eve110a');
ok($p && defined $p->{online}, 'with a snapshot');
is(visible('vic110a', 'eve110a'), 'eve110a', 'and ask GET /presence');
my ($gst, $g) = api(POST => '/conversations', 'eve110a',
                    { type => 'group', name => 'bait',
                      members => ['vic110a', 'zed110a'] });
is_deeply([$gst, $g->{pending}], [201, ['vic110a', 'zed110a']],
          'a group of a stranger: requests too');
my $e2 = client('eve110a');
is(watch($e2, 'zed110a'), 'ERROR', 'a group is no way round');
--- no_error_log
[error]



=== TEST 2: POST .../accept: the creator may watch then, and is told
--- tests: 10
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('eve110b', 'direct', 'vic110b');
my $eve = member('eve110b');
$eve->subscribe('/user/queue/events', 'ev');
my $vic = client('vic110b');
my ($st, $c) = api(POST => "/conversations/$conv/accept", 'vic110b');
is($st, 200, 'accept: 200');
ok($c && !$c->{request}, 'no longer a request');
is_deeply($c && $c->{pending}, [], 'nobody pending');
my $e = event($eve, 'member.accepted');
is($e && "$e->{conversationId} $e->{userId}", "$conv vic110b",
   'the creator gets member.accepted');
is(watch($eve, 'vic110b'), 'receipt', 'the creator may watch now');
my $p = presence($eve, 'vic110b');
ok($p && $p->{online}, 'online');
is(visible('eve110b', 'vic110b'), 'vic110b', 'GET /presence answers');
($st) = api(POST => "/conversations/$conv/accept", 'vic110b');
is($st, 200, 'accepting again: 200');
($st, my $j) = api(POST => "/conversations/$conv/accept", 'mallory110b');
is("$st $j->{error}{code}", '403 forbidden', 'a non-member: 403');
($st) = api(POST => '/conversations/c_0000/accept', 'vic110b');
is($st, 404, 'an unknown conversation: 404');
--- no_error_log
[error]



=== TEST 3: POST .../decline leaves; the stranger cannot ask again, the invitee can come back
--- tests: 11
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('eve110c', 'direct', 'vic110c');
my $vic = member('vic110c');
$vic->subscribe('/user/queue/events', 'ev');
my ($st) = api(POST => "/conversations/$conv/decline", 'vic110c');
is($st, 204, 'decline: 204');
my $e = event($vic, 'member.removed');
is($e && $e->{userId}, 'vic110c', 'the invitee\'s sessions are told');
ok(!listed('vic110c', $conv), 'gone from the invitee\'s list');
($st) = api(POST => "/conversations/$conv/decline", 'vic110c');
is($st, 403, 'declining again: 403 (not a member)');
my $c;
($st, $c) = api(POST => '/conversations', 'eve110c',
                { type => 'direct', members => ['vic110c'] });
is_deeply([$st, $c->{members}], [200, ['eve110c']],
          'asking again gives the stranger the same conversation, alone');
is(visible('eve110c', 'vic110c'), '', 'and no presence');
send_msg($vic, $conv, 'hello?', receipt => 'r1');
my $err = error_of($vic);
is($err && $err->{code}, 'not_member', 'the invitee no longer sends there');
($st, $c) = api(POST => '/conversations', 'vic110c',
                { type => 'direct', members => ['eve110c'] });
is_deeply([$st, $c->{conversationId}, $c->{request} ? 1 : 0],
          [200, $conv, 0],
          'the invitee asking for it comes back, accepted');
is(visible('eve110c', 'vic110c'), 'vic110c', 'both see each other now');
my $acc = conversation('ann110c', 'direct', 'bob110c');
api(POST => "/conversations/$acc/accept", 'bob110c');
my $j;
($st, $j) = api(POST => "/conversations/$acc/decline", 'bob110c');
is("$st $j->{error}{code}", '409 conflict',
   'an accepted conversation cannot be declined');
($st, $j) = api(POST => "/conversations/$acc/decline", 'ann110c');
is($st, 409, 'nor by its creator');
--- no_error_log
[error]



=== TEST 4: contacts are accepted at once; answering a request by asking for it accepts it
--- tests: 7
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $d = conversation('ann110d', 'direct', 'bob110d');
my ($st, $c) = api(POST => '/conversations', 'bob110d',
                   { type => 'direct', members => ['ann110d'] });
is_deeply([$st, $c->{conversationId}, $c->{request} ? 1 : 0],
          [200, $d, 0],
          'bob asks for the same conversation: accepted');
is(visible('ann110d', 'bob110d'), 'bob110d', 'ann sees bob');
($st, $c) = api(POST => '/conversations', 'ann110d',
                { type => 'group', name => 'team',
                  members => ['bob110d', 'cat110d'] });
is_deeply([$st, $c->{pending}], [201, ['cat110d']],
          'in ann\'s new group her contact bob is accepted, cat is not');
my $g = $c->{conversationId};
($st, $c) = api(POST => "/conversations/$g/members", 'bob110d',
                { userId => 'dan110d' });
is_deeply([$st, $c->{added}], [200, ['dan110d']], 'bob adds dan');
# the add answers what changed (008_group_limits.sql), GET the whole state
($st, $c) = api(GET => "/conversations/$g", 'bob110d');
is_deeply([$st, $c->{pending}], [200, ['cat110d', 'dan110d']],
          'added by a member: a request');
is(visible('ann110d', 'bob110d', 'cat110d', 'dan110d'), 'bob110d',
   'ann sees only bob');
is(visible('cat110d', 'ann110d', 'bob110d', 'dan110d'), 'ann110d',
   'cat, not accepted yet, sees only ann, who invited her');
--- no_error_log
[error]



=== TEST 5: sending in a request accepts it (once stored)
--- tests: 3
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $pid = start_persist('--group-id=t110');
my $conv = conversation('eve110e', 'direct', 'vic110e');
is(visible('eve110e', 'vic110e'), '', 'a request: not visible');
my $vic = member('vic110e');
ok(send_receipted($vic, $conv, 'hi eve'), 'the invitee answers');
my $seen = '';
for (1 .. 100) {
    $seen = visible('eve110e', 'vic110e');
    last if $seen eq 'vic110e';
    select(undef, undef, undef, 0.1);
}
is($seen, 'vic110e', 'visible once the message is stored');
kill 'TERM', $pid;
waitpid($pid, 0);
--- no_error_log
[error]



=== TEST 6: a block: no messages, no presence, no requests; unblocking restores them
--- tests: 19
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('eve110f', 'direct', 'vic110f');
api(POST => "/conversations/$conv/accept", 'vic110f');
is(visible('eve110f', 'vic110f'), 'vic110f', 'before: visible');
my ($st, $j) = api(POST => '/blocks/eve110f', 'vic110f');
is($st, 204, 'POST /blocks/{userId}: 204');
($st) = api(POST => '/blocks/eve110f', 'vic110f');
is($st, 204, 'again: 204');
($st, $j) = api(GET => '/blocks', 'vic110f');
is_deeply([$st, [map { $_->{userId} } @{ $j->{blocks} }]],
          [200, ['eve110f']], 'GET /blocks lists it');
like($j->{blocks}[0]{createdAt} // '', qr/^\d{4}-\d\d-\d\dT[\d:.]+Z$/,
     'with when');
my $eve = member('eve110f');
send_msg($eve, $conv, 'let me in', receipt => 'r1', cmid => 'k1');
my $err = error_of($eve);
is($err && $err->{code}, 'blocked', 'SEND of the blocked user: blocked');
is($err && $err->{clientMsgId}, 'k1', 'naming the message');
my $vic = member('vic110f');
send_msg($vic, $conv, 'go away', receipt => 'r2');
$err = error_of($vic);
is($err && $err->{code}, 'blocked', 'nor may the blocker send there');
ok($eve->stomp_silent(0.5), 'nothing reaches the blocked user');
is(visible('eve110f', 'vic110f'), '', 'GET /presence: left out');
is(visible('vic110f', 'eve110f'), '', 'both ways');
is(watch(client('eve110f'), 'vic110f'), 'ERROR', 'SUBSCRIBE: ERROR');
($st, $j) = api(POST => '/conversations', 'eve110f',
                { type => 'direct', members => ['vic110f'] });
is("$st $j->{error}{code}", '403 blocked',
   'no direct conversation with the blocker');
my $g = conversation('eve110f', 'group', { name => 'g' });
($st, $j) = api(POST => "/conversations/$g/members", 'eve110f',
                { userId => 'vic110f' });
is("$st $j->{error}{code}", '403 blocked', 'nor adding the blocker');
($st) = api(DELETE => '/blocks/eve110f', 'vic110f');
is($st, 204, 'DELETE /blocks/{userId}: 204');
($st) = api(DELETE => '/blocks/eve110f', 'vic110f');
is($st, 404, 'again: 404');
ok(send_receipted($eve, $conv, 'friends again'), 'SEND works again');
is(visible('eve110f', 'vic110f'), 'vic110f', 'presence is back');
($st) = api(POST => '/blocks/vic110f', 'vic110f');
is($st, 400, 'blocking oneself: 400');
--- no_error_log
[error]



=== TEST 7: a block cuts the presence subscriptions open on every worker of every server
--- workers: 2
--- second_server
--- tests: 8
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $conv = conversation('ann110g', 'direct', 'bob110g');
api(POST => "/conversations/$conv/accept", 'bob110g');
my $cat = conversation('ann110g', 'direct', 'cat110g');
api(POST => "/conversations/$cat/accept", 'cat110g');
my $ann = member('ann110g', port => server_port2());
my @bobs = map { member('bob110g', $_ % 2 ? (port => server_port2()) : ()) }
               0 .. 3;
my @ok = grep { $_->subscribe('/topic/presence.ann110g', 'p')
                && (presence($_, 'ann110g') || {})->{online} } @bobs;
is(scalar(@ok), 4, 'bob watches ann (online) from four sessions, on two servers');
ok($ann->subscribe('/topic/presence.bob110g', 'p')
   && presence($ann, 'bob110g'), 'ann watches bob');
my $watcher = client('cat110g');
ok($watcher->subscribe('/topic/presence.ann110g', 'p')
   && presence($watcher, 'ann110g'), 'cat watches ann');
my ($st) = api(POST => '/blocks/bob110g', 'ann110g');
is($st, 204, 'ann blocks bob');
my @cut = grep { my $e = error_of($_); $e && $e->{code} eq 'blocked' } @bobs;
is(scalar(@cut), 4, 'every session of bob is told its subscription ended');
my $e = error_of($ann);
is($e && $e->{code}, 'blocked', 'and ann\'s to bob ends too');
$ann->disconnect;
my $p = presence($watcher, 'ann110g');
ok($p && !$p->{online}, 'cat still sees ann go offline');
my @loud = grep { !$_->stomp_silent(0.3) } @bobs;
is(scalar(@loud), 0, 'no presence reaches bob any more');
--- no_error_log
[error]



=== TEST 8: typing or reading in a request accepts it; delivered does not
--- tests: 8
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c1 = conversation('eve110h', 'direct', 'vic110h');
my $c2 = conversation('eve110h', 'direct', 'wes110h');
my $c3 = conversation('eve110h', 'direct', 'zoe110h');
my $eve = member('eve110h');
$eve->subscribe('/user/queue/typing', 't');
$eve->subscribe('/user/queue/receipts', 'r');
my ($vic, $wes, $zoe) = map { member($_) } qw(vic110h wes110h zoe110h);
ok(send_receipted($eve, $c2, 'hi wes') && send_receipted($eve, $c3, 'hi zoe'),
   'eve writes to wes and zoe');
ok(about($eve, '/user/queue/receipts', 'zoe110h'),
   'zoe\'s device got it: delivered reaches eve');
is(visible('eve110h', 'zoe110h'), '', 'delivered does not accept');
$vic->send_json('/app/chat.typing', { conversationId => $c1 });
ok(about($eve, '/user/queue/typing', 'vic110h'), 'vic types: relayed');
my $seen = '';
for (1 .. 50) {
    $seen = visible('eve110h', 'vic110h', 'wes110h');
    last if $seen eq 'vic110h';
    select(undef, undef, undef, 0.1);
}
is($seen, 'vic110h', 'and it accepted his request');
$wes->send_json('/app/chat.read', { conversationId => $c2, seq => 1 });
my $r;
for (1 .. 3) {
    $r = about($eve, '/user/queue/receipts', 'wes110h') or last;
    last if $r->{type} eq 'read';
}
is($r && $r->{type}, 'read', 'wes reads: relayed');
for (1 .. 50) {
    $seen = visible('eve110h', 'wes110h');
    last if $seen eq 'wes110h';
    select(undef, undef, undef, 0.1);
}
is($seen, 'wes110h', 'and it accepted his');
my ($st, $c) = api(GET => "/conversations/$c3", 'zoe110h');
ok($st == 200 && $c->{request}, 'zoe\'s is still a request');
--- no_error_log
[error]
