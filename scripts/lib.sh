# lib.sh: shell functions shared by chatctl and test-servers.sh (sourced):
# shellcheck shell=bash
# starting and stopping Redis and PostgreSQL on loopback, port helpers.

CHAT_ROOT=${CHAT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CHAT_PG_OS_USER=${CHAT_PG_OS_USER:-ngxchat}
CHAT_PG_DB_USER=${CHAT_PG_DB_USER:-chat}
CHAT_PG_DB=${CHAT_PG_DB:-chat}

chat_die() {
    echo "error: $*" >&2
    exit 1
}

chat_log() {
    echo "==> $*" >&2
}

# prints a TCP port nobody listens on (127.0.0.1)
# (random, below the kernel's ephemeral range: concurrent runs rarely
# collide)
chat_free_port() {
    perl -MIO::Socket::INET -e '
        for (1 .. 200) {
            my $p = 20000 + int(rand(12000));
            IO::Socket::INET->new(LocalAddr => "127.0.0.1",
                LocalPort => $p, Proto => "tcp", Listen => 1)
                and print("$p\n"), exit 0;
        }
        my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1",
            LocalPort => 0, Proto => "tcp", Listen => 1) or die "$!\n";
        print $s->sockport, "\n";'
}

# chat_wait_port PORT SECONDS: waits until 127.0.0.1:PORT accepts
chat_wait_port() {
    perl -MIO::Socket::INET -MTime::HiRes=sleep -e '
        my ($port, $secs) = @ARGV;
        for (1 .. $secs * 20) {
            exit 0 if IO::Socket::INET->new(PeerAddr => "127.0.0.1",
                PeerPort => $port, Proto => "tcp", Timeout => 1);
            sleep 0.05;
        }
        exit 1;' "$1" "${2:-10}"
}

chat_port_busy() {
    perl -MIO::Socket::INET -e '
        exit(IO::Socket::INET->new(PeerAddr => "127.0.0.1",
            PeerPort => $ARGV[0], Proto => "tcp", Timeout => 1) ? 0 : 1)' \
        "$1"
}

# chat_alive PID: running (a zombie waiting for init counts as gone)
chat_alive() {
    [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null || return 1
    [ -r "/proc/$1/stat" ] || return 0
    ! sed 's/.*) //' "/proc/$1/stat" | grep -q '^Z'
}

chat_pg_bindir() {
    local d

    if command -v pg_config >/dev/null 2>&1; then
        d=$(pg_config --bindir 2>/dev/null)
        if [ -x "$d/initdb" ]; then
            echo "$d"
            return
        fi
    fi

    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ]; then
            echo "$d"
            return
        fi
    done

    chat_die "PostgreSQL server binaries (initdb) not found:" \
             "apt-get install postgresql (or make deps)"
}

# PostgreSQL refuses to run as root: when we are root, everything of the
# server runs as a system user made for it.
chat_pg_as() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$CHAT_PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

chat_pg_ensure_user() {
    [ "$(id -u)" = 0 ] || return 0

    if ! getent passwd "$CHAT_PG_OS_USER" >/dev/null; then
        chat_log "creating system user $CHAT_PG_OS_USER for PostgreSQL"
        useradd -r -M -d /nonexistent -s /usr/sbin/nologin \
            "$CHAT_PG_OS_USER" || chat_die "useradd $CHAT_PG_OS_USER failed"
    fi
}

# chat_pg_usable_dir DIR: can the PostgreSQL user reach DIR's parent?
chat_pg_usable_dir() {
    local parent

    [ "$(id -u)" = 0 ] || return 0
    parent=$(dirname "$1")
    runuser -u "$CHAT_PG_OS_USER" -- test -x "$parent" -a -r "$parent"
}

# chat_pg_dsn PORT
chat_pg_dsn() {
    echo "host=127.0.0.1 port=$1 dbname=$CHAT_PG_DB user=$CHAT_PG_DB_USER"
}

# chat_pg_start DATADIR PORT LOGFILE [fsync [MORE_OPTIONS]]: initdb on
# first use, start, create the database. DATADIR's parent must exist.
chat_pg_start() {
    local data=$1 port=$2 log=$3 fsync=${4:-off} more=${5:-} bin sock opts
    local admin

    bin=$(chat_pg_bindir)
    chat_pg_ensure_user

    if [ ! -s "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        chmod 0700 "$data"
        [ "$(id -u)" = 0 ] && chown "$CHAT_PG_OS_USER:" "$data"
        chat_pg_as "$bin/initdb" -D "$data" -U "$CHAT_PG_DB_USER" \
            --auth=trust --encoding=UTF8 --locale=C.UTF-8 -N \
            > "$data.initdb.log" 2>&1 \
            || { cat "$data.initdb.log" >&2; chat_die "initdb failed"; }
    fi

    # the unix socket lives next to the data unless the path is too long
    sock="$data/sock"
    if [ ${#sock} -gt 90 ]; then
        sock=""
    else
        mkdir -p "$sock"
        [ "$(id -u)" = 0 ] && chown "$CHAT_PG_OS_USER:" "$sock"
    fi

    touch "$log"
    [ "$(id -u)" = 0 ] && chown "$CHAT_PG_OS_USER:" "$log"

    opts="-c listen_addresses=127.0.0.1 -p $port -c max_connections=200"
    opts="$opts -c unix_socket_directories='$sock' -c fsync=$fsync"
    if [ "$fsync" = off ]; then
        opts="$opts -c synchronous_commit=off -c full_page_writes=off"
    fi
    [ -n "$more" ] && opts="$opts $more"

    chat_pg_as "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$opts" \
        start >/dev/null \
        || { tail -20 "$log" >&2; chat_die "PostgreSQL did not start"; }

    admin="host=127.0.0.1 port=$port dbname=postgres user=$CHAT_PG_DB_USER"

    if ! psql "$admin" -Atqc \
            "SELECT 1 FROM pg_database WHERE datname = '$CHAT_PG_DB'" \
        | grep -q 1
    then
        psql "$admin" -qc "CREATE DATABASE $CHAT_PG_DB" >/dev/null \
            || chat_die "CREATE DATABASE $CHAT_PG_DB failed"
    fi
}

# chat_pg_stop DATADIR
chat_pg_stop() {
    local data=$1 bin

    [ -f "$data/postmaster.pid" ] || return 0
    bin=$(chat_pg_bindir)
    chat_pg_as "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null \
        || echo "warning: pg_ctl stop failed for $data" >&2
}

# chat_redis_start DIR PORT persistent(yes|no) [redis-server options]
chat_redis_start() {
    local dir=$1 port=$2 persist=$3

    shift 3
    mkdir -p "$dir"

    if [ "$persist" = yes ]; then
        set -- --appendonly yes --appendfsync everysec \
               --save "900 1" --save "60 1000" "$@"
    else
        set -- --appendonly no --save "" "$@"
    fi

    redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
        --dir "$dir" --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" \
        --protected-mode yes "$@" \
        || chat_die "redis-server did not start"

    chat_wait_port "$port" 10 \
        || { tail -20 "$dir/redis.log" >&2; chat_die "Redis did not start"; }
}

# chat_redis_stop DIR PORT [SAVE|NOSAVE]
chat_redis_stop() {
    local dir=$1 port=$2 how=${3:-NOSAVE} pid

    [ -f "$dir/redis.pid" ] || return 0
    pid=$(cat "$dir/redis.pid" 2>/dev/null)

    redis-cli -h 127.0.0.1 -p "$port" SHUTDOWN "$how" >/dev/null 2>&1 || true

    for _ in $(seq 1 100); do
        chat_alive "$pid" || break
        sleep 0.1
    done

    if chat_alive "$pid"; then
        kill "$pid" 2>/dev/null || true
    fi

    rm -f "$dir/redis.pid"
}

# chat_redis_cluster_start DIR PORT persistent(yes|no): a Redis Cluster of
# 3 primaries and 3 replicas on 127.0.0.1:PORT..PORT+5 (DIR/PORT, ...),
# joined with redis-cli --cluster create on first use (a restarted cluster
# finds itself again from its nodes.conf); waits for cluster_state:ok
chat_redis_cluster_start() {
    local dir=$1 port=$2 persist=$3 p i nodes=""

    for i in 0 1 2 3 4 5; do
        p=$((port + i))
        chat_redis_start "$dir/$p" "$p" "$persist" \
            --cluster-enabled yes --cluster-config-file nodes.conf \
            --cluster-node-timeout "${CHAT_REDIS_NODE_TIMEOUT:-1000}" \
            --repl-diskless-sync-delay 0
        nodes="$nodes 127.0.0.1:$p"
    done

    if redis-cli -h 127.0.0.1 -p "$port" CLUSTER INFO 2>/dev/null \
        | grep -q "cluster_known_nodes:1\b"
    then
        # shellcheck disable=SC2086
        redis-cli --cluster create $nodes --cluster-replicas 1 \
            --cluster-yes >"$dir/create.log" 2>&1 \
            || { cat "$dir/create.log" >&2;
                 chat_die "redis-cli --cluster create failed"; }
    fi

    chat_redis_cluster_wait "$port" 30 \
        || chat_die "the Redis Cluster on $port did not become ready"
}

# chat_redis_cluster_wait PORT SECONDS: the cluster of PORT..PORT+5 says
# cluster_state:ok, all 16384 slots are served, and every replica is in
# sync with its primary (until then a failover could not promote it)
chat_redis_cluster_wait() {
    local port=$1 secs=$2 i n info ok

    for i in $(seq 1 $((secs * 10))); do
        ok=1

        redis-cli -h 127.0.0.1 -p "$port" --cluster check \
                "127.0.0.1:$port" 2>/dev/null \
            | grep -q "All 16384 slots covered" || ok=0

        for n in 0 1 2 3 4 5; do
            [ "$ok" = 1 ] || break
            info=$(redis-cli -h 127.0.0.1 -p $((port + n)) \
                   INFO replication 2>/dev/null) || { ok=0; break; }
            case $info in
            *role:slave*)
                case $info in
                *master_link_status:up*) ;;
                *) ok=0 ;;
                esac
                ;;
            esac
            redis-cli -h 127.0.0.1 -p $((port + n)) CLUSTER INFO 2>/dev/null \
                | grep -q "cluster_state:ok" || ok=0
        done

        [ "$ok" = 1 ] && return 0
        sleep 0.1
    done

    return 1
}

# chat_redis_cluster_stop DIR PORT [SAVE|NOSAVE]
chat_redis_cluster_stop() {
    local dir=$1 port=$2 how=${3:-NOSAVE} i

    for i in 0 1 2 3 4 5; do
        chat_redis_stop "$dir/$((port + i))" "$((port + i))" "$how"
    done
}

# chat_redis_cluster_status DIR PORT: "redis  <role>  127.0.0.1:<port>
# pid <pid>" per node; fails if one is down
chat_redis_cluster_status() {
    local dir=$1 port=$2 i p pid role rc=0

    for i in 0 1 2 3 4 5; do
        p=$((port + i))
        pid=$(cat "$dir/$p/redis.pid" 2>/dev/null || true)
        if chat_alive "$pid"; then
            role=$(redis-cli -h 127.0.0.1 -p "$p" ROLE 2>/dev/null \
                   | head -1)
            printf 'redis       %-8s 127.0.0.1:%s  pid %s\n' \
                "${role:-?}" "$p" "$pid"
        else
            printf 'redis       stopped  127.0.0.1:%s\n' "$p"
            rc=1
        fi
    done

    return $rc
}

# the directory of the built daemons (make passes CHAT_BIN)
CHAT_BIN=${CHAT_BIN:-$CHAT_ROOT/build/bin}

# chat_kafka_start DIR: the in-memory Kafka broker (build/bin/
# chat-kafka-broker: 3 brokers, topics replicated 3 ways, its control
# port in DIR/control); prints its bootstrap servers
chat_kafka_start() {
    local dir=$1 i

    [ -x "$CHAT_BIN/chat-kafka-broker" ] \
        || chat_die "$CHAT_BIN/chat-kafka-broker is missing: run make"

    mkdir -p "$dir"
    rm -f "$dir/bootstrap"

    "$CHAT_BIN/chat-kafka-broker" --bootstrap-file="$dir/bootstrap" \
        --control-file="$dir/control" \
        --pid-file="$dir/broker.pid" >"$dir/broker.log" 2>&1 &

    for i in $(seq 1 100); do
        [ -s "$dir/bootstrap" ] && { cat "$dir/bootstrap"; return 0; }
        sleep 0.1
    done

    tail -20 "$dir/broker.log" >&2
    chat_die "the Kafka broker did not start"
}

# chat_kafka_stop DIR
chat_kafka_stop() {
    local dir=$1 pid i

    [ -f "$dir/broker.pid" ] || return 0
    pid=$(cat "$dir/broker.pid")

    kill -TERM "$pid" 2>/dev/null || true

    for i in $(seq 1 50); do
        chat_alive "$pid" || return 0
        sleep 0.1
    done

    kill -KILL "$pid" 2>/dev/null || true
}


# chat_pg_standby_start DATADIR PORT LOGFILE PRIMARY_PORT: a streaming
# standby of the primary on PRIMARY_PORT: pg_basebackup on first use (-R
# writes primary_conninfo and standby.signal), then start. initdb's
# pg_hba.conf trusts replication connections from 127.0.0.1.
chat_pg_standby_start() {
    local data=$1 port=$2 log=$3 primary=$4 bin sock opts

    bin=$(chat_pg_bindir)
    chat_pg_ensure_user

    if [ ! -s "$data/PG_VERSION" ]; then
        rm -rf "$data"
        mkdir -p "$(dirname "$data")"
        [ "$(id -u)" = 0 ] && chown "$CHAT_PG_OS_USER:" "$(dirname "$data")"
        chat_pg_as "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary" \
            -U "$CHAT_PG_DB_USER" -D "$data" -X stream -R -c fast \
            > "$data.basebackup.log" 2>&1 \
            || { cat "$data.basebackup.log" >&2;
                 chat_die "pg_basebackup failed"; }
        chmod 0700 "$data"
    fi

    sock="$data/sock"
    if [ ${#sock} -gt 90 ]; then
        sock=""
    else
        mkdir -p "$sock"
        [ "$(id -u)" = 0 ] && chown "$CHAT_PG_OS_USER:" "$sock"
    fi

    touch "$log"
    [ "$(id -u)" = 0 ] && chown "$CHAT_PG_OS_USER:" "$log"

    # no synchronous_standby_names here: once promoted it has no standby
    opts="-c listen_addresses=127.0.0.1 -p $port -c max_connections=200"
    opts="$opts -c unix_socket_directories='$sock' -c fsync=on"
    opts="$opts -c synchronous_standby_names="

    chat_pg_as "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 -o "$opts" \
        start >/dev/null \
        || { tail -20 "$log" >&2;
             chat_die "the PostgreSQL standby did not start"; }
}

# chat_pg_promote DATADIR: the standby becomes a primary (waits for it)
chat_pg_promote() {
    local bin

    bin=$(chat_pg_bindir)
    chat_pg_as "$bin/pg_ctl" -D "$1" -w -t 60 promote >/dev/null
}

# chat_pg_dsn_ha PORT STANDBY_PORT: both, for the one that takes writes
chat_pg_dsn_ha() {
    echo "host=127.0.0.1,127.0.0.1 port=$1,$2 dbname=$CHAT_PG_DB" \
         "user=$CHAT_PG_DB_USER target_session_attrs=read-write" \
         "connect_timeout=2"
}
