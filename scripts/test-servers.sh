#!/usr/bin/env bash
# test-servers.sh: the throwaway Redis, PostgreSQL and Kafka broker the test
# suite uses.
#
# usage: scripts/test-servers.sh start DIR   prints "export VAR=value" lines
#        scripts/test-servers.sh stop DIR
#        scripts/test-servers.sh redis-stop|redis-start|pg-stop|pg-start DIR
#            (outage tests: the same ports and data)
#        scripts/test-servers.sh cluster-start|cluster-stop DIR
#            a Redis Cluster of 3 primaries and 3 replicas in DIR/cluster on
#            six free consecutive ports (TEST_NGINX_REDIS_CLUSTER_PORT picks
#            the first); cluster-start prints
#            "export TEST_NGINX_REDIS_CLUSTER_PORT=N"
#
# start: Redis (no persistence) and PostgreSQL (fsync off, database "chat"
# with every sql/ migration applied) on free loopback ports, and the
# in-memory Kafka broker (build/bin/chat-kafka-broker), all state in DIR
# (wiped first). TEST_NGINX_REDIS_PORT / TEST_NGINX_PG_PORT pick the
# ports. The exported variables are the ones t/lib/Test/Chat.pm reads:
# TEST_NGINX_REDIS_PORT, TEST_NGINX_PG_PORT, TEST_NGINX_PG_DSN,
# TEST_NGINX_KAFKA_BROKERS, TEST_NGINX_STORES_DIR.

set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cmd=${1:-}
dir=${2:-}

[ -n "$cmd" ] && [ -n "$dir" ] || chat_die "usage: $0 start|stop DIR"

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

start() {
    local redis_port pg_port pg_dir dsn brokers

    stop >/dev/null 2>&1 || true
    rm -rf "$dir/redis" "$dir/pg" "$dir/pg.data" "$dir/env"
    mkdir -p "$dir"

    redis_port=${TEST_NGINX_REDIS_PORT:-$(chat_free_port)}
    chat_redis_start "$dir/redis" "$redis_port" no

    pg_port=${TEST_NGINX_PG_PORT:-$(chat_free_port)}
    pg_dir="$dir/pg"

    chat_pg_ensure_user
    if ! chat_pg_usable_dir "$pg_dir"; then
        # the PostgreSQL user cannot enter the checkout (e.g. under /root)
        pg_dir=$(mktemp -d /tmp/ngx_chat_pg.XXXXXX)/pg
        chmod 0755 "$(dirname "$pg_dir")"
        ln -sfn "$pg_dir" "$dir/pg.data"
    fi

    chat_pg_start "$pg_dir" "$pg_port" "$(dirname "$pg_dir")/pg.log" off
    echo "$pg_dir" > "$dir/pg.path"

    dsn=$(chat_pg_dsn "$pg_port")
    "$CHAT_ROOT/sql/migrate.sh" "$dsn" >"$dir/migrate.log" 2>&1 \
        || { cat "$dir/migrate.log" >&2; chat_die "migrations failed"; }

    brokers=$(chat_kafka_start "$dir/kafka")

    {
        echo "export TEST_NGINX_KAFKA_BROKERS='$brokers'"
        echo "export TEST_NGINX_REDIS_PORT=$redis_port"
        echo "export TEST_NGINX_PG_PORT=$pg_port"
        echo "export TEST_NGINX_PG_DSN='$dsn'"
        echo "export TEST_NGINX_STORES_DIR='$dir'"
    } > "$dir/env"

    cat "$dir/env"
}

stop() {
    local pg_dir port

    chat_kafka_stop "$dir/kafka"

    if [ -f "$dir/pg.path" ]; then
        pg_dir=$(cat "$dir/pg.path")
        chat_pg_stop "$pg_dir"
        case $pg_dir in
        /tmp/ngx_chat_pg.*) rm -rf "$(dirname "$pg_dir")" ;;
        esac
        rm -f "$dir/pg.path" "$dir/pg.data"
    fi

    if [ -f "$dir/redis/redis.pid" ]; then
        port=$(sed -n 's/^export TEST_NGINX_REDIS_PORT=//p' \
               "$dir/env" 2>/dev/null || true)
        chat_redis_stop "$dir/redis" "${port:-0}" NOSAVE
    fi

    rm -f "$dir/env"
}

env_value() {
    sed -n "s/^export $1='\{0,1\}\([^']*\)'\{0,1\}\$/\1/p" "$dir/env"
}

# six consecutive free loopback ports, and their cluster bus ports (the
# port + 10000), all below the kernel's ephemeral range (from 32768: a bus
# port there may be some connection's local port): prints the first
free_port_range() {
    local base i ok

    for _ in $(seq 1 50); do
        base=$((20000 + RANDOM % 2700))
        ok=1
        for i in 0 1 2 3 4 5; do
            if chat_port_busy $((base + i)) \
                || chat_port_busy $((base + 10000 + i))
            then
                ok=0
                break
            fi
        done
        [ "$ok" = 1 ] && { echo "$base"; return 0; }
    done

    chat_die "no six free consecutive ports"
}

cluster_start() {
    local port try

    cluster_stop >/dev/null 2>&1 || true

    # ports others may take meanwhile: a few tries on fresh ones
    for try in 1 2 3; do
        rm -rf "$dir/cluster"
        port=${TEST_NGINX_REDIS_CLUSTER_PORT:-$(free_port_range)}
        mkdir -p "$dir/cluster"
        echo "$port" > "$dir/cluster/port"

        if ( CHAT_REDIS_NODE_TIMEOUT=${CHAT_REDIS_NODE_TIMEOUT:-1000} \
                 chat_redis_cluster_start "$dir/cluster" "$port" no )
        then
            echo "export TEST_NGINX_REDIS_CLUSTER_PORT=$port"
            return 0
        fi

        cluster_stop >/dev/null 2>&1 || true
        [ -n "${TEST_NGINX_REDIS_CLUSTER_PORT:-}" ] && break
        chat_log "the Redis Cluster on $port did not start (try $try)"
    done

    chat_die "the Redis Cluster did not start"
}

cluster_stop() {
    [ -f "$dir/cluster/port" ] || return 0
    chat_redis_cluster_stop "$dir/cluster" "$(cat "$dir/cluster/port")" \
        NOSAVE
    rm -f "$dir/cluster/port"
}

case $cmd in
start) start ;;
cluster-start) cluster_start ;;
cluster-stop)  cluster_stop ;;
stop)  stop ;;
redis-stop)
    chat_redis_stop "$dir/redis" "$(env_value TEST_NGINX_REDIS_PORT)" NOSAVE
    ;;
redis-start)
    chat_redis_start "$dir/redis" "$(env_value TEST_NGINX_REDIS_PORT)" no
    ;;
pg-stop)
    chat_pg_stop "$(cat "$dir/pg.path")"
    ;;
pg-start)
    pg_dir=$(cat "$dir/pg.path")
    chat_pg_start "$pg_dir" "$(env_value TEST_NGINX_PG_PORT)" \
        "$(dirname "$pg_dir")/pg.log" off
    ;;
*)     chat_die "usage: $0 start|stop|redis-stop|redis-start|pg-stop|pg-start DIR" ;;
esac
