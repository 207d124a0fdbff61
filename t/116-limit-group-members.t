# chat_max_group_members: a group has at most that many members, at its
# creation and through POST .../members (409 once full); an add answers
# what it changed ("added", "memberCount"), not the whole member list, and
# another user's round trip stays low while an attacker adds and adds.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use POSIX ();

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(metrics => 1);

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub limited {
    metric('ngx_chat_limited_total{limit="group_members"}') // -1e9;
}

package main;

run_tests();

__DATA__

=== TEST 1: chat_max_group_members 5: a group of 6 is refused at creation (400), of 5 created; a 6th add gets 409 and is counted
--- tests: 14
--- config
    chat_max_group_members 5;
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = limited();
my ($st, $j) = api(POST => '/conversations', 'ann1',
                   { type => 'group', members => [qw(b1 c1 d1 e1 f1)] });
is($st, 400, 'six members (the creator and five): 400');
like($j->{error}{message} // '', qr/at most 5 \(chat_max_group_members\)/,
     'the message says the cap and its directive');
($st, $j) = api(POST => '/conversations', 'ann1',
                { type => 'group', members => [qw(b1 c1 d1 e1 b1 c1)] });
is($st, 400, 'six names (repeated ones too): 400 before the database');
like($j->{error}{message} // '', qr/at most 5 \(chat_max_group_members\)/,
     'with the same message');
($st, $j) = api(POST => '/conversations', 'ann1',
                { type => 'group', members => [qw(b1 c1 ann1 d1 e1)] });
is($st, 201, 'the creator and four others (the creator named too)');
is(scalar @{ $j->{members} }, 5, 'five members');
my $id = $j->{conversationId};
($st, $j) = api(POST => "/conversations/$id/members", 'b1',
                { userId => 'f1' });
is($st, 409, 'a sixth member: 409');
is($j->{error}{code}, 'conflict', 'conflict');
like($j->{error}{message} // '',
     qr/full: it has 5 members, at most 5 \(chat_max_group_members\)/,
     'the message says why');
is(limited() - $m0, 3, 'the three refusals counted');
(undef, $j) = api(GET => "/conversations/$id", 'ann1');
is(join(' ', sort @{ $j->{members} }), 'ann1 b1 c1 d1 e1', 'f1 is not in');
($st, $j) = api(POST => "/conversations/$id/members", 'b1',
                { userId => 'c1' });
is("$st " . json_encode($j->{added}) . " $j->{memberCount}", '200 [] 5',
   'adding a member again to the full group: 200, nothing added');
api(DELETE => "/conversations/$id/members/e1", 'e1');
($st, $j) = api(POST => "/conversations/$id/members", 'b1',
                { userId => 'f1' });
is("$st " . json_encode($j->{added}) . " $j->{memberCount}",
   '200 ["f1"] 5', 'once one left, f1 can be added');
is(limited() - $m0, 3, 'and neither is counted');
--- no_error_log
[error]



=== TEST 2: the add answers the conversation without its member list, with "added" and "memberCount"; the event still reaches the members
--- tests: 6
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $ev = stomp_connect('/ws/chat', user => 'bo2');
$ev->subscribe('/user/queue/events', 'ev');
my ($st, $j) = api(POST => '/conversations', 'al2',
                   { type => 'group', name => 'team', members => ['bo2'] });
my $id = $j->{conversationId};
($st, $j) = api(POST => "/conversations/$id/members", 'al2',
                { userId => 'cy2' });
is($st, 200, 'status 200');
ok(!exists $j->{members}, 'no "members"');
is_deeply($j->{added}, ['cy2'], '"added": the new member');
is($j->{memberCount}, 3, '"memberCount": 3');
is("$j->{conversationId} $j->{type} $j->{name} $j->{lastSeq}",
   "$id group team 0", 'the other fields of the conversation are kept');
my $f;
for (1 .. 3) {
    $f = $ev->stomp_expect('MESSAGE', 3) or last;
    last if ($f->{body} // '') =~ /member\.added/;
}
is_deeply(json_decode($f->{body} // '{}'),
          { type => 'member.added', conversationId => $id,
            userId => 'cy2', by => 'al2' },
          'the member.added event');
--- no_error_log
[error]



=== TEST 3: the audit with the default (1000): a group of 1000 takes no more; 300 adds answer 409, each under 1 KB, while a bystander's round trip stays low
--- tests: 7
--- perl_timeout: 120
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = limited();
my ($st, $j) = api(POST => '/conversations', 'mal3',
                   { type => 'group', members => [map { "u3-$_" } 1 .. 1000] });
is($st, 400, 'a group of 1001 is refused at creation');
($st, $j) = api(POST => '/conversations', 'mal3',
                { type => 'group', members => [map { "u3-$_" } 1 .. 999] });
is($st, 201, 'a group of 1000 is created');
my $id = $j->{conversationId};
my $alice = member('alice3');
my $aconv = conversation('alice3', 'direct', 'bob3');
# three clients add new members over and over while alice chats
pipe(my $rd, my $wr) or die "pipe: $!";
my @kids;
for my $k (1 .. 3) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $rd;
        my ($n409, $big) = (0, 0);
        for my $i (1 .. 100) {
            my ($s, $b) = http_request('POST', "/chat/api/conversations/$id/members",
                ['Authorization: Bearer ' . make_token('mal3'),
                 'Content-Type: application/json'],
                json_encode({ userId => "x3-$k-$i" }));
            $n409++ if ($s // 0) == 409;
            $big++ if length($b // '') > 1024;
        }
        print $wr "$n409 $big\n";
        close $wr;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
close $wr;
my $rtt = round_trip($alice, $aconv, 5);
waitpid($_, 0) for @kids;
my ($n409, $big) = (0, 0);
while (my $l = <$rd>) {
    my ($a, $b) = split ' ', $l;
    $n409 += $a;
    $big += $b;
}
is($n409, 300, 'every add refused with 409');
is($big, 0, 'no answer over 1 KB');
cmp_ok($rtt, '<', 0.25, 'meanwhile a bystander\'s round trip stays low')
    or diag("rtt: $rtt s");
is(limited() - $m0, 301, 'counted: the creation and the 300 adds');
api(DELETE => "/conversations/$id/members/u3-1", 'u3-1');
my ($s, undef, $b) = http_request('POST',
    "/chat/api/conversations/$id/members",
    ['Authorization: Bearer ' . make_token('mal3'),
     'Content-Type: application/json'], json_encode({ userId => 'new3' }));
ok($s == 200 && length($b) < 1024,
   'an add to the group of 1000 answers 200 in under 1 KB')
    or diag("$s, " . length($b) . ' bytes');
--- no_error_log
[error]
