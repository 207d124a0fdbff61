package Test::Chat::Cluster;

# The development system of scripts/chatctl as a test fixture: nodes, a
# balancer, a PostgreSQL standby, on free ports under the test's servroot,
# and the faults the high-availability tests inject into it (a node's
# master and workers killed, a node drained, the primary lost).

use strict;
use warnings;

use Exporter 'import';
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

use Test::Chat::Util;

our @EXPORT = qw(cluster_var cluster_env cluster_ports chatctl cport
                 node_master proc_children kill_tree cluster_psql
                 cluster_rows port_open);

my $VAR;
my %ENVS;


# the cluster's directory (var/ of chatctl), under the test's servroot
sub cluster_var {
    $VAR //= Test::Chat::servroot() . '/var';
    return $VAR;
}


# cluster_env(NAME => value...): settings every chatctl call gets
sub cluster_env {
    my (%e) = @_;
    @ENVS{ keys %e } = values %e;
    return %ENVS;
}


# a free port for each of chatctl's port variables
sub cluster_ports {
    # free_port() draws each at random: thirteen draws may repeat one
    # (node 3 then finds its port taken by node 2's STOMP listener)
    my (%taken, @env);
    for my $name (qw(CHAT_PORT CHAT_PORT2 CHAT_PORT3 CHAT_LB_PORT
                     CHAT_REDIS_PORT CHAT_PG_PORT CHAT_PG_STANDBY_PORT
                     CHAT_STOMP_PORT CHAT_STOMP_TLS_PORT CHAT_STOMP_PORT2
                     CHAT_STOMP_TLS_PORT2 CHAT_STOMP_PORT3
                     CHAT_STOMP_TLS_PORT3))
    {
        my $p;
        do { $p = free_port() } while $taken{$p}++;
        push @env, $name => $p;
    }
    cluster_env(@env);
}


sub cport { $ENVS{ $_[0] } }


# chatctl(args): scripts/chatctl with the cluster's settings, one worker
# per node: (exit code, stdout and stderr)
sub chatctl {
    my ($args) = @_;
    local %ENV = %ENV;
    delete @ENV{qw(CHAT_PORT CHAT_PORT2 CHAT_PORT3 CHAT_LB_PORT
                   CHAT_REDIS_PORT CHAT_PG_PORT CHAT_PG_STANDBY
                   CHAT_PG_STANDBY_PORT CHAT_JWT_SECRET NODES
                   CHAT_STOMP_PORT CHAT_STOMP_TLS_PORT CHAT_STOMP_PORT2
                   CHAT_STOMP_TLS_PORT2 CHAT_STOMP_PORT3
                   CHAT_STOMP_TLS_PORT3)};
    $ENV{CHAT_VAR} = cluster_var();
    $ENV{CHAT_MODULE} = $Test::Chat::MODULE;
    $ENV{CHAT_WORKERS} = 1;
    $ENV{CHAT_JWT_SECRET} = jwt_secret();
    $ENV{$_} = $ENVS{$_} for keys %ENVS;
    my $out = `scripts/chatctl $args 2>&1`;
    return ($? >> 8, $out);
}


sub _pidfile {
    my ($f) = @_;
    open(my $fh, '<', $f) or return undef;
    my $pid = <$fh> // return undef;
    chomp $pid;
    return $pid =~ /^\d+$/ ? $pid : undef;
}


# the master process of node N (1..3)
sub node_master { _pidfile(cluster_var() . "/nginx$_[0]/logs/nginx.pid") }


# the processes whose parent is pid
sub proc_children {
    my ($pid) = @_;
    my @kids;
    for my $st (glob '/proc/[0-9]*/stat') {
        open(my $f, '<', $st) or next;
        my $line = <$f> // next;
        push @kids, $1 if $line =~ /^(\d+) \(.*\) \S (\d+) / && $2 == $pid;
    }
    return @kids;
}


# kill_tree(signal, pid): the process and its children (an nginx master
# and its workers, a postmaster and its backends); the pids signalled
sub kill_tree {
    my ($sig, $pid) = @_;
    return () unless $pid;
    my @all = ($pid, proc_children($pid));
    kill $sig, @all;
    return @all;
}


# cluster_psql(sql): psql on the cluster's read-write server (the
# multi-host conninfo): its output lines, undef when it failed
sub cluster_psql {
    my ($sql) = @_;
    my @ports = grep { defined } map { $ENVS{$_} }
                qw(CHAT_PG_PORT CHAT_PG_STANDBY_PORT);
    my $hosts = join(',', ('127.0.0.1') x @ports);
    my $dsn = "host=$hosts port=" . join(',', @ports)
              . ' dbname=chat user=chat target_session_attrs=read-write'
              . ' connect_timeout=2';
    my $out = `psql '$dsn' -XAtqc "$sql" 2>/dev/null`;
    return $? == 0 ? [split /\n/, $out] : undef;
}


# cluster_rows(conv): the persisted messages of conv, [seq, sender,
# content] in seq order
sub cluster_rows {
    my ($conv) = @_;
    my $lines = cluster_psql(
        "SELECT seq || chr(9) || sender_id || chr(9) || content FROM messages"
        . " WHERE conversation_id = '$conv' ORDER BY seq") or return undef;
    return [map { [split /\t/, $_, 3] } @$lines];
}


sub port_open {
    return IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                 PeerPort => $_[0], Proto => 'tcp',
                                 Timeout => 1) ? 1 : 0;
}

1;
