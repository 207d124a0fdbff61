/* chat_push.c: the push worker: a consumer-group member on chat.messages
 * that batches new messages per (user, conversation) for members with no
 * live session and sends them through Firebase Cloud Messaging. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "common/wk_conf.h"
#include "common/wk_consumer.h"
#include "common/wk_kafka.h"
#include "common/wk_log.h"
#include "common/wk_metrics.h"
#include "common/wk_proc.h"
#include "fcm_client.h"
#include "push_presence.h"


#define PSH_HASH_SIZE     4096
#define PSH_USERS_MAX     1024      /* recipients per presence call */


/*
 * A consumed record. Its offset may be committed once no batch refers to
 * it any more and every record before it on its partition is done too.
 */
typedef struct psh_msg_s  psh_msg_t;

struct psh_msg_s {
    psh_msg_t    *next;             /* in its partition's queue */
    int32_t       partition;        /* -1: the partition was revoked */
    int64_t       offset;
    long          refs;             /* batches waiting to send it */
};


typedef struct {
    psh_msg_t    *head;
    psh_msg_t    *tail;
    int64_t       done;             /* next offset to commit, -1: none */
    int           dirty;
} psh_part_t;


/* the notification of one user about one conversation */
typedef struct psh_batch_s  psh_batch_t;

struct psh_batch_s {
    psh_batch_t  *hnext;            /* open batches by (user, conv) */
    psh_batch_t  *qnext;            /* open batches by deadline */
    char         *user;
    char         *conv;
    char         *name;             /* the sender's name or the group's */
    char         *sender;           /* the newest message's sender name */
    char         *text;             /* the newest message's text */
    int           group;
    int64_t       seq;
    long          count;
    int64_t       deadline;
    psh_msg_t   **msgs;
    size_t        nmsgs;
    size_t        cap;
    long          sends;            /* pending FCM sends */
    unsigned      hash;
};


typedef struct {
    psh_batch_t  *batch;
    char         *token;
} psh_send_t;


static wk_consumer_conf_t  psh_cf;

static char       *psh_database;
static char       *psh_redis;
static long long   psh_redis_db;
static long long   psh_window;
static int         psh_preview;
static long long   psh_preview_length;
static char       *psh_credentials;
static char       *psh_fcm_url;
static char       *psh_project_id;
static long long   psh_max_in_flight;
static long long   psh_retries;
static long long   psh_retry_base;
static long long   psh_retry_max;
static long long   psh_timeout;
static long long   psh_max_pending;
static long long   psh_drain_timeout;
static char       *psh_pid_file;
static char       *psh_log_level;
static char       *psh_metrics_listen;


static wk_conf_t  psh_conf[] = {
    WK_CONSUMER_CONF(psh_cf, "chat-push"),
    { "database", WK_CONF_STR, "",
      "libpq connection string or URI (empty: the PG* variables)",
      &psh_database, 0, 0, 1 },
    { "redis", WK_CONF_STR, "127.0.0.1:6379",
      "Redis of the gateways (host:port, or a unix socket path)",
      &psh_redis, 0, 0, 0 },
    { "redis-db", WK_CONF_INT, "0", "Redis database number",
      &psh_redis_db, 0, 1000, 0 },
    { "window", WK_CONF_INT, "2000",
      "ms a batch stays open after its first message", &psh_window,
      0, 3600000, 0 },
    { "preview", WK_CONF_BOOL, "true",
      "show the message text in the notification (false: privacy)",
      &psh_preview, 0, 0, 0 },
    { "preview-length", WK_CONF_INT, "100",
      "characters of the text shown, then an ellipsis",
      &psh_preview_length, 1, 4000, 0 },
    { "fcm-credentials", WK_CONF_STR, "",
      "service-account key file (env CHAT_FCM_CREDENTIALS); none: dry run",
      &psh_credentials, 0, 0, 0 },
    { "fcm-url", WK_CONF_STR, "https://fcm.googleapis.com",
      "FCM base URL (env CHAT_FCM_URL)", &psh_fcm_url, 0, 0, 0 },
    { "project-id", WK_CONF_STR, "",
      "Firebase project (default: the key file's project_id)",
      &psh_project_id, 0, 0, 0 },
    { "max-in-flight", WK_CONF_INT, "100",
      "FCM requests at once", &psh_max_in_flight, 1, 10000, 0 },
    { "retries", WK_CONF_INT, "5",
      "retries of a send after 429, 5xx or a network error",
      &psh_retries, 0, 100, 0 },
    { "retry-base", WK_CONF_INT, "1000",
      "ms before the first retry, doubled each time (or Retry-After)",
      &psh_retry_base, 1, 3600000, 0 },
    { "retry-max", WK_CONF_INT, "60000",
      "longest ms between retries", &psh_retry_max, 1, 3600000, 0 },
    { "timeout", WK_CONF_INT, "10000",
      "ms per FCM or OAuth2 request", &psh_timeout, 100, 600000, 0 },
    { "max-pending", WK_CONF_INT, "10000",
      "stop consuming while this many messages are unfinished",
      &psh_max_pending, 1, 10000000, 0 },
    WK_CONSUMER_SESSION_CONF(psh_cf),
    { "drain-timeout", WK_CONF_INT, "30000",
      "ms to finish open batches and sends after SIGTERM",
      &psh_drain_timeout, 0, 3600000, 0 },
    WK_PID_CONF(psh_pid_file),
    WK_LOG_CONF(psh_log_level, "info"),
    WK_METRICS_CONF(psh_metrics_listen),
    { NULL, 0, NULL, NULL, NULL, 0, 0, 0 }
};


static wk_conf_spec_t  psh_spec = {
    "chat-push",
    "Consumes the messages topic in its own consumer group. Each member of\n"
    "the conversation but the sender who has no live session (Redis key\n"
    "chat:p:{<user>}) gets one notification per conversation and window on\n"
    "each of its devices, through FCM HTTP v1. A Kafka offset is committed\n"
    "once every notification of its message was sent or given up. Without\n"
    "credentials it logs what it would send. SIGTERM finishes the open\n"
    "windows and the sends, then exits; a second SIGTERM exits at once.",
    psh_conf,
    "kafka.", "any librdkafka property, e.g. kafka.security.protocol = ssl",
    wk_kafka_extra, NULL
};


static PGconn         *psh_pg;

static psh_part_t     *psh_parts;
static int32_t         psh_nparts;
static long            psh_unfinished;      /* messages not committable */
static int64_t         psh_last_commit;

static psh_batch_t    *psh_hash[PSH_HASH_SIZE];
static psh_batch_t    *psh_queue_head;
static psh_batch_t    *psh_queue_tail;
static long            psh_open;            /* batches open or sending */
static int             psh_in_send_cb;      /* no fcm_poll() from inside */
static int             psh_exiting;         /* offsets no longer committed */

static struct {
    uint64_t  consumed;
    uint64_t  notified;
    uint64_t  sent;
    uint64_t  failed;
    uint64_t  deleted;
    uint64_t  online;
} psh_stats;



/* PostgreSQL */

static void
psh_pg_close(void)
{
    if (psh_pg) {
        PQfinish(psh_pg);
        psh_pg = NULL;
    }
}


/*
 * Runs a query; while PostgreSQL is unavailable it retries with backoff,
 * and the FCM transfers go on meanwhile. NULL only when quitting at once
 * or the query itself is wrong (logged).
 */
static PGresult *
psh_query(const char *sql, int nparams, const char *const *params)
{
    long            delay;
    PGresult       *res;
    ExecStatusType  st;
    const char     *state;

    delay = 100;

    for ( ;; ) {
        if (wk_quit > 1) {
            return NULL;
        }

        if (psh_pg == NULL) {
            psh_pg = PQconnectdb(psh_database);

            if (PQstatus(psh_pg) != CONNECTION_OK) {
                wk_warn("cannot connect to PostgreSQL: %s",
                        PQerrorMessage(psh_pg));
                psh_pg_close();
                goto again;
            }
        }

        res = PQexecParams(psh_pg, sql, nparams, NULL, params, NULL, NULL,
                           0);
        st = PQresultStatus(res);

        if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            return res;
        }

        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        wk_warn("query failed: %s", PQresultErrorMessage(res));

        if (PQstatus(psh_pg) != CONNECTION_OK) {
            psh_pg_close();

        } else if (state != NULL && strncmp(state, "08", 2) != 0
                   && strncmp(state, "53", 2) != 0
                   && strncmp(state, "57", 2) != 0
                   && strncmp(state, "40", 2) != 0)
        {
            PQclear(res);
            return NULL;
        }

        PQclear(res);

    again:

        if (psh_in_send_cb) {
            wk_nap_ms(delay);

        } else {
            fcm_poll(delay, -1);
        }

        delay = delay * 2 > 5000 ? 5000 : delay * 2;
    }
}



/* offsets */

static psh_part_t *
psh_part(int32_t partition)
{
    int32_t      i, n;
    psh_part_t  *p;

    if (partition < psh_nparts) {
        return &psh_parts[partition];
    }

    n = partition + 16;

    p = realloc(psh_parts, n * sizeof(psh_part_t));
    if (p == NULL) {
        return NULL;
    }

    for (i = psh_nparts; i < n; i++) {
        p[i].head = NULL;
        p[i].tail = NULL;
        p[i].done = -1;
        p[i].dirty = 0;
    }

    psh_parts = p;
    psh_nparts = n;

    return &psh_parts[partition];
}


/* what is done at the head of the partition's queue becomes committable */
static void
psh_advance(int32_t partition)
{
    psh_msg_t   *m;
    psh_part_t  *p;

    p = &psh_parts[partition];

    while (p->head != NULL && p->head->refs == 0) {
        m = p->head;
        p->head = m->next;

        if (p->head == NULL) {
            p->tail = NULL;
        }

        p->done = m->offset + 1;
        p->dirty = 1;
        psh_unfinished--;
        free(m);
    }
}


static void
psh_msg_release(psh_msg_t *m)
{
    if (--m->refs > 0) {
        return;
    }

    if (m->partition < 0) {
        free(m);
        return;
    }

    psh_advance(m->partition);
}


static void
psh_commit(int sync)
{
    int32_t                            i;
    rd_kafka_topic_partition_list_t   *offsets;

    offsets = NULL;

    for (i = 0; i < psh_nparts; i++) {
        if (!psh_parts[i].dirty) {
            continue;
        }

        if (wk_offsets_add(&offsets, psh_cf.topics[0], i, psh_parts[i].done)
            != 0)
        {
            break;      /* out of memory: committed next time */
        }

        psh_parts[i].dirty = 0;
    }

    (void) wk_consumer_commit(offsets, sync);
}


/* the partition went to another member: its records are no longer ours */
static void
psh_part_drop(int32_t partition)
{
    psh_msg_t   *m, *next;
    psh_part_t  *p;

    if (partition >= psh_nparts) {
        return;
    }

    p = &psh_parts[partition];

    for (m = p->head; m; m = next) {
        next = m->next;
        psh_unfinished--;

        if (m->refs == 0) {
            free(m);

        } else {
            m->partition = -1;     /* freed by its last batch */
        }
    }

    p->head = NULL;
    p->tail = NULL;
    p->done = -1;
    p->dirty = 0;
}



/* batches */

static unsigned
psh_hash_key(const char *user, const char *conv)
{
    unsigned  h;

    h = 2166136261u;

    while (*user) {
        h = (h ^ (unsigned char) *user++) * 16777619u;
    }

    h = (h ^ 0xff) * 16777619u;

    while (*conv) {
        h = (h ^ (unsigned char) *conv++) * 16777619u;
    }

    return h;
}


static void
psh_batch_free(psh_batch_t *b)
{
    size_t  i;

    for (i = 0; i < b->nmsgs; i++) {
        psh_msg_release(b->msgs[i]);
    }

    free(b->user);
    free(b->conv);
    free(b->name);
    free(b->sender);
    free(b->text);
    free(b->msgs);
    free(b);

    psh_open--;
}


static int
psh_set(char **field, const char *value)
{
    char  *s;

    s = strdup(value ? value : "");
    if (s == NULL) {
        return -1;
    }

    free(*field);
    *field = s;

    return 0;
}


/* the text cut to preview-length characters (UTF-8), with an ellipsis */
static char *
psh_truncate(const char *text)
{
    char         *s;
    size_t        n, i;
    long long     chars;
    const char   *p;

    chars = 0;

    for (p = text; *p; p++) {
        if ((*p & 0xc0) != 0x80) {
            if (chars == psh_preview_length) {
                break;
            }

            chars++;
        }
    }

    n = (size_t) (p - text);

    s = malloc(n + sizeof("\xe2\x80\xa6"));
    if (s == NULL) {
        return NULL;
    }

    memcpy(s, text, n);
    i = n;

    if (*p) {
        memcpy(s + i, "\xe2\x80\xa6", 3);
        i += 3;
    }

    s[i] = '\0';

    return s;
}


/* adds the message to the open batch of (user, conv), or opens one */
static int
psh_batch_add(const char *user, const char *conv, psh_msg_t *m,
    int64_t seq, const char *sender, const char *name, int group,
    const char *text)
{
    char         *t;
    unsigned      h;
    psh_msg_t   **msgs;
    psh_batch_t  *b;

    h = psh_hash_key(user, conv);

    for (b = psh_hash[h % PSH_HASH_SIZE]; b; b = b->hnext) {
        if (b->hash == h && strcmp(b->user, user) == 0
            && strcmp(b->conv, conv) == 0)
        {
            break;
        }
    }

    if (b == NULL) {
        b = calloc(1, sizeof(psh_batch_t));
        if (b == NULL) {
            return -1;
        }

        b->hash = h;
        b->user = strdup(user);
        b->conv = strdup(conv);

        if (b->user == NULL || b->conv == NULL) {
            free(b->user);
            free(b->conv);
            free(b);
            return -1;
        }

        b->deadline = wk_now_ms() + psh_window;
        b->hnext = psh_hash[h % PSH_HASH_SIZE];
        psh_hash[h % PSH_HASH_SIZE] = b;

        if (psh_queue_tail) {
            psh_queue_tail->qnext = b;
        } else {
            psh_queue_head = b;
        }

        psh_queue_tail = b;
        psh_open++;

        wk_debug("batch %s/%s opened", user, conv);
    }

    if (b->nmsgs == b->cap) {
        msgs = realloc(b->msgs, (b->cap ? b->cap * 2 : 4)
                                * sizeof(psh_msg_t *));
        if (msgs == NULL) {
            return -1;
        }

        b->msgs = msgs;
        b->cap = b->cap ? b->cap * 2 : 4;
    }

    t = psh_truncate(text);
    if (t == NULL) {
        return -1;
    }

    if (psh_set(&b->name, name) != 0 || psh_set(&b->sender, sender) != 0) {
        free(t);
        return -1;
    }

    if (seq >= b->seq) {
        free(b->text);
        b->text = t;
        b->seq = seq;

    } else {
        free(t);
    }

    b->group = group;
    b->count++;
    b->msgs[b->nmsgs++] = m;
    m->refs++;

    return 0;
}


static void
psh_unhash(psh_batch_t *b)
{
    psh_batch_t  **pp;

    for (pp = &psh_hash[b->hash % PSH_HASH_SIZE]; *pp; pp = &(*pp)->hnext) {
        if (*pp == b) {
            *pp = b->hnext;
            return;
        }
    }
}


/*
 * The FCM v1 message of a batch:
 *   title  "Alice" or the group's name
 *   body   the newest text (a group's: "Alice: text") when there is one
 *          message, else "3 new messages from Alice" (or the group's name);
 *          without the preview: "New message from Alice" / "3 new ..."
 *   data   conversationId, seq (the newest), count
 * and the collapse key conversationId for Android, iOS and the web.
 */
static json_t *
psh_message(psh_batch_t *b)
{
    char    seq[24], count[24], *body;
    size_t  len;
    json_t  *msg, *notification;

    snprintf(seq, sizeof(seq), "%" PRId64, b->seq);
    snprintf(count, sizeof(count), "%ld", b->count);

    len = strlen(b->name) + strlen(b->sender) + strlen(b->text) + 64;

    body = malloc(len);
    if (body == NULL) {
        return NULL;
    }

    if (b->count > 1) {
        snprintf(body, len, "%ld new messages from %s", b->count, b->name);

    } else if (!psh_preview) {
        snprintf(body, len, "New message from %s", b->name);

    } else if (b->group) {
        snprintf(body, len, "%s: %s", b->sender, b->text);

    } else {
        snprintf(body, len, "%s", b->text);
    }

    notification = json_pack("{s:s, s:s}", "title", b->name, "body", body);
    free(body);

    msg = json_pack("{s:o, s:{s:s, s:s, s:s}, s:{s:s}, s:{s:{s:s}},"
                    " s:{s:{s:s}}}",
                    "notification", notification,
                    "data", "conversationId", b->conv, "seq", seq,
                            "count", count,
                    "android", "collapse_key", b->conv,
                    "apns", "headers", "apns-collapse-id", b->conv,
                    "webpush", "notification", "tag", b->conv);

    return msg;
}


/* FCM outcomes for Prometheus: chat_push_fcm_sends_total{outcome} */
static void
psh_metric_outcome(const char *outcome)
{
    wk_metric_add(wk_metric_label(WK_METRIC_COUNTER,
                                  "chat_push_fcm_sends_total", "outcome",
                                  outcome, "FCM sends by final outcome."),
                  1);
}


static void
psh_batch_sent(void *data, fcm_result_e result)
{
    psh_send_t   *s = data;
    psh_batch_t  *b;
    PGresult     *res;
    const char   *params[2];

    b = s->batch;

    switch (result) {

    case FCM_SENT:
        psh_stats.sent++;
        psh_metric_outcome("sent");
        break;

    case FCM_BAD_TOKEN:
        params[0] = s->token;
        params[1] = b->user;

        /* only if it still is this user's: it may have moved since */
        psh_in_send_cb = 1;
        res = psh_query("DELETE FROM devices WHERE token = $1"
                        " AND user_id = $2", 2, params);
        psh_in_send_cb = 0;

        if (res != NULL) {
            wk_info("deleted a device token of %s: FCM rejects it",
                    b->user);
            psh_stats.deleted++;
            psh_metric_outcome("token_deleted");
            PQclear(res);
        }

        break;

    default:
        if (psh_exiting) {
            wk_warn("notification of %s about %s (seq %" PRId64 ") not "
                    "sent before exiting: its messages are consumed again "
                    "at the next start", b->user, b->conv, b->seq);
            break;
        }

        psh_stats.failed++;
        psh_metric_outcome("given_up");
        wk_error("notification of %s about %s (seq %" PRId64 ") not sent "
                 "to one device: given up", b->user, b->conv, b->seq);
        break;
    }

    free(s->token);
    free(s);

    if (--b->sends == 0) {
        psh_batch_free(b);
    }
}


/* the window closed: send to every device, unless the user came online */
static void
psh_batch_close(psh_batch_t *b)
{
    int          online, i, n;
    json_t      *msg;
    PGresult    *res;
    psh_send_t  *s;
    const char  *params[1];

    psh_unhash(b);

    psh_online(&b->user, 1, &online);

    if (online) {
        wk_info("%s came online: no notification about %s (%ld message(s))",
                b->user, b->conv, b->count);
        psh_stats.online++;
        psh_batch_free(b);
        return;
    }

    params[0] = b->user;

    res = psh_query("SELECT token FROM devices WHERE user_id = $1"
                    " ORDER BY token", 1, params);

    if (res == NULL) {
        wk_error("no devices of %s: the query failed; %s not notified",
                 b->user, b->conv);
        psh_batch_free(b);
        return;
    }

    n = PQntuples(res);

    if (n == 0) {
        wk_debug("%s has no devices", b->user);
        PQclear(res);
        psh_batch_free(b);
        return;
    }

    msg = psh_message(b);
    if (msg == NULL) {
        wk_error("out of memory: %s not notified about %s", b->user,
                 b->conv);
        PQclear(res);
        psh_batch_free(b);
        return;
    }

    psh_stats.notified++;

    wk_info("notifying %s about %s: %ld message(s), seq %" PRId64
            ", %d device(s)", b->user, b->conv, b->count, b->seq, n);

    b->sends = 1;   /* held until every send is queued */

    for (i = 0; i < n; i++) {
        s = calloc(1, sizeof(psh_send_t));

        if (s != NULL) {
            s->batch = b;
            s->token = strdup(PQgetvalue(res, i, 0));
        }

        if (s == NULL || s->token == NULL
            || fcm_send(s->token, msg, psh_batch_sent, s) != 0)
        {
            wk_error("out of memory: a device of %s not notified", b->user);

            if (s) {
                free(s->token);
                free(s);
            }

            continue;
        }

        b->sends++;
    }

    json_decref(msg);
    PQclear(res);

    if (--b->sends == 0) {
        psh_batch_free(b);
    }
}


static void
psh_close_due(int64_t now, int all)
{
    psh_batch_t  *b;

    while (psh_queue_head != NULL
           && (all || psh_queue_head->deadline <= now))
    {
        b = psh_queue_head;
        psh_queue_head = b->qnext;

        if (psh_queue_head == NULL) {
            psh_queue_tail = NULL;
        }

        psh_batch_close(b);
    }
}



/* messages */

static const char  psh_members_sql[] =
    "SELECT c.type, coalesce(c.name, ''),"
    " coalesce((SELECT u.display_name FROM users u WHERE u.id = $2), ''),"
    " cm.user_id"
    " FROM conversations c"
    " JOIN conversation_members cm ON cm.conversation_id = c.id"
    " WHERE c.id = $1 AND cm.user_id <> $2"
    " ORDER BY cm.user_id";


static void
psh_process(psh_msg_t *m, const rd_kafka_message_t *km)
{
    int           i, n, group, *online;
    char        **users;
    json_t       *root, *v;
    int64_t       seq;
    PGresult     *res;
    const char   *conv, *sender, *text, *params[2], *name, *sname;
    json_error_t  jerr;

    root = json_loadb(km->payload, km->len, 0, &jerr);

    conv = json_string_value(json_object_get(root, "conversationId"));
    sender = json_string_value(json_object_get(root, "senderId"));
    text = json_string_value(json_object_get(root, "content"));
    v = json_object_get(root, "seq");

    /* a change of a message (PROTOCOL.md section 10) is never pushed */

    if (json_is_string(json_object_get(root, "type"))
        && json_object_get(root, "target") != NULL)
    {
        wk_debug("no push for a change of a message (partition %d, "
                 "offset %" PRId64 ")", (int) km->partition, km->offset);
        json_decref(root);
        return;
    }

    if (conv == NULL || sender == NULL || !json_is_integer(v)
        || json_string_value(json_object_get(root, "type")) == NULL
        || strcmp(json_string_value(json_object_get(root, "type")),
                  "message") != 0)
    {
        wk_warn("skipped a record that is not a message (partition %d, "
                "offset %" PRId64 ")", (int) km->partition, km->offset);
        json_decref(root);
        return;
    }

    seq = json_integer_value(v);
    text = text ? text : "";

    params[0] = conv;
    params[1] = sender;

    res = psh_query(psh_members_sql, 2, params);

    if (res == NULL) {
        wk_error("no members of %s: the query failed; seq %" PRId64
                 " not notified", conv, seq);
        json_decref(root);
        return;
    }

    n = PQntuples(res);

    users = calloc(n + 1, sizeof(char *));
    online = calloc(n + 1, sizeof(int));

    if (users == NULL || online == NULL) {
        wk_error("out of memory: %s seq %" PRId64 " not notified", conv,
                 seq);
        goto done;
    }

    for (i = 0; i < n; i++) {
        users[i] = PQgetvalue(res, i, 3);
    }

    for (i = 0; i < n; i += PSH_USERS_MAX) {
        psh_online(users + i, n - i < PSH_USERS_MAX ? n - i : PSH_USERS_MAX,
                   online + i);
    }

    for (i = 0; i < n; i++) {
        if (online[i]) {
            wk_debug("%s is online: no push for %s seq %" PRId64, users[i],
                     conv, seq);
            continue;
        }

        group = strcmp(PQgetvalue(res, i, 0), "group") == 0;
        sname = *PQgetvalue(res, i, 2) ? PQgetvalue(res, i, 2) : sender;
        name = group && *PQgetvalue(res, i, 1) ? PQgetvalue(res, i, 1)
                                                : sname;

        if (psh_batch_add(users[i], conv, m, seq, sname, name, group, text)
            != 0)
        {
            wk_error("out of memory: %s not notified about %s seq %" PRId64,
                     users[i], conv, seq);
        }
    }

done:

    free(users);
    free(online);
    PQclear(res);
    json_decref(root);
}


static void
psh_consume(rd_kafka_message_t *km)
{
    psh_msg_t   *m;
    psh_part_t  *p;

    p = psh_part(km->partition);
    m = calloc(1, sizeof(psh_msg_t));

    if (p == NULL || m == NULL) {
        wk_error("out of memory");
        free(m);
        wk_quit = 2;
        return;
    }

    m->partition = km->partition;
    m->offset = km->offset;
    m->refs = 1;    /* held while it is processed */

    if (p->tail) {
        p->tail->next = m;
    } else {
        p->head = m;
    }

    p->tail = m;
    psh_unfinished++;
    psh_stats.consumed++;

    psh_process(m, km);

    psh_msg_release(m);
}



/* Kafka */

static void
psh_revoke(const rd_kafka_topic_partition_list_t *parts, int failed)
{
    int  i;

    if (failed) {
        return;
    }

    /* what is done is committed; the rest is the new owner's */
    psh_commit(1);

    for (i = 0; i < parts->cnt; i++) {
        psh_part_drop(parts->elems[i].partition);
    }
}


static rd_kafka_t *
psh_kafka_new(int wake_fd)
{
    psh_cf.client_id = psh_spec.prog;
    psh_cf.fatal_quit = 2;
    psh_cf.wake_fd = wake_fd;
    psh_cf.revoke = psh_revoke;

    return wk_consumer_open(&psh_cf);
}


/* takes what the consumer queue has, as long as there is room */
static void
psh_poll_kafka(void)
{
    int                  n;
    rd_kafka_message_t  *km;

    for (n = 0; n < 1000 && psh_unfinished < psh_max_pending; n++) {
        km = wk_consumer_poll(0);
        if (km == NULL) {
            return;
        }

        psh_consume(km);
        rd_kafka_message_destroy(km);
    }
}


static void
psh_drain_pipe(int fd)
{
    char  buf[256];

    while (read(fd, buf, sizeof(buf)) > 0) {
        /* void */
    }
}


static long
psh_timeout_ms(int64_t now)
{
    long  t;

    t = 100;

    if (psh_queue_head != NULL && psh_queue_head->deadline - now < t) {
        t = psh_queue_head->deadline > now
            ? (long) (psh_queue_head->deadline - now) : 0;
    }

    return t;
}


int
main(int argc, char **argv)
{
    int           rc, pipefd[2];
    int64_t       now, drain_until;
    wk_conf_t    *c;
    fcm_conf_t    fc;
    const char   *env;
    psh_batch_t  *b;

    /* the environment gives the defaults of the FCM settings */
    for (c = psh_conf; c->name; c++) {
        if (strcmp(c->name, "fcm-credentials") == 0
            && (env = getenv("CHAT_FCM_CREDENTIALS")) != NULL)
        {
            c->dflt = env;

        } else if (strcmp(c->name, "fcm-url") == 0
                   && (env = getenv("CHAT_FCM_URL")) != NULL && *env)
        {
            c->dflt = env;
        }
    }

    rc = wk_start(&psh_spec, argc, argv, &psh_log_level, 1);
    if (rc >= 0) {
        return rc;
    }

    if (wk_metrics_start(psh_spec.prog, psh_metrics_listen) != 0) {
        return 1;
    }

    if (pipe(pipefd) != 0
        || fcntl(pipefd[0], F_SETFL, O_NONBLOCK) != 0
        || fcntl(pipefd[1], F_SETFL, O_NONBLOCK) != 0)
    {
        wk_error("pipe() failed: %s", strerror(errno));
        return 1;
    }

    fc.credentials = psh_credentials;
    fc.base_url = psh_fcm_url;
    fc.project_id = psh_project_id;
    fc.max_in_flight = (long) psh_max_in_flight;
    fc.retries = (long) psh_retries;
    fc.retry_base = (long) psh_retry_base;
    fc.retry_max = (long) psh_retry_max;
    fc.timeout = (long) psh_timeout;

    if (fcm_init(&fc) != 0) {
        return 1;
    }

    if (*psh_pid_file && wk_pidfile_write(psh_pid_file) != 0) {
        return 1;
    }

    rc = 1;

    if (psh_kafka_new(pipefd[1]) == NULL) {
        goto done;
    }

    if (psh_presence_init(psh_redis, psh_redis_db) != 0) {
        wk_warn("Redis is not available yet: trying again per message");
    }

    wk_info("started: window %lld ms, preview %s", psh_window,
            psh_preview ? "on" : "off");

    /* a failure is logged; systemd then times the start out */
    (void) wk_notify("READY=1");

    while (!wk_quit) {
        psh_poll_kafka();

        now = wk_now_ms();
        psh_close_due(now, 0);

        if (now - psh_last_commit >= 100) {
            psh_commit(0);
            psh_last_commit = now;
        }

        fcm_poll(psh_timeout_ms(wk_now_ms()), pipefd[0]);
        psh_drain_pipe(pipefd[0]);
    }

    (void) wk_notify("STOPPING=1");

    wk_info("stopping: finishing %ld batch(es) and %ld send(s)", psh_open,
            fcm_pending());

    drain_until = wk_now_ms() + psh_drain_timeout;

    while (wk_quit < 2 && (psh_open > 0 || fcm_pending() > 0)) {
        now = wk_now_ms();

        if (now >= drain_until) {
            wk_error("drain timeout: %ld batch(es) not finished; their "
                     "messages are consumed again at the next start",
                     psh_open);
            break;
        }

        psh_close_due(now, 0);
        fcm_poll(psh_timeout_ms(now), -1);
        psh_commit(0);
    }

    psh_commit(1);
    psh_exiting = 1;

    wk_info("stats: %" PRIu64 " consumed, %" PRIu64 " notifications, %"
            PRIu64 " sent, %" PRIu64 " failed, %" PRIu64 " tokens deleted, %"
            PRIu64 " skipped (online at the end of the window)",
            psh_stats.consumed, psh_stats.notified, psh_stats.sent,
            psh_stats.failed, psh_stats.deleted, psh_stats.online);

    wk_consumer_close();

    rc = 0;

    wk_info("stopped");

done:

    psh_exiting = 1;
    fcm_cleanup();

    /* batches whose window never closed */
    while (psh_queue_head != NULL) {
        b = psh_queue_head;
        psh_queue_head = b->qnext;
        psh_batch_free(b);
    }

    psh_pg_close();

    psh_presence_close();
    wk_metrics_stop();

    free(psh_parts);
    close(pipefd[0]);
    close(pipefd[1]);

    return rc;
}
