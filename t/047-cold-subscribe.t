# A fresh worker's first sessions: CONNECTED (and what is pipelined behind
# CONNECT) waits until what is routed to the user reaches the worker: its
# channel chat:w:<route> and the user's channel chat:u:<user> subscribed on
# the pub/sub link, the route added. The window is made wide and
# deterministic with a slow path to the real Redis: a TCP relay that holds
# every write of the pub/sub link (the connection that sends SUBSCRIBE) for
# a while, in order, and passes everything else at once.

use lib 't/lib';
use Test::Chat;
use Test::Chat::Helpers;

plan_from_blocks();

$ENV{TEST_NGINX_CHAT_CONFIG} = chat_config();
$ENV{TEST_NGINX_CHAT_CONFIG_1S} = chat_config(ws => 'chat_connect_timeout 1s;');
$ENV{TEST_NGINX_SLOW_REDIS_PORT} ||= free_port();

package Test::Chat::Sandbox;

use strict;
use warnings;

use Test::Chat;
use Test::Chat::Helpers;
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

our $relay_pid;

END { kill 'TERM', $relay_pid if $relay_pid }

# slow_relay(delay): a child process on TEST_NGINX_SLOW_REDIS_PORT relaying
# to the test's Redis, kept for the whole file (nginx must not see it go);
# what a connection that has sent SUBSCRIBE writes reaches Redis delay
# seconds later (in order), everything else at once. The delay is read at
# each connection (a fresh nginx gets the block's).
sub slow_relay {
    my ($delay) = @_;
    my $file = servroot() . '/relay_delay';

    open(my $fh, '>', "$file.tmp") or die "$file: $!\n";
    print $fh $delay;
    close $fh;
    rename("$file.tmp", $file) or die "$file: $!\n";

    return if $relay_pid && kill 0, $relay_pid;

    my $l = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
                                  LocalPort => $ENV{TEST_NGINX_SLOW_REDIS_PORT},
                                  Proto => 'tcp', Listen => 16,
                                  ReuseAddr => 1)
        or die "relay: listen: $!\n";

    my $pid = fork // die "fork: $!\n";

    if ($pid) {
        close $l;
        $relay_pid = $pid;
        return;
    }

    my $parent = getppid();

    # the child never returns into the harness (its END blocks are the
    # parent's): whatever happens, it exits here
    eval { relay_loop($l, $file, $parent); };
    POSIX::_exit(0);
}

sub relay_loop {
    my ($l, $file, $parent) = @_;
    my $sel = IO::Select->new($l);
    my (%peer, %slow, %queue, %delay);

    my $drop = sub {
        my ($s) = @_;
        my $p = delete $peer{$s};
        for my $x ($s, $p ? $p : ()) {
            $sel->remove($x);
            delete $peer{$x};
            delete $slow{$x};
            delete $queue{$x};
            delete $delay{$x};
            close $x;
        }
    };

    while (getppid() == $parent) {
        for my $s ($sel->can_read(0.02)) {
            if ($s == $l) {
                my $c = $l->accept or next;
                my $r = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                              PeerPort => redis_port(),
                                              Proto => 'tcp')
                    or do { close $c; next };
                open(my $fh, '<', $file) or die "$file: $!\n";
                $delay{$c} = <$fh> + 0;
                close $fh;
                $peer{$c} = $r;
                $peer{$r} = $c;
                $slow{$c} = 0;      # only the clients' side is held
                $queue{$c} = [];
                $sel->add($c, $r);
                next;
            }

            my $n = sysread($s, my $buf, 65536);
            if (!$n) {
                $drop->($s);
                next;
            }

            if (exists $slow{$s}) {
                $slow{$s} = 1 if $buf =~ /\r\nSUBSCRIBE\r\n/i;

                if ($slow{$s}) {
                    push @{ $queue{$s} },
                         [Time::HiRes::time() + $delay{$s}, $buf];
                    next;
                }
            }

            syswrite($peer{$s}, $buf) if $peer{$s};
        }

        my $now = Time::HiRes::time();

        for my $c (grep { exists $slow{$_} } $sel->handles) {
            my $q = $queue{$c} or next;
            while (@$q && $q->[0][0] <= $now) {
                syswrite($peer{$c}, (shift @$q)->[1]);
            }
        }
    }
}

# cold(user, frames...): a WebSocket to /ws/chat that sends CONNECT and the
# frames ([command, \%headers, body]) in one write, waiting for nothing
sub cold {
    my ($user, @frames) = @_;
    my $c = ws_connect('/ws/chat') or die "no connection\n";
    my $w = ws_frame(opcode => 1, payload => stomp_frame('CONNECT', [
                ['accept-version', '1.2'], [host => 'localhost'],
                [passcode => make_token($user)]], ''));

    for my $f (@frames) {
        $w .= ws_frame(opcode => 1, payload => stomp_frame(@$f));
    }

    $c->send_raw($w);

    return $c;
}

# the commands of the frames c receives within timeout, and the first
# MESSAGE's JSON body
sub frames_of {
    my ($c, $n, $timeout) = @_;
    my (@cmds, $msg);
    my $until = Time::HiRes::time() + $timeout;

    while (@cmds < $n && Time::HiRes::time() < $until) {
        my $f = $c->stomp_recv($until - Time::HiRes::time()) or last;
        push @cmds, $f->{command}
                    . ($f->{headers}{'receipt-id'}
                       ? " $f->{headers}{'receipt-id'}" : '');
        $msg //= json_decode($f->{body}) if $f->{command} eq 'MESSAGE';
    }

    return (\@cmds, $msg);
}

package main;

run_tests();

__DATA__

=== TEST 1: a fresh worker, the pub/sub link 2 s late: a message sent right after the first session's RECEIPT reaches it live
--- restart
--- no_chat_stores
--- init
slow_relay(2);
--- http_config
    chat_redis 127.0.0.1:$TEST_NGINX_SLOW_REDIS_PORT;
    chat_postgres "$TEST_NGINX_PG_DSN";
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my $conv = conversation('bob1', 'direct', 'alice1');
my $bob = stomp_connect('/ws/chat', user => 'bob1', timeout => 10);
ok($bob, 'the sender is connected');
my $alice = cold('alice1',
                 ['SUBSCRIBE', { id => 'm', destination => '/user/queue/messages',
                                 receipt => 's1' }, '']);
my ($cmds) = frames_of($alice, 2, 10);
is("@$cmds", 'CONNECTED RECEIPT s1', 'CONNECTED, then the RECEIPT');
send_msg($bob, $conv, 'right after', receipt => 'r1');
ok(receipt_ok($bob, 'r1', 5), 'the SEND is accepted');
my $m = $alice->stomp_message('/user/queue/messages', 5);
is($m && $m->{content}, 'right after', 'delivered live to the fresh session');
--- no_error_log
[error]
not ready within



=== TEST 2: frames pipelined behind CONNECT wait with it and keep their order; the own copy comes back live
--- restart
--- no_chat_stores
--- init
slow_relay(2);
--- http_config
    chat_redis 127.0.0.1:$TEST_NGINX_SLOW_REDIS_PORT;
    chat_postgres "$TEST_NGINX_PG_DSN";
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 3
--- perl
my $conv = conversation('alice2', 'direct', 'bob2');
my $t0 = Time::HiRes::time();
my $alice = cold('alice2',
    ['SUBSCRIBE', { id => 'm', destination => '/user/queue/messages',
                    receipt => 's1' }, ''],
    ['SUBSCRIBE', { id => 'e', destination => '/user/queue/errors',
                    receipt => 's2' }, ''],
    ['SEND', { destination => '/app/chat.send',
               'content-type' => 'application/json', receipt => 'r1' },
     json_encode({ conversationId => $conv, content => 'pipelined' })]);
my ($cmds, $m) = frames_of($alice, 5, 10);
my @sorted = (@$cmds[0 .. 2], sort @$cmds[3 .. $#$cmds]);
is("@sorted", 'CONNECTED RECEIPT s1 RECEIPT s2 MESSAGE RECEIPT r1',
   'CONNECTED, the RECEIPTs in order, the SEND answered')
    or diag("@$cmds");
is($m && $m->{content}, 'pipelined', 'the own copy came live');
cmp_ok(Time::HiRes::time() - $t0, '>=', 1.5, 'CONNECTED waited for the late link');
--- no_error_log
[error]



=== TEST 3: the pub/sub link later than chat_connect_timeout (1 s): CONNECTED goes out at the timeout, the session works
--- restart
--- no_chat_stores
--- init
slow_relay(4);
--- http_config
    chat_redis 127.0.0.1:$TEST_NGINX_SLOW_REDIS_PORT;
    chat_postgres "$TEST_NGINX_PG_DSN";
--- config
$TEST_NGINX_CHAT_CONFIG_1S
--- tests: 4
--- perl
my $conv = conversation('alice3', 'direct', 'bob3');
my $t0 = Time::HiRes::time();
my $alice = cold('alice3',
    ['SUBSCRIBE', { id => 'm', destination => '/user/queue/messages',
                    receipt => 's1' }, '']);
my ($cmds) = frames_of($alice, 2, 10);
my $t = Time::HiRes::time() - $t0;
is("@$cmds", 'CONNECTED RECEIPT s1', 'CONNECTED and the RECEIPT');
cmp_ok($t, '>=', 0.8, 'after the timeout');
cmp_ok($t, '<', 3, 'not held until the link is there');
# once the link is there (4 s), the route is added again: live delivery
sleep 4;
send_msg($alice, $conv, 'later', receipt => 'r1');
my $m = $alice->stomp_message('/user/queue/messages', 5);
is($m && $m->{content}, 'later', 'delivered once the link is up');
--- error_log
not ready within 1000 ms
--- no_error_log
[error]



=== TEST 4: presence on a fresh worker, the pub/sub link 2 s late: a change right after the RECEIPT of /topic/presence.<user> reaches the subscriber
--- restart
--- no_chat_stores
--- init
slow_relay(2);
--- http_config
    chat_redis 127.0.0.1:$TEST_NGINX_SLOW_REDIS_PORT;
    chat_postgres "$TEST_NGINX_PG_DSN";
--- config
$TEST_NGINX_CHAT_CONFIG
--- tests: 4
--- perl
my $conv = conversation('bob4', 'direct', 'alice4');
my $alice = stomp_connect('/ws/chat', user => 'alice4', timeout => 10);
$alice->stomp_send('SUBSCRIBE', { id => 'p', destination => '/topic/presence.bob4',
                                  receipt => 'p1' }, '');
my ($cmds, $snap) = frames_of($alice, 2, 10);
is("@$cmds", 'RECEIPT p1 MESSAGE', 'the RECEIPT, then the snapshot');
is($snap && $snap->{online} ? 'online' : 'offline', 'offline',
   'bob is offline in the snapshot');
my $bob = stomp_connect('/ws/chat', user => 'bob4', timeout => 10);
ok($bob, 'bob connects right after');
my $p = $alice->stomp_message('/topic/presence.bob4', 5);
ok($p && $p->{online}, 'his going online reaches the subscriber');
--- no_error_log
[error]



=== TEST 5: presence, the pub/sub link later than chat_redis_timeout (1 s): the subscription is refused as unavailable, the session goes on
--- restart
--- no_chat_stores
--- init
slow_relay(4);
--- http_config
    chat_redis 127.0.0.1:$TEST_NGINX_SLOW_REDIS_PORT;
    chat_redis_timeout 1s;
    chat_postgres "$TEST_NGINX_PG_DSN";
--- config
$TEST_NGINX_CHAT_CONFIG_1S
--- tests: 4
--- perl
my $conv = conversation('bob5', 'direct', 'alice5');
my $alice = stomp_connect('/ws/chat', user => 'alice5', timeout => 5);
ok($alice->subscribe('/user/queue/errors', 'e'), 'errors subscribed');
$alice->stomp_send('SUBSCRIBE', { id => 'p', destination => '/topic/presence.bob5',
                                  receipt => 'p1' }, '');
my $e = $alice->stomp_message('/user/queue/errors', 5);
is($e && $e->{code}, 'unavailable', 'the subscription is refused: unavailable');
is($e && $e->{receiptId}, 'p1', 'it names the receipt');
ok($alice->subscribe('/user/queue/messages', 'm'), 'the session goes on');
--- error_log
was not subscribed within 1000 ms
--- no_error_log
[error]
