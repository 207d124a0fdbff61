#!/usr/bin/env bash
# run.sh: make bench: starts the systems under test on loopback, runs
# chat_bench's scenarios against ngx_chat, RabbitMQ Web-STOMP and nchan,
# measures the persistence worker, prints the table and the ratios.
#
# usage: bench/run.sh            (make bench; BENCH=long for the long run)
# environment:
#   BENCH=short|long             the size of the run (short: < 5 minutes)
#   BENCH_SYSTEMS="chat rabbitmq nchan"   which systems
#   BENCH_SCENARIOS="density direct fanout storm persist"
#   BENCH_OUT=DIR                where results go (build/bench/<time>)
#   CHAT_MODULE, CHAT_BENCH_BIN, CHAT_BIN   what make built

set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

cd "$CHAT_ROOT" || exit 1

BENCH=${BENCH:-short}
SYSTEMS=${BENCH_SYSTEMS:-chat rabbitmq nchan}
SCENARIOS=${BENCH_SCENARIOS:-density direct fanout storm persist}
MODULE=${CHAT_MODULE:-$CHAT_ROOT/build/nginx/objs/ngx_chat_module.so}
TOOL=${CHAT_BENCH_BIN:-$CHAT_ROOT/build/bin/chat_bench}
NGINX=${BENCH_NGINX:-/usr/sbin/nginx}
NCHAN_SO=${BENCH_NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
RABBIT_BIN=${BENCH_RABBIT_BIN:-/usr/lib/rabbitmq/bin}
OUT=${BENCH_OUT:-$CHAT_ROOT/build/bench/$(date +%Y%m%d-%H%M%S)}
# without CAP_SYS_RESOURCE no process gets more descriptors than this
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NOFILE" -gt 1048576 ] && NOFILE=1048576
SECRET=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')

case $BENCH in
short)
    DENSITY_N=10000;  DENSITY_HOLD=3
    DIRECT_N=2000;    DIRECT_RATE=10000; DUR=5
    FANOUT_N=1000;    FANOUT_DLV=300000
    STORM_N=5000
    PERSIST_N=100000
    CONNECT_TIMEOUT=15
    ;;
long)
    DENSITY_N=100000; DENSITY_HOLD=10
    DIRECT_N=20000;   DIRECT_RATE=10000; DUR=30
    FANOUT_N=10000;   FANOUT_DLV=300000
    STORM_N=20000
    PERSIST_N=500000
    CONNECT_TIMEOUT=300
    ;;
*)
    chat_die "BENCH=$BENCH: short or long"
    ;;
esac

# any of the sizes above can be overridden: BENCH_DIRECT_RATE=5000 ...
for v in DENSITY_N DENSITY_HOLD DIRECT_N DIRECT_RATE DUR FANOUT_N FANOUT_DLV \
         STORM_N PERSIST_N CONNECT_TIMEOUT; do
    o=BENCH_$v
    [ -n "${!o:-}" ] && printf -v "$v" %s "${!o}"
done

# one chat_bench process holds at most NOFILE - 1100 sessions (and one
# nginx worker NOFILE - 100 connections): bigger runs are cut down, and
# say so
cap=$((NOFILE - 1100))
for v in DENSITY_N DIRECT_N FANOUT_N STORM_N; do
    if [ "${!v}" -gt "$cap" ]; then
        printf -v "$v" %s "$cap"
        CAPPED="${CAPPED:-} $v"
    fi
done

[ -x "$TOOL" ] || chat_die "$TOOL is missing: make bench builds it"

rm -rf "$OUT/results" "$OUT/notes" "$OUT/table.txt"
mkdir -p "$OUT/results"
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results
LOG=$OUT/run.log
: > "$LOG"

PIDS_TO_STOP=""
NGINX_ROOTS=""
RABBIT_PID=""
RABBIT_BEAM=""
STORES=""

cleanup() {
    local r p

    for r in $NGINX_ROOTS; do
        if [ -f "$r/logs/nginx.pid" ]; then
            p=$(cat "$r/logs/nginx.pid")
            kill -TERM "$p" 2>/dev/null
            for _ in $(seq 1 50); do chat_alive "$p" || break; sleep 0.1; done
            kill -KILL "$p" 2>/dev/null
        fi
    done

    [ -n "$RABBIT_PID" ] && rabbit_stop

    for p in $PIDS_TO_STOP; do
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 1 50); do chat_alive "$p" || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done

    [ -n "$STORES" ] && scripts/test-servers.sh stop "$STORES" \
        >/dev/null 2>&1

    chat_kafka_stop "$OUT/persist-kafka" >/dev/null 2>&1
}
trap cleanup EXIT
trap 'exit 130' INT TERM

note() {
    echo "$*" | tee -a "$OUT/notes"
}

want() {
    case " $2 " in *" $1 "*) return 0 ;; esac
    return 1
}


# --- the tool ---

# bench SYSTEM SCENARIO LABEL ARGS...: one chat_bench run, its JSON in
# results/SYSTEM-SCENARIO[-LABEL].json
bench() {
    local sys=$1 sc=$2 label=$3 name
    shift 3

    name=$sys-$sc${label:+-$label}
    chat_log "$name"

    timeout $((CONNECT_TIMEOUT + 120)) "$TOOL" --system "$sys" \
        --scenario "$sc" --connect-timeout "$CONNECT_TIMEOUT" \
        ${label:+--label "$label"} --json "$RESULTS/$name.json" "$@" \
        2>>"$LOG" | tee -a "$OUT/table.txt"

    [ -s "$RESULTS/$name.json" ] || note "$name: no result (see $LOG)"

    # the server tears the sessions down before the next scenario
    sleep "${BENCH_PAUSE:-2}"
}

# scenarios SYSTEM PORT ARGS...: every scenario the system takes part in
scenarios() {
    local sys=$1 g
    shift

    if want density "$SCENARIOS" && [ "$sys" != nchan ]; then
        bench "$sys" density "" "$@" --clients "$DENSITY_N" \
            --hold "$DENSITY_HOLD" --heartbeat 10000
    fi

    if want direct "$SCENARIOS" && [ "$sys" != nchan ]; then
        bench "$sys" direct "" "$@" --clients "$DIRECT_N" \
            --rate "$DIRECT_RATE" --duration "$DUR" --warmup 1
    fi

    if want fanout "$SCENARIOS"; then
        for g in 10 100 1000; do
            bench "$sys" fanout "g$g" "$@" --clients "$FANOUT_N" \
                --group "$g" --rate $((FANOUT_DLV / g)) --duration "$DUR" \
                --warmup 1 --window 2000
        done
    fi

    if want storm "$SCENARIOS" && [ "$sys" != nchan ]; then
        bench "$sys" storm "" "$@" --clients "$STORM_N" --inflight 2000 \
            --heartbeat 0
    fi
}


# --- ngx_chat and nchan: nginx instances ---

# nginx_start ROOT: runs nginx with ROOT/conf/nginx.conf, prints its pid
nginx_start() {
    local root=$1 port=$2 p

    mkdir -p "$root/logs"
    "$NGINX" -p "$root/" -c conf/nginx.conf -e logs/error.log \
        >"$root/logs/start.log" 2>&1 \
        || { cat "$root/logs/start.log" >&2; return 1; }

    NGINX_ROOTS="$NGINX_ROOTS $root"

    chat_wait_port "$port" 10 \
        || { tail -20 "$root/logs/error.log" >&2; return 1; }

    p=$(cat "$root/logs/nginx.pid")
    echo "$p"
}

nginx_stop() {
    local root=$1 p

    [ -f "$root/logs/nginx.pid" ] || return 0
    p=$(cat "$root/logs/nginx.pid")
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 1 100); do chat_alive "$p" || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
}

nginx_common() {
    local user=""

    [ "$(id -u)" = 0 ] && user="user root;"

    cat <<EOF
# generated by bench/run.sh
$1
$user
worker_processes $(nproc);
worker_rlimit_nofile $NOFILE;
error_log logs/error.log warn;
pid logs/nginx.pid;
events {
    worker_connections $((NOFILE - 100));
}
EOF
}

nginx_http_common() {
    cat <<EOF
    access_log off;
    default_type text/plain;
    client_body_temp_path client_body_temp;
    proxy_temp_path proxy_temp;
    fastcgi_temp_path fastcgi_temp;
    uwsgi_temp_path uwsgi_temp;
    scgi_temp_path scgi_temp;
EOF
}

run_chat() {
    local root=$OUT/ngx_chat port pid redis_pid kafka_pid

    [ -f "$MODULE" ] || { note "ngx_chat: $MODULE missing, not run"; return; }

    port=$(chat_free_port)
    mkdir -p "$root/conf"
    sed -e "s|@MODULE@|$MODULE|" -e "s|@PORT@|$port|" \
        -e "s|@REDIS_PORT@|$TEST_NGINX_REDIS_PORT|" \
        -e "s|@PG_DSN@|$TEST_NGINX_PG_DSN|" \
        -e "s|@KAFKA@|${TEST_NGINX_KAFKA_BROKERS:-}|" \
        -e "s|@SECRET@|$SECRET|" \
        bench/conf/ngx_chat.conf.in > "$root/conf/http.inc"
    # BENCH_NO_KAFKA=1: RECEIPTs follow the Redis publish
    [ -n "${TEST_NGINX_KAFKA_BROKERS:-}" ] && [ -z "${BENCH_NO_KAFKA:-}" ] \
        || sed -i '/chat_kafka /d' "$root/conf/http.inc"
    {
        nginx_common "load_module $MODULE;"
        echo "http {"
        nginx_http_common
        cat "$root/conf/http.inc"
        echo "}"
    } > "$root/conf/nginx.conf"

    pid=$(nginx_start "$root" "$port") \
        || { note "ngx_chat did not start"; return; }
    redis_pid=$(cat "$STORES/redis/redis.pid" 2>/dev/null)
    kafka_pid=$(cat "$STORES/kafka/broker.pid" 2>/dev/null)

    # aux CPU: Redis and the Kafka broker
    scenarios chat --port "$port" --secret "$SECRET" --rss-master "$pid" \
        ${redis_pid:+--cpu-pid "$redis_pid"} \
        ${kafka_pid:+--cpu-pid "$kafka_pid"}

    nginx_stop "$root"
}

run_nchan() {
    local root=$OUT/nchan port pid redis_pid

    if [ ! -f "$NCHAN_SO" ]; then
        note "nchan: $NCHAN_SO missing" \
             "(apt-get install libnginx-mod-nchan), not run"
        return
    fi

    port=$(chat_free_port)
    mkdir -p "$root/conf"
    {
        nginx_common "load_module $NCHAN_SO;"
        echo "http {"
        nginx_http_common
        sed -e "s|@PORT@|$port|" \
            -e "s|@REDIS_PORT@|$TEST_NGINX_REDIS_PORT|" \
            bench/conf/nchan.conf.in
        echo "}"
    } > "$root/conf/nginx.conf"

    pid=$(nginx_start "$root" "$port") \
        || { note "nchan did not start"; return; }
    redis_pid=$(cat "$STORES/redis/redis.pid" 2>/dev/null)

    scenarios nchan --port "$port" --rss-master "$pid" --publishers 64 \
        ${redis_pid:+--cpu-pid "$redis_pid"}

    nginx_stop "$root"
}


# --- RabbitMQ Web-STOMP: a private node ---

run_rabbitmq() {
    local dir=$OUT/rabbitmq port amqp stomp dist beam

    if [ ! -x "$RABBIT_BIN/rabbitmq-server" ]; then
        note "rabbitmq: $RABBIT_BIN/rabbitmq-server missing" \
             "(apt-get install rabbitmq-server), not run"
        return
    fi

    port=$(chat_free_port); amqp=$(chat_free_port)
    stomp=$(chat_free_port); dist=$(chat_free_port)
    EPMD_PORT=$(chat_free_port)
    mkdir -p "$dir/mnesia" "$dir/log" "$dir/home"

    sed -e "s|@PORT@|$port|" -e "s|@AMQP@|$amqp|" -e "s|@STOMP@|$stomp|" \
        bench/conf/rabbitmq.conf.in > "$dir/rabbitmq.conf"
    echo '[rabbitmq_web_stomp].' > "$dir/enabled_plugins"
    printf 'bench%s' "$SECRET" > "$dir/home/.erlang.cookie"
    chmod 600 "$dir/home/.erlang.cookie"

    # a node of our own: its own name, ports, cookie and data directory
    (
        export HOME=$dir/home
        export RABBITMQ_NODENAME=bench$$@localhost
        export RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf
        export RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins
        export RABBITMQ_MNESIA_BASE=$dir/mnesia
        export RABBITMQ_LOG_BASE=$dir/log
        export RABBITMQ_DIST_PORT=$dist
        export ERL_EPMD_PORT=$EPMD_PORT
        export RABBITMQ_PID_FILE=$dir/rabbit.pid
        export RABBITMQ_SERVER_ERL_ARGS="+P 1048576 +Q 1048576"
        ulimit -n 400000 2>/dev/null
        exec "$RABBIT_BIN/rabbitmq-server"
    ) > "$dir/server.log" 2>&1 &
    RABBIT_PID=$!

    if ! chat_wait_port "$port" 90; then
        tail -20 "$dir/server.log" >&2
        note "rabbitmq: Web-STOMP did not come up on $port, not run"
        return
    fi

    beam=$(cat "$dir/rabbit.pid" 2>/dev/null)
    [ -n "$beam" ] || beam=$RABBIT_PID
    RABBIT_BEAM=$beam

    scenarios rabbitmq --port "$port" --ws-path /ws --rss-pid "$beam"

    rabbit_stop
}

# the server script and its Erlang VM (beam.smp, the script's child)
rabbit_stop() {
    local p

    for p in $RABBIT_BEAM $RABBIT_PID; do
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 1 100); do chat_alive "$p" || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
    done

    [ -n "${EPMD_PORT:-}" ] && ERL_EPMD_PORT=$EPMD_PORT epmd -kill \
        >/dev/null 2>&1
    RABBIT_PID=""
    RABBIT_BEAM=""
}


# --- persist: chat-persist's rows/s into PostgreSQL and its lag ---

run_persist() {
    perl bench/persist.pl --bin "${CHAT_BIN}" --dir "$OUT/persist" \
        --dsn "$TEST_NGINX_PG_DSN" --count "$PERSIST_N" \
        --json "$RESULTS/chat-persist.json" 2>>"$LOG" \
        | tee -a "$OUT/table.txt"
    [ -s "$RESULTS/chat-persist.json" ] \
        || note "persist: no result (see $LOG)"
}


# --- the run (a function: bash reads it whole before running it) ---

main() {

chat_log "BENCH=$BENCH: results in $OUT"
[ -n "${CAPPED:-}" ] && note "capped to $cap sessions by the open-file limit" \
    "($NOFILE, ulimit -Hn):$CAPPED"
{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' \
                    /proc/meminfo)"
    echo "kernel: $(uname -sr)"
    echo "cpu: $(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)"
} > "$OUT/machine"

STORES=$OUT/stores
env_lines=$(scripts/test-servers.sh start "$STORES") \
    || chat_die "cannot start Redis and PostgreSQL"
eval "$env_lines"

want chat "$SYSTEMS" && run_chat
want rabbitmq "$SYSTEMS" && run_rabbitmq
want nchan "$SYSTEMS" && run_nchan
want persist "$SCENARIOS" && want chat "$SYSTEMS" && run_persist

echo
perl bench/report.pl "$OUT/machine" "$RESULTS"/*.json | tee "$OUT/summary.txt"
[ -f "$OUT/notes" ] && { echo; echo "notes:"; cat "$OUT/notes"; }
echo
echo "results: $OUT"
}

main "$@"
exit
