/* chat_persist.c: the persistence worker: a consumer-group member that
 * writes chat.messages and the watermarks of chat.receipts to PostgreSQL
 * in batches and commits the offsets of a batch to Kafka only after its
 * transaction has committed. */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "common/wk_conf.h"
#include "common/wk_kafka.h"
#include "common/wk_log.h"
#include "common/wk_metrics.h"
#include "common/wk_proc.h"
#include "chat_persist.h"


#define PST_COLS          8
#define PST_RCOLS         5
#define PST_LOCK_KEY      "7350289346879488"   /* advisory lock: maintenance */


typedef enum {
    PST_OK = 0,
    PST_ERR_CONN,       /* connection lost: reconnect, retry */
    PST_ERR_DATA,       /* a value PostgreSQL rejects (SQLSTATE class 22) */
    PST_ERR_OTHER       /* anything else: retry with backoff, never skip */
} pst_err_e;


typedef struct {
    pst_row_t   *rows;
    size_t       n;
    size_t       cap;
    int64_t      started;
} pst_batch_t;


typedef pst_err_e (*pst_writer_pt)(pst_row_t **rows, size_t n,
    uint64_t *count);


typedef struct {
    char        *data;
    size_t       len;
    size_t       cap;
    int          failed;
} pst_buf_t;


static char       *pst_brokers;
static char       *pst_bootstrap_file;
static char       *pst_topic;
static char       *pst_receipts_topic;
static char       *pst_group_id;
static char       *pst_database;
static long long   pst_batch_size;
static long long   pst_batch_wait;
static long long   pst_retention_months;
static long long   pst_partitions_ahead;
static long long   pst_maintenance_interval;
static long long   pst_stats_interval;
static long long   pst_session_timeout;
static long long   pst_retry_max;
static long long   pst_drain_timeout;
static char       *pst_pid_file;
static char       *pst_log_level;
static char       *pst_metrics_listen;


static wk_conf_t  pst_conf[] = {
    { "brokers", WK_CONF_STR, "",
      "Kafka bootstrap servers (host:port,...)", &pst_brokers, 0, 0, 0 },
    { "bootstrap-file", WK_CONF_STR, "",
      "read the bootstrap servers from this file (chat-kafka-broker's)",
      &pst_bootstrap_file, 0, 0, 0 },
    { "topic", WK_CONF_STR, "chat.messages",
      "topic of the messages", &pst_topic, 0, 0, 0 },
    { "receipts-topic", WK_CONF_STR, "chat.receipts",
      "topic of the delivered and read receipts (empty: not consumed)",
      &pst_receipts_topic, 0, 0, 0 },
    { "group-id", WK_CONF_STR, "chat-persist",
      "consumer group", &pst_group_id, 0, 0, 0 },
    { "database", WK_CONF_STR, "",
      "libpq connection string or URI (empty: the PG* variables)",
      &pst_database, 0, 0, 1 },
    { "batch-size", WK_CONF_INT, "1000",
      "most messages per transaction", &pst_batch_size, 1, 5000, 0 },
    { "batch-wait", WK_CONF_INT, "50",
      "ms to wait for a batch to fill", &pst_batch_wait, 0, 60000, 0 },
    { "retention-months", WK_CONF_INT, "60",
      "drop monthly partitions older than this (0: keep all)",
      &pst_retention_months, 0, 100000, 0 },
    { "partitions-ahead", WK_CONF_INT, "3",
      "create monthly partitions this many months ahead",
      &pst_partitions_ahead, 0, 120, 0 },
    { "maintenance-interval", WK_CONF_INT, "86400",
      "seconds between partition maintenance runs",
      &pst_maintenance_interval, 1, 31 * 86400, 0 },
    { "stats-interval", WK_CONF_INT, "10",
      "seconds between throughput and lag logs (0: never)",
      &pst_stats_interval, 0, 86400, 0 },
    { "session-timeout", WK_CONF_INT, "10000",
      "Kafka session.timeout.ms of the group member",
      &pst_session_timeout, 1000, 3600000, 0 },
    { "retry-max", WK_CONF_INT, "5000",
      "longest ms between PostgreSQL retries", &pst_retry_max, 100,
      600000, 0 },
    { "drain-timeout", WK_CONF_INT, "30000",
      "ms to keep retrying the last batch after SIGTERM",
      &pst_drain_timeout, 0, 3600000, 0 },
    { "pid-file", WK_CONF_STR, "",
      "write the process id to this file (removed on exit)",
      &pst_pid_file, 0, 0, 0 },
    { "log-level", WK_CONF_STR, "info",
      "error, warn, info or debug", &pst_log_level, 0, 0, 0 },
    WK_METRICS_CONF(pst_metrics_listen),
    { NULL, 0, NULL, NULL, NULL, 0, 0, 0 }
};


static wk_conf_spec_t  pst_spec = {
    "chat-persist",
    "Consumes the messages topic in a consumer group and writes them to\n"
    "PostgreSQL: each batch in one transaction, idempotent on\n"
    "(conversation_id, seq); the batch's offsets are committed to Kafka\n"
    "only after the COMMIT. In the same transaction, the receipts topic\n"
    "moves the members' delivered and read watermarks forward (and the\n"
    "status of the messages of direct conversations). Creates monthly\n"
    "partitions ahead and drops those older than the retention. SIGTERM\n"
    "writes the current batch and exits; a second SIGTERM exits at once\n"
    "(nothing is lost: the offsets of unwritten records are not\n"
    "committed).",
    pst_conf,
    "kafka.", "any librdkafka property, e.g. kafka.security.protocol = ssl",
    wk_kafka_extra, NULL
};


static rd_kafka_t   *pst_rk;
static PGconn       *pst_pg;
static pst_batch_t   pst_batch;
static int64_t       pst_quit_at;

static struct {
    uint64_t  consumed;
    uint64_t  inserted;
    uint64_t  skipped;
    uint64_t  receipts;
    uint64_t  batches;
    uint64_t  failures;
} pst_stats, pst_stats_last;


/* the same, for Prometheus (wk_metrics.c) */
static struct {
    wk_metric_t  *consumed;
    wk_metric_t  *inserted;
    wk_metric_t  *skipped;
    wk_metric_t  *receipts;
    wk_metric_t  *batches;
    wk_metric_t  *errors;
    wk_metric_t  *retries;
    wk_metric_t  *abandoned;
    wk_metric_t  *lag;
    wk_metric_t  *batch_ms;
    wk_metric_t  *partitions;
} pst_m;


/* the string builder of the INSERT statement */

static void
pst_buf_add(pst_buf_t *b, const char *fmt, ...)
{
    int       n;
    char     *p;
    size_t    cap;
    va_list   ap;

    if (b->failed) {
        return;
    }

    for ( ;; ) {
        va_start(ap, fmt);
        n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);

        if (n < 0) {
            b->failed = 1;
            return;
        }

        if ((size_t) n < b->cap - b->len) {
            b->len += (size_t) n;
            return;
        }

        cap = b->cap * 2 + (size_t) n + 256;
        p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }

        b->data = p;
        b->cap = cap;
    }
}


static void
pst_batch_clear(void)
{
    size_t  i;

    for (i = 0; i < pst_batch.n; i++) {
        pst_row_free(&pst_batch.rows[i]);
    }

    pst_batch.n = 0;
}


static void
pst_batch_add(const rd_kafka_message_t *m)
{
    pst_row_t   *row;
    const char  *bad;

    if (pst_batch.n == 0) {
        pst_batch.started = wk_now_ms();
    }

    row = &pst_batch.rows[pst_batch.n++];
    memset(row, 0, sizeof(pst_row_t));

    row->partition = m->partition;
    row->offset = m->offset;

    pst_stats.consumed++;
    wk_metric_add(pst_m.consumed, 1);

    if (*pst_receipts_topic
        && strcmp(rd_kafka_topic_name(m->rkt), pst_receipts_topic) == 0)
    {
        bad = pst_receipt_parse(row, m);

    } else {
        bad = pst_row_parse(row, m);
    }

    if (bad == NULL) {
        return;
    }

    /*
     * A poison record must not block its partition forever: it is logged
     * and skipped, and its offset is committed with the batch.
     */
    wk_error("skipping the record at %s [%d] offset %lld: %s: %.*s",
             rd_kafka_topic_name(m->rkt), (int) m->partition,
             (long long) m->offset, bad, m->len > 300 ? 300 : (int) m->len,
             m->payload ? (const char *) m->payload : "");

    pst_row_free(row);
    pst_stats.skipped++;
    wk_metric_add(pst_m.skipped, 1);
}


static const char *
pst_row_topic(const pst_row_t *row)
{
    return row->receipt ? pst_receipts_topic : pst_topic;
}


/* drops the rows of revoked partitions (their next owner reads them) */
static void
pst_batch_drop(const rd_kafka_topic_partition_list_t *parts)
{
    size_t  i, j;
    int     k, revoked;

    for (i = 0, j = 0; i < pst_batch.n; i++) {
        revoked = 0;

        for (k = 0; k < parts->cnt; k++) {
            if (parts->elems[k].partition == pst_batch.rows[i].partition
                && strcmp(parts->elems[k].topic,
                          pst_row_topic(&pst_batch.rows[i])) == 0)
            {
                revoked = 1;
                break;
            }
        }

        if (revoked) {
            pst_row_free(&pst_batch.rows[i]);
            continue;
        }

        pst_batch.rows[j++] = pst_batch.rows[i];
    }

    if (i != j) {
        wk_warn("dropped %zu unwritten message(s) of revoked partitions: "
                "their offsets were not committed", i - j);
    }

    pst_batch.n = j;
}


/* PostgreSQL */

static pst_err_e
pst_pg_error(PGresult *res, const char *what)
{
    const char  *state;

    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    wk_error("%s failed: %s%s%s", what,
             state ? state : "", state ? ": " : "",
             res && *PQresultErrorMessage(res)
                 ? PQresultErrorMessage(res) : PQerrorMessage(pst_pg));

    if (PQstatus(pst_pg) == CONNECTION_BAD || state == NULL
        || strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0)
    {
        return PST_ERR_CONN;
    }

    if (strncmp(state, "22", 2) == 0) {
        return PST_ERR_DATA;
    }

    return PST_ERR_OTHER;
}


static pst_err_e
pst_exec(const char *sql, int nparams, const char *const *params,
    PGresult **out, const char *what)
{
    PGresult        *res;
    pst_err_e        rc;
    ExecStatusType   st;

    res = PQexecParams(pst_pg, sql, nparams, NULL, params, NULL, NULL, 0);
    st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;

    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        if (out != NULL) {
            *out = res;
        } else {
            PQclear(res);
        }

        return PST_OK;
    }

    rc = pst_pg_error(res, what);
    PQclear(res);

    return rc;
}


static void
pst_pg_close(void)
{
    if (pst_pg != NULL) {
        PQfinish(pst_pg);
        pst_pg = NULL;
    }
}


static int
pst_pg_connect(void)
{
    const char  *keys[] = { "connect_timeout", "fallback_application_name",
                            "dbname", NULL };
    const char  *values[] = { "10", "chat-persist", pst_database, NULL };

    if (pst_pg != NULL && PQstatus(pst_pg) == CONNECTION_OK) {
        return 0;
    }

    pst_pg_close();

    if (*pst_database == '\0') {
        keys[2] = NULL;
    }

    pst_pg = PQconnectdbParams(keys, values, 1);

    if (pst_pg == NULL) {
        wk_error("PostgreSQL: out of memory");
        return -1;
    }

    if (PQstatus(pst_pg) != CONNECTION_OK) {
        wk_error("PostgreSQL connection failed: %s", PQerrorMessage(pst_pg));
        pst_pg_close();
        return -1;
    }

    wk_info("connected to PostgreSQL %s:%s, database %s", PQhost(pst_pg),
            PQport(pst_pg), PQdb(pst_pg));

    if (pst_exec("SET synchronous_commit = on", 0, NULL, NULL,
                 "SET synchronous_commit")
        != PST_OK)
    {
        pst_pg_close();
        return -1;
    }

    return 0;
}


/*
 * One statement inserts the rows (skipping every (conversation_id, seq)
 * already stored, whatever its created_at) and moves last_seq and
 * last_message_at of their conversations forward. A message of a direct
 * conversation that the other member's watermarks already cover (its
 * receipt was written before it) is stored as delivered or read.
 */
static pst_err_e
pst_write_rows(pst_row_t **rows, size_t n, uint64_t *inserted)
{
    size_t        i, k;
    pst_buf_t     sql;
    PGresult     *res;
    pst_err_e     rc;
    const char  **params;

    params = malloc(n * PST_COLS * sizeof(char *));
    if (params == NULL) {
        wk_error("out of memory");
        return PST_ERR_OTHER;
    }

    memset(&sql, 0, sizeof(sql));

    pst_buf_add(&sql, "WITH v (id, conversation_id, seq, sender_id, content,"
                " client_msg_id, metadata, created_at) AS (VALUES ");

    for (i = 0; i < n; i++) {
        k = i * PST_COLS;

        pst_buf_add(&sql, "%s($%zu::bigint, $%zu::text, $%zu::bigint,"
                    " $%zu::text, $%zu::text, $%zu::text, $%zu::jsonb,"
                    " $%zu::timestamptz)", i ? ", " : "",
                    k + 1, k + 2, k + 3, k + 4, k + 5, k + 6, k + 7, k + 8);

        params[k] = rows[i]->id;
        params[k + 1] = rows[i]->conversation_id;
        params[k + 2] = rows[i]->seq;
        params[k + 3] = rows[i]->sender_id;
        params[k + 4] = rows[i]->content;
        params[k + 5] = rows[i]->client_msg_id;
        params[k + 6] = rows[i]->metadata;
        params[k + 7] = rows[i]->created_at;
    }

    pst_buf_add(&sql, "), "
        "ins AS (INSERT INTO messages (id, conversation_id, seq, sender_id,"
        " content, client_msg_id, metadata, created_at, status,"
        " delivered_at, read_at)"
        " SELECT DISTINCT ON (v.conversation_id, v.seq) v.*,"
        " CASE WHEN v.seq <= w.r THEN 'read'"
        " WHEN v.seq <= w.d THEN 'delivered' ELSE 'sent' END,"
        " CASE WHEN v.seq <= w.d THEN greatest(v.created_at, w.dat) END,"
        " CASE WHEN v.seq <= w.r THEN greatest(v.created_at, w.rat) END"
        " FROM v LEFT JOIN LATERAL (SELECT cm.last_delivered_seq AS d,"
        " cm.last_read_seq AS r, cm.last_delivered_at AS dat,"
        " cm.last_read_at AS rat FROM conversations c"
        " JOIN conversation_members cm ON cm.conversation_id = c.id"
        " WHERE c.id = v.conversation_id AND c.type = 'direct'"
        " AND cm.user_id <> v.sender_id LIMIT 1) w ON true"
        " WHERE NOT EXISTS (SELECT 1 FROM messages m"
        " WHERE m.conversation_id = v.conversation_id AND m.seq = v.seq)"
        " ORDER BY v.conversation_id, v.seq"
        " ON CONFLICT DO NOTHING RETURNING 1), "
        "upd AS (UPDATE conversations c"
        " SET last_seq = greatest(c.last_seq, x.seq),"
        " last_message_at = greatest(c.last_message_at, x.created_at)"
        " FROM (SELECT conversation_id, max(seq) AS seq,"
        " max(created_at) AS created_at FROM v GROUP BY conversation_id) x"
        " WHERE c.id = x.conversation_id RETURNING 1) "
        "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd)");

    if (sql.failed) {
        wk_error("out of memory");
        free(sql.data);
        free(params);
        return PST_ERR_OTHER;
    }

    res = NULL;
    rc = pst_exec(sql.data, (int) (n * PST_COLS), params, &res,
                  "INSERT INTO messages");

    if (rc == PST_OK) {
        *inserted += strtoull(PQgetvalue(res, 0, 0), NULL, 10);
        PQclear(res);
    }

    free(sql.data);
    free(params);

    return rc;
}


/*
 * One statement for the receipts of a batch: for each (conversation, user),
 * the greatest delivered and read watermarks move the member's forward
 * (read implies delivered; an older watermark changes nothing). In direct
 * conversations, the other member's messages between the old and the new
 * watermarks become delivered or read, each with the time of the first
 * receipt of the batch that covers it, never moving back. Receipts of
 * unknown conversations or members are ignored.
 */
static pst_err_e
pst_write_receipts(pst_row_t **rows, size_t n, uint64_t *applied)
{
    size_t        i, k;
    pst_buf_t     sql;
    PGresult     *res;
    pst_err_e     rc;
    const char  **params;

    params = malloc(n * PST_RCOLS * sizeof(char *));
    if (params == NULL) {
        wk_error("out of memory");
        return PST_ERR_OTHER;
    }

    memset(&sql, 0, sizeof(sql));

    pst_buf_add(&sql, "WITH v (cid, uid, rd, seq, at) AS (VALUES ");

    for (i = 0; i < n; i++) {
        k = i * PST_RCOLS;

        pst_buf_add(&sql, "%s($%zu::text, $%zu::text, $%zu::boolean,"
                    " $%zu::bigint, $%zu::timestamptz)", i ? ", " : "",
                    k + 1, k + 2, k + 3, k + 4, k + 5);

        params[k] = rows[i]->conversation_id;
        params[k + 1] = rows[i]->user_id;
        params[k + 2] = rows[i]->read ? "t" : "f";
        params[k + 3] = rows[i]->seq;
        params[k + 4] = rows[i]->at;
    }

    pst_buf_add(&sql, "), "
        "a AS (SELECT cid, uid, max(seq) AS d,"
        " coalesce(max(seq) FILTER (WHERE rd), 0) AS r,"
        " (array_agg(at ORDER BY seq DESC, at))[1] AS dat,"
        " (array_agg(at ORDER BY seq DESC, at) FILTER (WHERE rd))[1] AS rat"
        " FROM v GROUP BY cid, uid), "
        /* locked before upd changes them: FOR UPDATE skips rows the
           statement itself has changed */
        "o AS (SELECT cm.conversation_id AS cid, cm.user_id AS uid,"
        " cm.last_delivered_seq AS od, cm.last_read_seq AS orr,"
        " c.type = 'direct' AS direct"
        " FROM conversation_members cm"
        " JOIN a ON a.cid = cm.conversation_id AND a.uid = cm.user_id"
        " JOIN conversations c ON c.id = cm.conversation_id"
        " ORDER BY cm.conversation_id, cm.user_id FOR UPDATE OF cm), "
        "upd AS (UPDATE conversation_members cm"
        " SET last_delivered_seq = greatest(cm.last_delivered_seq, a.d),"
        " last_read_seq = greatest(cm.last_read_seq, a.r),"
        " last_delivered_at = CASE WHEN a.d > cm.last_delivered_seq"
        " THEN a.dat ELSE cm.last_delivered_at END,"
        " last_read_at = CASE WHEN a.r > cm.last_read_seq"
        " THEN a.rat ELSE cm.last_read_at END"
        " FROM a JOIN o ON o.cid = a.cid AND o.uid = a.uid"
        " WHERE cm.conversation_id = a.cid AND cm.user_id = a.uid"
        " AND (a.d > cm.last_delivered_seq OR a.r > cm.last_read_seq)"
        " RETURNING 1), "
        "msg AS (UPDATE messages m"
        " SET status = CASE WHEN m.status = 'read' OR m.seq <= a.r"
        " THEN 'read' ELSE 'delivered' END,"
        " delivered_at = least(m.delivered_at, (SELECT min(v.at) FROM v"
        " WHERE v.cid = a.cid AND v.uid = a.uid AND v.seq >= m.seq)),"
        " read_at = CASE WHEN m.seq <= a.r THEN least(m.read_at,"
        " (SELECT min(v.at) FROM v WHERE v.cid = a.cid AND v.uid = a.uid"
        " AND v.rd AND v.seq >= m.seq)) ELSE m.read_at END"
        " FROM a JOIN o ON o.cid = a.cid AND o.uid = a.uid"
        " WHERE o.direct AND m.conversation_id = a.cid"
        " AND m.sender_id <> a.uid"
        " AND m.seq > least(o.od, o.orr) AND m.seq <= a.d"
        " AND (m.seq > o.od OR m.seq <= a.r)"
        " AND m.status <> 'read' RETURNING 1) "
        "SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM msg),"
        " (SELECT string_agg(a.cid || ' ' || a.uid, ', ') FROM a"
        " WHERE NOT EXISTS (SELECT 1 FROM o"
        " WHERE o.cid = a.cid AND o.uid = a.uid))");

    if (sql.failed) {
        wk_error("out of memory");
        free(sql.data);
        free(params);
        return PST_ERR_OTHER;
    }

    res = NULL;
    rc = pst_exec(sql.data, (int) (n * PST_RCOLS), params, &res,
                  "UPDATE of the watermarks");

    if (rc == PST_OK) {
        *applied += n;

        wk_debug("receipts: %zu record(s), %s watermark(s) moved, "
                 "%s message status(es) changed", n, PQgetvalue(res, 0, 0),
                 PQgetvalue(res, 0, 1));

        if (!PQgetisnull(res, 0, 2)) {
            wk_debug("receipts ignored: unknown conversation or member: %s",
                     PQgetvalue(res, 0, 2));
        }

        PQclear(res);
    }

    free(sql.data);
    free(params);

    return rc;
}


/* after a data error: every row in its own savepoint, rejected rows skipped */
static pst_err_e
pst_write_one_by_one(pst_writer_pt write, pst_row_t **rows, size_t n,
    uint64_t *count)
{
    size_t     i;
    pst_err_e  rc;

    wk_warn("a value of the batch was rejected: writing its %zu rows one "
            "by one", n);

    for (i = 0; i < n; i++) {
        rc = pst_exec("SAVEPOINT row", 0, NULL, NULL, "SAVEPOINT");
        if (rc != PST_OK) {
            return rc;
        }

        rc = write(&rows[i], 1, count);

        if (rc == PST_ERR_DATA) {
            wk_error("skipping the record at %s [%d] offset %lld: "
                     "PostgreSQL rejects it (conversation %s seq %s%s%s)",
                     pst_row_topic(rows[i]), (int) rows[i]->partition,
                     (long long) rows[i]->offset, rows[i]->conversation_id,
                     rows[i]->seq, rows[i]->receipt ? " user " : "",
                     rows[i]->receipt ? rows[i]->user_id : "");
            pst_stats.skipped++;
            wk_metric_add(pst_m.skipped, 1);

            rc = pst_exec("ROLLBACK TO SAVEPOINT row", 0, NULL, NULL,
                          "ROLLBACK TO SAVEPOINT");
            if (rc != PST_OK) {
                return rc;
            }

            continue;
        }

        if (rc != PST_OK) {
            return rc;
        }

        rc = pst_exec("RELEASE SAVEPOINT row", 0, NULL, NULL,
                      "RELEASE SAVEPOINT");
        if (rc != PST_OK) {
            return rc;
        }
    }

    return PST_OK;
}


/*
 * BEGIN, the messages, the receipts, COMMIT. After a data error in the
 * statement of one kind, the transaction starts again with the records
 * of that kind written one by one.
 */
static pst_err_e
pst_batch_write(uint64_t *inserted, uint64_t *receipts)
{
    int          attempt, single_m, single_r;
    size_t       i, nm, nr;
    pst_err_e    rc;
    pst_row_t  **msgs, **rcps;

    msgs = malloc(2 * (pst_batch.n + 1) * sizeof(pst_row_t *));
    if (msgs == NULL) {
        wk_error("out of memory");
        return PST_ERR_OTHER;
    }

    rcps = msgs + pst_batch.n + 1;

    for (i = 0, nm = 0, nr = 0; i < pst_batch.n; i++) {
        if (pst_batch.rows[i].root == NULL) {
            continue;
        }

        if (pst_batch.rows[i].receipt) {
            rcps[nr++] = &pst_batch.rows[i];

        } else {
            msgs[nm++] = &pst_batch.rows[i];
        }
    }

    *inserted = 0;
    *receipts = 0;

    if (nm == 0 && nr == 0) {
        free(msgs);
        return PST_OK;
    }

    single_m = 0;
    single_r = 0;

    for (attempt = 0; /* void */; attempt++) {
        *inserted = 0;
        *receipts = 0;

        rc = pst_exec("BEGIN", 0, NULL, NULL, "BEGIN");

        if (rc == PST_OK && nm) {
            rc = single_m
                 ? pst_write_one_by_one(pst_write_rows, msgs, nm, inserted)
                 : pst_write_rows(msgs, nm, inserted);

            if (rc == PST_ERR_DATA && !single_m) {
                single_m = 1;
                goto again;
            }
        }

        if (rc == PST_OK && nr) {
            rc = single_r
                 ? pst_write_one_by_one(pst_write_receipts, rcps, nr,
                                        receipts)
                 : pst_write_receipts(rcps, nr, receipts);

            if (rc == PST_ERR_DATA && !single_r) {
                single_r = 1;
                goto again;
            }
        }

        break;

    again:

        rc = pst_exec("ROLLBACK", 0, NULL, NULL, "ROLLBACK");
        if (rc != PST_OK) {
            break;
        }

        if (attempt == 2) {
            rc = PST_ERR_OTHER;     /* not reached: each kind fails once */
            break;
        }
    }

    if (rc == PST_OK) {
        rc = pst_exec("COMMIT", 0, NULL, NULL, "COMMIT");

    } else if (rc != PST_ERR_CONN) {
        (void) pst_exec("ROLLBACK", 0, NULL, NULL, "ROLLBACK");
    }

    free(msgs);

    return rc;
}


/* commits, for each partition of the batch, the offset after its last */
static void
pst_commit_offsets(void)
{
    size_t                              i;
    const char                         *topic;
    rd_kafka_resp_err_t                 err;
    rd_kafka_topic_partition_t         *tp;
    rd_kafka_topic_partition_list_t    *offsets;

    offsets = rd_kafka_topic_partition_list_new(16);
    if (offsets == NULL) {
        wk_error("out of memory: offsets not committed (they will be "
                 "written again, harmlessly)");
        return;
    }

    for (i = 0; i < pst_batch.n; i++) {
        topic = pst_row_topic(&pst_batch.rows[i]);

        tp = rd_kafka_topic_partition_list_find(offsets, topic,
                                                pst_batch.rows[i].partition);
        if (tp == NULL) {
            tp = rd_kafka_topic_partition_list_add(offsets, topic,
                                                 pst_batch.rows[i].partition);
        }

        if (tp->offset < pst_batch.rows[i].offset + 1) {
            tp->offset = pst_batch.rows[i].offset + 1;
        }
    }

    err = rd_kafka_commit(pst_rk, offsets, 0);

    if (err) {
        wk_warn("offset commit failed: %s (those messages will be written "
                "again, harmlessly)", rd_kafka_err2str(err));
    }

    rd_kafka_topic_partition_list_destroy(offsets);
}


/*
 * Writes the batch, retrying with backoff until it is written or the
 * deadline passes (deadline 0: none, but a SIGTERM sets one); commits
 * its offsets after the COMMIT. Returns -1 when the batch stays unwritten.
 */
static int
pst_batch_flush(int64_t deadline)
{
    long       backoff;
    int64_t    now, t0;
    uint64_t   inserted, receipts;
    pst_err_e  rc;

    backoff = 100;
    t0 = wk_now_ms();

    for ( ;; ) {
        if (pst_pg_connect() == 0) {
            rc = pst_batch_write(&inserted, &receipts);

            if (rc == PST_OK) {
                break;
            }

            pst_stats.failures++;
            wk_metric_add(pst_m.errors, 1);

            if (rc == PST_ERR_CONN) {
                pst_pg_close();
            }

        } else {
            pst_stats.failures++;
            wk_metric_add(pst_m.errors, 1);
        }

        now = wk_now_ms();

        if (wk_quit && pst_quit_at == 0) {
            pst_quit_at = now;
        }

        if ((deadline && now >= deadline)
            || (wk_quit && now >= pst_quit_at + pst_drain_timeout))
        {
            wk_error("giving up on a batch of %zu message(s): their offsets "
                     "are not committed", pst_batch.n);
            wk_metric_add(pst_m.abandoned, 1);
            return -1;
        }

        wk_warn("batch of %zu message(s) not written, retrying in %ld ms "
                "(no offset is committed meanwhile)", pst_batch.n, backoff);

        wk_metric_add(pst_m.retries, 1);
        wk_nap_ms(backoff);

        backoff *= 2;
        if (backoff > pst_retry_max) {
            backoff = (long) pst_retry_max;
        }
    }

    pst_stats.inserted += inserted;
    pst_stats.receipts += receipts;
    pst_stats.batches++;
    wk_metric_add(pst_m.inserted, (int64_t) inserted);
    wk_metric_add(pst_m.receipts, (int64_t) receipts);
    wk_metric_add(pst_m.batches, 1);
    wk_metric_set(pst_m.batch_ms, wk_now_ms() - t0);

    if (wk_now_ms() - t0 > 1000) {
        wk_info("batch of %zu message(s) written after retries", pst_batch.n);
    }

    wk_debug("batch: %zu record(s), %" PRIu64 " new row(s), %" PRIu64
             " receipt(s)", pst_batch.n, inserted, receipts);

    pst_commit_offsets();
    pst_batch_clear();

    return 0;
}


/* monthly partitions ahead, and retention */
static int
pst_maintenance(void)
{
    int         i;
    char        n[32], *ident, *sql, *drop;
    size_t      len;
    PGresult   *res;
    const char *params[1];

    if (pst_pg_connect() != 0) {
        return -1;
    }

    snprintf(n, sizeof(n), "%lld", pst_partitions_ahead);
    params[0] = n;

    /* one worker of the group at a time */
    if (pst_exec("BEGIN", 0, NULL, NULL, "BEGIN") != PST_OK) {
        return -1;
    }

    if (pst_exec("SELECT pg_advisory_xact_lock(" PST_LOCK_KEY ")", 0, NULL,
                 NULL, "pg_advisory_xact_lock") != PST_OK
        || pst_exec("SELECT chat_ensure_partitions($1::int)", 1, params,
                    NULL, "chat_ensure_partitions") != PST_OK
        || pst_exec("COMMIT", 0, NULL, NULL, "COMMIT") != PST_OK)
    {
        (void) pst_exec("ROLLBACK", 0, NULL, NULL, "ROLLBACK");
        return -1;
    }

    wk_info("monthly partitions ensured %lld month(s) ahead",
            pst_partitions_ahead);

    if (pst_retention_months == 0) {
        return 0;
    }

    snprintf(n, sizeof(n), "%lld", pst_retention_months);

    res = NULL;

    if (pst_exec("SELECT c.relname FROM pg_inherits i"
                 " JOIN pg_class c ON c.oid = i.inhrelid"
                 " WHERE i.inhparent = 'messages'::regclass"
                 " AND c.relname ~ '^messages_[0-9]{4}_[0-9]{2}$'"
                 " AND to_date(substr(c.relname, 10), 'YYYY_MM')"
                 " < (date_trunc('month', now() AT TIME ZONE 'UTC')"
                 " - make_interval(months => $1::int))::date"
                 " ORDER BY 1", 1, params, &res, "listing partitions")
        != PST_OK)
    {
        return -1;
    }

    for (i = 0; i < PQntuples(res); i++) {
        ident = PQescapeIdentifier(pst_pg, PQgetvalue(res, i, 0),
                                   strlen(PQgetvalue(res, i, 0)));
        if (ident == NULL) {
            PQclear(res);
            return -1;
        }

        len = strlen(ident) + 64;
        sql = malloc(2 * len);
        if (sql == NULL) {
            PQfreemem(ident);
            PQclear(res);
            return -1;
        }

        drop = sql + len;
        snprintf(sql, len, "ALTER TABLE messages DETACH PARTITION %s", ident);
        snprintf(drop, len, "DROP TABLE %s", ident);

        if (pst_exec("BEGIN", 0, NULL, NULL, "BEGIN") != PST_OK
            || pst_exec("SET LOCAL lock_timeout = '10s'", 0, NULL, NULL,
                        "SET lock_timeout") != PST_OK
            || pst_exec(sql, 0, NULL, NULL, "detaching a partition")
               != PST_OK
            || pst_exec(drop, 0, NULL, NULL, "dropping a partition")
               != PST_OK
            || pst_exec("COMMIT", 0, NULL, NULL, "COMMIT") != PST_OK)
        {
            (void) pst_exec("ROLLBACK", 0, NULL, NULL, "ROLLBACK");
            free(sql);
            PQfreemem(ident);
            PQclear(res);
            return -1;
        }

        wk_info("retention: detached and dropped partition %s "
                "(older than %lld months)", ident, pst_retention_months);

        free(sql);
        PQfreemem(ident);
    }

    PQclear(res);

    /* old rows that sit in the default partition */
    res = NULL;

    if (pst_exec("DELETE FROM messages WHERE created_at"
                 " < (date_trunc('month', now() AT TIME ZONE 'UTC')"
                 " - make_interval(months => $1::int)) AT TIME ZONE 'UTC'",
                 1, params, &res, "retention delete")
        != PST_OK)
    {
        return -1;
    }

    if (strcmp(PQcmdTuples(res), "0") != 0) {
        wk_info("retention: deleted %s old message(s)", PQcmdTuples(res));
    }

    PQclear(res);

    return 0;
}


/* Kafka */

static void
pst_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    int  cooperative;

    (void) opaque;

    cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;

    switch (err) {

    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        wk_info("assigned %d partition(s)", parts->cnt);

        if (cooperative) {
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        } else {
            rd_kafka_assign(rk, parts);
        }

        break;

    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        wk_info("%d partition(s) revoked%s: writing what was consumed",
                parts->cnt, rd_kafka_assignment_lost(rk) ? " (lost)" : "");

        /* what is written is committed; what cannot be is left unread */
        if (pst_batch.n
            && pst_batch_flush(wk_now_ms() + pst_session_timeout / 2) != 0)
        {
            pst_batch_drop(parts);
        }

        if (cooperative) {
            rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        } else {
            rd_kafka_assign(rk, NULL);
        }

        break;

    default:
        wk_error("rebalance failed: %s", rd_kafka_err2str(err));
        pst_batch_drop(parts);
        rd_kafka_assign(rk, NULL);
        break;
    }
}


static rd_kafka_t *
pst_kafka_new(void)
{
    rd_kafka_t                       *rk;
    rd_kafka_resp_err_t               err;
    rd_kafka_topic_partition_list_t  *topics;

    rk = wk_kafka_consumer(pst_brokers, pst_bootstrap_file, "chat-persist",
                           pst_group_id, pst_session_timeout,
                           pst_rebalance_cb, 1);
    if (rk == NULL) {
        return NULL;
    }

    topics = rd_kafka_topic_partition_list_new(2);
    if (topics == NULL) {
        wk_error("out of memory");
        rd_kafka_destroy(rk);
        return NULL;
    }

    rd_kafka_topic_partition_list_add(topics, pst_topic,
                                      RD_KAFKA_PARTITION_UA);

    if (*pst_receipts_topic) {
        rd_kafka_topic_partition_list_add(topics, pst_receipts_topic,
                                          RD_KAFKA_PARTITION_UA);
    }

    err = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);

    if (err) {
        wk_error("cannot subscribe to %s: %s", pst_topic,
                 rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return NULL;
    }

    wk_info("member of group \"%s\" on topic \"%s\"%s%s%s", pst_group_id,
            pst_topic, *pst_receipts_topic ? " and \"" : "",
            pst_receipts_topic, *pst_receipts_topic ? "\"" : "");

    return rk;
}


/* fills the batch: until it is full, or batch-wait after its first record */
static void
pst_collect(void)
{
    int                  timeout;
    int64_t              left, start;
    rd_kafka_message_t  *m;

    start = wk_now_ms();

    while (!wk_quit && pst_batch.n < (size_t) pst_batch_size) {
        timeout = 100;

        if (pst_batch.n) {
            left = pst_batch.started + pst_batch_wait - wk_now_ms();
            if (left <= 0) {
                break;
            }

            timeout = left < 100 ? (int) left : 100;

        } else if (wk_now_ms() - start >= 1000) {
            break;      /* let the caller run its timers */
        }

        m = rd_kafka_consumer_poll(pst_rk, timeout);
        if (m == NULL) {
            continue;
        }

        if (m->err) {
            if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
                wk_error("offset reset: %s: messages the broker deleted "
                         "before they were written are lost",
                         rd_kafka_message_errstr(m));

            } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                wk_warn("consumer: %s", rd_kafka_message_errstr(m));
            }

            rd_kafka_message_destroy(m);
            continue;
        }

        pst_batch_add(m);
        rd_kafka_message_destroy(m);
    }
}


/* messages behind the partitions' ends (cached watermarks: no I/O) */
static int64_t
pst_lag(int *nparts)
{
    int                                i;
    int64_t                            lo, hi, lag;
    rd_kafka_topic_partition_list_t   *parts;

    lag = 0;
    parts = NULL;

    if (rd_kafka_assignment(pst_rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR
        && rd_kafka_position(pst_rk, parts) == RD_KAFKA_RESP_ERR_NO_ERROR)
    {
        for (i = 0; i < parts->cnt; i++) {
            if (rd_kafka_get_watermark_offsets(pst_rk, parts->elems[i].topic,
                                               parts->elems[i].partition,
                                               &lo, &hi)
                == RD_KAFKA_RESP_ERR_NO_ERROR
                && parts->elems[i].offset >= 0 && hi > parts->elems[i].offset)
            {
                lag += hi - parts->elems[i].offset;
            }
        }
    }

    *nparts = parts ? parts->cnt : 0;

    if (parts != NULL) {
        rd_kafka_topic_partition_list_destroy(parts);
    }

    return lag + (int64_t) pst_batch.n;
}


static void
pst_update_metrics(void)
{
    int      nparts;
    int64_t  lag;

    lag = pst_lag(&nparts);

    wk_metric_set(pst_m.lag, lag);
    wk_metric_set(pst_m.partitions, nparts);
}


static void
pst_log_stats(int64_t elapsed)
{
    int      nparts;
    int64_t  lag;

    lag = pst_lag(&nparts);

    wk_info("stats: %" PRIu64 " consumed (%.1f/s), %" PRIu64 " inserted "
            "(%.1f/s), %" PRIu64 " receipts, %" PRIu64 " skipped, %" PRIu64
            " batches, %" PRIu64
            " failures; lag %" PRId64 " on %d partition(s)",
            pst_stats.consumed - pst_stats_last.consumed,
            (pst_stats.consumed - pst_stats_last.consumed) * 1000.0
                / (elapsed ? elapsed : 1),
            pst_stats.inserted - pst_stats_last.inserted,
            (pst_stats.inserted - pst_stats_last.inserted) * 1000.0
                / (elapsed ? elapsed : 1),
            pst_stats.receipts - pst_stats_last.receipts,
            pst_stats.skipped - pst_stats_last.skipped,
            pst_stats.batches - pst_stats_last.batches,
            pst_stats.failures - pst_stats_last.failures,
            lag, nparts);

    pst_stats_last = pst_stats;
}


static int
pst_metrics_init(void)
{
    pst_m.consumed = wk_metric(WK_METRIC_COUNTER,
        "chat_persist_consumed_total", "",
        "Records consumed from the messages and receipts topics.");
    pst_m.inserted = wk_metric(WK_METRIC_COUNTER,
        "chat_persist_rows_written_total", "",
        "Message rows inserted into PostgreSQL (duplicates aside).");
    pst_m.skipped = wk_metric(WK_METRIC_COUNTER,
        "chat_persist_skipped_total", "",
        "Records skipped: unparsable, or rejected by PostgreSQL.");
    pst_m.receipts = wk_metric(WK_METRIC_COUNTER,
        "chat_persist_receipts_total", "",
        "Receipts (delivered and read watermarks) written to PostgreSQL.");
    pst_m.batches = wk_metric(WK_METRIC_COUNTER,
        "chat_persist_batches_total", "",
        "Batches written and committed.");
    pst_m.errors = wk_metric(WK_METRIC_COUNTER,
        "chat_persist_errors_total", "",
        "Failed attempts to write a batch (connection or statement).");
    pst_m.retries = wk_metric(WK_METRIC_COUNTER,
        "chat_persist_retries_total", "",
        "Batch writes retried after a backoff.");
    pst_m.abandoned = wk_metric(WK_METRIC_COUNTER,
        "chat_persist_batches_abandoned_total", "",
        "Batches given up at shutdown (their offsets stay uncommitted).");
    pst_m.lag = wk_metric(WK_METRIC_GAUGE,
        "chat_persist_lag_messages", "",
        "Messages not yet written: behind the partitions' ends, plus "
        "the batch.");
    pst_m.batch_ms = wk_metric(WK_METRIC_GAUGE,
        "chat_persist_last_batch_ms", "",
        "Time the last batch took to write, retries included.");
    pst_m.partitions = wk_metric(WK_METRIC_GAUGE,
        "chat_persist_partitions", "",
        "Partitions assigned to this member.");

    return wk_metrics_start(pst_spec.prog, pst_metrics_listen);
}


int
main(int argc, char **argv)
{
    int      rc;
    int64_t  now, next_stats, next_maint, last_stats;

    rc = wk_conf_load(&pst_spec, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }

    wk_log_init(pst_spec.prog, pst_log_level);
    wk_conf_log(&pst_spec);

    if (wk_signals_init() != 0) {
        return 1;
    }

    pst_batch.cap = (size_t) pst_batch_size;
    pst_batch.rows = calloc(pst_batch.cap, sizeof(pst_row_t));
    if (pst_batch.rows == NULL) {
        wk_error("out of memory");
        return 1;
    }

    if (pst_metrics_init() != 0) {
        return 1;
    }

    if (*pst_pid_file && wk_pidfile_write(pst_pid_file) != 0) {
        return 1;
    }

    rc = 1;

    pst_rk = pst_kafka_new();
    if (pst_rk == NULL) {
        goto done;
    }

    now = wk_now_ms();
    last_stats = now;
    next_stats = now + pst_stats_interval * 1000;
    next_maint = now;

    while (!wk_quit) {
        now = wk_now_ms();

        if (now >= next_maint && pst_batch.n == 0) {
            next_maint = now + (pst_maintenance() == 0
                                ? pst_maintenance_interval * 1000 : 60000);
        }

        pst_collect();

        if (pst_batch.n) {
            (void) pst_batch_flush(0);
        }

        now = wk_now_ms();

        pst_update_metrics();

        if (pst_stats_interval && now >= next_stats) {
            pst_log_stats(now - last_stats);
            last_stats = now;
            next_stats = now + pst_stats_interval * 1000;
        }
    }

    wk_info("stopping: writing the last batch (%zu message(s))",
            pst_batch.n);

    rc = 0;

    if (pst_batch.n && pst_batch_flush(0) != 0) {
        pst_batch_clear();
        rc = 1;
    }

    pst_log_stats(wk_now_ms() - last_stats);

    rd_kafka_consumer_close(pst_rk);
    rd_kafka_destroy(pst_rk);

    wk_info("stopped");

done:

    wk_metrics_stop();
    pst_pg_close();
    pst_batch_clear();
    free(pst_batch.rows);

    if (*pst_pid_file) {
        unlink(pst_pid_file);
    }

    return rc;
}
