#!/usr/bin/env bash
# run.sh: make bench: starts the systems under test on loopback, runs
# chat_bench's scenarios against ngx_chat, RabbitMQ Web-STOMP, nchan and
# Mosquitto (MQTT over WebSocket), Socket.IO with its Redis adapter,
# measures the persistence worker, prints the table and the ratios.
#
# usage: bench/run.sh            (make bench; BENCH=long for the long run)
# environment:
#   BENCH=short|long             the size of the run (short: < 10 minutes)
#   BENCH_SYSTEMS="chat rabbitmq nchan mosquitto socketio"   which systems
#                                (chat-cluster: ngx_chat on 3 shards too)
#   BENCH_SCENARIOS="density direct fanout storm persist nodeloss capacity floor"
#                                capacity: the sweeps of offered rates;
#                                floor: bench/floor, the machine's limit
#   BENCH_OUT=DIR                where results go (build/bench/<time>)
#   BENCH_PERSIST_WORKERS=N      chat-persist processes in the persist
#                                scenario's consumer group (default 1)
#   BENCH_PROFILE="direct"       perf and Redis profiles of those scenarios'
#                                measured windows in OUT/profile (profile_bg)
#   CHAT_MODULE, CHAT_BENCH_BIN, CHAT_BIN   what make built

set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

cd "$CHAT_ROOT" || exit 1

BENCH=${BENCH:-short}
SYSTEMS=${BENCH_SYSTEMS:-chat rabbitmq nchan mosquitto socketio}
SCENARIOS=${BENCH_SCENARIOS:-density direct fanout storm persist nodeloss capacity floor}
MODULE=${CHAT_MODULE:-$CHAT_ROOT/build/nginx/objs/ngx_chat_module.so}
TOOL=${CHAT_BENCH_BIN:-$CHAT_ROOT/build/bin/chat_bench}
NGINX=${BENCH_NGINX:-/usr/sbin/nginx}
NCHAN_SO=${BENCH_NCHAN_MODULE:-/usr/lib/nginx/modules/ngx_nchan_module.so}
RABBIT_BIN=${BENCH_RABBIT_BIN:-/usr/lib/rabbitmq/bin}
MOSQ_BIN=${BENCH_MOSQUITTO_BIN:-/usr/sbin/mosquitto}
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
    NODELOSS_N=5000
    CONNECT_TIMEOUT=15
    SETTLE_MAX=15
    ;;
long)
    DENSITY_N=200000; DENSITY_HOLD=10
    DIRECT_N=20000;   DIRECT_RATE=10000; DUR=30
    FANOUT_N=10000;   FANOUT_DLV=300000
    STORM_N=20000
    PERSIST_N=500000
    NODELOSS_N=15000
    CONNECT_TIMEOUT=300
    SETTLE_MAX=120
    ;;
*)
    chat_die "BENCH=$BENCH: short or long"
    ;;
esac

# any of the sizes above can be overridden: BENCH_DIRECT_RATE=5000 ...
for v in DENSITY_N DENSITY_HOLD DIRECT_N DIRECT_RATE DUR FANOUT_N FANOUT_DLV \
         STORM_N PERSIST_N CONNECT_TIMEOUT NODELOSS_N SETTLE_MAX; do
    o=BENCH_$v
    [ -n "${!o:-}" ] && printf -v "$v" %s "${!o}"
done

# --- capacity sweeps (issue 18): rates offered one after the other over
# the same sessions, SWEEP_STEP seconds each (after SWEEP_WARMUP); a
# system's sweep stops at the first rate it does not carry (chat_bench
# --sweep, docs/BENCHMARKS.md "Capacity"). Direct in msg/s, fan-out in
# deliveries/s (msg/s times the group).
case $BENCH in
short)
    SWEEP_STEP=2;  SWEEP_WARMUP=1
    SWEEP_DIRECT="1000 2000 5000 10000 20000 40000"
    SWEEP_FANOUT="50000 100000 300000 600000 1000000 2000000"
    SWEEP_GROUPS="100 1000"
    ;;
long)
    SWEEP_STEP=10; SWEEP_WARMUP=2
    SWEEP_DIRECT="1000 2000 5000 10000 15000 20000 30000 40000 60000"
    SWEEP_FANOUT="50000 100000 200000 300000 400000 600000 800000 1000000 1500000 2000000"
    SWEEP_GROUPS="10 100 1000"
    ;;
esac
# load-generator processes for a sweep at least (more when the sessions
# need them): the receiving side of 2,000,000 deliveries/s is more than
# one process parses
SWEEP_PROCS=2
# the floor's frame: the bytes of a fan-out MESSAGE frame of ngx_chat
# (WebSocket header, STOMP headers, the JSON body with 64 content bytes)
FLOOR_FRAME=420
# the floor runs twice: one frame per write() (the floor as defined), and
# FLOOR_BATCH frames per write() to a socket (a server that coalesces the
# frames queued for a socket, as ngx_chat's writev does under load)
FLOOR_BATCH=8
for v in SWEEP_STEP SWEEP_WARMUP SWEEP_DIRECT SWEEP_FANOUT SWEEP_GROUPS \
         SWEEP_PROCS FLOOR_FRAME FLOOR_BATCH; do
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
    # one node runs at most 32 workers (the worker's 5 bits in message
    # ids): with the open-file limit that bounds the sessions of one node
    # (32 x 19,800 = 633,600 here); reuseport's spread over 32 workers is
    # even enough for 600,000 (the margin above is for few workers)
    if [ "$w" -gt "$WORKERS_MAX" ]; then
        w=$WORKERS_MAX
        [ "$1" -gt $((w * per)) ] \
            && note "$1 sessions: more than one node holds" \
                    "($w workers x $per connections)" >&2
    fi
    echo "$w"
}

WORKERS_MAX=32

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

# max_time_for: chat_bench stops itself after 600 s unless told: a longer
# --connect-timeout (a million sessions) gets a --max-time beyond it
max_time_for() {
    local t=$((CONNECT_TIMEOUT + 110))

    [ "$t" -gt 600 ] && echo "--max-time $t"
}

# pg_pool_for WORKERS: a chat_postgres_pool line when WORKERS workers with
# the default 4 connections each would pass the test PostgreSQL's
# max_connections (200, scripts/lib.sh): the density runs of 500,000
# sessions and more have 30 workers and more
pg_pool_for() {
    local n

    [ "$(( $1 * 4 ))" -le 120 ] && return
    n=$(( 120 / $1 ))
    [ "$n" -lt 1 ] && n=1
    echo "    chat_postgres_pool $n;"
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
RABBIT_PORT=""
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

    [ -n "${CLUSTER_DIR:-}" ] && scripts/test-servers.sh cluster-stop \
        "$CLUSTER_DIR" >/dev/null 2>&1
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
SERVER_SETTLE=""
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
    profile_bg "$name" "$sc"

    timeout $((CONNECT_TIMEOUT + 120)) "$TOOL" --system "$sys" \
        --scenario "$sc" --connect-timeout "$CONNECT_TIMEOUT" \
        $(max_time_for) \
        --clients "$n" --procs "$procs" --sources "$(sources_for "$n")" \
        ${label:+--label "$label"} --json "$RESULTS/$name.json" \
        "${SERVER_ARGS[@]}" "$@" \
        2>>"$LOG" | tee -a "$OUT/table.txt"

    [ -s "$RESULTS/$name.json" ] || note "$name: no result (see $LOG)"

    # the server tears the sessions down before the next scenario (or
    # before it stops): until it holds none of them, for at most a second
    # per 10,000 sessions, 2 s at least
    pause=${BENCH_PAUSE:-$(( n / 10000 > 2 ? n / 10000 : 2 ))}
    server_drained "$name" "$pause"
    [ -n "$SERVER_SETTLE" ] && [ -z "${LAST_RUN:-}" ] && $SERVER_SETTLE "$name"
}

# server_port: the port of SERVER_ARGS (--port), empty without one
server_port() {
    local i

    for ((i = 0; i + 1 < ${#SERVER_ARGS[@]}; i++)); do
        [ "${SERVER_ARGS[i]}" = --port ] && { echo "${SERVER_ARGS[i + 1]}";
                                               return; }
    done
}

# server_drained NAME MAX: waits (0.1 s at least, MAX s at most) until the
# server's port has no connection but in LISTEN or TIME-WAIT (the sessions
# closed on both sides, their FINs answered); without a port, MAX s
server_drained() {
    local name=$1 max=$2 port left i

    port=$(server_port)
    if [ -z "$port" ]; then
        sleep "$max"
        return
    fi

    for ((i = 0; i < max * 10; i++)); do
        sleep 0.1
        left=$(ss -Htn state connected exclude time-wait \
                  "( sport = :$port )" 2>/dev/null | wc -l)
        [ "$left" -eq 0 ] && return
    done
    chat_log "$name: $left connection(s) of the server still open after" \
             "$max s"
}

# cpu_demand PID: milliseconds PID's threads ran or waited to run so far
# (schedstat: on a shared machine a starved process uses little CPU while
# it still has work)
cpu_demand() {
    cat /proc/"$1"/task/*/schedstat 2>/dev/null \
        | awk '{ns += $1 + $2} END {printf "%d\n", ns / 1000000}'
}

# settle_pid PID NAME MAX PORT: waits (at most MAX s) until PID holds no
# connection on PORT and has run or waited to run less than a tenth of a
# second per second for two half-seconds in a row, so that one scenario's
# teardown does not run into the next one's setup (RabbitMQ still accepts
# the sessions the load generator gave up on from its backlog, and
# deletes each closed session's queues after its TCP connection is gone)
settle_pid() {
    local pid=$1 name=$2 max=$3 port=$4 t0 t1 quiet=0 halves=0 conns

    while [ "$halves" -lt $((max * 2)) ] && chat_alive "$pid"; do
        t0=$(cpu_demand "$pid")
        sleep 0.5
        halves=$((halves + 1))
        t1=$(cpu_demand "$pid")
        conns=$(ss -Htn state established "( sport = :$port )" 2>/dev/null \
                | wc -l)
        if [ "$conns" -eq 0 ] && [ $((t1 - t0)) -lt 50 ]; then
            quiet=$((quiet + 1))
            [ "$quiet" -ge 2 ] && break
        else
            quiet=0
        fi
    done
    chat_log "$name: the server settled after" \
             "$((halves / 2)).$((halves % 2 * 5)) s ($conns connections left)"
}

# profile_bg NAME SCENARIO: with BENCH_PROFILE="direct ..." (scenarios),
# a profile of the measured window in the background: once chat_bench says
# its sessions are ready, 1.5 s (the warm-up) later, `perf record -a -g`
# for 3 s and Redis's INFO commandstats of the same 3 s, into
# OUT/profile/NAME.*; the summary by process and library in NAME.txt
profile_bg() {
    local name=$1 sc=$2 dir=$OUT/profile start port

    want "$sc" "${BENCH_PROFILE:-}" || return 0

    if ! command -v perf >/dev/null; then
        note "$name: no profile, perf is missing (apt-get install linux-perf)"
        return 0
    fi

    mkdir -p "$dir"
    start=$(wc -l < "$LOG")
    port=${TEST_NGINX_REDIS_PORT:-}

    (
        for _ in $(seq 1 $(( (CONNECT_TIMEOUT + 60) * 5 ))); do
            tail -n +"$((start + 1))" "$LOG" | grep -q "sessions ready" \
                && break
            sleep 0.2
        done
        sleep 1.5
        [ -n "$port" ] && redis-cli -p "$port" CONFIG RESETSTAT >/dev/null
        perf record -a -g -o "$dir/$name.perf.data" -- sleep 3 \
            >"$dir/$name.perf.log" 2>&1 &
        sleep 3
        [ -n "$port" ] && redis-cli -p "$port" INFO commandstats \
            > "$dir/$name.redis.txt"
        wait
        {
            echo "# perf record -a -g, 3 s of the measured window"
            echo "# by process:"
            perf report -i "$dir/$name.perf.data" --no-children \
                --sort comm -g none --stdio 2>/dev/null | grep -v '^#' \
                | grep -v '^$' | head -20
            echo "# by process and library:"
            perf report -i "$dir/$name.perf.data" --no-children \
                --sort comm,dso -g none --stdio 2>/dev/null | grep -v '^#' \
                | grep -v '^$' | head -30
            echo "# Redis commands per SEND (INCR of the seq) in the window:"
            awk -F'[:,=]' '/^cmdstat_/ { c[substr($1, 9)] = $3 }
                END { n = c["incr"]; if (n == 0) exit
                      for (k in c) { t += c[k]
                          printf "    %-18s %6.2f\n", k, c[k] / n }
                      printf "    %-18s %6.2f (%d SENDs)\n", "all", t / n, n
                }' "$dir/$name.redis.txt" 2>/dev/null | sort -k2 -rn
            echo "# by symbol:"
            perf report -i "$dir/$name.perf.data" --no-children \
                --sort comm,sym -g none --stdio 2>/dev/null | grep -v '^#' \
                | grep -v '^$' | head -60
        } > "$dir/$name.txt"
    ) &
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
            --rate "$DIRECT_RATE" --duration "$DUR" --warmup 1 --window 2000
    fi

    # the storm before the fan-outs: a broker that collapsed under the
    # group of 1000 (RabbitMQ) would still be deleting its queues
    if want storm "$SCENARIOS" && [ "$sys" != nchan ]; then
        bench "$sys" storm "" "$STORM_N" "$@" --inflight 2000 \
            --heartbeat 0
    fi

    # the sweeps before the fixed-rate fan-outs: their rates start low,
    # while a broker that collapsed under 300,000 deliveries/s to groups
    # of 1000 (RabbitMQ) was still tearing that down half a minute later,
    # past the settle wait, and the sweeps after it found no session ready
    want capacity "$SCENARIOS" && sweeps "$sys" "$@"

    # the server stops after the last run: no settle wait after it (the
    # next system starts once it has exited)
    if want fanout "$SCENARIOS"; then
        for g in 10 100 1000; do
            LAST_RUN=$([ "$g" = 1000 ] && echo 1) \
            bench "$sys" fanout "g$g" "$FANOUT_N" "$@" \
                --group "$g" --rate $((FANOUT_DLV / g)) --duration "$DUR" \
                --warmup 1 --window 2000
        done
    fi
}


# --- capacity: sweeps of offered rates, and the floor ---

# sweep_bench SYSTEM SCENARIO LABEL N RATES ARGS...: one chat_bench
# --sweep over RATES (msg/s, space-separated), its JSON in
# results/SYSTEM-SCENARIO-LABEL.json
sweep_bench() {
    local sys=$1 sc=$2 label=$3 n=$4 rates=$5 name procs steps
    shift 5

    name=$sys-$sc-$label

    if ! server_up "$n"; then
        note "$name: the server did not start, not run"
        return
    fi

    procs=$(procs_for "$n")
    [ "$procs" -lt "$SWEEP_PROCS" ] && procs=$SWEEP_PROCS
    steps=$(echo $rates | wc -w)
    chat_log "$name: $n sessions, $procs load-generator process(es)," \
             "rates $rates msg/s"

    timeout $((CONNECT_TIMEOUT + 60 + steps * (SWEEP_STEP + SWEEP_WARMUP + 8))) \
        "$TOOL" --system "$sys" --scenario "$sc" \
        --connect-timeout "$CONNECT_TIMEOUT" --clients "$n" \
        --procs "$procs" --sources "$(sources_for "$n")" --label "$label" \
        --json "$RESULTS/$name.json" "${SERVER_ARGS[@]}" "$@" \
        --sweep "$(echo $rates | tr ' ' ,)" --duration "$SWEEP_STEP" \
        --warmup "$SWEEP_WARMUP" \
        2>>"$LOG" | tee -a "$OUT/table.txt"

    [ -s "$RESULTS/$name.json" ] || note "$name: no result (see $LOG)"

    # as after bench's runs: the sessions gone, a broker quiet again (a
    # sweep that started into RabbitMQ's teardown found no session ready)
    server_drained "$name" "${BENCH_PAUSE:-$(( n / 10000 > 2 ? n / 10000 : 2 ))}"
    [ -n "$SERVER_SETTLE" ] && $SERVER_SETTLE "$name"
}

# sweep_window RATE: unanswered sends allowed: 100 ms of the highest rate
# (a step whose receipts take longer fails on its p99 anyway), 2000 at least
sweep_window() {
    local w=$(( ${1%.*} / 10 ))

    [ "$w" -lt 2000 ] && w=2000
    echo "$w"
}

# sweeps SYSTEM ARGS...: the capacity of direct and of fan-out per group
sweeps() {
    local sys=$1 g r rates top
    shift

    if [ "$sys" != nchan ]; then
        top=$(echo $SWEEP_DIRECT | tr ' ' '\n' | sort -n | tail -1)
        sweep_bench "$sys" direct sweep "$DIRECT_N" "$SWEEP_DIRECT" "$@" \
            --window "$(sweep_window "$top")"
    fi

    for g in $SWEEP_GROUPS; do
        rates=""
        for r in $SWEEP_FANOUT; do
            rates="$rates $((r / g))"
        done
        top=$(echo $rates | tr ' ' '\n' | sort -n | tail -1)
        sweep_bench "$sys" fanout "g$g-sweep" "$FANOUT_N" "$rates" "$@" \
            --group "$g" --window "$(sweep_window "$top")"
    done
}

# run_floor: bench/floor, the same deliveries with no protocol, for every
# group of the fan-out runs and sweeps (no system under test is running)
run_floor() {
    local floor g b name

    floor=$(dirname "$TOOL")/floor
    if [ ! -x "$floor" ]; then
        note "floor: $floor missing (make bench builds it), not run"
        return
    fi

    for g in $(echo 10 100 1000 $SWEEP_GROUPS | tr ' ' '\n' | sort -nu); do
        for b in $(echo 1 $FLOOR_BATCH | tr ' ' '\n' | sort -nu); do
            name=floor-g$g-b$b
            chat_log "$name: $FANOUT_N sockets, $FLOOR_FRAME-byte frames," \
                     "$b per write"
            timeout $((CONNECT_TIMEOUT + 60 + SWEEP_STEP)) "$floor" \
                --clients "$FANOUT_N" --group "$g" --frame "$FLOOR_FRAME" \
                --batch "$b" --duration "$SWEEP_STEP" --warmup 1 \
                --sources "$(sources_for "$FANOUT_N")" --label "g$g" \
                --json "$RESULTS/$name.json" \
                2>>"$LOG" | tee -a "$OUT/table.txt"
            [ -s "$RESULTS/$name.json" ] \
                || note "$name: no result (see $LOG)"
        done
    done
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
        pg_pool_for "$1"
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


# pick_port VAR: a free port into VAR, none this run picked before
PICKED_PORTS=""
pick_port() {
    local p

    for _ in $(seq 1 20); do
        p=$(chat_free_port)
        case " $PICKED_PORTS " in *" $p "*) continue ;; esac
        break
    done
    PICKED_PORTS="$PICKED_PORTS $p"
    printf -v "$1" %s "$p"
}


# --- Mosquitto: MQTT 3.1.1 over WebSocket, one process ---

MOSQ_PID=""
MOSQ_PORT=""

run_mosquitto() {
    local dir=$OUT/mosquitto port mqtt user=""

    if [ ! -x "$MOSQ_BIN" ]; then
        note "mosquitto: $MOSQ_BIN missing (apt-get install mosquitto)," \
             "not run"
        return
    fi

    pick_port port; pick_port mqtt
    MOSQ_PORT=$port
    mkdir -p "$dir"
    # as root it would switch to the mosquitto user (and lose its log)
    [ "$(id -u)" = 0 ] && user="user root"
    sed -e "s|@PORT@|$port|" -e "s|@DIR@|$dir|" -e "s|@USER@|$user|" \
        -e "s|@MQTT_PORT@|$mqtt|" \
        bench/conf/mosquitto.conf.in > "$dir/mosquitto.conf"

    # the open-file limit as high as the hard limit allows
    (
        ulimit -n "$NOFILE" 2>/dev/null
        exec "$MOSQ_BIN" -c "$dir/mosquitto.conf"
    ) > "$dir/server.log" 2>&1 &
    MOSQ_PID=$!
    PIDS_TO_STOP="$PIDS_TO_STOP $MOSQ_PID"

    if ! chat_wait_port "$port" 10; then
        tail -20 "$dir/server.log" "$dir/mosquitto.log" >&2
        note "mosquitto: did not come up on $port, not run"
        return
    fi

    note "mosquitto: one thread, one core at most (MQTT 3.1.1 over" \
         "WebSocket, QoS 1; RECEIPT = PUBACK)"
    SERVER_ARGS=(--port "$port" --rss-pid "$MOSQ_PID")
    SERVER_SETTLE=mosq_settle
    scenarios mosquitto
    SERVER_SETTLE=""
    SERVER_ARGS=()

    kill -TERM "$MOSQ_PID" 2>/dev/null
    for _ in $(seq 1 50); do chat_alive "$MOSQ_PID" || break; sleep 0.1; done
    kill -KILL "$MOSQ_PID" 2>/dev/null
    MOSQ_PID=""
}

mosq_settle() {
    settle_pid "$MOSQ_PID" "$1" "$SETTLE_MAX" "$MOSQ_PORT"
}


# --- Socket.IO with its Redis adapter: node's cluster, a worker per core ---

SIO_DIR=$CHAT_ROOT/bench/socketio

run_socketio() {
    local dir=$OUT/socketio port pid redis_pid

    if ! command -v node >/dev/null \
       || [ ! -d "$SIO_DIR/node_modules/socket.io" ]; then
        note "socketio: node or $SIO_DIR/node_modules missing" \
             "(make bench-deps runs npm ci there), not run"
        return
    fi

    pick_port port
    mkdir -p "$dir"
    (
        ulimit -n "$NOFILE" 2>/dev/null
        cd "$SIO_DIR" && exec node server.mjs "$port" "$TEST_NGINX_REDIS_PORT"
    ) > "$dir/server.log" 2>&1 &
    pid=$!
    PIDS_TO_STOP="$PIDS_TO_STOP $pid"

    if ! chat_wait_port "$port" 30; then
        tail -20 "$dir/server.log" >&2
        note "socketio: did not come up on $port, not run"
        return
    fi
    # every worker listens before the first connection
    sleep 2

    redis_pid=$(cat "$STORES/redis/redis.pid" 2>/dev/null)
    note "socketio: Socket.IO 4.8 with the Redis adapter, $(nproc) node" \
         "workers (cluster), WebSocket transport; RECEIPT = the emit's ack"
    SERVER_ARGS=(--port "$port" --rss-master "$pid"
                 ${redis_pid:+--cpu-pid "$redis_pid"})
    scenarios socketio
    SERVER_ARGS=()

    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do chat_alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
}


# --- RabbitMQ Web-STOMP: a private node ---

run_rabbitmq() {
    local dir=$OUT/rabbitmq port amqp stomp dist beam probe

    if [ ! -x "$RABBIT_BIN/rabbitmq-server" ]; then
        note "rabbitmq: $RABBIT_BIN/rabbitmq-server missing" \
             "(apt-get install rabbitmq-server), not run"
        return
    fi

    # five ports, all different (chat_free_port reserves none: a node
    # whose AMQP listener got epmd's port died at boot)
    pick_port port; pick_port amqp; pick_port stomp; pick_port dist
    pick_port EPMD_PORT
    RABBIT_PORT=$port
    mkdir -p "$dir/mnesia" "$dir/log" "$dir/home"

    sed -e "s|@PORT@|$port|" -e "s|@AMQP@|$amqp|" -e "s|@STOMP@|$stomp|" \
        bench/conf/rabbitmq.conf.in > "$dir/rabbitmq.conf"
    sed -e "s|@PORT@|$port|" bench/conf/rabbitmq.advanced.config.in \
        > "$dir/advanced.config"
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
        export RABBITMQ_ADVANCED_CONFIG_FILE=$dir/advanced.config
        # RABBITMQ_SERVER_ERL_ARGS would replace the server's defaults
        # (among them +sbwt none: without it the idle schedulers spin on
        # the two cores the load generator shares); +P is the default
        export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="+Q 1048576"
        export ERL_MAX_PORTS=1048576
        ulimit -n "$NOFILE" 2>/dev/null
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
    SERVER_SETTLE=rabbit_settle
    # BENCH_RABBIT_PROBE=1: rabbitmqctl every 10 s during the runs (costs
    # CPU: each call boots an Erlang VM), into rabbitmq/probe.txt
    probe=""
    if [ -n "${BENCH_RABBIT_PROBE:-}" ]; then
        rabbit_probe &
        probe=$!
    fi
    scenarios rabbitmq
    [ -n "$probe" ] && kill "$probe" 2>/dev/null
    rabbit_evidence
    SERVER_SETTLE=""
    SERVER_ARGS=()

    rabbit_stop
}

rabbit_settle() {
    settle_pid "$RABBIT_BEAM" "$1" "$SETTLE_MAX" "$RABBIT_PORT"
}

rabbit_ctl() {
    HOME=$OUT/rabbitmq/home ERL_EPMD_PORT=$EPMD_PORT \
        timeout "${RABBIT_CTL_TIMEOUT:-60}" \
        "$RABBIT_BIN/rabbitmqctl" -n "bench$$@localhost" "$@"
}

rabbit_probe() {
    while chat_alive "$RABBIT_BEAM"; do
        {
            date -u +%H:%M:%S
            rabbit_ctl list_connections state 2>&1 | sort | uniq -c
            rabbit_ctl status 2>&1 | grep -E -A2 'run queue|Alarms'
            uptime
        } >> "$OUT/rabbitmq/probe.txt"
        sleep 10
    done
}

# rabbit_evidence: what the node says about itself after the scenarios
# (alarms, schedulers, memory, file descriptors), the CPU its schedulers
# had and waited for, and a count of its log's warnings and errors, into
# rabbitmq/status.txt
rabbit_evidence() {
    local dir=$OUT/rabbitmq

    # one CLI call (each boots an Erlang VM: seconds on a busy machine);
    # a node still busy with the last run's backlog may not answer in
    # 15 s: then that is the evidence (the schedulers' figures follow)
    RABBIT_CTL_TIMEOUT=15 rabbit_ctl status > "$dir/status.txt" 2>&1 \
        || echo "== rabbitmqctl status failed or did not answer in 15 s" \
                >> "$dir/status.txt"

    # the scheduler threads' CPU time and their time waiting for a CPU
    # (on a shared machine the second one says who had the cores)
    cat /proc/"$RABBIT_BEAM"/task/*/schedstat 2>/dev/null | awk '
        {r += $1; w += $2}
        END {printf "== beam.smp: ran %.1f s, waited %.1f s to run\n",
             r / 1e9, w / 1e9}' >> "$dir/status.txt"

    {
        echo "== warnings and errors (count, text without the time)"
        grep -hE '\[(warning|error)\]' "$dir"/log/*.log 2>/dev/null \
            | sed -e 's/^[^]]*\] <[^>]*> //' | sort | uniq -c \
            | sort -rn | head -20
    } >> "$dir/status.txt"
}

# the server script and its Erlang VM (beam.smp, the script's child)
rabbit_stop() {
    local p

    # a node of the run's own, its data thrown away: 3 s to stop cleanly
    for p in $RABBIT_BEAM $RABBIT_PID; do
        kill -TERM "$p" 2>/dev/null
        for _ in $(seq 1 30); do chat_alive "$p" || break; sleep 0.1; done
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
        --workers "${BENCH_PERSIST_WORKERS:-1}" \
        --json "$RESULTS/chat-persist.json" 2>>"$LOG" \
        | tee -a "$OUT/table.txt"
    [ -s "$RESULTS/chat-persist.json" ] \
        || note "persist: no result (see $LOG)"
}


# --- node loss: three nodes behind the balancer, one with 20% of the
# sessions killed, its users back through the balancer at once ---

run_nodeloss() {
    chat_log "node loss: $NODELOSS_N sessions over three nodes"
    CHAT_BIN=$CHAT_BIN CHAT_BENCH_BIN=$TOOL CHAT_MODULE=$MODULE \
        bench/nodeloss.sh "$OUT/nodeloss" "$NODELOSS_N" 2>>"$LOG" \
        | tee -a "$OUT/table.txt"
    [ -s "$OUT/nodeloss/summary.txt" ] \
        || note "nodeloss: no result (see $LOG)"
}


# --- ngx_chat on a Redis Cluster: 3 primaries and 3 replicas on the same
# machine (scripts/test-servers.sh cluster-start), direct and fan-out,
# rows "3shards" beside one Redis's "ngx_chat", and their ratios ---
#
# BENCH_SYSTEMS="... chat-cluster": every direct and fan-out run of the
# scenarios asked for; the default run (BENCH_SYSTEMS not set, BENCH=short)
# has the two small rows direct and fanout g100.

CLUSTER_DIR=""
CLUSTER_PORT=""

# chat_cluster_up WORKERS: ngx_chat (its conf made by run_chat_cluster)
# with the primaries' CPU counted as auxiliary
chat_cluster_up() {
    local p pids=()

    chat_up "$1" || return 1

    for p in $(chat_cluster_primary_pids); do
        pids+=(--cpu-pid "$p")
    done

    SERVER_ARGS=(--port "$CHAT_PORT" --secret "$SECRET"
                 --rss-master "$(cat "$OUT/ngx_chat/logs/nginx.pid")"
                 "${pids[@]}")
}

# the pids of the cluster's primaries
chat_cluster_primary_pids() {
    local i p

    for i in 0 1 2 3 4 5; do
        p=$((CLUSTER_PORT + i))
        redis-cli -h 127.0.0.1 -p "$p" ROLE 2>/dev/null | head -1 \
            | grep -qx master && cat "$CLUSTER_DIR/cluster/$p/redis.pid"
    done
}

# chat_cluster_bench SCENARIO LABEL N ARGS...: bench's run, its result
# renamed results/chat-cluster-SCENARIO[-LABEL].json, system "3shards"
chat_cluster_bench() {
    local sc=$1 label=$2 name results=$RESULTS f

    name=chat-cluster-$sc${label:+-$label}
    RESULTS=$OUT/results-cluster
    mkdir -p "$RESULTS"
    bench chat "$@"
    RESULTS=$results

    f=$OUT/results-cluster/chat-$sc${label:+-$label}.json
    if [ -s "$f" ]; then
        perl -MJSON::PP -0777 -ne '
            my $j = decode_json($_); $j->{system} = "3shards";
            print JSON::PP->new->canonical->encode($j)' "$f" \
            > "$RESULTS/$name.json" && rm -f "$f"
    fi
}

# the notes: each cluster row against one Redis's, deliveries/s
chat_cluster_ratios() {
    local f one

    for f in "$RESULTS"/chat-cluster-*.json; do
        [ -s "$f" ] || continue
        one=$RESULTS/chat-${f##*/chat-cluster-}
        [ -s "$one" ] || continue
        note "$(perl -MJSON::PP -e '
            sub rd { open(my $h, "<", $_[0]) or die; local $/;
                     decode_json(<$h>) }
            my ($c, $o) = (rd($ARGV[0]), rd($ARGV[1]));
            my ($cv, $ov) = map { $_->{throughput}{deliveries_per_s} // 0 }
                            $c, $o;
            printf("chat-cluster: %s: 3 shards %.0f, one Redis %.0f"
                   . " deliveries/s: %s", $c->{scenario}
                   . ($c->{label} ? " $c->{label}" : ""), $cv, $ov,
                   $ov > 0 ? sprintf("%.2fx", $cv / $ov) : "-")' \
            "$f" "$one")"
    done
}

run_chat_cluster() {
    local root=$OUT/ngx_chat port seeds g all=$1 env_lines

    [ -f "$MODULE" ] || { note "ngx_chat: $MODULE missing, not run"; return; }

    CLUSTER_DIR=$OUT/redis-cluster
    env_lines=$(scripts/test-servers.sh cluster-start "$CLUSTER_DIR") \
        || { note "chat-cluster: the Redis Cluster did not start, not run";
             return; }
    CLUSTER_PORT=$(echo "$env_lines" \
        | sed -n 's/.*TEST_NGINX_REDIS_CLUSTER_PORT=\([0-9]*\).*/\1/p')
    seeds="127.0.0.1:$CLUSTER_PORT 127.0.0.1:$((CLUSTER_PORT + 1))"
    seeds="$seeds 127.0.0.1:$((CLUSTER_PORT + 2))"
    chat_log "chat-cluster: a Redis Cluster on $CLUSTER_PORT..$((CLUSTER_PORT + 5))"

    port=$(chat_free_port)
    CHAT_PORT=$port
    mkdir -p "$root/conf"
    sed -e "s|@MODULE@|$MODULE|" -e "s|@PORT@|$port|" \
        -e "s|chat_redis 127.0.0.1:@REDIS_PORT@;|chat_redis cluster $seeds;|" \
        -e "s|@PG_DSN@|$TEST_NGINX_PG_DSN|" \
        -e "s|@KAFKA@|${TEST_NGINX_KAFKA_BROKERS:-}|" \
        -e "s|@SECRET@|$SECRET|" \
        bench/conf/ngx_chat.conf.in > "$root/conf/http.inc"
    [ -n "${TEST_NGINX_KAFKA_BROKERS:-}" ] && [ -z "${BENCH_NO_KAFKA:-}" ] \
        || sed -i '/chat_kafka /d' "$root/conf/http.inc"
    grep -q "chat_redis cluster" "$root/conf/http.inc" \
        || chat_die "bench/conf/ngx_chat.conf.in: no chat_redis line to change"

    SERVER_UP=chat_cluster_up
    SERVER_DOWN=chat_down

    # the machine's load as the cluster runs start (three shards share
    # the cores with the gateway and the load generator)
    note "chat-cluster: load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

    if want direct "$SCENARIOS"; then
        chat_cluster_bench direct "" "$DIRECT_N" \
            --rate "$DIRECT_RATE" --duration "$DUR" --warmup 1
    fi

    if want fanout "$SCENARIOS"; then
        for g in 10 100 1000; do
            [ "$all" = all ] || [ "$g" = 100 ] || continue
            chat_cluster_bench fanout "g$g" "$FANOUT_N" \
                --group "$g" --rate $((FANOUT_DLV / g)) --duration "$DUR" \
                --warmup 1 --window 2000
        done
    fi

    server_down
    note "chat-cluster: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
    chat_cluster_ratios
    scripts/test-servers.sh cluster-stop "$CLUSTER_DIR" >/dev/null 2>&1
    CLUSTER_DIR=""
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
if want chat-cluster "$SYSTEMS"; then
    run_chat_cluster all
elif [ -z "${BENCH_SYSTEMS:-}" ] && [ "$BENCH" = short ]; then
    run_chat_cluster small
fi
want rabbitmq "$SYSTEMS" && run_rabbitmq
want nchan "$SYSTEMS" && run_nchan
want mosquitto "$SYSTEMS" && run_mosquitto
want socketio "$SYSTEMS" && run_socketio
want persist "$SCENARIOS" && want chat "$SYSTEMS" && run_persist
want nodeloss "$SCENARIOS" && want chat "$SYSTEMS" && run_nodeloss
want floor "$SCENARIOS" && run_floor

echo
perl bench/report.pl "$OUT/machine" "$RESULTS"/*.json | tee "$OUT/summary.txt"
[ -f "$OUT/notes" ] && { echo; echo "notes:"; cat "$OUT/notes"; }
echo
echo "results: $OUT"
}

main "$@"
exit
