/* chat_persist_pg.c: chat-persist's PostgreSQL side: one prepared,
 * set-based statement per kind of record over arrays of the batch's
 * values, the batch's transaction sent as one pipeline (one round trip),
 * the record-by-record fallback after a data error, and the partition
 * maintenance. */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "common/wk_log.h"
#include "common/wk_proc.h"
#include "chat_persist.h"


#define PST_COLS          11
#define PST_RCOLS         5
#define PST_LOCK_KEY      "7350289346879488"   /* advisory lock: maintenance */
#define PST_PIPELINE      2                    /* transactions in flight */



typedef struct {
    char        *data;
    size_t       len;
    size_t       cap;
} pst_buf_t;


/* the text array literals of a statement's parameters */
typedef struct {
    pst_buf_t    col[PST_COLS];
    const char  *params[PST_COLS];
} pst_arrays_t;


/*
 * A kind of record and its set-based statement: one array parameter per
 * column, filled from each row by values(); count() says what a result
 * of the statement for n rows adds up to.
 */
typedef struct {
    const char   *stmt;                 /* the prepared statement's name */
    const char   *sql;
    const char   *fast_stmt;            /* the pipeline's, if another */
    const char   *fast_sql;
    int           ncols;
    const char   *what;                 /* for the logs */
    void        (*values)(const pst_row_t *row, const char **v);
    uint64_t    (*count)(PGresult *res, size_t n);
    pst_arrays_t  arrays;
} pst_kind_t;

#define PST_MESSAGES      0                    /* the kinds */
#define PST_RECEIPTS      1
#define PST_BEGIN         2                    /* the other commands */
#define PST_COMMIT        3


/*
 * One statement inserts the rows (skipping every (conversation_id, seq)
 * already stored, whatever its created_at) and moves last_seq and
 * last_message_at of their conversations forward. A message of a direct
 * conversation that the other member's watermarks already cover (its
 * receipt was written before it) is stored as delivered or read. The rows
 * come sorted by (conversation_id, seq) without duplicates (pst_select()),
 * an empty metadata object as NULL (no JSON to parse); the stored ones are
 * found with one index range scan per conversation of the batch, the
 * watermarks with one look-up per (conversation, sender).
 */
#define PST_ROWS_SQL(on_conflict)                                             \
    "WITH v AS (SELECT * FROM unnest($1::bigint[], $2::text[],"              \
    " $3::bigint[], $4::text[], $5::text[], $6::text[], $7::jsonb[],"        \
    " $8::timestamptz[], $9::text[], $10::bigint[], $11::bigint[])"          \
    " AS v (id, conversation_id, seq, sender_id,"                            \
    " content, client_msg_id, metadata, created_at, kind, target_seq,"       \
    " reply_to)), "                                                          \
    "r AS (SELECT conversation_id, min(seq) AS lo, max(seq) AS hi,"          \
    " max(created_at) AS at FROM v GROUP BY conversation_id), "              \
    "e AS MATERIALIZED (SELECT x.conversation_id, x.seq FROM r"              \
    " JOIN LATERAL (SELECT m.conversation_id, m.seq FROM messages m"         \
    " WHERE m.conversation_id = r.conversation_id"                           \
    " AND m.seq BETWEEN r.lo AND r.hi) x ON true), "                         \
    "w AS MATERIALIZED (SELECT s.conversation_id, s.sender_id,"              \
    " x.d, x.r, x.dat, x.rat"                                                \
    " FROM (SELECT conversation_id, sender_id, min(seq) AS lo FROM v"        \
    " GROUP BY conversation_id, sender_id) s"                                \
    " JOIN LATERAL (SELECT cm.last_delivered_seq AS d,"                      \
    " cm.last_read_seq AS r, cm.last_delivered_at AS dat,"                   \
    " cm.last_read_at AS rat FROM conversations c"                           \
    " JOIN conversation_members cm ON cm.conversation_id = c.id"             \
    " WHERE c.id = s.conversation_id AND c.type = 'direct'"                  \
    " AND cm.user_id <> s.sender_id LIMIT 1) x"                              \
    " ON greatest(x.d, x.r) >= s.lo), "                                      \
    "ins AS (INSERT INTO messages (id, conversation_id, seq, sender_id,"     \
    " content, client_msg_id, metadata, created_at, status,"                 \
    " delivered_at, read_at, kind, target_seq, reply_to)"                    \
    " SELECT v.id, v.conversation_id, v.seq, v.sender_id, v.content,"        \
    " v.client_msg_id, coalesce(v.metadata, '{}'), v.created_at,"            \
    " CASE WHEN v.seq <= ww.r THEN 'read'"                                   \
    " WHEN v.seq <= ww.d THEN 'delivered' ELSE 'sent' END,"                  \
    " CASE WHEN v.seq <= ww.d THEN greatest(v.created_at, ww.dat) END,"      \
    " CASE WHEN v.seq <= ww.r THEN greatest(v.created_at, ww.rat) END,"      \
    " v.kind, v.target_seq, v.reply_to"                                      \
    " FROM v LEFT JOIN LATERAL (SELECT * FROM w"                             \
    " WHERE w.conversation_id = v.conversation_id"                           \
    " AND w.sender_id = v.sender_id LIMIT 1) ww ON true"                     \
    " WHERE NOT EXISTS (SELECT 1 FROM e"                                     \
    " WHERE e.conversation_id = v.conversation_id AND e.seq = v.seq)"        \
    on_conflict " RETURNING 1), "                                            \
    "upd AS (UPDATE conversations c"                                         \
    " SET last_seq = greatest(c.last_seq, r.hi),"                            \
    " last_message_at = greatest(c.last_message_at, r.at)"                   \
    " FROM r WHERE c.id = r.conversation_id RETURNING 1) "                   \
    "SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM upd)"

static const char  pst_rows_sql[] = PST_ROWS_SQL(" ON CONFLICT DO NOTHING");

/*
 * The same without ON CONFLICT, for the pipeline: the stored rows are
 * skipped by e already, and ON CONFLICT made every row a speculative
 * insertion (a unique check, a lock, a confirmation: PostgreSQL's CPU per
 * row fell by a fifth without it). Only another writer of the same rows
 * at the same time (two members of the group during a rebalance) makes it
 * fail (unique_violation, after that writer committed); the batch is then
 * written again with pst_rows_sql, which skips them.
 */
static const char  pst_rows_fast_sql[] = PST_ROWS_SQL("");


/*
 * One statement for the receipts of a batch: for each (conversation, user),
 * the greatest delivered and read watermarks move the member's forward
 * (read implies delivered; an older watermark changes nothing). In direct
 * conversations, the other member's messages between the old and the new
 * watermarks become delivered or read, each with the time of the first
 * receipt of the batch that covers it, never moving back. Receipts of
 * unknown conversations or members are ignored.
 */
static const char  pst_receipts_sql[] =
    "WITH v AS (SELECT * FROM unnest($1::text[], $2::text[],"
    " $3::boolean[], $4::bigint[], $5::timestamptz[])"
    " AS v (cid, uid, rd, seq, at)), "
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
    " WHERE o.cid = a.cid AND o.uid = a.uid))";


static PGconn        *pst_pg;
static pst_row_t    **pst_sel;          /* the messages, then the receipts */
static size_t         pst_sel_cap;


/*
 * The transactions in flight, oldest first, each BEGIN, messages,
 * receipts, COMMIT and a sync point; PostgreSQL answers them in order.
 */
typedef struct {
    int         ncmds;
    int         cmd;                    /* the command being answered */
    int         cmds[4];                /* PST_BEGIN, a kind, PST_COMMIT */
    size_t      rows[4];                /* of a kind's statement */
    unsigned    done:1;
    pst_err_e   rc;
    uint64_t    count[2];               /* by kind */
} pst_tx_t;


static pst_tx_t       pst_txs[PST_PIPELINE];
static int            pst_ntxs;         /* in flight */
static int            pst_nread;        /* of them, answered */
static int            pst_flushing;     /* output left to send */


/* array literals */

static int
pst_buf_reserve(pst_buf_t *b, size_t more)
{
    char    *p;
    size_t   cap;

    if (b->len + more <= b->cap) {
        return 0;
    }

    cap = b->cap ? b->cap : 4096;

    while (cap < b->len + more) {
        cap *= 2;
    }

    p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }

    b->data = p;
    b->cap = cap;

    return 0;
}


/* one element of an array literal, after a comma unless first: quoted */
static int
pst_arr_add(pst_buf_t *b, const char *s, int first)
{
    char    *d;
    size_t   len;

    if (s == NULL) {
        if (pst_buf_reserve(b, 5) != 0) {
            return -1;
        }

        memcpy(b->data + b->len, first ? "NULL" : ",NULL", 5 - first);
        b->len += 5 - first;

        return 0;
    }

    len = strlen(s);

    if (pst_buf_reserve(b, 2 * len + 3) != 0) {
        return -1;
    }

    d = b->data + b->len;

    if (!first) {
        *d++ = ',';
    }

    *d++ = '"';

    for ( /* void */ ; *s; s++) {
        if (*s == '"' || *s == '\\') {
            *d++ = '\\';
        }

        *d++ = *s;
    }

    *d++ = '"';
    b->len = (size_t) (d - b->data);

    return 0;
}


/* fills ncols array literals, row by row, from fill(row, values) */
static int
pst_arrays(pst_arrays_t *a, int ncols, pst_row_t **rows, size_t n,
    void (*fill)(const pst_row_t *row, const char **values))
{
    int          c;
    size_t       i;
    const char  *values[PST_COLS];

    for (c = 0; c < ncols; c++) {
        a->col[c].len = 0;

        if (pst_buf_reserve(&a->col[c], 2) != 0) {
            return -1;
        }

        a->col[c].data[a->col[c].len++] = '{';
    }

    for (i = 0; i < n; i++) {
        fill(rows[i], values);

        for (c = 0; c < ncols; c++) {
            if (pst_arr_add(&a->col[c], values[c], i == 0) != 0) {
                return -1;
            }
        }
    }

    for (c = 0; c < ncols; c++) {
        if (pst_buf_reserve(&a->col[c], 2) != 0) {
            return -1;
        }

        a->col[c].data[a->col[c].len++] = '}';
        a->col[c].data[a->col[c].len] = '\0';
        a->params[c] = a->col[c].data;
    }

    return 0;
}


static void
pst_row_values(const pst_row_t *row, const char **v)
{
    v[0] = row->id;
    v[1] = row->conversation_id;
    v[2] = row->seq;
    v[3] = row->sender_id;
    v[4] = row->content;
    v[5] = row->client_msg_id;
    v[6] = strcmp(row->metadata, "{}") == 0 ? NULL : row->metadata;
    v[7] = row->created_at;
    v[8] = row->kind;
    v[9] = row->target;
    v[10] = row->reply_to;
}


static void
pst_receipt_values(const pst_row_t *row, const char **v)
{
    v[0] = row->conversation_id;
    v[1] = row->user_id;
    v[2] = row->read ? "t" : "f";
    v[3] = row->seq;
    v[4] = row->at;
}


static uint64_t
pst_rows_count(PGresult *res, size_t n)
{
    (void) n;

    return PQntuples(res) == 1 ? strtoull(PQgetvalue(res, 0, 0), NULL, 10)
                               : 0;
}


static uint64_t
pst_receipts_count(PGresult *res, size_t n)
{
    if (PQntuples(res) != 1) {
        return 0;
    }

    wk_debug("receipts: %zu record(s), %s watermark(s) moved, "
             "%s message status(es) changed", n, PQgetvalue(res, 0, 0),
             PQgetvalue(res, 0, 1));

    if (!PQgetisnull(res, 0, 2)) {
        wk_debug("receipts ignored: unknown conversation or member: %s",
                 PQgetvalue(res, 0, 2));
    }

    return n;
}


static pst_kind_t  pst_kinds[] = {
    { "chat_persist_rows", pst_rows_sql, "chat_persist_rows_fast",
      pst_rows_fast_sql, PST_COLS, "INSERT INTO messages",
      pst_row_values, pst_rows_count, { { { NULL, 0, 0 } }, { NULL } } },
    { "chat_persist_receipts", pst_receipts_sql, NULL, NULL, PST_RCOLS,
      "UPDATE of the watermarks", pst_receipt_values, pst_receipts_count,
      { { { NULL, 0, 0 } }, { NULL } } }
};


/* the parameters of kind's statement for rows[0, n); NULL: out of memory */
static const char *const *
pst_params(int kind, pst_row_t **rows, size_t n)
{
    pst_kind_t  *k;

    k = &pst_kinds[kind];

    if (pst_arrays(&k->arrays, k->ncols, rows, n, k->values) != 0) {
        wk_error("out of memory");
        return NULL;
    }

    return k->arrays.params;
}


/* statements */

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
pst_check(PGresult *res, PGresult **out, const char *what)
{
    pst_err_e        rc;
    ExecStatusType   st;

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


static pst_err_e
pst_exec(const char *sql, int nparams, const char *const *params,
    PGresult **out, const char *what)
{
    return pst_check(PQexecParams(pst_pg, sql, nparams, NULL, params, NULL,
                                  NULL, 0),
                     out, what);
}


static pst_err_e
pst_prepare(int kind)
{
    char        what[64];
    pst_err_e   rc;
    pst_kind_t *k;

    k = &pst_kinds[kind];

    snprintf(what, sizeof(what), "preparing the %s", k->what);

    rc = pst_check(PQprepare(pst_pg, k->stmt, k->sql, k->ncols, NULL),
                   NULL, what);

    if (rc == PST_OK && k->fast_stmt != NULL) {
        rc = pst_check(PQprepare(pst_pg, k->fast_stmt, k->fast_sql,
                                 k->ncols, NULL),
                       NULL, what);
    }

    return rc;
}


void
pst_pg_close(void)
{
    if (pst_pg != NULL) {
        PQfinish(pst_pg);
        pst_pg = NULL;
    }

    pst_ntxs = 0;
    pst_nread = 0;
    pst_flushing = 0;
}


int
pst_pg_connect(const char *database)
{
    const char  *keys[] = { "connect_timeout", "fallback_application_name",
                            "dbname", NULL };
    const char  *values[] = { "10", "chat-persist", database, NULL };

    if (pst_pg != NULL && PQstatus(pst_pg) == CONNECTION_OK) {
        return 0;
    }

    pst_pg_close();

    if (*database == '\0') {
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
        != PST_OK
        || pst_prepare(PST_MESSAGES) != PST_OK
        || pst_prepare(PST_RECEIPTS) != PST_OK)
    {
        pst_pg_close();
        return -1;
    }

    return 0;
}


/* one statement of the kind over rows[0, n); *count adds its count */
static pst_err_e
pst_write(int kind, pst_row_t **rows, size_t n, uint64_t *count)
{
    PGresult           *res;
    pst_err_e           rc;
    const char *const  *params;

    params = pst_params(kind, rows, n);
    if (params == NULL) {
        return PST_ERR_OTHER;
    }

    res = NULL;
    rc = pst_check(PQexecPrepared(pst_pg, pst_kinds[kind].stmt,
                                  pst_kinds[kind].ncols, params, NULL, NULL,
                                  0),
                   &res, pst_kinds[kind].what);

    if (rc == PST_OK) {
        *count += pst_kinds[kind].count(res, n);
        PQclear(res);
    }

    return rc;
}


/* after a data error: every row in its own savepoint, rejected rows skipped */
static pst_err_e
pst_write_one_by_one(int kind, pst_row_t **rows, size_t n,
    uint64_t *count, pst_skip_pt skip)
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

        rc = pst_write(kind, &rows[i], 1, count);

        if (rc == PST_ERR_DATA) {
            skip(rows[i]);

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


/* by (conversation_id, seq), then the first consumed first */
static int
pst_row_cmp(const void *one, const void *two)
{
    int               rc;
    size_t            l1, l2;
    const pst_row_t  *a, *b;

    a = *(const pst_row_t *const *) one;
    b = *(const pst_row_t *const *) two;

    rc = strcmp(a->conversation_id, b->conversation_id);
    if (rc != 0) {
        return rc;
    }

    /* decimal, without leading zeros */
    l1 = strlen(a->seq);
    l2 = strlen(b->seq);

    if (l1 != l2) {
        return l1 < l2 ? -1 : 1;
    }

    rc = strcmp(a->seq, b->seq);
    if (rc != 0) {
        return rc;
    }

    if (a->partition != b->partition) {
        return a->partition < b->partition ? -1 : 1;
    }

    return a->offset < b->offset ? -1 : (a->offset > b->offset);
}


/*
 * The messages, then the receipts, of rows: pst_sel[0, nm), [nm, nm + nr).
 * The messages are sorted by (conversation_id, seq), each pair once (the
 * others are replays, or lose against the first as they would against a
 * stored row).
 */
static int
pst_select(pst_row_t *rows, size_t n, size_t *nm, size_t *nr)
{
    size_t       i, m, r;
    pst_row_t  **p;

    if (pst_sel_cap < n) {
        p = realloc(pst_sel, n * sizeof(pst_row_t *));
        if (p == NULL) {
            wk_error("out of memory");
            return -1;
        }

        pst_sel = p;
        pst_sel_cap = n;
    }

    for (i = 0, m = 0; i < n; i++) {
        if (rows[i].root != NULL && !rows[i].receipt) {
            pst_sel[m++] = &rows[i];
        }
    }

    if (m > 1) {
        qsort(pst_sel, m, sizeof(pst_row_t *), pst_row_cmp);

        for (i = 1, r = 1; i < m; i++) {
            if (strcmp(pst_sel[i]->conversation_id,
                       pst_sel[r - 1]->conversation_id) != 0
                || strcmp(pst_sel[i]->seq, pst_sel[r - 1]->seq) != 0)
            {
                pst_sel[r++] = pst_sel[i];
            }
        }

        m = r;
    }

    for (i = 0, r = m; i < n; i++) {
        if (rows[i].root != NULL && rows[i].receipt) {
            pst_sel[r++] = &rows[i];
        }
    }

    *nm = m;
    *nr = r - m;

    return 0;
}


/*
 * BEGIN, the messages, the receipts, COMMIT. After a data error in the
 * statement of one kind, the transaction starts again with the records
 * of that kind written one by one.
 */
pst_err_e
pst_pg_write(pst_row_t *rows, size_t n, uint64_t *inserted,
    uint64_t *receipts, pst_skip_pt skip)
{
    int          attempt, single_m, single_r;
    size_t       nm, nr;
    pst_err_e    rc;
    pst_row_t  **msgs, **rcps;

    *inserted = 0;
    *receipts = 0;

    if (pst_select(rows, n, &nm, &nr) != 0) {
        return PST_ERR_OTHER;
    }

    if (nm == 0 && nr == 0) {
        return PST_OK;
    }

    msgs = pst_sel;
    rcps = pst_sel + nm;
    single_m = 0;
    single_r = 0;

    for (attempt = 0; /* void */; attempt++) {
        *inserted = 0;
        *receipts = 0;

        rc = pst_exec("BEGIN", 0, NULL, NULL, "BEGIN");

        if (rc == PST_OK && nm) {
            rc = single_m
                 ? pst_write_one_by_one(PST_MESSAGES, msgs, nm, inserted,
                                        skip)
                 : pst_write(PST_MESSAGES, msgs, nm, inserted);

            if (rc == PST_ERR_DATA && !single_m) {
                single_m = 1;
                goto again;
            }
        }

        if (rc == PST_OK && nr) {
            rc = single_r
                 ? pst_write_one_by_one(PST_RECEIPTS, rcps, nr,
                                        receipts, skip)
                 : pst_write(PST_RECEIPTS, rcps, nr, receipts);

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

    return rc;
}


/* the pipeline */

/* sends kind's statement over n rows unless n is 0; 0: failed */
static int
pst_send(pst_tx_t *tx, int kind, const char *const *params, size_t n)
{
    if (n == 0) {
        return 1;
    }

    tx->rows[tx->ncmds] = n;
    tx->cmds[tx->ncmds++] = kind;

    return PQsendQueryPrepared(pst_pg,
                               pst_kinds[kind].fast_stmt
                               ? pst_kinds[kind].fast_stmt
                               : pst_kinds[kind].stmt,
                               pst_kinds[kind].ncols, params, NULL, NULL, 0);
}


pst_err_e
pst_pg_send(pst_row_t *rows, size_t n)
{
    int                 ok, rc;
    size_t              nm, nr;
    pst_tx_t           *tx;
    const char *const  *pm, *const *pr;

    if (pst_pg == NULL || pst_ntxs == PST_PIPELINE) {
        return PST_ERR_OTHER;
    }

    if (pst_select(rows, n, &nm, &nr) != 0) {
        return PST_ERR_OTHER;
    }

    tx = &pst_txs[pst_ntxs];
    memset(tx, 0, sizeof(pst_tx_t));

    if (nm == 0 && nr == 0) {
        tx->done = 1;               /* answered at once, with nothing */
        pst_ntxs++;

        if (pst_nread == pst_ntxs - 1) {
            pst_nread++;
        }

        return PST_OK;
    }

    pm = NULL;
    pr = NULL;

    if ((nm && (pm = pst_params(PST_MESSAGES, pst_sel, nm)) == NULL)
        || (nr && (pr = pst_params(PST_RECEIPTS, pst_sel + nm, nr)) == NULL))
    {
        return PST_ERR_OTHER;
    }

    ok = 1;

    if (PQpipelineStatus(pst_pg) == PQ_PIPELINE_OFF) {
        ok = PQsetnonblocking(pst_pg, 1) == 0 && PQenterPipelineMode(pst_pg);
    }

    ok = ok
         && PQsendQueryParams(pst_pg, "BEGIN", 0, NULL, NULL, NULL, NULL, 0);
    tx->cmds[tx->ncmds++] = PST_BEGIN;

    ok = ok && pst_send(tx, PST_MESSAGES, pm, nm)
         && pst_send(tx, PST_RECEIPTS, pr, nr);

    ok = ok
         && PQsendQueryParams(pst_pg, "COMMIT", 0, NULL, NULL, NULL, NULL,
                              0)
         && PQpipelineSync(pst_pg);
    tx->cmds[tx->ncmds++] = PST_COMMIT;

    rc = ok ? PQflush(pst_pg) : -1;

    if (rc < 0) {
        (void) pst_pg_error(NULL, "sending a batch");
        pst_pg_close();
        return PST_ERR_CONN;
    }

    pst_flushing = rc == 1;
    pst_ntxs++;

    return PST_OK;
}


static const char *
pst_tx_what(const pst_tx_t *tx)
{
    switch (tx->cmd < tx->ncmds ? tx->cmds[tx->cmd] : -1) {
    case PST_BEGIN:
        return "BEGIN";
    case PST_MESSAGES:
    case PST_RECEIPTS:
        return pst_kinds[tx->cmds[tx->cmd]].what;
    case PST_COMMIT:
        return "COMMIT";
    default:
        return "a batch";
    }
}


static void
pst_tx_result(pst_tx_t *tx, PGresult *res)
{
    int             kind;
    const char     *state;
    ExecStatusType  st;

    st = PQresultStatus(res);
    kind = tx->cmd < tx->ncmds ? tx->cmds[tx->cmd] : -1;

    if (st == PGRES_PIPELINE_ABORTED) {
        return;
    }

    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        if (tx->rc == PST_OK && state && strcmp(state, "25P02") == 0) {
            /*
             * The transaction before this one in the pipeline failed: its
             * COMMIT was skipped and this BEGIN found it still aborted. Not
             * an error of this batch: its rows are written again with the
             * others after the reconnect.
             */
            wk_info("a batch in flight given up after the previous one's "
                    "error");
            tx->rc = PST_ERR_OTHER;
            return;
        }

        if (tx->rc == PST_OK && kind == PST_MESSAGES && state
            && strcmp(state, "23505") == 0)
        {
            /* another writer stored some of these rows meanwhile */
            wk_info("a batch in flight met rows stored meanwhile by another "
                    "writer: written again, skipping them");
            tx->rc = PST_ERR_OTHER;
            return;
        }

        if (tx->rc == PST_OK) {
            tx->rc = pst_pg_error(res, pst_tx_what(tx));
        }

        return;
    }

    if (kind == PST_MESSAGES || kind == PST_RECEIPTS) {
        tx->count[kind] = pst_kinds[kind].count(res, tx->rows[tx->cmd]);
    }
}


/* reads what has come; 0, or -1 when the connection is lost (closed) */
static int
pst_pg_read(void)
{
    int        rc;
    PGresult  *res;
    pst_tx_t  *tx;

    if (pst_flushing) {
        rc = PQflush(pst_pg);

        if (rc < 0) {
            (void) pst_pg_error(NULL, "sending a batch");
            pst_pg_close();
            return -1;
        }

        pst_flushing = rc == 1;
    }

    if (PQconsumeInput(pst_pg) == 0) {
        (void) pst_pg_error(NULL, "reading a batch's results");
        pst_pg_close();
        return -1;
    }

    while (pst_nread < pst_ntxs && !PQisBusy(pst_pg)) {
        tx = &pst_txs[pst_nread];
        res = PQgetResult(pst_pg);

        if (res == NULL) {
            /* the end of one command's results */
            if (++tx->cmd > tx->ncmds) {
                wk_error("PostgreSQL: unexpected end of a pipeline");
                pst_pg_close();
                return -1;
            }

            continue;
        }

        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            tx->done = 1;

            /* the transactions answered at once, with nothing, after it */
            do {
                pst_nread++;
            } while (pst_nread < pst_ntxs && pst_txs[pst_nread].done);

        } else {
            pst_tx_result(tx, res);
        }

        PQclear(res);
    }

    return 0;
}


/*
 * The oldest transaction in flight: waits up to wait_ms (< 0: no limit)
 * for its answer. After an error, the connection is closed (the
 * transactions still in flight are given up: the caller writes their rows
 * again).
 */
pst_err_e
pst_pg_result(int wait_ms, uint64_t *inserted, uint64_t *receipts)
{
    int             left;
    int64_t         deadline;
    pst_tx_t        tx;
    struct pollfd   pfd;

    *inserted = 0;
    *receipts = 0;

    if (pst_ntxs == 0 || pst_pg == NULL) {
        return PST_ERR_CONN;
    }

    deadline = wk_now_ms() + (wait_ms > 0 ? wait_ms : 0);

    while (!pst_txs[0].done) {
        if (pst_pg_read() != 0) {
            return PST_ERR_CONN;
        }

        if (pst_txs[0].done) {
            break;
        }

        if (wait_ms >= 0) {
            left = (int) (deadline - wk_now_ms());
            if (left <= 0) {
                return PST_PENDING;
            }

        } else {
            left = 1000;
        }

        pfd.fd = PQsocket(pst_pg);
        pfd.events = POLLIN | (pst_flushing ? POLLOUT : 0);
        pfd.revents = 0;

        if (poll(&pfd, 1, left) < 0 && errno != EINTR) {
            wk_error("poll() failed: %s", strerror(errno));
            return PST_PENDING;
        }
    }

    tx = pst_txs[0];

    memmove(&pst_txs[0], &pst_txs[1], (pst_ntxs - 1) * sizeof(pst_tx_t));
    pst_ntxs--;
    pst_nread--;

    if (tx.rc != PST_OK) {
        pst_pg_close();
        return tx.rc;
    }

    if (pst_ntxs == 0 && PQpipelineStatus(pst_pg) != PQ_PIPELINE_OFF) {
        if (PQexitPipelineMode(pst_pg) != 1
            || PQsetnonblocking(pst_pg, 0) != 0)
        {
            wk_error("PostgreSQL: leaving pipeline mode failed: %s",
                     PQerrorMessage(pst_pg));
            pst_pg_close();
        }
    }

    *inserted = tx.count[PST_MESSAGES];
    *receipts = tx.count[PST_RECEIPTS];

    return PST_OK;
}


int
pst_pg_inflight(void)
{
    return pst_ntxs;
}


/* monthly partitions ahead, and retention */
int
pst_pg_maintenance(long long ahead, long long retention_months)
{
    int         i;
    char        n[32], *ident, *sql, *drop;
    size_t      len;
    PGresult   *res;
    const char *params[1];

    snprintf(n, sizeof(n), "%lld", ahead);
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

    wk_info("monthly partitions ensured %lld month(s) ahead", ahead);

    if (retention_months == 0) {
        return 0;
    }

    snprintf(n, sizeof(n), "%lld", retention_months);

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
                "(older than %lld months)", ident, retention_months);

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
