package Test::Chat::RedisCluster;

# A real Redis Cluster for a test file (scripts/test-servers.sh
# cluster-start: 3 primaries and 3 replicas on loopback, stopped when the
# file ends), and the looks into it that the cluster tests share.

use strict;
use warnings;

use Exporter 'import';

our @EXPORT = qw(redis_cluster_start redis_cluster_dir rcli slot_of key_slot
                 primary_of_slot cluster_primaries cluster_all);

my $DIR;


# redis_cluster_start(name): the cluster of a test file, in
# t/servroot/<name>.cluster; sets TEST_NGINX_REDIS_CLUSTER_PORT (its first
# port) and TEST_NGINX_CLUSTER_SEEDS (the three primaries, for
# "chat_redis cluster"). Returns its directory.
sub redis_cluster_start {
    my ($name) = @_;
    my $root = $Test::Chat::ROOT;

    $DIR = "$root/t/servroot/$name.cluster";

    # a node that answers no ping for cluster-node-timeout is failed over:
    # the development setting (1 s) is too short for a loaded machine
    # running the sanitizer build, where a stalled node most likely made
    # the spurious failover (a seq jump, an unavailable window) that failed
    # t/124's restart block in CI
    $ENV{CHAT_REDIS_NODE_TIMEOUT} //= 3000;

    my $started = `$root/scripts/test-servers.sh cluster-start '$DIR'`;
    die "the Redis Cluster did not start\n"
        unless $started =~ /TEST_NGINX_REDIS_CLUSTER_PORT=(\d+)/;

    my $p = $1;
    $ENV{TEST_NGINX_REDIS_CLUSTER_PORT} = $p;
    $ENV{TEST_NGINX_CLUSTER_SEEDS} =
        join(' ', map { '127.0.0.1:' . ($p + $_) } 0 .. 2);

    return $DIR;
}

sub redis_cluster_dir { $DIR }

END {
    if ($DIR) {
        local $?;   # the test's exit status stays
        system("$Test::Chat::ROOT/scripts/test-servers.sh cluster-stop"
               . " '$DIR' >/dev/null 2>&1");
    }
}


# rcli(port, args...): redis-cli against one node, its output
sub rcli {
    my ($node_port, @args) = @_;
    my $q = join ' ', map { "'$_'" } @args;
    my $out = `redis-cli -h 127.0.0.1 -p $node_port $q 2>&1`;
    chomp $out;
    return $out;
}


# the slot of a key (key_slot: the same whichever node is down)
sub slot_of { key_slot($_[0]) }


# the slot of a key computed here, as Redis does: CRC16 (XMODEM) of its
# hash tag (the text between the first "{" and the next "}", if not
# empty), or of the whole key, modulo 16384
sub key_slot {
    my ($key) = @_;
    my $crc = 0;

    $key = $1 if $key =~ /\{([^}]+)\}/;

    for my $c (unpack 'C*', $key) {
        $crc ^= $c << 8;
        for (1 .. 8) {
            $crc = ($crc & 0x8000) ? (($crc << 1) ^ 0x1021) & 0xffff
                                   : ($crc << 1) & 0xffff;
        }
    }

    return $crc % 16384;
}


# the port of the primary serving a slot, as the first node that answers
# CLUSTER SLOTS says
sub primary_of_slot {
    my ($slot) = @_;
    my $port = $ENV{TEST_NGINX_REDIS_CLUSTER_PORT};

    for my $n (0 .. 5) {
        my $out = rcli($port + $n, 'CLUSTER', 'SLOTS');
        next if $out =~ /refused|ERR/ || $out eq '';
        my @l = split /\n/, $out;
        for (my $i = 0; $i + 3 < @l; $i++) {
            next unless $l[$i] =~ /^\d+$/ && $l[$i + 1] =~ /^\d+$/
                        && $l[$i + 2] =~ /^127/ && $l[$i + 3] =~ /^\d+$/;
            return $l[$i + 3] if $slot >= $l[$i] && $slot <= $l[$i + 1];
        }
    }
    return undef;
}


# the ports of the nodes that are primaries now
sub cluster_primaries {
    my $port = $ENV{TEST_NGINX_REDIS_CLUSTER_PORT};
    return grep { (split /\n/, rcli($_, 'ROLE'))[0] eq 'master' }
           map { $port + $_ } 0 .. 5;
}


# cluster_all(args...): a command to each of the six nodes (those up)
sub cluster_all {
    my $port = $ENV{TEST_NGINX_REDIS_CLUSTER_PORT};
    rcli($port + $_, @_) for 0 .. 5;
}

1;
