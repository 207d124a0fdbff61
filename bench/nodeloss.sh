#!/usr/bin/env bash
# nodeloss.sh: the "node loss" scenario of make bench: three gateway nodes
# behind the balancer (scripts/chatctl, NODES=3) hold N sessions, 40% on
# node 1, 40% on node 2 and 20% on node 3; node 3 is killed (kill -9 of
# its master and workers) and its users come back at once through the
# balancer (chat_bench's storm). Prints how many came back, how fast, the
# errors, and whether the survivors' sessions held.
#
# usage: bench/nodeloss.sh OUTDIR N   (run.sh passes them; N: sessions)
# environment: CHAT_MODULE, CHAT_BIN, CHAT_BENCH_BIN (what make built)

set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

cd "$CHAT_ROOT" || exit 1

OUT=$1
N=${2:-5000}
TOOL=${CHAT_BENCH_BIN:-$CHAT_ROOT/build/bin/chat_bench}
HOLD=${BENCH_NODELOSS_HOLD:-25}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

export CHAT_VAR=$OUT/var NODES=3 CHAT_WORKERS=1
export CHAT_JWT_SECRET=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
export CHAT_MODULE=${CHAT_MODULE:-$CHAT_ROOT/build/nginx/objs/ngx_chat_module.so}
export CHAT_TOKEN_BIN=$CHAT_BIN/chat-token
for v in CHAT_PORT CHAT_PORT2 CHAT_PORT3 CHAT_LB_PORT CHAT_REDIS_PORT \
         CHAT_PG_PORT CHAT_STOMP_PORT CHAT_STOMP_TLS_PORT CHAT_STOMP_PORT2 \
         CHAT_STOMP_TLS_PORT2 CHAT_STOMP_PORT3 CHAT_STOMP_TLS_PORT3; do
    export "$v=$(chat_free_port)"
done

HOLDERS=""

stop_all() {
    local p

    for p in $HOLDERS; do kill -INT "$p" 2>/dev/null; done
    scripts/chatctl stop >>"$OUT/chatctl.log" 2>&1
}
trap stop_all EXIT

scripts/chatctl start >"$OUT/chatctl.log" 2>&1 \
    || { tail -20 "$OUT/chatctl.log" >&2; chat_die "chatctl start failed"; }

a=$((N * 2 / 5))
b=$((N * 2 / 5))
c=$((N - a - b))

# hold PORT COUNT NAME: idle sessions with heart-beats for HOLD seconds
hold() {
    "$TOOL" --scenario density --port "$1" --clients "$2" --prefix "$3" \
        --hold "$HOLD" --heartbeat 10000 --inflight 1000 \
        --connect-timeout 60 --max-time $((HOLD + 90)) --label "$3" \
        --json "$OUT/$3.json" >"$OUT/$3.txt" 2>"$OUT/$3.log" &
    HOLDERS="$HOLDERS $!"
}

hold "$CHAT_PORT" "$a" nl1
hold "$CHAT_PORT2" "$b" nl2
hold "$CHAT_PORT3" "$c" nl3

# every holder has its sessions up
for _ in $(seq 1 600); do
    up=$(cat "$OUT"/nl[123].log 2>/dev/null | grep -c "sessions ready")
    [ "$up" -ge 3 ] && break
    sleep 0.1
done
[ "${up:-0}" -ge 3 ] || chat_die "the sessions did not come up (see $OUT)"

master=$(cat "$CHAT_VAR/nginx3/logs/nginx.pid")
victims="$master $(ps -o pid= --ppid "$master" | tr '\n' ' ')"
chat_log "node loss: $N sessions ($a, $b, $c); killing node 3 ($victims)"
# shellcheck disable=SC2086
kill -KILL $victims

# node 3's users, at once, through the balancer
"$TOOL" --scenario storm --port "$CHAT_LB_PORT" --clients "$c" \
    --prefix nl3 --inflight 2000 --heartbeat 0 --connect-timeout 60 \
    --label node-loss --json "$OUT/storm.json" \
    >"$OUT/storm.txt" 2>"$OUT/storm.log"

for p in $HOLDERS; do wait "$p"; done
HOLDERS=""

# the balancer's tries of the dead node (each went on to another)
refused=$(grep -c "Connection refused) while connecting to upstream" \
          "$CHAT_VAR/lb/logs/error.log" 2>/dev/null)

perl -MJSON::PP -e '
    my ($out, $n, $a, $b, $c) = @ARGV;
    sub j { local $/; open(my $f, "<", "$out/$_[0].json") or return {};
            JSON::PP->new->decode(<$f>) }
    my ($s, $h1, $h2, $h3) = map { j($_) } qw(storm nl1 nl2 nl3);
    my $ss = $s->{sessions} // {};
    my $lat = ($s->{latency_ms} // {})->{setup} // {};
    printf("node loss: %d sessions over 3 nodes, node 3 (%d, %.0f%%) killed\n",
           $n, $c, 100 * $c / $n);
    printf("  back through the balancer: %d of %d in %.2f s (%.0f sessions/s),"
           . " setup p50 %s ms, p99 %s ms; %d failed\n",
           $ss->{ready} // 0, $c, $ss->{setup_s} // 0, $ss->{per_s} // 0,
           $lat->{p50} // "-", $lat->{p99} // "-", $ss->{failed} // 0);
    printf("  the other nodes: %d + %d sessions held, %d dropped\n",
           ($h1->{sessions}{ready} // 0), ($h2->{sessions}{ready} // 0),
           ($h1->{sessions}{dropped} // 0) + ($h2->{sessions}{dropped} // 0));
    printf("  node 3: %d sessions dropped by the kill\n",
           $h3->{sessions}{dropped} // 0);
    printf("  the balancer: %d tries of the dead node, each passed on to"
           . " another\n", $ARGV[5]);
' "$OUT" "$N" "$a" "$b" "$c" "${refused:-0}" | tee "$OUT/summary.txt"
