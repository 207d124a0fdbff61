package Test::Chat::Torture;

# The ordering torture test (PROTOCOL.md section 6) of t/046, for any
# Redis behind the servers: several sessions per user on two servers
# pipeline SENDs, with and without receipts and clientMsgIds, and edits and
# deletes of their earlier messages (section 10), into old and new
# conversations, while faults hit the gateways' Redis links, the scripts,
# the membership caches and nginx; then order_check (Test::Chat::Order)
# checks the whole contract on every session and in history.
#
# torture(seed, rounds, %o) -> (what broke, a summary). o:
#   redis => sub (args...): a command to every Redis node it concerns
#            (one Redis: redis_cmd; a cluster: each primary)
#   key_cmd => sub (key, args...): a command to the node of a key
#   shard_of => sub (conv): the shard of a conversation (a cluster): the
#            old conversations are created until every shard has one, and
#            the summary counts the shards
#   shards => how many shards there are (with shard_of)

use strict;
use warnings;

use Exporter 'import';
use Time::HiRes qw(time);

use Test::Chat;
use Test::Chat::Util;
use Test::Chat::Helpers;
use Test::Chat::Order;

our @EXPORT = qw(torture torture_main);

my $CONV_MAX = 150;     # messages per conversation: history reads them
                        # from the Redis buffer (no chat-persist here)

my @FAULTS = qw(none none kill-commands kill-pubsub script-flush rebuild
                reload create);

my %ONE_REDIS = (redis => sub { redis_cmd(@_) },
                 key_cmd => sub { shift; redis_cmd(@_) });

sub group { conversation($_[0], 'group', { name => 't' }, @_[1 .. $#_]) }

sub pick { $_[ int(rand(@_)) ] }

# one run: returns (what broke, a summary)
sub torture {
    my ($seed, $rounds, %o) = @_;
    my (%convs, %count, @sessions, %faults, $tag, %shards);

    %o = (%ONE_REDIS, %o);

    srand($seed);
    $tag = "t$seed" . int(rand(1000));

    my @users = map { "${tag}u$_" } 1 .. 4;
    my @ports = (server_port(), server_port2());

    for my $u (@users) {
        push @sessions, order_session($u, port => $_) for @ports;
    }

    # two old conversations of everybody, warm (in a cluster: more, until
    # each shard has one)
    for (my $i = 0; $i < 2 || ($o{shard_of} && keys %shards < $o{shards}
                               && $i < 40); $i++)
    {
        my $conv = group($users[0], @users[1 .. 3]);
        $shards{ $o{shard_of}->($conv) }++ if $o{shard_of};
        $convs{$conv} = [@users];
        order_send($sessions[0], $conv, 1, receipt => 1);
        $count{$conv} = 1;
    }

    order_pump(\@sessions, 10, order_settled(\@sessions));

    for my $round (1 .. $rounds) {
        my $fault = pick(@FAULTS);
        $faults{$fault}++;

        # a new conversation of some users, cold, each round
        my @m = grep { rand() < 0.7 } @users;
        @m = @users[0, 1] if @m < 2;
        my $new = group($m[0], @m[1 .. $#m]);
        $shards{ $o{shard_of}->($new) }++ if $o{shard_of};
        $convs{$new} = \@m;
        $count{$new} = 0;

        # who sends where: a few live sessions, each to a conversation of
        # its user; the batches interleave, frame by frame or whole
        my @live = grep { !$_->{closed} } @sessions;
        my @plan;
        for (1 .. 2 + int(rand(4))) {
            my $s = pick(@live);
            my @mine = grep {
                (grep { $_ eq $s->{user} } @{ $convs{$_} })
                && $count{$_} < $CONV_MAX - 40
            } sort keys %convs;
            next unless @mine;
            my $conv = (rand() < 0.5 && grep { $_ eq $new } @mine)
                       ? $new : pick(@mine);
            push @plan, [$s, $conv, 5 + int(rand(16))];
        }

        my %how = (receipt => pick(0, 0.3, 1, 1), cmid => rand() < 0.5,
                   split => rand() < 0.5,
                   pace => pick(0, 0, 0.0001, 0.001));

        # the first half, the fault, the second half, without waiting
        for my $half (0, 1) {
            for my $p (@plan) {
                my $n = $half ? $p->[2] - int($p->[2] / 2) : int($p->[2] / 2);
                next unless $n && !$p->[0]{closed};
                order_send($p->[0], $p->[1], $n, %how)
                    or $p->[0]{closed} = 1;
                $count{ $p->[1] } += $n;

                # edits and deletes of earlier messages, between the
                # SENDs, each taking a seq too (PROTOCOL.md section 10)
                next if $p->[0]{closed} || rand() < 0.2;
                my $u = $p->[0]{user};
                my @cc = grep {
                    (grep { $_ eq $u } @{ $convs{$_} })
                    && $count{$_} < $CONV_MAX - 40
                } sort keys %convs;
                my $cc = rand() < 0.5 || !@cc ? $p->[1] : pick(@cc);
                my $c = order_change($p->[0], $cc, 1 + int(rand(5)));
                if (defined $c) {
                    $count{$cc} += $c;
                } else {
                    $p->[0]{closed} = 1;
                }
            }

            last if $half;

            if ($fault eq 'kill-commands') {
                $o{redis}->('CLIENT', 'KILL', 'TYPE', 'normal');
            } elsif ($fault eq 'kill-pubsub') {
                $o{redis}->('CLIENT', 'KILL', 'TYPE', 'pubsub');
            } elsif ($fault eq 'script-flush') {
                $o{redis}->('SCRIPT', 'FLUSH');
            } elsif ($fault eq 'rebuild') {
                $o{key_cmd}->("chat:m:{$_}", 'DEL', "chat:m:{$_}")
                    for keys %convs;
            } elsif ($fault eq 'reload') {
                nginx_reload(1 + int(rand(2)));
            } elsif ($fault eq 'create') {
                my $c = group($users[3], @users[0 .. 2]);
                $shards{ $o{shard_of}->($c) }++ if $o{shard_of};
                $convs{$c} = [@users];
                $count{$c} = 0;
            }
        }

        # a client that missed answers sends again with the same ids
        for my $p (@plan) {
            next if $p->[0]{closed} || !$how{cmid} || rand() < 0.7;
            order_retry($p->[0], 3);
        }

        order_pump(\@sessions, 0.05 + rand(0.3));

        # sessions the reload closed come back, as clients do
        for my $s (grep { $_->{closed} && !$_->{replaced} } @sessions) {
            $s->{replaced} = 1;
            push @sessions, order_session($s->{user}, port => $s->{port});
        }
    }

    order_pump(\@sessions, 30, order_settled(\@sessions));
    order_pump(\@sessions, 0.5);

    my @bad = order_check(\@sessions,
                          { map { $_ => $convs{$_}[0] } keys %convs },
                          lossy => 1);

    my ($sent, $changes) = (0, 0);
    $sent += grep { !$_->{retry} && !$_->{change} } @{ $_->{sent} }
        for @sessions;
    $changes += grep { $_->{change} } @{ $_->{sent} } for @sessions;

    $_->{c}->disconnect_tcp for grep { !$_->{closed} } @sessions;

    push @bad, 'conversations in ' . scalar(keys %shards) . " of $o{shards}"
               . ' shards only'
        if $o{shard_of} && keys %shards < $o{shards};

    return (\@bad, sprintf("%d SENDs and %d edits/deletes in %d"
                           . " conversations%s by %d sessions;"
                           . " faults: %s", $sent, $changes, scalar keys %convs,
                           ($o{shard_of} ? ' on ' . scalar(keys %shards)
                                           . ' shards' : ''),
                           scalar @sessions,
                           join(', ', map { "$_ x$faults{$_}" }
                                      sort keys %faults)));
}


# torture_main(file, %o): the runs of a test block: TORTURE_RUNS (1) runs
# of TORTURE_ROUNDS (6) rounds, the first with TORTURE_SEED if given; one
# check that every run kept the contract
sub torture_main {
    my ($file, %o) = @_;
    my $runs = $ENV{TORTURE_RUNS} || 1;
    my $rounds = $ENV{TORTURE_ROUNDS} || 6;
    my @failed;

    alarm(60 + 8 * $runs * $rounds);    # the block's 60 s are for one run

    for my $run (1 .. $runs) {
        my $seed = ($ENV{TORTURE_SEED} && $run == 1) ? $ENV{TORTURE_SEED}
                                                     : int(rand(2**31));
        my ($bad, $summary) = torture($seed, $rounds, %o);
        Test::More::diag("run $run, seed $seed: "
                         . (@$bad ? 'FAILED' : 'ok') . " ($summary)");
        if (@$bad) {
            push @failed, $seed;
            Test::More::diag("  $_")
                for @$bad[0 .. ($#$bad < 14 ? $#$bad : 14)];
            Test::More::diag("  replay: TORTURE_SEED=$seed make test"
                             . " T=$file");
        }
    }

    Test::More::ok(!@failed, "$runs runs of $rounds rounds kept the contract"
                             . (@failed ? " (failed seeds: @failed)" : ''));
}

1;
