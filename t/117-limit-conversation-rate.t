# chat_conversation_rate: how fast a user may create conversations through
# one worker (POST /conversations), a bucket in the style of limit_req;
# over it 429 with a JSON error and Retry-After, and another user keeps a
# low round trip meanwhile.

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
    metric('ngx_chat_limited_total{limit="conversation_rate"}') // -1e9;
}

# n creations of direct conversations by user with other users; the
# statuses in order
sub create_n {
    my ($user, $n, $tag) = @_;
    my @st;
    for my $i (1 .. $n) {
        my ($st) = api(POST => '/conversations', $user,
                       { type => 'direct', members => ["$tag-$i"] });
        push @st, $st;
    }
    return join ' ', @st;
}

package main;

run_tests();

__DATA__

=== TEST 1: 60r/m burst=4: of 8 creations at once 5 pass, 3 get 429 rate_limited with Retry-After; a second later one more passes
--- tests: 8
--- config
    chat_conversation_rate 60r/m burst=4;
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = limited();
is(create_n('mal1', 5, 'a1'), '201 201 201 201 201', 'the first five pass');
my ($st, $j, $h) = api(POST => '/conversations', 'mal1',
                       { type => 'direct', members => ['b1'] });
is($st, 429, 'the sixth: 429');
is($j->{error}{code}, 'rate_limited', 'rate_limited');
like($j->{error}{message} // '', qr/chat_conversation_rate/,
     'the message names the directive');
like($h->{'retry-after'} // '', qr/^[1-9]\d*$/, 'Retry-After in seconds');
is(create_n('mal1', 2, 'c1'), '429 429', 'the next two too');
is(limited() - $m0, 3, 'counted');
select(undef, undef, undef, 1.2);
is(create_n('mal1', 2, 'd1'), '201 429', '1.2 s later one more passes');
--- no_error_log
[error]



=== TEST 2: the bucket is the user's: another user creates at once; a request refused as bad does not spend it
--- tests: 3
--- config
    chat_conversation_rate 60r/m burst=2;
$TEST_NGINX_CHAT_CONFIG
--- perl
for (1 .. 5) {
    api(POST => '/conversations', 'mal2', { type => 'group', members => 'x' });
}
is(create_n('mal2', 4, 'a2'), '201 201 201 429',
   'five bad requests spent nothing: three pass');
is(create_n('ann2', 3, 'b2'), '201 201 201', 'another user has her own');
my ($st) = api(GET => '/conversations', 'mal2');
is($st, 200, 'the limited user still reads');
--- no_error_log
[error]



=== TEST 3: the default (30r/m burst=30): a flood of 300 creations from one user; 31 pass, the rest get 429, a bystander's round trip stays low
--- tests: 4
--- perl_timeout: 120
--- config
$TEST_NGINX_CHAT_CONFIG
--- perl
my $m0 = limited();
my $alice = member('alice3');
my $aconv = conversation('alice3', 'direct', 'bob3');
pipe(my $rd, my $wr) or die "pipe: $!";
my @kids;
for my $k (1 .. 3) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        close $rd;
        print $wr create_n('mal3', 100, "x3-$k"), "\n";
        close $wr;
        POSIX::_exit(0);
    }
    push @kids, $pid;
}
close $wr;
my $rtt = round_trip($alice, $aconv, 5);
waitpid($_, 0) for @kids;
my %st;
while (my $l = <$rd>) {
    $st{$_}++ for split ' ', $l;
}
ok(($st{201} // 0) >= 31 && ($st{201} // 0) <= 33,
   'about 31 created (1 and the burst; the time of the flood adds one or two)')
    or diag(join ' ', %st);
is(($st{201} // 0) + ($st{429} // 0), 300, 'the others got 429')
    or diag(join ' ', %st);
cmp_ok($rtt, '<', 0.25, 'meanwhile a bystander\'s round trip stays low')
    or diag("rtt: $rtt s");
is(limited() - $m0, $st{429} // -1, 'each 429 counted');
--- no_error_log
[error]
