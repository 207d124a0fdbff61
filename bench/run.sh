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

# one process holds at most NOFILE descriptors (without CAP_SYS_RESOURCE
# nobody raises the hard limit): one chat_bench process holds NOFILE - 1100
# sessions, one nginx worker NOFILE - 200 connections. Bigger runs take
# more of both: procs_for and workers_for.

# procs_for N: chat_bench processes (--procs) for N sessions
procs_for() {
    local per=$((NOFILE - 1100))

    echo $(( ($1 + per - 1) / per ))
}

# workers_for N: nginx workers for N sessions; reuseport spreads the
# connections by a hash, not evenly: a quarter to spare. At least one per
# core, so that the short run's figures stay comparable.
workers_for() {
    local per=$((NOFILE - 200)) w

    w=$(( ($1 * 5 / 4 + per - 1) / per ))
    [ "$w" -lt "$(nproc)" ] && w=$(nproc)
    echo "$w"
}

# sources_for N: source addresses 127.0.0.2.. for N sessions; each one has
# its own ephemeral port range towards the server (ip_local_port_range)
sources_for() {
    local ports s

    ports=$(awk '{print $2 - $1 + 1}' /proc/sys/net/ipv4/ip_local_port_range \
            2>/dev/null)
    ports=${ports:-28232}
    # at most half the range per address: the previous run's TIME_WAIT
    s=$(( ($1 + ports / 2 - 1) / (ports / 2) ))
    [ "$s" -lt 8 ] && s=8
    echo "$s"
}

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

# the server under test: SERVER_UP (a function WORKERS that starts it and
# sets SERVER_ARGS) is called again when a run needs another number of
# nginx workers; RabbitMQ sets SERVER_ARGS once
SERVER_UP=""
SERVER_DOWN=""
SERVER_WORKERS=""
SERVER_ARGS=()

# server_up N: the server runs with enough workers for N sessions
server_up() {
    local w

    [ -n "$SERVER_UP" ] || return 0
    w=$(workers_for "$1")
    [ "$w" = "$SERVER_WORKERS" ] && return 0

    if [ -n "$SERVER_WORKERS" ]; then
        chat_log "restarting with $w nginx workers for $1 sessions"
        $SERVER_DOWN
    fi

    SERVER_WORKERS=""
    $SERVER_UP "$w" || return 1
    SERVER_WORKERS=$w
}

server_down() {
    [ -n "$SERVER_WORKERS" ] && $SERVER_DOWN
    SERVER_UP=""
    SERVER_DOWN=""
    SERVER_WORKERS=""
    SERVER_ARGS=()
}

# bench SYSTEM SCENARIO LABEL N ARGS...: one chat_bench run of N sessions,
# its JSON in results/SYSTEM-SCENARIO[-LABEL].json
bench() {
    local sys=$1 sc=$2 label=$3 n=$4 name procs pause
    shift 4

    name=$sys-$sc${label:+-$label}

    if ! server_up "$n"; then
        note "$name: the server did not start, not run"
        return
    fi

    procs=$(procs_for "$n")
    chat_log "$name: $n sessions, $procs load-generator process(es)" \
             "${SERVER_WORKERS:+($SERVER_WORKERS nginx workers)}"

    timeout $((CONNECT_TIMEOUT + 120)) "$TOOL" --system "$sys" \
        --scenario "$sc" --connect-timeout "$CONNECT_TIMEOUT" \
        --clients "$n" --procs "$procs" --sources "$(sources_for "$n")" \
        ${label:+--label "$label"} --json "$RESULTS/$name.json" \
        "${SERVER_ARGS[@]}" "$@" \
        2>>"$LOG" | tee -a "$OUT/table.txt"

    [ -s "$RESULTS/$name.json" ] || note "$name: no result (see $LOG)"

    # the server tears the sessions down before the next scenario (or
    # before it stops): a second per 10,000 sessions, 2 s at least
    pause=${BENCH_PAUSE:-$(( n / 10000 > 2 ? n / 10000 : 2 ))}
    sleep "$pause"
}

# scenarios SYSTEM ARGS...: every scenario the system takes part in
scenarios() {
    local sys=$1 g
    shift

    if want density "$SCENARIOS" && [ "$sys" != nchan ]; then
        bench "$sys" density "" "$DENSITY_N" "$@" \
            --hold "$DENSITY_HOLD" --heartbeat 10000
    fi

    if want direct "$SCENARIOS" && [ "$sys" != nchan ]; then
        bench "$sys" direct "" "$DIRECT_N" "$@" \
            --rate "$DIRECT_RATE" --duration "$DUR" --warmup 1
    fi

    if want fanout "$SCENARIOS"; then
        for g in 10 100 1000; do
            bench "$sys" fanout "g$g" "$FANOUT_N" "$@" \
                --group "$g" --rate $((FANOUT_DLV / g)) --duration "$DUR" \
                --warmup 1 --window 2000
        done
    fi

    if want storm "$SCENARIOS" && [ "$sys" != nchan ]; then
        bench "$sys" storm "" "$STORM_N" "$@" --inflight 2000 \
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

# nginx_common LOAD_MODULE WORKERS: every worker may open NOFILE files
nginx_common() {
    local user=""

    [ "$(id -u)" = 0 ] && user="user root;"

    cat <<EOF
# generated by bench/run.sh
$1
$user
worker_processes $2;
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

CHAT_PORT=""
NCHAN_PORT=""

# chat_up WORKERS: ngx_chat with WORKERS workers on CHAT_PORT
chat_up() {
    local root=$OUT/ngx_chat pid redis_pid kafka_pid

    {
        nginx_common "load_module $MODULE;" "$1"
        echo "http {"
        nginx_http_common
        cat "$root/conf/http.inc"
        echo "}"
    } > "$root/conf/nginx.conf"

    # (nginx_start runs in a subshell: the cleanup learns the root here)
    NGINX_ROOTS="$NGINX_ROOTS $root"
    pid=$(nginx_start "$root" "$CHAT_PORT") || return 1
    redis_pid=$(cat "$STORES/redis/redis.pid" 2>/dev/null)
    kafka_pid=$(cat "$STORES/kafka/broker.pid" 2>/dev/null)

    # aux CPU: Redis and the Kafka broker
    SERVER_ARGS=(--port "$CHAT_PORT" --secret "$SECRET" --rss-master "$pid"
                 ${redis_pid:+--cpu-pid "$redis_pid"}
                 ${kafka_pid:+--cpu-pid "$kafka_pid"})
}

chat_down() {
    nginx_stop "$OUT/ngx_chat"
}

run_chat() {
    local root=$OUT/ngx_chat port

    [ -f "$MODULE" ] || { note "ngx_chat: $MODULE missing, not run"; return; }

    port=$(chat_free_port)
    CHAT_PORT=$port
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

    SERVER_UP=chat_up
    SERVER_DOWN=chat_down
    scenarios chat
    server_down
}

# nchan_up WORKERS: nchan with WORKERS workers on NCHAN_PORT
nchan_up() {
    local root=$OUT/nchan pid redis_pid

    mkdir -p "$root/conf"
    {
        nginx_common "load_module $NCHAN_SO;" "$1"
        echo "http {"
        nginx_http_common
        sed -e "s|@PORT@|$NCHAN_PORT|" \
            -e "s|@REDIS_PORT@|$TEST_NGINX_REDIS_PORT|" \
            bench/conf/nchan.conf.in
        echo "}"
    } > "$root/conf/nginx.conf"

    NGINX_ROOTS="$NGINX_ROOTS $root"
    pid=$(nginx_start "$root" "$NCHAN_PORT") || return 1
    redis_pid=$(cat "$STORES/redis/redis.pid" 2>/dev/null)

    SERVER_ARGS=(--port "$NCHAN_PORT" --rss-master "$pid"
                 ${redis_pid:+--cpu-pid "$redis_pid"})
}

nchan_down() {
    nginx_stop "$OUT/nchan"
}

run_nchan() {
    if [ ! -f "$NCHAN_SO" ]; then
        note "nchan: $NCHAN_SO missing" \
             "(apt-get install libnginx-mod-nchan), not run"
        return
    fi

    NCHAN_PORT=$(chat_free_port)
    SERVER_UP=nchan_up
    SERVER_DOWN=nchan_down
    scenarios nchan --publishers 64
    server_down
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

    # one Erlang VM: it holds what its open-file limit lets it hold
    SERVER_ARGS=(--port "$port" --ws-path /ws --rss-pid "$beam")
    scenarios rabbitmq
    SERVER_ARGS=()

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
