/* ngx_chat_receipts.c: delivered watermarks: coalesced per worker, then
 * recorded in Redis and relayed to the other members in one batch. */

#include "ngx_chat_receipts.h"
#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_kafka.h"
#include "ngx_chat_fanout.h"
#include "ngx_chat_keys.h"
#include "ngx_chat_lua.h"


#define NGX_CHAT_RECEIPTS_CONV_MAX  36


/* the highest seq of one conversation a user got since the last flush */
typedef struct {
    ngx_str_node_t            sn;          /* key: "<user>\n<conv>" */
    ngx_queue_t               link;
    uint64_t                  seq;
    size_t                    user_len;
    ngx_msec_t                added;       /* the first since the last
                                              flush: due FLUSH after */
} ngx_chat_receipt_t;


static void ngx_chat_receipts_delivered(ngx_chat_session_t *s, u_char *conv,
    size_t conv_len, uint64_t seq);
static void ngx_chat_receipts_timer_handler(ngx_event_t *ev);
static void ngx_chat_receipts_flush(ngx_uint_t all_due);
static void ngx_chat_receipts_reply(redisReply *reply, void *data);


static ngx_rbtree_t        ngx_chat_receipts_tree;
static ngx_rbtree_node_t   ngx_chat_receipts_sentinel;
static ngx_queue_t         ngx_chat_receipts_queue;
static ngx_event_t         ngx_chat_receipts_timer;
static ngx_connection_t    ngx_chat_receipts_dummy;  /* for the timer's debug
                                                   log: fd -1 */
static ngx_uint_t          ngx_chat_receipts_ready;


/* what sessions deliver (auto subscriptions, ACKs) */
static ngx_chat_session_hooks_t  ngx_chat_receipts_hooks = {
    NULL,
    NULL,
    ngx_chat_receipts_delivered
};


/*
 * Delivered watermarks of one conversation, a batch of users: each only
 * moves forward, and is at least the read one (read implies delivered);
 * the moves are relayed to the members in one publish per worker when the
 * membership cache is there (without it, they are only recorded: the next
 * move relays the watermark, which then includes this one). A user who is
 * no longer a member is ignored. The receipts travel as lines of one
 * publish; each worker leaves out a user's own receipt.
 *
 * KEYS: chat:dl:{<conv>}, chat:m:{<conv>}, chat:r:{<conv>}. ARGV:
 * conversationId, then user, seq pairs. Returns the JSON of every
 * watermark that moved.
 */
static ngx_chat_redis_script_t  ngx_chat_receipts_script = {
    NGX_CHAT_LUA_NOW_ISO NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_RECEIPTS,
    ""
};


ngx_int_t
ngx_chat_receipts_init_process(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_chat_receipts_tree, &ngx_chat_receipts_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_chat_receipts_queue);

    if (ngx_chat_fanout_script(&ngx_chat_receipts_script) != NGX_OK
        || ngx_chat_session_add_hooks(&ngx_chat_receipts_hooks) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_chat_receipts_timer.handler = ngx_chat_receipts_timer_handler;
    ngx_chat_receipts_timer.log = cycle->log;
    ngx_chat_receipts_dummy.fd = (ngx_socket_t) -1;
    ngx_chat_receipts_timer.data = &ngx_chat_receipts_dummy;
    ngx_chat_receipts_timer.cancelable = 1;

    ngx_chat_receipts_ready = 1;

    return NGX_OK;
}


void
ngx_chat_receipts_exit_process(ngx_cycle_t *cycle)
{
    if (!ngx_chat_receipts_ready) {
        return;
    }

    if (ngx_chat_receipts_timer.timer_set) {
        ngx_del_timer(&ngx_chat_receipts_timer);
    }

    ngx_chat_receipts_flush(1);
    ngx_chat_receipts_ready = 0;
}


/* s's user has received everything of conv up to seq (coalesced) */

static void
ngx_chat_receipts_delivered(ngx_chat_session_t *s, u_char *conv,
    size_t conv_len, uint64_t seq)
{
    u_char              *p;
    uint32_t             hash;
    ngx_str_t            key, *user;
    ngx_chat_receipt_t  *r;
    u_char               buf[NGX_CHAT_USER_ID_MAX + 1
                             + NGX_CHAT_RECEIPTS_CONV_MAX];

    user = &s->id.user;

    if (!ngx_chat_receipts_ready
        || seq == 0
        || conv_len == 0
        || conv_len > NGX_CHAT_RECEIPTS_CONV_MAX
        || user->len > NGX_CHAT_USER_ID_MAX)
    {
        return;
    }

    p = ngx_cpymem(buf, user->data, user->len);
    *p++ = '\n';
    p = ngx_cpymem(p, conv, conv_len);

    key.data = buf;
    key.len = p - buf;
    hash = ngx_crc32_short(key.data, key.len);

    r = (ngx_chat_receipt_t *) ngx_str_rbtree_lookup(&ngx_chat_receipts_tree,
                                                     &key, hash);

    if (r) {
        if (seq > r->seq) {
            r->seq = seq;
        }

        return;
    }

    r = ngx_alloc(sizeof(ngx_chat_receipt_t) + key.len, ngx_cycle->log);
    if (r == NULL) {
        return;
    }

    r->sn.str.data = (u_char *) (r + 1);
    r->sn.str.len = key.len;
    ngx_memcpy(r->sn.str.data, key.data, key.len);
    r->sn.node.key = hash;
    r->seq = seq;
    r->user_len = user->len;
    r->added = ngx_current_msec;

    ngx_rbtree_insert(&ngx_chat_receipts_tree, &r->sn.node);
    ngx_queue_insert_tail(&ngx_chat_receipts_queue, &r->link);

    if (!ngx_chat_receipts_timer.timer_set && !ngx_exiting) {
        ngx_add_timer(&ngx_chat_receipts_timer, NGX_CHAT_RECEIPTS_FLUSH);
    }
}


/* the flush of what is due, then the timer for the next due watermark */

static void
ngx_chat_receipts_timer_handler(ngx_event_t *ev)
{
    ngx_msec_int_t       left;
    ngx_chat_receipt_t  *r;

    ngx_chat_receipts_flush(0);

    if (ngx_queue_empty(&ngx_chat_receipts_queue) || ngx_exiting) {
        return;
    }

    /* the queue is in the order of "added": its head is due first */

    r = ngx_queue_data(ngx_queue_head(&ngx_chat_receipts_queue),
                       ngx_chat_receipt_t, link);
    left = (ngx_msec_int_t) (r->added + NGX_CHAT_RECEIPTS_FLUSH
                             - ngx_current_msec);

    ngx_add_timer(ev, left > NGX_CHAT_RECEIPTS_TICK
                      ? (ngx_msec_t) left : NGX_CHAT_RECEIPTS_TICK);
}


/*
 * The flush of the watermarks due within a tick (all_due: every one): one
 * script call per conversation (and per batch of users). The members of a
 * conversation get its messages at the same time, so their watermarks are
 * due together and still share a call.
 */

static int ngx_libc_cdecl
ngx_chat_receipts_cmp(const void *one, const void *two)
{
    size_t                     l1, l2;
    ngx_int_t                  rc;
    const ngx_chat_receipt_t  *a, *b;

    a = *(const ngx_chat_receipt_t **) one;
    b = *(const ngx_chat_receipt_t **) two;

    l1 = a->sn.str.len - a->user_len - 1;
    l2 = b->sn.str.len - b->user_len - 1;

    rc = ngx_memn2cmp(a->sn.str.data + a->user_len + 1,
                      b->sn.str.data + b->user_len + 1, l1, l2);

    return (int) rc;
}


static void
ngx_chat_receipts_flush(ngx_uint_t all_due)
{
    u_char               *conv, *p;
    size_t                conv_len;
    ngx_uint_t            i, j, n, k, argc;
    ngx_queue_t          *q;
    const char          **argv;
    size_t               *lens;
    ngx_chat_receipt_t  **all, *r;
    u_char                dl[sizeof(NGX_CHAT_KEY_DELIVERED)
                             + NGX_CHAT_RECEIPTS_CONV_MAX];
    u_char                m[sizeof(NGX_CHAT_KEY_MEMBERS)
                            + NGX_CHAT_RECEIPTS_CONV_MAX];
    u_char                rd[sizeof(NGX_CHAT_KEY_READ)
                             + NGX_CHAT_RECEIPTS_CONV_MAX];
    u_char               *seqs;

    n = 0;

    for (q = ngx_queue_head(&ngx_chat_receipts_queue);
         q != ngx_queue_sentinel(&ngx_chat_receipts_queue);
         q = ngx_queue_next(q))
    {
        r = ngx_queue_data(q, ngx_chat_receipt_t, link);

        if (!all_due
            && (ngx_msec_int_t) (r->added + NGX_CHAT_RECEIPTS_FLUSH
                                 - ngx_current_msec)
               > NGX_CHAT_RECEIPTS_TICK)
        {
            break;
        }

        n++;
    }

    if (n == 0) {
        return;
    }

    all = ngx_alloc(n * sizeof(ngx_chat_receipt_t *)
                    + (4 + 2 * NGX_CHAT_RECEIPTS_BATCH)
                      * (sizeof(char *) + sizeof(size_t))
                    + NGX_CHAT_RECEIPTS_BATCH * NGX_INT64_LEN,
                    ngx_cycle->log);

    argv = (const char **) (all + n);
    lens = (size_t *) (argv + 4 + 2 * NGX_CHAT_RECEIPTS_BATCH);
    seqs = (u_char *) (lens + 4 + 2 * NGX_CHAT_RECEIPTS_BATCH);

    for (i = 0, k = 0; k < n; k++) {
        q = ngx_queue_head(&ngx_chat_receipts_queue);
        r = ngx_queue_data(q, ngx_chat_receipt_t, link);

        ngx_queue_remove(q);
        ngx_rbtree_delete(&ngx_chat_receipts_tree, &r->sn.node);

        if (all == NULL) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "chat: delivered watermark of \"%*s\" lost, "
                          "no memory", r->sn.str.len, r->sn.str.data);
            ngx_free(r);
            continue;
        }

        all[i++] = r;
    }

    if (all == NULL) {
        return;
    }

    ngx_qsort(all, n, sizeof(ngx_chat_receipt_t *), ngx_chat_receipts_cmp);

    for (i = 0; i < n; i = j) {
        r = all[i];
        conv = r->sn.str.data + r->user_len + 1;
        conv_len = r->sn.str.len - r->user_len - 1;

        argv[0] = (char *) dl;
        lens[0] = ngx_sprintf(dl, NGX_CHAT_KEY_DELIVERED "%*s"
                              NGX_CHAT_TAG_CLOSE, conv_len, conv)
                  - dl;
        argv[1] = (char *) m;
        lens[1] = ngx_sprintf(m, NGX_CHAT_KEY_MEMBERS "%*s" NGX_CHAT_TAG_CLOSE,
                              conv_len, conv)
                  - m;
        argv[2] = (char *) rd;
        lens[2] = ngx_sprintf(rd, NGX_CHAT_KEY_READ "%*s" NGX_CHAT_TAG_CLOSE,
                              conv_len, conv)
                  - rd;
        argv[3] = (char *) conv;
        lens[3] = conv_len;
        argc = 4;
        p = seqs;

        for (j = i, k = 0;
             j < n && k < NGX_CHAT_RECEIPTS_BATCH
             && ngx_chat_receipts_cmp(&all[i], &all[j]) == 0;
             j++, k++)
        {
            argv[argc] = (char *) all[j]->sn.str.data;
            lens[argc++] = all[j]->user_len;
            argv[argc] = (char *) p;
            p = ngx_sprintf(p, "%uL", all[j]->seq);
            lens[argc] = p - (u_char *) argv[argc];
            argc++;
        }

        /* a batch nobody waits for: never ahead of the clients' SENDs */

        if (ngx_chat_redis_eval_bg(&ngx_chat_receipts_script,
                                   ngx_chat_receipts_reply, NULL, 3, argc,
                                   argv, lens)
            == NULL)
        {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "chat: %ui delivered watermarks of \"%*s\" lost, "
                          "Redis is unavailable", k, conv_len, conv);
        }

        /* (the eval copied its arguments) */

        while (i < j) {
            ngx_free(all[i++]);
        }
    }

    ngx_free(all);
}


/* a watermark that moved is also produced to Kafka for the database */

static void
ngx_chat_receipts_reply(redisReply *reply, void *data)
{
    size_t       i;
    redisReply  *e;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: delivered script failed: %*s",
                      (size_t) reply->len, reply->str);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        return;
    }

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type == REDIS_REPLY_STRING) {
            ngx_chat_receipts_produce((u_char *) e->str, e->len);
        }
    }
}


/*
 * A receipt ({"type":"delivered"|"read","conversationId",...}) to the
 * receipts topic, keyed by conversation; the persistence worker records the
 * watermarks. Fire and forget: a later watermark includes this one.
 */

void
ngx_chat_receipts_produce(u_char *json, size_t len)
{
    uint64_t   seq;
    ngx_str_t  conv;

    if (!ngx_chat_kafka_enabled()
        || ngx_chat_blob_message_ids(json, len, &conv, &seq) != NGX_OK)
    {
        return;
    }

    (void) ngx_chat_kafka_produce(
               (char *) ngx_chat_worker.mcf->kafka_receipts_topic.data,
               conv.data, conv.len, json, len, NULL, NULL);
}
