#!/usr/bin/env bash
# persist.t: chat-persist writes every message of chat.messages to
# PostgreSQL exactly once: across kill -9 mid-batch, a PostgreSQL restart
# under load, poison records, SIGTERM, another writer of the same rows; it
# keeps partitions and retention.

. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/persist_env.sh" persist

# gen PREFIX NCONV SEQ_FROM SEQ_TO: one message per (conversation, seq),
# interleaved over the conversations as a gateway would produce them
gen() {
    perl -CO -MPOSIX=strftime -MTime::HiRes=time -e '
        my ($pfx, $nc, $from, $to) = @ARGV;
        for my $s ($from .. $to) {
            for my $c (1 .. $nc) {
                my $t = time;
                my $ts = strftime("%Y-%m-%dT%H:%M:%S", gmtime $t)
                         . sprintf(".%03dZ", ($t - int $t) * 1000);
                my $id = 7000000000000000000 + $c * 10000000 + $s;
                print qq({"type":"message","messageId":"$id",),
                      qq("conversationId":"$pfx$c","seq":$s,),
                      qq("senderId":"u$c",),
                      qq("content":"m $pfx$c/$s \\"q\\" \x{e9}",),
                      qq("clientMsgId":"k$s","metadata":{"n":$s},),
                      qq("createdAt":"$ts"}\n);
            }
        }' "$@"
}

# wait_rows SQL_WHERE COUNT SECONDS
wait_rows() {
    wait_sql "SELECT count(*) FROM messages WHERE $1" "$2" "$3"
}

# wait_log REGEX SECONDS: waits for a line of the worker log
wait_log() {
    local i
    for i in $(seq 1 $(($2 * 5))); do
        grep -aq "$1" "$D/persist.log" && return 0
        sleep 0.2
    done
    return 1
}

# no (conversation, seq) twice, over the conversations of a prefix
dupes() {
    sql "SELECT count(*) - count(DISTINCT (conversation_id, seq))
         FROM messages WHERE conversation_id LIKE '$1%'"
}

# --- servers ---

persist_servers

persist_conf "batch-size = 200" "stats-interval = 2"

"$T_BIN/chat-persist" --help > "$D/help"
check "--help exits 0 and prints the table" grep -q "^  batch-size  *int" \
    "$D/help"

# --- partitions and retention at start ---

sql "CREATE TABLE messages_2000_01 PARTITION OF messages
         FOR VALUES FROM ('2000-01-01 00:00Z') TO ('2000-02-01 00:00Z');
     INSERT INTO messages (id, conversation_id, seq, sender_id, content,
                           created_at)
     VALUES (1, 'old', 1, 'u', 'x', '2000-01-15Z'),
            (2, 'old', 2, 'u', 'x', '2001-01-15Z')" \
    || bail "cannot create the old partition"

sql "INSERT INTO conversations (id, type)
     SELECT 'a' || i, 'group' FROM generate_series(1, 5) i"

gen a 10 1 200 | produce
start_worker

check "all 2000 messages are written" wait_rows "conversation_id LIKE 'a%'" \
    2000 60
is "no (conversation, seq) twice" "$(dupes a)" 0
is "last_seq of the known conversations" \
    "$(sql "SELECT string_agg(last_seq::text, ',' ORDER BY id)
            FROM conversations WHERE id LIKE 'a%'")" "200,200,200,200,200"
is "last_message_at is the newest createdAt" \
    "$(sql "SELECT count(*) FROM conversations c WHERE id LIKE 'a%'
            AND last_message_at = (SELECT max(created_at) FROM messages m
                                   WHERE m.conversation_id = c.id)")" 5
is "messages of unknown conversations are stored too" \
    "$(sql "SELECT count(*) FROM messages WHERE conversation_id = 'a9'")" 200
is "a row keeps every field" \
    "$(sql "SELECT id, sender_id, content, client_msg_id, metadata
            FROM messages WHERE conversation_id = 'a3' AND seq = 7")" \
    "7000000000030000007|u3|m a3/7 \"q\" é|k7|{\"n\": 7}"
want='{"seq": 7, "type": "message", "content": "m a3/7 \"q\" é",'
want="$want"' "metadata": {"n": 7}, "senderId": "u3",'
want="$want"' "messageId": "7000000000030000007", "clientMsgId": "k7",'
want="$want"' "conversationId": "a3"}'
is "the row reads back as PROTOCOL.md section 5" \
    "$(sql "SELECT chat_message_json(m)::jsonb - 'createdAt'
            FROM messages m WHERE conversation_id = 'a3' AND seq = 7")" \
    "$want"

m=$(date -u -d "$(date -u +%Y-%m-01) +3 month" +%Y_%m)
is "monthly partitions are created 3 months ahead" \
    "$(sql "SELECT to_regclass('messages_$m') IS NOT NULL")" t
is "retention detached and dropped a partition older than 60 months" \
    "$(sql "SELECT to_regclass('messages_2000_01') IS NULL")" t
is "retention deleted an old row of the default partition" \
    "$(sql "SELECT count(*) FROM messages WHERE conversation_id = 'old'")" 0
check "the worker logs throughput and lag" \
    grep -q "stats: .* consumed .* lag " "$D/persist.log"

# --- poison records ---

{
    echo 'this is not json'
    echo '{"type":"message","messageId":"1","conversationId":"p1","seq":1}'
    gen p 1 1 1 \
        | sed 's/"createdAt":"[^"]*"/"createdAt":"2025-02-30T10:00:00Z"/'
    gen p 1 2 3
} > "$D/poison"
"$T_BIN/chat-kafka-produce" --bootstrap-file "$BS" --key-field "" \
    < "$D/poison" > /dev/null
check "records after poison records are written" wait_rows \
    "conversation_id = 'p1'" 2 30
check "a malformed record is logged as skipped" \
    grep -q "skipping the record .*not valid JSON" "$D/persist.log"
check "a record with missing fields is logged as skipped" \
    grep -q "skipping the record .*senderId" "$D/persist.log"
check "a record PostgreSQL rejects is logged as skipped" \
    grep -q "skipping the record .*PostgreSQL rejects it" "$D/persist.log"

# --- kill -9 mid-batch, restart: every row exactly once ---

{ kill -9 $WORKER; wait $WORKER; } 2> /dev/null
gen k 20 1 1000 | produce
: > "$D/persist.log.k"
# small batches one at a time: the kill below lands mid-stream
start_worker --batch-size 50 --pipeline 1
for i in $(seq 1 100); do
    n=$(sql "SELECT count(*) FROM messages WHERE conversation_id LIKE 'k%'")
    [ "$n" -gt 2000 ] && break
    sleep 0.1
done
{ kill -9 $WORKER; wait $WORKER; } 2> /dev/null
n=$(sql "SELECT count(*) FROM messages WHERE conversation_id LIKE 'k%'")
check "kill -9 hit the worker mid-stream ($n of 20000 written)" \
    test "$n" -gt 0 -a "$n" -lt 20000
start_worker --batch-size 500
check "after the restart all 20000 messages are written" \
    wait_rows "conversation_id LIKE 'k%'" 20000 120
is "... each exactly once" "$(dupes k)" 0

# --- PostgreSQL restarted while producing: nothing lost ---

( for b in $(seq 0 9); do
      gen r 10 $((b * 100 + 1)) $((b * 100 + 100)) | produce
      sleep 0.5
  done ) &
PRODUCER=$!
t_track $PRODUCER
sleep 1
chat_pg_stop "$PGDATA_"
sleep 3
chat_pg_start "$PGDATA_" "$PGPORT_" "$D/pg.log" off > /dev/null 2>&1 \
    || bail "PostgreSQL did not restart"
wait $PRODUCER
is "the producer got every delivery report" "$?" 0
check "after the PostgreSQL restart all 10000 messages are written" \
    wait_rows "conversation_id LIKE 'r%'" 10000 120
is "... each exactly once" "$(dupes r)" 0
check "the worker retried while PostgreSQL was down" \
    grep -q "not written, retrying" "$D/persist.log"
check "the worker kept running" kill -0 $WORKER

# --- SIGTERM drains and exits 0 ---

gen t 10 1 300 | produce
sleep 0.3
kill -TERM $WORKER
t_wait_gone $WORKER 30
wait $WORKER
is "SIGTERM: exit status 0" "$?" 0
check "SIGTERM: the worker says it stopped" grep -q "info: stopped" \
    "$D/persist.log"
start_worker
check "after a restart all 3000 messages are written" \
    wait_rows "conversation_id LIKE 't%'" 3000 60
is "... each exactly once" "$(dupes t)" 0

kill -TERM $WORKER
t_wait_gone $WORKER 30

# --- two members of the group, one leaves mid-stream: a rebalance ---

start_worker
A=$WORKER
sleep 2
start_worker
B=$WORKER
( for b in $(seq 0 19); do
      gen g 10 $((b * 50 + 1)) $((b * 50 + 50)) | produce
      sleep 0.4
  done ) &
PRODUCER=$!
t_track $PRODUCER
sleep 4
kill -TERM $A
t_wait_gone $A 30
wait $A
is "rebalance: the leaving member exits 0" "$?" 0
wait $PRODUCER
check "rebalance: all 10000 messages are written" \
    wait_rows "conversation_id LIKE 'g%'" 10000 120
is "... each exactly once" "$(dupes g)" 0
# all 6 partitions of chat.messages and the 6 of chat.receipts
check "rebalance: the remaining member took the partitions over" \
    grep -aq "chat-persist\[$B\] info: assigned 12 partition" "$D/persist.log"
kill -TERM $B
t_wait_gone $B 30

# --- a full replay (a new group reads from the start) adds no row ---

total=$(sql "SELECT count(*) FROM messages")
start_worker --group-id replay
check "replay: the new group read the whole topic" \
    bash -c "for i in \$(seq 1 150); do
                 grep -a 'chat-persist\[$WORKER\] info: stats: [1-9]' \
                     '$D/persist.log' > /dev/null && exit 0; sleep 0.2
             done; exit 1"
sleep 3
is "replay: no row was added" "$(sql "SELECT count(*) FROM messages")" \
    "$total"
is "replay: no (conversation, seq) twice anywhere" "$(dupes '')" 0
check "replay: the worker inserted nothing" \
    bash -c "! grep -a 'chat-persist\[$WORKER\] info: stats: ' \
                 '$D/persist.log' | grep -qv ' 0 inserted'"

kill -TERM $WORKER
t_wait_gone $WORKER 30

# --- another writer of the same rows at the same time: stored once ---
# The pipeline's INSERT has no ON CONFLICT (the stored rows are skipped
# before it): a row another session inserts meanwhile, uncommitted when
# the batch's statement runs, fails it once that session commits; the
# batch is then written again with the duplicates skipped.

ts=$(date -u +%Y-%m-%dT%H:%M:%S).000Z
start_worker
WORKER_X=$WORKER
wait_log "chat-persist\[$WORKER_X\] info: assigned 12 partition" 30 \
    || bail "the worker did not join the group"
PGAPPNAME=racer psql "$DSN" -X -q -v ON_ERROR_STOP=1 \
    -c "BEGIN" \
    -c "INSERT INTO messages (id, conversation_id, seq, sender_id, content,
                              created_at)
        VALUES (99, 'x1', 3, 'u1', 'the other writer', '$ts')" \
    -c "SELECT pg_sleep(4)" -c "COMMIT" > "$D/racer.log" 2>&1 &
RACER=$!
t_track $RACER
check "race: the other writer holds its row uncommitted" \
    wait_sql "SELECT count(*) FROM pg_stat_activity
              WHERE application_name = 'racer' AND wait_event = 'PgSleep'" \
        1 20
gen x 2 1 5 | sed "s/\"createdAt\":\"[^\"]*\"/\"createdAt\":\"$ts\"/" | produce
wait $RACER
is "race: the other writer committed" "$?" 0
check "race: all 10 messages are stored" \
    wait_rows "conversation_id LIKE 'x%'" 10 60
is "... each exactly once" "$(dupes x)" 0
is "... the row of the other writer kept" \
    "$(sql "SELECT content FROM messages
            WHERE conversation_id = 'x1' AND seq = 3")" "the other writer"
check "... after the batch met the other writer's row and was written again" \
    grep -aq "chat-persist\[$WORKER_X\] info: a batch in flight met rows stored meanwhile" \
    "$D/persist.log"
kill -TERM $WORKER
t_wait_gone $WORKER 30
# --- SIGTERM while PostgreSQL is down: bounded drain, nothing committed ---

chat_pg_stop "$PGDATA_"
gen z 2 1 5 | produce
start_worker --drain-timeout 2000
check "PostgreSQL down: the worker retries" \
    wait_log "chat-persist\[$WORKER\] warn: batch of 10 message" 30
kill -TERM $WORKER
t_wait_gone $WORKER 10
wait $WORKER
is "SIGTERM with PostgreSQL down: exit 1 after the drain timeout" "$?" 1
check "... saying it gave up without committing" \
    grep -aq "chat-persist\[$WORKER\] error: giving up on a batch of 10" \
    "$D/persist.log"

start_worker --drain-timeout 30000
wait_log "chat-persist\[$WORKER\] warn: batch of 10 message" 30
kill -TERM $WORKER
sleep 0.5
kill -TERM $WORKER
t_wait_gone $WORKER 2
wait $WORKER
is "a second SIGTERM exits at once" "$?" 143

chat_pg_start "$PGDATA_" "$PGPORT_" "$D/pg.log" off > /dev/null 2>&1 \
    || bail "PostgreSQL did not restart"
start_worker
check "the batch given up is written by the next run" \
    wait_rows "conversation_id LIKE 'z%'" 10 60
kill -TERM $WORKER
t_wait_gone $WORKER 30

check "no PostgreSQL error other than the restart's" \
    bash -c "! grep ' error: ' '$D/persist.log' | grep -v \
        -e 'skipping the record' -e 'PostgreSQL connection failed' \
        -e 'failed: 57P01' -e 'failed: : ' -e 'failed: 08' \
        -e 'failed: 22008' -e 'server closed the connection' \
        -e 'terminating connection' -e 'no connection to the server' \
        -e 'giving up on a batch' \
        | grep -q ."

t_done
