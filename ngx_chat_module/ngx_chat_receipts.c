/* ngx_chat_receipts.c: delivered watermarks: coalesced per worker, then
 * recorded in Redis and relayed to the other members in one batch. */

#include "ngx_chat_receipts.h"
#include "ngx_chat_redis.h"


#define NGX_CHAT_RECEIPTS_CONV_MAX  36


/* the highest seq of one conversation a user got since the last flush */
typedef struct {
    ngx_str_node_t            sn;          /* key: "<user>\n<conv>" */
    ngx_queue_t               link;
    uint64_t                  seq;
    size_t                    user_len;
} ngx_chat_receipt_t;


static void ngx_chat_receipts_flush(ngx_event_t *ev);
static void ngx_chat_receipts_reply(redisReply *reply, void *data);


static ngx_rbtree_t        ngx_chat_receipts_tree;
static ngx_rbtree_node_t   ngx_chat_receipts_sentinel;
static ngx_queue_t         ngx_chat_receipts_queue;
static ngx_event_t         ngx_chat_receipts_timer;
static ngx_connection_t    ngx_chat_receipts_dummy;  /* for the timer's debug
                                                   log: fd -1 */
static ngx_uint_t          ngx_chat_receipts_ready;


/*
 * A delivered watermark: it only moves forward, and is at least the read
 * one (read implies delivered); a move is relayed to the other members
 * when the membership cache is there (without it, it is only recorded:
 * the next move relays the watermark, which then includes this one).
 * A user who is no longer a member is ignored.
 *
 * KEYS: chat:dl:<conv>, chat:m:<conv>, chat:r:<conv>. ARGV: user, seq,
 * conversationId. Returns the receipt's JSON when the watermark moved, 0
 * (no move) or -1 (not a member).
 */
static ngx_chat_redis_script_t  ngx_chat_receipts_script = {
    NGX_CHAT_LUA_NOW_ISO
    "local cached = redis.call('EXISTS', KEYS[2]) == 1 "
    "if cached and redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then"
    "  return -1 end "
    "local want = ARGV[2] "
    "local rd = redis.call('HGET', KEYS[3], ARGV[1]) "
    "if rd and tonumber(rd) > tonumber(want) then want = rd end "
    "local old = redis.call('HGET', KEYS[1], ARGV[1]) "
    "if old and tonumber(old) >= tonumber(want) then return 0 end "
    "redis.call('HSET', KEYS[1], ARGV[1], want) "
    "local json = '{\"type\":\"delivered\",\"conversationId\":'"
    "  .. cjson.encode(ARGV[3]) .. ',\"userId\":' .. cjson.encode(ARGV[1])"
    "  .. ',\"seq\":' .. want .. ',\"at\":\"' .. iso(now) .. '\"}' "
    "if cached then"
    "  local msg = '/user/queue/receipts\\n\\n' .. json"
    "  for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do"
    "    if m ~= '' and m ~= ARGV[1] then"
    "      redis.call('PUBLISH', 'chat:u:' .. m, msg) end"
    "  end "
    "end "
    "return json",
    ""
};


ngx_int_t
ngx_chat_receipts_init_process(ngx_cycle_t *cycle)
{
    ngx_rbtree_init(&ngx_chat_receipts_tree, &ngx_chat_receipts_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_chat_receipts_queue);

    if (ngx_chat_redis_script(&ngx_chat_receipts_script) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_chat_receipts_timer.handler = ngx_chat_receipts_flush;
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

    ngx_chat_receipts_flush(&ngx_chat_receipts_timer);
    ngx_chat_receipts_ready = 0;
}


void
ngx_chat_receipts_delivered(ngx_str_t *user, u_char *conv, size_t conv_len,
    uint64_t seq)
{
    u_char              *p;
    uint32_t             hash;
    ngx_str_t            key;
    ngx_chat_receipt_t  *r;
    u_char               buf[NGX_CHAT_USER_ID_MAX + 1
                             + NGX_CHAT_RECEIPTS_CONV_MAX];

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

    ngx_rbtree_insert(&ngx_chat_receipts_tree, &r->sn.node);
    ngx_queue_insert_tail(&ngx_chat_receipts_queue, &r->link);

    if (!ngx_chat_receipts_timer.timer_set && !ngx_exiting) {
        ngx_add_timer(&ngx_chat_receipts_timer, NGX_CHAT_RECEIPTS_FLUSH);
    }
}


/* one script call per (user, conversation), all written at once */

static void
ngx_chat_receipts_flush(ngx_event_t *ev)
{
    u_char              *conv;
    size_t               conv_len;
    ngx_uint_t           failed;
    ngx_queue_t         *q;
    const char          *argv[6];
    size_t               lens[6];
    ngx_chat_receipt_t  *r;
    u_char               dl[sizeof("chat:dl:") + NGX_CHAT_RECEIPTS_CONV_MAX];
    u_char               m[sizeof("chat:m:") + NGX_CHAT_RECEIPTS_CONV_MAX];
    u_char               rd[sizeof("chat:r:") + NGX_CHAT_RECEIPTS_CONV_MAX];
    u_char               seq[NGX_INT64_LEN];

    failed = 0;

    while (!ngx_queue_empty(&ngx_chat_receipts_queue)) {
        q = ngx_queue_head(&ngx_chat_receipts_queue);
        r = ngx_queue_data(q, ngx_chat_receipt_t, link);

        ngx_queue_remove(q);
        ngx_rbtree_delete(&ngx_chat_receipts_tree, &r->sn.node);

        conv = r->sn.str.data + r->user_len + 1;
        conv_len = r->sn.str.len - r->user_len - 1;

        argv[0] = (char *) dl;
        lens[0] = ngx_sprintf(dl, "chat:dl:%*s", conv_len, conv) - dl;
        argv[1] = (char *) m;
        lens[1] = ngx_sprintf(m, "chat:m:%*s", conv_len, conv) - m;
        argv[2] = (char *) rd;
        lens[2] = ngx_sprintf(rd, "chat:r:%*s", conv_len, conv) - rd;
        argv[3] = (char *) r->sn.str.data;
        lens[3] = r->user_len;
        argv[4] = (char *) seq;
        lens[4] = ngx_sprintf(seq, "%uL", r->seq) - seq;
        argv[5] = (char *) conv;
        lens[5] = conv_len;

        /* a batch nobody waits for: never ahead of the clients' SENDs */

        if (!failed
            && ngx_chat_redis_eval_bg(&ngx_chat_receipts_script,
                                      ngx_chat_receipts_reply, NULL, 3, 6,
                                      argv, lens)
               == NULL)
        {
            failed = 1;
        }

        if (failed) {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "chat: delivered watermark of \"%*s\" lost, "
                          "Redis is unavailable", r->sn.str.len,
                          r->sn.str.data);
        }

        ngx_free(r);
    }
}


/* a watermark that moved is also produced to Kafka for the database */

static void
ngx_chat_receipts_reply(redisReply *reply, void *data)
{
    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: delivered script failed: %*s",
                      (size_t) reply->len, reply->str);
        return;
    }

    if (reply->type == REDIS_REPLY_STRING) {
        ngx_chat_receipts_produce((u_char *) reply->str, reply->len);
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
        || ngx_chat_receipts_parse(json, len, &conv, &seq) != NGX_OK)
    {
        return;
    }

    (void) ngx_chat_kafka_produce(
               (char *) ngx_chat_worker.mcf->kafka_receipts_topic.data,
               conv.data, conv.len, json, len, NULL, NULL);
}


ngx_int_t
ngx_chat_receipts_parse(u_char *json, size_t len, ngx_str_t *conv,
    uint64_t *seq)
{
    u_char    *p, *end, *q;
    uint64_t   n;

    end = json + len;

    p = ngx_strlcasestrn(json, end, (u_char *) "\"conversationId\":\"",
                         sizeof("\"conversationId\":\"") - 2);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p += sizeof("\"conversationId\":\"") - 1;

    for (q = p; q < end && *q != '"'; q++) {
        if (*q == '\\') {
            return NGX_DECLINED;
        }
    }

    if (q == end || q == p) {
        return NGX_DECLINED;
    }

    conv->data = p;
    conv->len = q - p;

    p = ngx_strlcasestrn(q, end, (u_char *) "\"seq\":",
                         sizeof("\"seq\":") - 2);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    n = 0;

    for (p += sizeof("\"seq\":") - 1; p < end && *p >= '0' && *p <= '9'; p++)
    {
        if (n > (NGX_MAX_UINT32_VALUE * (uint64_t) 1000)) {
            return NGX_DECLINED;
        }

        n = n * 10 + (*p - '0');
    }

    if (n == 0) {
        return NGX_DECLINED;
    }

    *seq = n;

    return NGX_OK;
}
