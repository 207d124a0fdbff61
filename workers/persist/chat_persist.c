/* chat_persist.c: the persistence worker: a consumer-group member that
 * writes chat.messages and the watermarks of chat.receipts to PostgreSQL
 * in batches and commits the offsets of a batch to Kafka only after its
 * transaction has committed; the next batch fills while one is written. */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "common/wk_conf.h"
#include "common/wk_consumer.h"
#include "common/wk_kafka.h"
#include "common/wk_log.h"
#include "common/wk_metrics.h"
#include "common/wk_proc.h"
#include "chat_persist.h"


#define PST_INFLIGHT      2         /* batches being written at once */


/*
 * rows[0, sent) are being written, as nsent batches of size[i] rows sent
 * at sent_at[i], oldest first; rows[sent, n) fill the next batch, whose
 * first record came at started.
 */
typedef struct {
    pst_row_t   *rows;
    size_t       n;
    size_t       cap;
    size_t       sent;
    int          nsent;
    size_t       size[PST_INFLIGHT];
    int64_t      sent_at[PST_INFLIGHT];
    int64_t      started;
} pst_batch_t;


static wk_consumer_conf_t  pst_cf;

static char       *pst_receipts_topic;
static char       *pst_database;
static long long   pst_batch_size;
static long long   pst_batch_wait;
static long long   pst_pipeline;
static long long   pst_retention_months;
static long long   pst_partitions_ahead;
static long long   pst_maintenance_interval;
static long long   pst_stats_interval;
static long long   pst_retry_max;
static long long   pst_drain_timeout;
static char       *pst_pid_file;
static char       *pst_log_level;
static char       *pst_metrics_listen;


static wk_conf_t  pst_conf[] = {
    WK_CONSUMER_CONF(pst_cf, "chat-persist"),
    { "receipts-topic", WK_CONF_STR, "chat.receipts",
      "topic of the delivered and read receipts (empty: not consumed)",
      &pst_receipts_topic, 0, 0, 0 },
    { "database", WK_CONF_STR, "",
      "libpq connection string or URI (empty: the PG* variables)",
      &pst_database, 0, 0, 1 },
    { "batch-size", WK_CONF_INT, "5000",
      "most records per transaction", &pst_batch_size, 1, 100000, 0 },
    { "batch-wait", WK_CONF_INT, "50",
      "ms to wait for a batch to fill (while none is being written)",
      &pst_batch_wait, 0, 60000, 0 },
    { "pipeline", WK_CONF_INT, "2",
      "batches in flight: 2 sends the next while one is being written",
      &pst_pipeline, 1, PST_INFLIGHT, 0 },
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
    WK_CONSUMER_SESSION_CONF(pst_cf),
    { "retry-max", WK_CONF_INT, "5000",
      "longest ms between PostgreSQL retries", &pst_retry_max, 100,
      600000, 0 },
    { "drain-timeout", WK_CONF_INT, "30000",
      "ms to keep retrying the last batch after SIGTERM",
      &pst_drain_timeout, 0, 3600000, 0 },
    WK_PID_CONF(pst_pid_file),
    WK_LOG_CONF(pst_log_level, "info"),
    WK_METRICS_CONF(pst_metrics_listen),
    { NULL, 0, NULL, NULL, NULL, 0, 0, 0 }
};


static wk_conf_spec_t  pst_spec = {
    "chat-persist",
    "Consumes the messages topic in a consumer group and writes them to\n"
    "PostgreSQL: each batch in one transaction, idempotent on\n"
    "(conversation_id, seq); the batch's offsets are committed to Kafka\n"
    "only after the COMMIT. While a batch is being written, the next one\n"
    "fills (up to batch-size). In the same transaction, the receipts topic\n"
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


static rd_kafka_t        *pst_rk;
static pst_batch_t        pst_batch;
static int64_t            pst_quit_at;
static int                pst_commit_sync;  /* revoking, stopping */

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


static int pst_batch_flush(int64_t deadline);


/* frees rows[0, k) and moves the rest to the front */
static void
pst_batch_remove(size_t k)
{
    size_t  i;

    for (i = 0; i < k; i++) {
        pst_row_free(&pst_batch.rows[i]);
    }

    memmove(pst_batch.rows, pst_batch.rows + k,
            (pst_batch.n - k) * sizeof(pst_row_t));

    pst_batch.n -= k;
}


static void
pst_batch_clear(void)
{
    pst_batch_remove(pst_batch.n);
    pst_batch.sent = 0;
    pst_batch.nsent = 0;
}


static void
pst_batch_add(const rd_kafka_message_t *m)
{
    pst_row_t   *row;
    const char  *bad;

    if (pst_batch.n == pst_batch.sent) {
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
    return row->receipt ? pst_receipts_topic : pst_cf.topics[0];
}


/* a record PostgreSQL rejects: logged and skipped */
static void
pst_skip(const pst_row_t *row)
{
    wk_error("skipping the record at %s [%d] offset %lld: "
             "PostgreSQL rejects it (conversation %s seq %s%s%s)",
             pst_row_topic(row), (int) row->partition,
             (long long) row->offset, row->conversation_id,
             row->seq, row->receipt ? " user " : "",
             row->receipt ? row->user_id : "");

    pst_stats.skipped++;
    wk_metric_add(pst_m.skipped, 1);
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


/*
 * Commits, for each partition of rows[0, k), the offset after its last;
 * async: answered while the consumer is polled.
 */
static void
pst_commit_offsets(size_t k, int async)
{
    size_t                             i;
    rd_kafka_topic_partition_list_t   *offsets;

    offsets = NULL;

    for (i = 0; i < k; i++) {
        if (wk_offsets_add(&offsets, pst_row_topic(&pst_batch.rows[i]),
                           pst_batch.rows[i].partition,
                           pst_batch.rows[i].offset + 1)
            != 0)
        {
            wk_error("out of memory: offsets not committed (they will be "
                     "written again, harmlessly)");

            if (offsets != NULL) {
                rd_kafka_topic_partition_list_destroy(offsets);
            }

            return;
        }
    }

    (void) wk_consumer_commit(offsets, !async);
}


/* rows[0, k) are in PostgreSQL: counted, their offsets committed, freed */
static void
pst_batch_written(size_t k, uint64_t inserted, uint64_t receipts,
    int64_t t0, int async)
{
    pst_stats.inserted += inserted;
    pst_stats.receipts += receipts;
    pst_stats.batches++;
    wk_metric_add(pst_m.inserted, (int64_t) inserted);
    wk_metric_add(pst_m.receipts, (int64_t) receipts);
    wk_metric_add(pst_m.batches, 1);
    wk_metric_set(pst_m.batch_ms, wk_now_ms() - t0);

    wk_debug("batch: %zu record(s), %" PRIu64 " new row(s), %" PRIu64
             " receipt(s) in %" PRId64 " ms", k, inserted, receipts,
             wk_now_ms() - t0);

    pst_commit_offsets(k, async);
    pst_batch_remove(k);
}


/* writing */

/*
 * Writes the whole batch (nothing may be in flight), retrying with backoff
 * until it is written or the deadline passes (deadline 0: none, but a
 * SIGTERM sets one); commits its offsets after the COMMIT. Returns -1
 * when the batch stays unwritten.
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
        if (pst_pg_connect(pst_database) == 0) {
            rc = pst_pg_write(pst_batch.rows, pst_batch.n, &inserted,
                              &receipts, pst_skip);

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

    if (wk_now_ms() - t0 > 1000) {
        wk_info("batch of %zu message(s) written after retries", pst_batch.n);
    }

    pst_batch_written(pst_batch.n, inserted, receipts, t0, 0);

    return 0;
}


/* sends the filling batch to PostgreSQL, without waiting */
static void
pst_batch_send(void)
{
    pst_err_e  rc;

    if (pst_pg_connect(pst_database) == 0) {
        rc = pst_pg_send(pst_batch.rows + pst_batch.sent,
                         pst_batch.n - pst_batch.sent);

        if (rc == PST_OK) {
            (void) pst_records_next();

            pst_batch.size[pst_batch.nsent] = pst_batch.n - pst_batch.sent;
            pst_batch.sent_at[pst_batch.nsent] = wk_now_ms();
            pst_batch.nsent++;
            pst_batch.sent = pst_batch.n;
            return;
        }

        if (rc == PST_ERR_CONN) {
            /* what was in flight is lost with the connection */
            pst_batch.sent = 0;
            pst_batch.nsent = 0;
        }
    }

    pst_stats.failures++;
    wk_metric_add(pst_m.errors, 1);

    if (pst_batch.nsent == 0) {
        (void) pst_batch_flush(0);
    }
}


/*
 * The oldest batch in flight: waits up to wait_ms (< 0: no limit) for its
 * answer. Returns 0 while it is not answered, 1 when it is written, or was
 * not but then was with all that followed it (pst_batch_flush(deadline)),
 * -1 when those stay unwritten.
 */
static int
pst_inflight(int wait_ms, int64_t deadline)
{
    size_t     k;
    uint64_t   inserted, receipts;
    pst_err_e  rc;

    if (pst_batch.nsent == 0) {
        return 1;
    }

    rc = pst_pg_result(wait_ms, &inserted, &receipts);
    if (rc == PST_PENDING) {
        return 0;
    }

    if (rc == PST_OK) {
        k = pst_batch.size[0];

        pst_batch_written(k, inserted, receipts, pst_batch.sent_at[0],
                          !pst_commit_sync);

        pst_batch.sent -= k;
        pst_batch.nsent--;
        memmove(&pst_batch.size[0], &pst_batch.size[1],
                pst_batch.nsent * sizeof(size_t));
        memmove(&pst_batch.sent_at[0], &pst_batch.sent_at[1],
                pst_batch.nsent * sizeof(int64_t));

        return 1;
    }

    /* the connection is closed: everything is written again, in order */
    pst_batch.sent = 0;
    pst_batch.nsent = 0;

    pst_stats.failures++;
    wk_metric_add(pst_m.errors, 1);

    return pst_batch_flush(deadline) == 0 ? 1 : -1;
}


/*
 * Ends the batches in flight within the deadline (0: none), abandons them
 * after that. Returns 0 when they are written, -1 when not.
 */
static int
pst_inflight_end(int64_t deadline)
{
    int      rc;
    int64_t  left;

    /* the offsets are committed before the partitions go, or the process */
    pst_commit_sync = 1;

    while (pst_batch.nsent) {
        left = deadline - wk_now_ms();
        rc = pst_inflight(deadline == 0 ? -1 : left > 0 ? (int) left : 0,
                          deadline);

        if (rc < 0) {
            pst_commit_sync = 0;
            return -1;
        }

        if (rc == 0) {
            wk_error("giving up on a batch of %zu message(s) in flight: "
                     "their offsets are not committed", pst_batch.sent);
            wk_metric_add(pst_m.abandoned, 1);
            pst_pg_close();
            pst_batch.sent = 0;
            pst_batch.nsent = 0;
            pst_commit_sync = 0;
            return -1;
        }
    }

    pst_commit_sync = 0;

    return 0;
}


/* Kafka */

static void
pst_revoke(const rd_kafka_topic_partition_list_t *parts, int failed)
{
    int64_t  deadline;

    deadline = wk_now_ms() + pst_cf.session_timeout / 2;

    if (failed) {
        (void) pst_inflight_end(deadline);
        pst_batch_drop(parts);
        return;
    }

    /* what is written is committed; what cannot be is left unread */
    if (pst_inflight_end(deadline) != 0
        || (pst_batch.n && pst_batch_flush(deadline) != 0))
    {
        pst_batch_drop(parts);
    }
}


static rd_kafka_t *
pst_kafka_new(void)
{
    pst_cf.client_id = pst_spec.prog;
    pst_cf.topics[1] = pst_receipts_topic;
    pst_cf.fatal_quit = 1;
    pst_cf.wake_fd = -1;
    pst_cf.revoke = pst_revoke;

    return wk_consumer_open(&pst_cf);
}


/*
 * Fills the batch: until it is full and fewer than pipeline batches are in
 * flight, or, when none is, until batch-wait after its first record.
 * Meanwhile, the answer of the oldest batch in flight is looked for every
 * 32 records, and waited for when Kafka has nothing or the batch is full.
 */
static void
pst_collect(void)
{
    int                  timeout, unchecked;
    size_t               filling, max;
    int64_t              left, start, now;
    rd_kafka_message_t  *m;

    start = wk_now_ms();
    max = (size_t) pst_batch_size;
    unchecked = 0;

    while (!wk_quit) {
        filling = pst_batch.n - pst_batch.sent;

        if (pst_batch.nsent && (filling >= max || unchecked >= 32)) {
            unchecked = 0;

            /* full, with no room in the pipeline: wait for PostgreSQL */
            if (pst_inflight(filling >= max
                             && pst_batch.nsent == pst_pipeline ? 100 : 0, 0)
                == 0
                && filling >= max && pst_batch.nsent == pst_pipeline)
            {
                continue;
            }

            filling = pst_batch.n - pst_batch.sent;
        }

        now = wk_now_ms();
        timeout = 100;

        if (pst_batch.nsent < pst_pipeline && filling >= max) {
            break;
        }

        /* behind a batch in flight, only a full one is worth sending */
        if (pst_batch.nsent == 0) {
            if (filling) {
                left = pst_batch.started + pst_batch_wait - now;
                if (left <= 0) {
                    break;
                }

                timeout = left < 100 ? (int) left : 100;

            } else if (now - start >= 1000) {
                break;      /* let the caller run its timers */
            }
        }

        m = wk_consumer_poll(pst_batch.nsent ? 0 : timeout);

        if (m == NULL) {
            if (pst_batch.nsent) {
                /* nothing to read: wait for PostgreSQL a little */
                (void) pst_inflight(timeout < 5 ? timeout : 5, 0);
            }

            continue;
        }

        unchecked++;

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
    pst_m.batch_ms = wk_metric(WK_METRIC_GAUGE_MS,
        "chat_persist_last_batch_seconds", "",
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

    rc = wk_start(&pst_spec, argc, argv, &pst_log_level, 1);
    if (rc >= 0) {
        return rc;
    }

    if (pst_records_init() != 0) {
        wk_error("out of memory");
        return 1;
    }

    /* the batches in flight and the next one */
    pst_batch.cap = (PST_INFLIGHT + 1) * (size_t) pst_batch_size;
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

    /* a failure is logged; systemd then times the start out */
    (void) wk_notify("READY=1");

    while (!wk_quit) {
        now = wk_now_ms();

        if (now >= next_maint && pst_batch.n == 0 && pst_batch.nsent == 0) {
            next_maint = now + (pst_pg_connect(pst_database) == 0
                                && pst_pg_maintenance(pst_partitions_ahead,
                                                      pst_retention_months)
                                   == 0
                                ? pst_maintenance_interval * 1000 : 60000);
        }

        pst_collect();

        if (pst_batch.n > pst_batch.sent
            && pst_batch.nsent < pst_pipeline)
        {
            pst_batch_send();
        }

        now = wk_now_ms();

        pst_update_metrics();

        if (pst_stats_interval && now >= next_stats) {
            pst_log_stats(now - last_stats);
            last_stats = now;
            next_stats = now + pst_stats_interval * 1000;
        }
    }

    (void) wk_notify("STOPPING=1");

    wk_info("stopping: writing the last batch (%zu message(s))",
            pst_batch.n);

    rc = 0;

    if (pst_inflight_end(0) != 0
        || (pst_batch.n && pst_batch_flush(0) != 0))
    {
        pst_batch_clear();
        rc = 1;
    }

    pst_log_stats(wk_now_ms() - last_stats);

    wk_consumer_close();

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
