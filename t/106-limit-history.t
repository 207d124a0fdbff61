# History reads only what it returns: the Redis script finds the page that
# before/after/limit ask for in the recent buffer and sends only that, so
# the worker parses at most limit messages, however large the buffer.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;
use Time::HiRes ();
use POSIX ();

plan_from_blocks();

# no SEND rate (the buffer is filled at full speed); the metadata the
# audit used (~60 KB) is let in, to fill the buffer the way it did
$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config(
    ws => 'chat_send_rate off; chat_max_metadata_size 0;');

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;

sub history {
    my ($user, $conv, $query) = @_;
    return api(GET => "/conversations/$conv/messages?$query", $user);
}

sub seqs { join ' ', map { $_->{seq} } @{ $_[0]{messages} || [] } }

# n SENDs of c to conv (contents "<prefix><i>"), each with metadata of
# meta bytes, at most 50 in flight; dies unless all are accepted
sub fill {
    my ($c, $conv, $n, $meta, $prefix) = @_;
    my $done = 0;
    while ($done < $n) {
        my $k = $n - $done > 50 ? 50 : $n - $done;
        my $w = '';
        for my $i ($done + 1 .. $done + $k) {
            my $body = json_encode({ conversationId => $conv,
                                     content => "$prefix$i",
                                     metadata => { k => 'v' x $meta } });
            $w .= ws_frame(opcode => 1, payload => stomp_frame('SEND', {
                      destination => '/app/chat.send',
                      'content-type' => 'application/json',
                      receipt => "f$i" }, $body));
        }
        $c->send_raw($w);
        my ($rc, $err) = collect_answers($c, $k, 30);
        die "fill: " . scalar(keys %$rc) . " of $k accepted\n"
            unless keys %$rc == $k;
        $done += $k;
    }
}

package main;

run_tests();

__DATA__

=== TEST 1: pages out of the Redis buffer alone: after, before, limit and hasMore
--- tests: 8
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $c = stomp_connect('/ws/chat', user => 'alice1');
$c->subscribe('/user/queue/errors', 'e');
my $conv = conversation('alice1', 'direct', 'bob1');
fill($c, $conv, 40, 10, 'm');
my ($st, $j) = history('alice1', $conv, 'limit=3');
is(seqs($j), '38 39 40', 'the newest 3');
ok($j->{hasMore}, 'hasMore');
($st, $j) = history('alice1', $conv, 'after=10&limit=3');
is(seqs($j), '11 12 13', 'after=10: the next 3');
ok($j->{hasMore}, 'hasMore');
($st, $j) = history('alice1', $conv, 'before=5&limit=10');
is(seqs($j), '1 2 3 4', 'before=5: the 4 there are');
ok(!$j->{hasMore}, 'no more');
($st, $j) = history('alice1', $conv, 'after=37&limit=3');
is(seqs($j) . ($j->{hasMore} ? ' more' : ''), '38 39 40',
   'after=37&limit=3: the last 3, no more');
($st, $j) = history('alice1', $conv, 'after=12&before=15');
is($st, 400, 'before and after still cannot be combined');
--- no_error_log
[error]



=== TEST 2: the audit: a buffer of 215 messages with 60 KB of metadata; limit=1 answers fast, a bystander's round trip stays low
--- tests: 5
--- perl_timeout: 120
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m = stomp_connect('/ws/chat', user => 'mallory2');
$m->subscribe('/user/queue/errors', 'e');
my $conv = conversation('mallory2', 'group', { name => 'g' }, 'alice2');
fill($m, $conv, 215, 60 * 1024, 'm');
my $alice = member('alice2');
my $aconv = conversation('alice2', 'direct', 'bob2');
my ($worst, $j) = (0);
for (1 .. 10) {
    my $t0 = Time::HiRes::time();
    (undef, $j) = history('alice2', $conv, 'limit=1');
    my $t = Time::HiRes::time() - $t0;
    $worst = $t if $t > $worst;
}
is(seqs($j), '215', 'limit=1: the newest');
ok($j->{hasMore}, 'hasMore');
cmp_ok($worst, '<', 0.2, 'ten calls, each under 200 ms (it was 560-735)')
    or diag("worst: $worst s");
# four clients ask for limit=1 over and over while alice chats
my @kids;
for (1 .. 4) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        history('alice2', $conv, 'limit=1') for 1 .. 10;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
my $rtt = round_trip($alice, $aconv, 5);
waitpid($_, 0) for @kids;
cmp_ok($rtt, '<', 0.25, 'meanwhile a bystander\'s round trip stays low')
    or diag("rtt: $rtt s");
my (undef, $page) = history('alice2', $conv, 'before=100&limit=5');
is(seqs($page), '95 96 97 98 99', 'before=100&limit=5 out of the big buffer');
--- no_error_log
[error]
