# persist_env.sh: what the chat-persist tests share (sourced after tap.sh):
# a temporary directory $D, PostgreSQL with the migrations ($DSN), the
# in-memory broker ($BS, its bootstrap file), and helpers. Sourced with a
# name: . persist_env.sh NAME (the directory is chat-NAME-t.XXXXXX).

. "$T_ROOT/scripts/lib.sh"

t_require_bins chat-kafka-broker chat-kafka-produce chat-persist
command -v psql > /dev/null || bail "psql not found"

D=$(mktemp -d "${TMPDIR:-/tmp}/chat-$1-t.XXXXXX")
chmod 755 "$D"
BS=$D/bootstrap
PGDATA_=$D/pg
PGPORT_=${TEST_CHAT_PG_PORT:-$(chat_free_port)}
DSN=$(chat_pg_dsn "$PGPORT_")
WORKER=""

cleanup() {
    local p
    for p in $T_PIDS; do kill -9 "$p" 2>/dev/null; done
    chat_pg_stop "$PGDATA_" 2>/dev/null
    if [ -n "$KEEP" ]; then echo "# kept $D"; else rm -rf "$D"; fi
}
trap cleanup EXIT

sql() {
    psql "$DSN" -X -Atq -v ON_ERROR_STOP=1 -c "$1"
}

# wait_sql SQL VALUE SECONDS: until the query answers VALUE
wait_sql() {
    local i v
    for i in $(seq 1 $(($3 * 5))); do
        v=$(sql "$1" 2>/dev/null)
        [ "$v" = "$2" ] && return 0
        sleep 0.2
    done
    echo "# $1: '$v', expected '$2'"
    return 1
}

produce() {
    "$T_BIN/chat-kafka-produce" --bootstrap-file "$BS" "$@" > /dev/null
}

# persist_conf LINES...: $D/persist.conf, the servers' settings and LINES
persist_conf() {
    {
        echo "# chat-persist test configuration"
        echo "bootstrap-file = $BS"
        echo "database = \"$DSN\""
        echo "session-timeout = 6000"
        echo "retry-max = 1000"
        echo "kafka.topic.metadata.refresh.interval.ms = 2000"
        printf '%s\n' "$@"
    } > "$D/persist.conf"
}

# start_worker [FLAGS]: chat-persist with $D/persist.conf, pid in $WORKER
start_worker() {
    "$T_BIN/chat-persist" --config "$D/persist.conf" "$@" \
        >> "$D/persist.log" 2>&1 &
    WORKER=$!
    t_track $WORKER
}

# persist_servers: PostgreSQL with the migrations, then the broker
persist_servers() {
    chat_pg_start "$PGDATA_" "$PGPORT_" "$D/pg.log" off > /dev/null 2>&1 \
        || bail "PostgreSQL did not start: $(tail -5 "$D/pg.log")"
    "$T_ROOT/sql/migrate.sh" "$DSN" > "$D/migrate.log" 2>&1 \
        || bail "migrations failed: $(cat "$D/migrate.log")"

    "$T_BIN/chat-kafka-broker" --bootstrap-file "$BS" > /dev/null \
        2> "$D/broker.log" &
    t_track $!
    t_wait_file "$BS" 10 || bail "the broker did not start"
}
