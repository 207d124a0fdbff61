# 122-pg-failover.t: CHAT_PG_STANDBY=1 make start: a synchronous streaming
# standby (pg_basebackup, primary_conninfo) and multi-host conninfo
# (target_session_attrs=read-write) in the gateway and both workers. The
# primary is killed (kill -9 of the postmaster and its backends) while a
# sender sends, the standby is promoted (chatctl promote: pg_ctl promote),
# and the gateway and chat-persist follow by themselves: every RECEIPTed
# message lands in the new primary exactly once, in order.

use lib 't/lib';
use Test::Chat;

plan(skip_all => 'the development system runs Debian\'s nginx, not the'
                 . ' sanitizer build (make test runs this file)')
    if $ENV{CHAT_ASAN};

plan_from_blocks();

package Test::Chat::Sandbox;

use Test::Chat;
use Test::Chat::Helpers;
use Test::Chat::Cluster;
use File::Path qw(remove_tree);
use Time::HiRes qw(time sleep);

our ($CONV, @SENT);

sub set_conv { $CONV = $_[0] }

sub sent { @SENT }

# sends n receipted messages as alice, one at a time; the contents that got
# their RECEIPT (an `unavailable` answer is counted, not retried)
sub send_some {
    my ($c, $prefix, $n) = @_;
    my ($ok, $unavailable) = (0, 0);
    for my $i (1 .. $n) {
        my $text = "$prefix-$i";
        my @m = eval { send_receipted($c, $CONV, $text) };
        if (@m) {
            push @SENT, $text;
            $ok++;
        } else {
            $unavailable++;
        }
    }
    return ($ok, $unavailable);
}

# waits until conv's rows hold every sent content (or secs pass)
sub wait_persisted {
    my ($secs) = @_;
    my $until = time + $secs;
    my $rows;
    while (time < $until) {
        $rows = cluster_rows($CONV);
        last if $rows && @$rows >= @SENT;
        sleep 0.2;
    }
    return $rows // [];
}

END { chatctl('stop') if -f cluster_var() . '/env' }

package main;

run_tests();

__DATA__

=== TEST 1: CHAT_PG_STANDBY=1: a synchronous standby, multi-host conninfo
--- config
    location = /unused {
        return 204;
    }
--- tests: 6
--- perl_timeout: 120
--- perl
remove_tree(cluster_var());
cluster_ports();
cluster_env(CHAT_PG_STANDBY => 1);
my ($rc, $out) = chatctl('start');
is($rc, 0, 'chatctl start with CHAT_PG_STANDBY=1') or diag($out);
($rc, $out) = chatctl('status');
my $sp = cport('CHAT_PG_STANDBY_PORT');
like($out, qr/^pg standby +running +127\.0\.0\.1:$sp /m, 'status: standby');
my $rep = cluster_psql('SELECT state, sync_state FROM pg_stat_replication');
is_deeply($rep, ["streaming|sync"], 'the primary streams to it, synchronously');
my $conf = do {
    local $/;
    open(my $f, '<', cluster_var() . '/nginx1/conf/nginx.conf') or die;
    <$f>;
};
like($conf, qr/chat_postgres "host=127\.0\.0\.1,127\.0\.0\.1 port=\d+,$sp .*target_session_attrs=read-write/,
     'the gateway has both hosts, read-write');
my ($st, $j) = api(POST => '/conversations', 'alice',
                   { type => 'group', name => 'failover',
                     members => [qw(bob)] }, port => cport('CHAT_PORT'));
is($st, 201, 'a conversation');
set_conv($j->{conversationId});
my $c = member('alice', port => cport('CHAT_PORT'));
my ($ok) = send_some($c, 'before', 20);
my $rows = wait_persisted(20);
is(scalar @$rows, 20, '20 messages persisted on the primary');
--- no_error_log
[error]


=== TEST 2: the primary is killed and the standby promoted: everything follows
--- config
    location = /unused {
        return 204;
    }
--- tests: 9
--- perl_timeout: 180
--- perl
my $c = member('alice', port => cport('CHAT_PORT'));
my $pg = cluster_var() . '/pg';
open(my $f, '<', "$pg/postmaster.pid") or die "no primary: $!";
my $pid = <$f>;
chomp $pid;
my $t0 = time;
my @killed = kill_tree('KILL', $pid);
ok(@killed >= 1, 'the primary killed');
my ($ok1, $un1) = send_some($c, 'between', 10);
diag("while no primary: $ok1 RECEIPTed, $un1 unavailable");
my ($rc, $out) = chatctl('promote');
is($rc, 0, 'chatctl promote') or diag($out);
my ($st, $j);
my $until = time + 20;
while (time < $until) {
    (undef, undef, my $body) = http_request(GET => '/chat/health', [], undef,
                                            port => cport('CHAT_PORT'));
    $j = json_decode($body // '') || {};
    last if ($j->{postgres} // '') eq 'up';
    sleep 0.1;
}
is($j->{postgres}, 'up', 'the gateway is back on PostgreSQL');
diag(sprintf('PostgreSQL unavailable to the gateway for %.1f s', time - $t0));
($st) = api(POST => '/conversations', 'bob',
            { type => 'group', name => 'after', members => [qw(alice)] },
            port => cport('CHAT_PORT'));
is($st, 201, 'a write through the gateway on the new primary');
my ($ok2, $un2) = send_some($c, 'after', 20);
is($ok2, 20, '20 RECEIPTed after the promotion');
my $rows = wait_persisted(40);
my @content = map { $_->[2] } @$rows;
is_deeply([sort @content], [sort(sent())],
          'every RECEIPTed message persisted (chat-persist followed)');
my %seen;
is(scalar(grep { $seen{$_}++ } @content), 0, 'none twice');
my @seq = map { $_->[0] } @$rows;
is_deeply(\@seq, [sort { $a <=> $b } @seq], 'seq increasing');
my @mine = grep { /^(before|between|after)-/ } @content;
my @order = map { /^(\w+)-(\d+)$/; [$1, $2] } @mine;
my $rank = { before => 0, between => 1, after => 2 };
my $sorted = join ',', map { "$_->[0]-$_->[1]" }
             sort { $rank->{$a->[0]} <=> $rank->{$b->[0]} || $a->[1] <=> $b->[1] }
             @order;
is(join(',', @mine), $sorted, 'the sender\'s order kept');
--- no_error_log
[error]


=== TEST 3: the workers are alive; stop stops everything
--- config
    location = /unused {
        return 204;
    }
--- tests: 3
--- perl_timeout: 120
--- perl
my ($rc, $out) = chatctl('status');
like($out, qr/^persist +running/m, 'chat-persist survived');
like($out, qr/^push +running/m, 'chat-push survived');
($rc, $out) = chatctl('stop');
is($rc, 0, 'chatctl stop') or diag($out);
