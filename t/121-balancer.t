# 121-balancer.t: NODES=3 make start: three gateway nodes and a plain nginx
# balancing over them (scripts/chatctl, conf/lb.conf.in). Sessions through
# the balancer spread over the nodes; a drained node (nginx -s quit) sends
# its sessions close 1001 through the balancer; a node killed outright
# (kill -9 of its master and workers) loses only its own sessions, and the
# balancer sends new ones to the nodes left.

use lib 't/lib';
use Test::Chat;

# chatctl runs Debian's nginx, which cannot load the sanitizer build's module
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

# a session through the balancer (undef if it fails): the balancer hides
# its node, the tests tell the nodes apart by which sessions a fault ends
sub lb_session {
    my ($user) = @_;
    return eval { member($user, port => cport('CHAT_LB_PORT')) };
}

# the sessions of @s that end (EOF or a close frame) within $secs: their
# indexes, and the close code of each (undef: EOF without one)
sub ended {
    my ($secs, @s) = @_;
    my %end;
    my $until = time + $secs;
    while (time < $until && keys %end < @s) {
        for my $i (0 .. $#s) {
            next if exists $end{$i};
            my $f = $s[$i]->recv_frame(0.05);
            if (!$f && $s[$i]->{eof}) {
                $end{$i} = undef;
            } elsif ($f && $f->{opcode} == 8) {
                $end{$i} = length($f->{payload}) >= 2
                           ? unpack('n', $f->{payload}) : 1005;
            }
        }
    }
    return %end;
}

END { chatctl('stop') if -f cluster_var() . '/env' }

package main;

run_tests();

__DATA__

=== TEST 1: NODES=3: three nodes and the balancer; status says so
--- config
    location = /unused {
        return 204;
    }
--- tests: 6
--- perl_timeout: 120
--- perl
remove_tree(cluster_var());
cluster_ports();
cluster_env(NODES => 3);
my ($lb, $p3) = (cport('CHAT_LB_PORT'), cport('CHAT_PORT3'));
my ($rc, $out) = chatctl('start');
is($rc, 0, 'chatctl start with NODES=3') or diag($out);
like($out, qr{balancer +http://127\.0\.0\.1:$lb/},
     'start says where the balancer is');
($rc, $out) = chatctl('status');
like($out, qr/^nginx 3 +running +127\.0\.0\.1:$p3 /m,
     'status: node 3');
like($out, qr/^balancer +running +127\.0\.0\.1:$lb .*\(node 1 up, node 2 up, node 3 up\)/m,
     'status: the balancer and each node\'s health');
my ($st, undef, $body) = http_request(GET => '/chat/health', [], undef,
                                      port => cport('CHAT_LB_PORT'));
is($st, 200, '/chat/health through the balancer');
like($body, qr/"status":"up"/, 'the embedded configuration has chat_health');
--- no_error_log
[error]


=== TEST 2: sessions spread; a drained node's session gets 1001 and comes back through the balancer
--- config
    location = /unused {
        return 204;
    }
--- tests: 7
--- perl_timeout: 120
--- perl
my ($st, $j) = api(POST => '/conversations', 'alice',
                   { type => 'group', name => 'lb',
                     members => [qw(bob carol)] },
                   port => cport('CHAT_LB_PORT'));
my $conv = $j->{conversationId};
is($st, 201, 'a conversation made through the balancer');
my @s = map { lb_session($_) } qw(alice bob carol);
my %before = ended(0.3, @s);
is(scalar keys %before, 0, 'three sessions through the balancer');
kill 'QUIT', node_master(2);
my %end = ended(5, @s);
is(scalar keys %end, 1, 'nginx -s quit of node 2 ends one session');
is((values %end)[0], 1001, 'with close 1001, through the balancer');
my ($i) = keys %end;
my $user = (qw(alice bob carol))[$i];
my $t = time;
my $again = lb_session($user);
ok($again, "$user is back through the balancer")
    and diag(sprintf('reconnected in %.2f s', time - $t));
my @m = send_receipted($again, $conv, "after drain");
is(scalar @m, 1, 'and sends with a RECEIPT');
my ($rc, $out) = chatctl('status');
like($out, qr/node 2 down/, 'status: node 2 down');
--- no_error_log
[error]


=== TEST 3: kill -9 of a whole node: only its sessions end; new ones go to the node left
--- config
    location = /unused {
        return 204;
    }
--- tests: 5
--- perl_timeout: 120
--- perl
my @s = map { lb_session("k$_") } 1 .. 4;
my @victims = kill_tree('KILL', node_master(3));
ok(@victims >= 2, 'node 3: its master and workers killed');
my %end = ended(5, @s);
ok(keys %end >= 1 && keys %end < 4,
   'its sessions end (' . scalar(keys %end) . ' of 4), the others stay');
my $ok = 0;
$ok += lb_session("n$_") ? 1 : 0 for 1 .. 6;
is($ok, 6, 'six new sessions through the balancer, all on node 1');
my ($st, undef, $body) = http_request(GET => '/chat/health', [], undef,
                                      port => cport('CHAT_PORT'));
is($st, 200, 'node 1 is healthy');
my ($rc, $out) = chatctl('stop');
is($rc, 0, 'chatctl stop with a node dead and one drained') or diag($out);
--- no_error_log
[error]
