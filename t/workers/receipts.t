#!/usr/bin/env bash
# receipts.t: chat-persist records the receipts of chat.receipts: members'
# watermarks only move forward, read implies delivered, direct
# conversations' message statuses, bad and unknown receipts skipped, and
# kill -9, restarts and replays apply nothing twice.

. "$(dirname "$0")/tap.sh"
. "$(dirname "$0")/persist_env.sh" receipts

# msg CONV SEQ SENDER: one chat.messages record
msg() {
    printf '{"type":"message","messageId":"%s","conversationId":"%s",' \
        "$(date +%s%N | cut -c1-18)" "$1"
    printf '"seq":%s,"senderId":"%s","content":"m %s","createdAt":"%s"}\n' \
        "$2" "$3" "$2" "$(date -u +%FT%T.000Z)"
}

# rcp TYPE CONV USER SEQ AT: one chat.receipts record
rcp() {
    echo "{\"type\":\"$1\",\"conversationId\":\"$2\",\"userId\":\"$3\"," \
         "\"seq\":$4,\"at\":\"$5\"}" | tr -d ' '
}

receipts() {
    produce --topic chat.receipts "$@"
}

stop_worker() {
    kill -TERM $WORKER
    t_wait_gone $WORKER 30
}

# marks CONV USER: "delivered,read"
marks() {
    sql "SELECT last_delivered_seq || ',' || last_read_seq
         FROM conversation_members
         WHERE conversation_id = '$1' AND user_id = '$2'"
}

# statuses CONV: "seq:status" for each message, in seq order
statuses() {
    sql "SELECT string_agg(seq || ':' || status, ' ' ORDER BY seq)
         FROM messages WHERE conversation_id = '$1'"
}

ts() {
    sql "SELECT coalesce(chat_ts($1), '-') FROM messages
         WHERE conversation_id = '$2' AND seq = $3"
}

# --- servers ---

persist_servers

persist_conf "batch-size = 100" "stats-interval = 1" "log-level = debug"

"$T_BIN/chat-persist" --help > "$D/help"
check "--help lists receipts-topic" \
    grep -q "^  receipts-topic  *string  *chat.receipts" "$D/help"

sql "INSERT INTO users (id) VALUES ('alice'), ('bob'), ('carol');
     INSERT INTO conversations (id, type, direct_key)
     VALUES ('d1', 'direct', 'alice' || chr(31) || 'bob');
     INSERT INTO conversations (id, type) VALUES ('g1', 'group');
     INSERT INTO conversation_members (conversation_id, user_id)
     VALUES ('d1', 'alice'), ('d1', 'bob'),
            ('g1', 'alice'), ('g1', 'bob'), ('g1', 'carol')" \
    || bail "cannot create the conversations"

{
    for s in 1 2 3 4; do msg d1 $s alice; done
    for s in 5 6; do msg d1 $s bob; done
    for s in 1 2 3 4; do msg g1 $s alice; done
} | produce

start_worker
check "the worker subscribes to both topics" \
    wait_sql "SELECT count(*) FROM messages" 10 30
check "... and says so" grep -q 'on topic "chat.messages" and "chat.receipts"' \
    "$D/persist.log"

T1=2030-01-01T10:00:01.000Z
T2=2030-01-01T10:00:02.000Z
T3=2030-01-01T10:00:03.000Z
T4=2030-01-01T10:00:04.000Z
T5=2030-01-01T10:00:05.000Z

# --- delivered, then an older one: stays ---

rcp delivered d1 bob 5 $T1 | receipts
check "delivered 5: the watermark moves" wait_sql "$(echo "SELECT
    last_delivered_seq FROM conversation_members
    WHERE conversation_id = 'd1' AND user_id = 'bob'")" 5 30
{ rcp delivered d1 bob 3 $T2; rcp delivered d1 alice 1 $T2; } | receipts
check "(a later receipt of d1 is applied)" wait_sql "$(echo "SELECT
    last_delivered_seq FROM conversation_members
    WHERE conversation_id = 'd1' AND user_id = 'alice'")" 1 30
is "delivered 5 then 3: stays 5" "$(marks d1 bob)" "5,0"
is "direct: the other member's messages up to 5 are delivered" \
    "$(statuses d1)" \
    "1:delivered 2:delivered 3:delivered 4:delivered 5:sent 6:sent"
is "... at the receipt's time" "$(ts delivered_at d1 4)" "$T1"
is "... not read" "$(ts read_at d1 4)" "-"

# --- read ---

rcp read d1 bob 2 $T3 | receipts
check "read 2: the read watermark moves" wait_sql "$(echo "SELECT
    last_read_seq FROM conversation_members
    WHERE conversation_id = 'd1' AND user_id = 'bob'")" 2 30
is "read 2: delivered stays 5" "$(marks d1 bob)" "5,2"
is "direct: messages up to 2 are read" "$(statuses d1)" \
    "1:read 2:read 3:delivered 4:delivered 5:sent 6:sent"
is "... at the read receipt's time" "$(ts read_at d1 2)" "$T3"
is "... delivered_at is not overwritten" "$(ts delivered_at d1 2)" "$T1"

# read beyond delivered, two in one batch, and a stale read after them
{ rcp read d1 alice 6 $T4; rcp read d1 alice 5 $T4; } | receipts
check "read 6 without delivered: read implies delivered" \
    wait_sql "SELECT last_delivered_seq || ',' || last_read_seq
              FROM conversation_members
              WHERE conversation_id = 'd1' AND user_id = 'alice'" "6,6" 30
is "bob's messages are read, alice's own untouched" "$(statuses d1)" \
    "1:read 2:read 3:delivered 4:delivered 5:read 6:read"
is "... delivered_at of a message read without delivered" \
    "$(ts delivered_at d1 6)" "$T4"
{ rcp read d1 bob 1 $T5; rcp delivered d1 bob 4 $T5;
  rcp read d1 alice 2 $T5; } | receipts
sleep 1.5
is "stale receipts move nothing (bob)" "$(marks d1 bob)" "5,2"
is "stale receipts move nothing (alice)" "$(marks d1 alice)" "6,6"
is "... nor any message" "$(ts read_at d1 1),$(ts delivered_at d1 1)" \
    "$T3,$T1"

# --- groups: watermarks only ---

rcp read g1 carol 3 $T1 | receipts
check "group: read 3 raises delivered to 3" \
    wait_sql "SELECT last_delivered_seq || ',' || last_read_seq
              FROM conversation_members
              WHERE conversation_id = 'g1' AND user_id = 'carol'" "3,3" 30
rcp delivered g1 bob 4 $T1 | receipts
check "group: delivered 4" wait_sql "$(echo "SELECT last_delivered_seq
    FROM conversation_members
    WHERE conversation_id = 'g1' AND user_id = 'bob'")" 4 30
is "group: messages' statuses untouched" "$(statuses g1)" \
    "1:sent 2:sent 3:sent 4:sent"
is "group: no delivered_at or read_at" \
    "$(sql "SELECT count(*) FROM messages WHERE conversation_id = 'g1'
            AND (delivered_at IS NOT NULL OR read_at IS NOT NULL)")" 0

# --- a receipt before its message ---

rcp read d1 alice 8 $T2 | receipts
check "read 8 before messages 7 and 8 exist" \
    wait_sql "SELECT last_read_seq FROM conversation_members
              WHERE conversation_id = 'd1' AND user_id = 'alice'" 8 30
{ msg d1 7 bob; msg d1 8 bob; msg d1 9 bob; } | produce
check "the late messages are stored" \
    wait_sql "SELECT count(*) FROM messages WHERE conversation_id = 'd1'" \
    9 30
is "... as read when the watermark covers them" "$(statuses d1)" \
    "1:read 2:read 3:delivered 4:delivered 5:read 6:read 7:read 8:read 9:sent"
is "... with the watermark's time" \
    "$(ts read_at d1 8),$(ts delivered_at d1 8)" \
    "$T2,$T2"

# --- unknown conversations and members, malformed records ---

{
    rcp read nope alice 5 $T1
    rcp read d1 mallory 5 $T1
    echo 'not json at all'
    echo '{"type":"seen","conversationId":"d1","userId":"bob","seq":6,'\
         '"at":"'$T1'"}'
    echo '{"type":"read","conversationId":"d1","userId":"bob","seq":"6",'\
         '"at":"'$T1'"}'
    echo '{"type":"read","conversationId":"d1","userId":"bob","seq":6}'
    echo '{"type":"read","conversationId":"d1","seq":6,"at":"'$T1'"}'
    echo '[1,2]'
    rcp read d1 bob 3 2030-02-30T10:00:00.000Z
    rcp delivered d1 bob 6 $T3
} | receipts --key-field ""
check "after unknown and malformed receipts, the next is applied" \
    wait_sql "SELECT last_delivered_seq FROM conversation_members
              WHERE conversation_id = 'd1' AND user_id = 'bob'" 6 30
is "no member row was created" \
    "$(sql "SELECT count(*) FROM conversation_members
            WHERE conversation_id = 'nope' OR user_id = 'mallory'")" 0
check "an unknown conversation or member is logged at debug" \
    grep -q "debug: receipts ignored: unknown .*\(nope alice\|d1 mallory\)" \
    "$D/persist.log"
check "invalid JSON is skipped" \
    grep -q "skipping the record at chat.receipts .*not valid JSON" \
    "$D/persist.log"
check "a bad type is skipped" \
    grep -q 'skipping the record at chat.receipts .*"type" is not' \
    "$D/persist.log"
check "a string seq is skipped" \
    grep -q 'skipping the record at chat.receipts .*"seq" is not' \
    "$D/persist.log"
check "a receipt without at is skipped" \
    grep -q 'skipping the record at chat.receipts .*"at" is not' \
    "$D/persist.log"
check "a receipt without userId is skipped" \
    grep -q 'skipping the record at chat.receipts .*no "userId"' \
    "$D/persist.log"
check "a time PostgreSQL rejects is skipped alone" \
    grep -q "skipping the record at chat.receipts .*rejects it .*user bob" \
    "$D/persist.log"
is "... and its read watermark is not applied" "$(marks d1 bob)" "6,2"
check "the worker is alive" kill -0 $WORKER

# --- volume, kill -9 mid-stream, restart ---

# 30 direct conversations of 40 messages (even seq: ka, odd: kb), then
# every delivered and read receipt of both members, in a shuffled order
NK=30
NS=40
perl -e '
    my ($nk) = @ARGV;
    print "INSERT INTO users (id) SELECT unnest(ARRAY[",
          join(",", map { "\x27ka$_\x27, \x27kb$_\x27" } 1 .. $nk), "]);\n";
    for my $i (1 .. $nk) {
        print "INSERT INTO conversations (id, type, direct_key) VALUES ",
              "(\x27k$i\x27, \x27direct\x27, \x27ka$i\x27 || chr(31) ",
              "|| \x27kb$i\x27);\n",
              "INSERT INTO conversation_members (conversation_id, user_id) ",
              "VALUES (\x27k$i\x27, \x27ka$i\x27), ",
              "(\x27k$i\x27, \x27kb$i\x27);\n";
    }' $NK | psql "$DSN" -X -q -v ON_ERROR_STOP=1 > /dev/null \
    || bail "cannot create the k conversations"

perl -MPOSIX=strftime -e '
    my ($nk, $ns) = @ARGV;
    my $ts = strftime("%Y-%m-%dT%H:%M:%S.000Z", gmtime);
    for my $s (1 .. $ns) {
        for my $i (1 .. $nk) {
            my $u = $s % 2 ? "kb$i" : "ka$i";
            print qq({"type":"message","messageId":"),
                  9000000000000000000 + $i * 1000 + $s,
                  qq(","conversationId":"k$i","seq":$s,"senderId":"$u",),
                  qq("content":"x","createdAt":"$ts"}\n);
        }
    }' $NK $NS | produce
check "the k messages are stored" \
    wait_sql "SELECT count(*) FROM messages WHERE conversation_id LIKE 'k%'" \
    $((NK * NS)) 60

perl -e '
    my ($nk, $ns) = @ARGV;
    srand(42);
    my @r;
    for my $i (1 .. $nk) {
        for my $u ("ka$i", "kb$i") {
            for my $s (1 .. $ns) {
                for my $t ("delivered", "read") {
                    my $sec = $s + ($t eq "read" ? 100 : 0);
                    push @r, [rand(), sprintf(
                        qq({"type":"%s","conversationId":"k%d",)
                        . qq("userId":"%s","seq":%d,)
                        . qq("at":"2030-01-02T00:%02d:%02d.000Z"}\n),
                        $t, $i, $u, $s, $sec / 60, $sec % 60)];
                }
            }
        }
    }
    print map { $_->[1] } sort { $a->[0] <=> $b->[0] } @r;
    ' $NK $NS > "$D/k.receipts"

stop_worker
receipts < "$D/k.receipts"
# small batches one at a time: the kill below lands mid-stream
start_worker --batch-size 5 --pipeline 1
for i in $(seq 1 100); do
    n=$(sql "SELECT sum(last_read_seq) FROM conversation_members
             WHERE conversation_id LIKE 'k%'")
    [ "${n:-0}" -gt 0 ] && break
    sleep 0.05
done
{ kill -9 $WORKER; wait $WORKER; } 2> /dev/null
n=$(sql "SELECT sum(last_read_seq) FROM conversation_members
         WHERE conversation_id LIKE 'k%'")
check "kill -9 hit the worker mid-stream (read sum $n of $((NK * 2 * NS)))" \
    test "$n" -gt 0 -a "$n" -lt $((NK * 2 * NS))
start_worker --batch-size 50
check "after the restart every watermark is at $NS" \
    wait_sql "SELECT count(*) FROM conversation_members
              WHERE conversation_id LIKE 'k%'
              AND last_delivered_seq = $NS AND last_read_seq = $NS" \
    $((NK * 2)) 60
is "every k message is read" \
    "$(sql "SELECT count(*) FROM messages WHERE conversation_id LIKE 'k%'
            AND status = 'read' AND read_at IS NOT NULL
            AND delivered_at IS NOT NULL")" $((NK * NS))

# --- a full replay (a new group reads both topics from the start) ---

state() {
    sql "SELECT md5(string_agg(x, '|' ORDER BY x)) FROM (
             SELECT concat_ws(',', conversation_id, user_id,
                              last_delivered_seq, last_read_seq,
                              last_delivered_at, last_read_at) AS x
             FROM conversation_members
             UNION ALL
             SELECT concat_ws(',', conversation_id, seq, status,
                              delivered_at, read_at)
             FROM messages) s"
}

stop_worker
before=$(state)
start_worker --group-id replay
check "replay: the new group read the receipts" \
    bash -c "for i in \$(seq 1 150); do
                 grep 'chat-persist\[$WORKER\] info: stats: .* [1-9][0-9]* r' \
                     '$D/persist.log' > /dev/null && exit 0; sleep 0.2
             done; exit 1"
sleep 3
stop_worker
is "replay: no watermark, status or time changed" "$(state)" "$before"

# --- receipts-topic empty: not consumed ---

rcp read d1 bob 5 $T1 | receipts
start_worker --receipts-topic "" --group-id noreceipts
sleep 4
is "receipts-topic empty: receipts are not consumed" "$(marks d1 bob)" "6,2"
check "... and the worker runs" kill -0 $WORKER
stop_worker

check "no PostgreSQL error but the rejected time" \
    bash -c "! grep ' error: ' '$D/persist.log' | grep -v \
        -e 'skipping the record' -e 'failed: 22008' \
        | grep -q ."

t_done
