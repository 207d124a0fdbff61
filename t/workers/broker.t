#!/usr/bin/env bash
# broker.t: chat-kafka-broker serves real Kafka clients: topics with their
# partitions, an idempotent producer, consumer groups with committed offsets.

. "$(dirname "$0")/tap.sh"

t_require_bins chat-kafka-broker chat-kafka-produce chat-kafka-consume

# the mock coordinator waits up to session.timeout.ms for a group to settle
K="--kafka.session.timeout.ms=6000"

D=$(mktemp -d "${TMPDIR:-/tmp}/chat-broker-t.XXXXXX")
BS=$D/bootstrap

cleanup() {
    local p
    for p in $T_PIDS; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$D"
}
trap cleanup EXIT

"$T_BIN/chat-kafka-broker" --help > "$D/help" 2>&1
check "--help exits 0" test $? = 0
check "--help lists the settings" grep -q "^  partitions  *int  *6" "$D/help"

"$T_BIN/chat-kafka-broker" --no-such-setting=1 > /dev/null 2>&1
is "an unknown setting is an error (exit 2)" "$?" 2

printf 'partitions = 4\n# a comment\nlog_level = "warn"\n' > "$D/conf"

"$T_BIN/chat-kafka-broker" --config "$D/conf" --partitions 6 \
    --bootstrap-file "$BS" --pid-file "$D/pid" \
    > "$D/stdout" 2> "$D/broker.log" &
BROKER=$!
t_track $BROKER

t_wait_file "$BS" 10 || bail "no bootstrap file: $(cat "$D/broker.log")"
check "the bootstrap file names three loopback brokers (the default)" \
    grep -qE '^127\.0\.0\.1:[0-9]+(,127\.0\.0\.1:[0-9]+){2}$' "$BS"
is "stdout prints the same bootstrap servers" "$(head -1 "$D/stdout")" \
    "$(cat "$BS")"
is "the pid file names the broker" "$(cat "$D/pid")" "$BROKER"

# 30 messages on 3 conversations, through the idempotent producer
for i in $(seq 1 30); do
    echo "{\"conversationId\":\"c$((i % 3))\",\"n\":$i}"
done > "$D/sent"

out=$("$T_BIN/chat-kafka-produce" --bootstrap-file "$BS" \
      --idempotence=true < "$D/sent")
is "idempotent producer: every message delivered" "$out" \
    "delivered 30 failed 0"

echo '{"conversationId":"x0","n":0}' \
    | "$T_BIN/chat-kafka-produce" --bootstrap-file "$BS" \
          --topic chat.receipts --kafka.debug=eos --log-level=debug \
          > /dev/null 2> "$D/eos.log"
check "the broker grants the idempotent producer a producer id" \
    grep -q "Acquired PID" "$D/eos.log"

"$T_BIN/chat-kafka-consume" --bootstrap-file "$BS" --group-id g1 $K \
    --count 12 --full > "$D/g1a" 2> "$D/g1a.log"
is "group g1, first member: 12 messages" "$(wc -l < "$D/g1a")" 12

"$T_BIN/chat-kafka-consume" --bootstrap-file "$BS" --group-id g1 $K \
    --idle 2000 --full > "$D/g1b" 2> "$D/g1b.log"
is "group g1, second member: the other 18 (committed offsets)" \
    "$(wc -l < "$D/g1b")" 18

cut -d' ' -f4- "$D/g1a" "$D/g1b" | sort > "$D/g1"
is "group g1 saw every message exactly once" "$(cat "$D/g1")" \
    "$(sort "$D/sent")"

# within a key (one partition) the order is the order produced
bad=0
sort -n -k1,1 -k2,2 "$D/g1a" "$D/g1b" > "$D/g1all"
for c in c0 c1 c2; do
    [ "$(grep "\"$c\"" "$D/sent")" = \
      "$(grep " $c " "$D/g1all" | cut -d' ' -f4-)" ] || bad=1
    [ "$(grep " $c " "$D/g1all" | cut -d' ' -f1 | sort -u | wc -l)" = 1 ] \
        || bad=1
done
is "a key stays on one partition, in order" "$bad" 0

"$T_BIN/chat-kafka-consume" --bootstrap-file "$BS" --group-id g2 $K \
    --idle 2000 > "$D/g2" 2> "$D/g2.log"
is "a new group reads from the earliest offset" "$(wc -l < "$D/g2")" 30

for i in $(seq 1 60); do
    echo "{\"conversationId\":\"k$i\",\"n\":$i}"
done | "$T_BIN/chat-kafka-produce" --bootstrap-file "$BS" \
           --topic chat.receipts > /dev/null
"$T_BIN/chat-kafka-consume" --bootstrap-file "$BS" --group-id g3 $K \
    --topic chat.receipts --idle 2000 --full > "$D/g3" 2> "$D/g3.log"
is "chat.receipts exists with 6 partitions" \
    "$(cut -d' ' -f1 "$D/g3" | sort -u | tr '\n' ' ')" "0 1 2 3 4 5 "

# the control port: faults on a line each
"$T_BIN/chat-kafka-broker" --partitions 3 --topics t1 \
    --bootstrap-file "$D/bs2" --control-file "$D/ctl" \
    > /dev/null 2> "$D/broker2.log" &
B2=$!
t_track $B2
t_wait_file "$D/ctl" 10 || bail "no control file: $(cat "$D/broker2.log")"
check "the control file names a loopback address" \
    grep -qE '^127\.0\.0\.1:[0-9]+$' "$D/ctl"

# ctl COMMAND...: the answer of each, one per line
ctl() {
    local c
    exec 3<>"/dev/tcp/127.0.0.1/$(cut -d: -f2 "$D/ctl")" || return 1
    for c in "$@"; do
        printf '%s\n' "$c" >&3
        IFS= read -r -t 5 line <&3 || line="(no answer)"
        echo "$line"
    done
    exec 3>&-
}

is "leaders spread over the brokers" "$(ctl leaders)" "ok t1:1,2,3"
is "kill: down, and its partition's leadership moves" \
    "$(ctl 'kill 2' leaders)" "$(printf 'ok broker 2 down, 1 leader(s) moved\nok t1:1,3,3')"
is "leader and up" "$(ctl 'leader t1 1 2' 'up 2' leaders)" \
    "$(printf 'ok t1 [1] led by broker 2\nok broker 2 up\nok t1:1,2,3')"
is "bad commands are refused, the connection stays" \
    "$(ctl 'down 4' 'leader t9 0 1' 'leader t1 3 1' 'rtt 1 x' 'nope' leaders \
       | cut -c1-6 | tr '\n' ' ')" "error: error: error: error: error: ok t1: "

kill -TERM $B2
t_wait_gone $B2 10
check "SIGTERM: the control file is removed" test ! -e "$D/ctl"

kill -TERM $BROKER
t_wait_gone $BROKER 10
wait $BROKER
is "SIGTERM: exit status 0" "$?" 0
check "SIGTERM: the bootstrap file is removed" test ! -e "$BS"
check "SIGTERM: the pid file is removed" test ! -e "$D/pid"
check "no error in the broker's log" \
    bash -c "! grep -q ' error: ' '$D/broker.log'"

t_done
