/* ngx_chat_messaging.c: what sessions SEND to /app/...: validation, ids,
 * per-conversation seq, the membership cache and publishing through Redis
 * Lua scripts, and the durable copy in Kafka. */

#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_fanout.h"
#include "ngx_chat_receipts.h"
#include "ngx_chat_metrics.h"

#include <jansson.h>


#define NGX_CHAT_ID_EPOCH        1704067200000ULL  /* 2024-01-01T00:00Z */
#define NGX_CHAT_CONV_ID_MAX     36
#define NGX_CHAT_CLIENT_ID_MAX   64
#define NGX_CHAT_DEDUP_TTL       "86400"
#define NGX_CHAT_HISTORY_LEN     "200"      /* recent messages kept in Redis
                                               for read-your-writes */
#define NGX_CHAT_REBUILD_TRIES   3
#define NGX_CHAT_EPOCH_KEY       "chat:epoch"
#define NGX_CHAT_SEQ_JUMP        "1000000"  /* past any seq still in flight
                                               when Redis lost its data */

#define NGX_CHAT_OP_SEND         0
#define NGX_CHAT_OP_TYPING       1
#define NGX_CHAT_OP_READ         2


/* a SEND to /app/... in flight */
typedef struct {
    ngx_chat_op_t             op;
    ngx_pool_t               *pool;
    ngx_uint_t                kind;
    ngx_uint_t                tries;
    ngx_chat_redis_req_t     *redis;
    ngx_chat_kafka_req_t     *kafka;
    ngx_str_t                 conversation;
    ngx_str_t                 client_msg_id;
    ngx_str_t                 receipt;
    ngx_str_t                 keys[5];     /* members, seq, gen, dedup
                                              (SEND) or reads (READ),
                                              history (SEND) */
    ngx_str_t                 route;       /* SEND: "<destination>\n<id>\n" */
    ngx_str_t                 seq;         /* READ: the seq read */
    ngx_str_t                 head;        /* JSON up to the seq */
    ngx_str_t                 tail;        /* JSON after the seq */
    ngx_queue_t               wait;        /* in a rebuild's waiters */
    unsigned                  waiting:1;
    uint64_t                  started;     /* us, the SEND's parse */
} ngx_chat_send_t;


/*
 * A membership cache rebuild in flight: one per conversation in a worker.
 * The ops that miss the cache meanwhile, or start while it runs, wait for
 * it in arrival order (a session's SENDs keep their order) and then run
 * again, or all fail the way a single op would.
 */
typedef struct {
    ngx_str_node_t            sn;          /* the conversation id */
    ngx_pool_t               *pool;
    ngx_queue_t               waiters;     /* ngx_chat_send_t */
    ngx_chat_pg_req_t        *pg;
    ngx_chat_redis_req_t     *redis;
    ngx_str_t                 keys[3];     /* members, seq, gen */
    ngx_str_t                 gen;
} ngx_chat_rebuild_t;


static ngx_int_t ngx_chat_send_prepare(ngx_chat_session_t *s,
    ngx_chat_send_t *op, u_char *body, size_t len);
static ngx_int_t ngx_chat_typing_prepare(ngx_chat_session_t *s,
    ngx_chat_send_t *op, u_char *body, size_t len);
static ngx_int_t ngx_chat_read_prepare(ngx_chat_session_t *s,
    ngx_chat_send_t *op, u_char *body, size_t len);
static void ngx_chat_send_run(ngx_chat_send_t *op);
static void ngx_chat_send_reply(redisReply *reply, void *data);
static ngx_chat_rebuild_t *ngx_chat_rebuild_find(ngx_str_t *conversation);
static void ngx_chat_rebuild_wait(ngx_chat_rebuild_t *rb,
    ngx_chat_send_t *op);
static void ngx_chat_send_rebuild(ngx_chat_send_t *op, redisReply *gen);
static void ngx_chat_send_rebuild_pg(PGresult *res, void *data);
static void ngx_chat_send_rebuild_reply(redisReply *reply, void *data);
static void ngx_chat_rebuild_done(ngx_chat_rebuild_t *rb, const char *code,
    const char *message);
static void ngx_chat_send_produce(ngx_chat_send_t *op, ngx_int_t code,
    redisReply *value);
static void ngx_chat_send_delivered(ngx_int_t rc, void *data);
static void ngx_chat_read_produce(ngx_chat_send_t *op, redisReply *value);
static void ngx_chat_send_finish(ngx_chat_send_t *op, const char *code,
    const char *message);
static void ngx_chat_send_cancel(ngx_chat_op_t *op);
static ngx_int_t ngx_chat_json_string(ngx_pool_t *pool, ngx_str_t *out,
    const char *s, size_t len);
static ngx_int_t ngx_chat_op_conversation(ngx_chat_send_t *op, json_t *root,
    ngx_str_t *jconv);
static uint64_t ngx_chat_next_id(uint64_t *ms);
static uint64_t ngx_chat_now_ms(void);
static u_char *ngx_chat_format_time(u_char *p, uint64_t ms);
static void ngx_chat_messaging_on_state(ngx_uint_t up);


static uint64_t           ngx_chat_id_last_ms;
static uint64_t           ngx_chat_id_counter;

static ngx_rbtree_t       ngx_chat_rebuilds;
static ngx_rbtree_node_t  ngx_chat_rebuilds_sentinel;


/*
 * The scripts' membership check, hit first: SISMEMBER alone tells a member
 * of a cached conversation; only a miss asks whether the set is there at
 * all. A cached conversation with no seq counter (Redis lost it) is
 * rebuilt too. {0, ""}: not a member; {-1, generation}: rebuild the cache.
 */
#define NGX_CHAT_LUA_MEMBER                                                  \
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then"                 \
    "  if redis.call('EXISTS', KEYS[1]) == 1 then return {0, ''} end"        \
    "  return {-1, redis.call('GET', KEYS[3]) or '0'} end "                  \
    "if redis.call('EXISTS', KEYS[2]) == 0 then"                             \
    "  return {-1, redis.call('GET', KEYS[3]) or '0'} end "


/*
 * One script accepts a message: membership check, idempotency on the
 * client's id, the next seq, one publish to every worker that has members'
 * sessions (ngx_chat_fanout.h) and the recent-history buffer, all atomic,
 * so publish order is seq order on every worker. The history list is
 * trimmed at every 16th seq: it holds up to 15 more than its length.
 *
 * KEYS: members set, seq counter, membership generation, dedup key or "",
 * history list.
 * ARGV: sender, route ("<destination>\n<id>\n"), JSON head (ends with
 * "seq":), JSON tail, dedup ttl, history length.
 * Returns {1, seq}, {2, "<seq> <json>"} (a retry of an accepted message),
 * {0, ""} (not a member) or {-1, generation} (rebuild the cache first).
 */
static ngx_chat_redis_script_t  ngx_chat_send_script = {
    NGX_CHAT_LUA_ROUTE
    NGX_CHAT_LUA_MEMBER
    "if KEYS[4] ~= '' then"
    "  local old = redis.call('GET', KEYS[4])"
    "  if old then return {2, old} end "
    "end "
    "local seq = redis.call('INCR', KEYS[2]) "
    "local json = ARGV[3] .. seq .. ARGV[4] "
    "route(redis.call('SMEMBERS', KEYS[1]), '', ARGV[2] .. json) "
    "redis.call('RPUSH', KEYS[5], json) "
    "if seq % 16 == 0 then"
    "  redis.call('LTRIM', KEYS[5], -tonumber(ARGV[6]), -1) end "
    "if KEYS[4] ~= '' then"
    "  redis.call('SET', KEYS[4], seq .. ' ' .. json, 'EX', ARGV[5]) end "
    "return {1, tostring(seq)}",
    ""
};


/*
 * Relays a typing event to the other members, at most once per interval
 * for one user in one conversation (across all servers).
 * KEYS: members set, seq counter, membership generation, limiter key.
 * ARGV: sender, payload, interval (ms). Returns {1, ""}, {0, ""} or
 * {-1, generation} as above.
 */
static ngx_chat_redis_script_t  ngx_chat_relay_script = {
    NGX_CHAT_LUA_ROUTE
    NGX_CHAT_LUA_MEMBER
    "if tonumber(ARGV[3]) > 0 and not redis.call('SET', KEYS[4], '1',"
    " 'PX', ARGV[3], 'NX') then return {1, ''} end "
    "route(redis.call('SMEMBERS', KEYS[1]), ARGV[1], ARGV[2]) "
    "return {1, ''}",
    ""
};


/*
 * A read watermark: it only moves forward and never past the last seq;
 * a move is relayed to the other members.
 * Reading implies having received: the delivered watermark follows.
 * KEYS: members set, seq counter, generation, reads hash, delivered hash.
 * ARGV: reader,
 * seq, payload head (ends with "seq":), payload tail. Returns {1, seq}
 * (moved there), {3, seq} (it already was there), {0, ""} or
 * {-1, generation} as above.
 */
static ngx_chat_redis_script_t  ngx_chat_read_script = {
    NGX_CHAT_LUA_ROUTE
    NGX_CHAT_LUA_MEMBER
    "local last = tonumber(redis.call('GET', KEYS[2])) "
    "local want = math.min(tonumber(ARGV[2]), last) "
    "local old = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0') "
    "if want <= old then return {3, tostring(old)} end "
    "redis.call('HSET', KEYS[4], ARGV[1], want) "
    "local dl = tonumber(redis.call('HGET', KEYS[5], ARGV[1]) or '0') "
    "if dl < want then redis.call('HSET', KEYS[5], ARGV[1], want) end "
    "route(redis.call('SMEMBERS', KEYS[1]), ARGV[1],"
    "      ARGV[3] .. want .. ARGV[4]) "
    "return {1, tostring(want)}",
    ""
};


/*
 * Fills the membership cache from PostgreSQL's answer, unless the
 * membership changed since the miss (the generation moved on), and makes
 * sure the seq counter is above every seq ever handed out.
 *
 * A missing counter of a conversation that existed before Redis's data
 * began (the epoch key, set when a gateway first reaches this Redis) means
 * Redis lost it: messages accepted since the last one PostgreSQL holds may
 * still be on their way to it, so the counter jumps forward once, past any
 * of them (PROTOCOL.md section 6).
 *
 * KEYS: members set, seq counter, generation, epoch. ARGV: generation,
 * seq floor (PostgreSQL), conversation creation (ms), jump, members...
 * The "" member marks a conversation that has no members.
 */
static ngx_chat_redis_script_t  ngx_chat_rebuild_script = {
    "if (redis.call('GET', KEYS[3]) or '0') ~= ARGV[1] then return 0 end "
    "redis.call('DEL', KEYS[1]) "
    "redis.call('SADD', KEYS[1], '') "
    "for i = 5, #ARGV do redis.call('SADD', KEYS[1], ARGV[i]) end "
    "redis.call('EXPIRE', KEYS[1], 86400) "
    "local floor = tonumber(ARGV[2]) "
    "local cur = redis.call('GET', KEYS[2]) "
    "if cur then"
    "  if tonumber(cur) < floor then redis.call('SET', KEYS[2], floor) end"
    "  return 1 "
    "end "
    "local epoch = redis.call('GET', KEYS[4]) "
    "if not epoch then"
    "  local t = redis.call('TIME')"
    "  epoch = t[1] * 1000 + math.floor(t[2] / 1000)"
    "  redis.call('SET', KEYS[4], epoch) "
    "end "
    "if tonumber(ARGV[3]) < tonumber(epoch) then"
    "  floor = floor + tonumber(ARGV[4]) end "
    "redis.call('SET', KEYS[2], floor) "
    "return 1",
    ""
};


/* KEYS: members set, generation */
static ngx_chat_redis_script_t  ngx_chat_invalidate_script = {
    "redis.call('INCR', KEYS[2]) redis.call('DEL', KEYS[1]) return 1",
    ""
};


static const char  ngx_chat_rebuild_sql[] =
    "SELECT greatest(c.last_seq, coalesce((SELECT max(m.seq) FROM messages m"
    " WHERE m.conversation_id = c.id), 0)),"
    " array_to_string(array(SELECT cm.user_id FROM conversation_members cm"
    " WHERE cm.conversation_id = c.id), ','),"
    " (extract(epoch FROM c.created_at) * 1000)::bigint"
    " FROM conversations c WHERE c.id = $1";


ngx_int_t
ngx_chat_messaging_init_process(ngx_cycle_t *cycle)
{
    ngx_chat_main_conf_t  *mcf = ngx_chat_worker.mcf;

    if (ngx_worker > 31) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat: at most 32 worker processes are supported");
        return NGX_ERROR;
    }

    if (ngx_chat_fanout_init() != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&ngx_chat_rebuilds, &ngx_chat_rebuilds_sentinel,
                    ngx_str_rbtree_insert_value);

    if (ngx_chat_redis_script(&ngx_chat_send_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_relay_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_read_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_rebuild_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_invalidate_script) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_chat_redis_init(cycle, mcf->redis, mcf->redis_timeout,
                            ngx_chat_fanout_on_message,
                            ngx_chat_messaging_on_state)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_chat_fanout_start();
}


/*
 * The command link is up: this worker's users go back on their routes
 * (Redis may have restarted empty), and the time this Redis's data began is
 * marked if nobody did yet: counters of conversations older than that were
 * lost (see the rebuild script).
 */

static void
ngx_chat_messaging_on_state(ngx_uint_t up)
{
    u_char       *p;
    const char   *argv[4];
    size_t        argvlen[4];
    u_char        ms[NGX_INT64_LEN];

    if (!up) {
        return;
    }

    ngx_chat_fanout_reroute();

    p = ngx_sprintf(ms, "%uL", ngx_chat_now_ms());

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = NGX_CHAT_EPOCH_KEY;
    argvlen[1] = sizeof(NGX_CHAT_EPOCH_KEY) - 1;
    argv[2] = (char *) ms;
    argvlen[2] = p - ms;
    argv[3] = "NX";
    argvlen[3] = 2;

    (void) ngx_chat_redis_command(ngx_chat_redis_log_reply, NULL, 4, argv,
                                  argvlen);
}


void
ngx_chat_messaging_exit_process(ngx_cycle_t *cycle)
{
    ngx_chat_redis_exit();
}


void
ngx_chat_membership_changed(ngx_str_t *conversation_id)
{
    const char  *argv[4];
    size_t       argvlen[4];
    u_char       members[NGX_CHAT_CONV_ID_MAX + 8];
    u_char       gen[NGX_CHAT_CONV_ID_MAX + 8];

    if (conversation_id->len > NGX_CHAT_CONV_ID_MAX) {
        return;
    }

    argv[0] = (char *) members;
    argvlen[0] = ngx_sprintf(members, "chat:m:%V", conversation_id)
                 - members;
    argv[1] = (char *) gen;
    argvlen[1] = ngx_sprintf(gen, "chat:g:%V", conversation_id) - gen;

    if (ngx_chat_redis_eval(&ngx_chat_invalidate_script,
                            ngx_chat_redis_log_reply, NULL, 2, 2, argv, argvlen)
        == NULL)
    {
        /*
         * Redis is down: the cache cannot be reached by anybody either;
         * entries expire within a day at the latest
         */
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: membership cache of \"%V\" not invalidated, "
                      "Redis is unavailable", conversation_id);
    }
}


/* SEND to /app/... */

ngx_int_t
ngx_chat_messaging_send(ngx_chat_session_t *s, ngx_str_t *destination,
    u_char *body, size_t len, ngx_str_t *receipt)
{
    ngx_int_t         rc;
    ngx_uint_t        kind;
    ngx_pool_t       *pool;
    ngx_chat_send_t  *op;

    if (destination->len == sizeof("/app/chat.send") - 1
        && ngx_strncmp(destination->data, "/app/chat.send",
                       destination->len) == 0)
    {
        kind = NGX_CHAT_OP_SEND;

    } else if (destination->len == sizeof("/app/chat.typing") - 1
               && ngx_strncmp(destination->data, "/app/chat.typing",
                              destination->len) == 0)
    {
        kind = NGX_CHAT_OP_TYPING;

    } else if (destination->len == sizeof("/app/chat.read") - 1
               && ngx_strncmp(destination->data, "/app/chat.read",
                              destination->len) == 0)
    {
        kind = NGX_CHAT_OP_READ;

    } else {
        return NGX_DECLINED;
    }

    pool = ngx_create_pool(1024, s->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    op = ngx_pcalloc(pool, sizeof(ngx_chat_send_t));
    if (op == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    op->pool = pool;
    op->kind = kind;
    op->started = ngx_chat_metric_now_us();

    if (receipt->len) {
        op->receipt.data = ngx_pstrdup(pool, receipt);
        if (op->receipt.data == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        op->receipt.len = receipt->len;
    }

    ngx_chat_session_op_start(s, &op->op, ngx_chat_send_cancel);

    if (kind == NGX_CHAT_OP_SEND) {
        rc = ngx_chat_send_prepare(s, op, body, len);

    } else if (kind == NGX_CHAT_OP_TYPING) {
        rc = ngx_chat_typing_prepare(s, op, body, len);

    } else {
        rc = ngx_chat_read_prepare(s, op, body, len);
    }

    if (rc == NGX_ERROR) {
        ngx_chat_session_op_done(s, &op->op);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* rejected; the rejection was sent */
        ngx_chat_session_op_done(s, &op->op);
        ngx_destroy_pool(pool);
        return NGX_OK;
    }

    ngx_chat_send_run(op);

    return NGX_OK;
}


/*
 * The conversationId of a body, copied into op and written as a JSON
 * string. NGX_DECLINED: missing or not a valid id.
 */

static ngx_int_t
ngx_chat_op_conversation(ngx_chat_send_t *op, json_t *root, ngx_str_t *jconv)
{
    json_t  *conv;

    conv = json_object_get(root, "conversationId");

    if (!json_is_string(conv)
        || json_string_length(conv) == 0
        || json_string_length(conv) > NGX_CHAT_CONV_ID_MAX)
    {
        return NGX_DECLINED;
    }

    op->conversation.len = json_string_length(conv);
    op->conversation.data = ngx_pnalloc(op->pool, op->conversation.len);
    if (op->conversation.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(op->conversation.data, json_string_value(conv),
               op->conversation.len);

    return ngx_chat_json_string(op->pool, jconv,
                                (char *) op->conversation.data,
                                op->conversation.len);
}


/*
 * Parses and validates a chat.send body, and builds what every member
 * receives around the seq that Redis assigns: the route
 * "/user/queue/messages\n<id>\n", then the JSON head up to "seq": and its
 * tail. NGX_DECLINED: rejected (the session was told).
 */

static ngx_int_t
ngx_chat_send_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    char          *meta;
    size_t         n;
    uint64_t       id, ms;
    json_t        *root, *content, *cmid, *metadata;
    ngx_int_t      rc;
    ngx_str_t      jconv, jcontent, jcmid;
    const char    *code, *message;
    json_error_t   jerr;

    code = "bad_request";
    message = NULL;
    meta = NULL;
    ngx_str_null(&jcmid);

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL || !json_is_object(root)) {
        message = "the body is not a JSON object";
        goto rejected;
    }

    cmid = json_object_get(root, "clientMsgId");

    if (cmid != NULL && !json_is_null(cmid)) {
        if (!json_is_string(cmid)
            || json_string_length(cmid) == 0
            || json_string_length(cmid) > NGX_CHAT_CLIENT_ID_MAX)
        {
            message = "clientMsgId must be a string of 1 to 64 characters";
            goto rejected;
        }

        op->client_msg_id.len = json_string_length(cmid);
        op->client_msg_id.data = ngx_pnalloc(op->pool,
                                             op->client_msg_id.len);
        if (op->client_msg_id.data == NULL) {
            goto failed;
        }

        ngx_memcpy(op->client_msg_id.data, json_string_value(cmid),
                   op->client_msg_id.len);

        if (ngx_chat_json_string(op->pool, &jcmid,
                                 (char *) op->client_msg_id.data,
                                 op->client_msg_id.len)
            != NGX_OK)
        {
            goto failed;
        }
    }

    rc = ngx_chat_op_conversation(op, root, &jconv);

    if (rc == NGX_DECLINED) {
        message = "conversationId must be a string of 1 to 36 characters";
        goto rejected;
    }

    if (rc != NGX_OK) {
        goto failed;
    }

    content = json_object_get(root, "content");

    if (!json_is_string(content) || json_string_length(content) == 0) {
        message = "content must be a non-empty string";
        goto rejected;
    }

    if (json_string_length(content) > s->lcf->max_content) {
        code = "too_large";
        message = "content is larger than this server accepts";
        goto rejected;
    }

    metadata = json_object_get(root, "metadata");

    if (metadata != NULL && !json_is_null(metadata)) {
        if (!json_is_object(metadata)) {
            message = "metadata must be a JSON object";
            goto rejected;
        }

        meta = json_dumps(metadata, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (meta == NULL) {
            goto failed;
        }
    }

    if (ngx_chat_json_string(op->pool, &jcontent, json_string_value(content),
                             json_string_length(content))
        != NGX_OK)
    {
        goto failed;
    }

    id = ngx_chat_next_id(&ms);

    n = sizeof("/user/queue/messages\n\n{\"type\":\"message\","
               "\"messageId\":\"\",\"conversationId\":,\"seq\":")
        + 2 * NGX_INT64_LEN + jconv.len;

    op->route.data = ngx_pnalloc(op->pool, n);
    if (op->route.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(op->route.data, "/user/queue/messages\n%uL\n", id);
    op->route.len = p - op->route.data;

    op->head.data = p;
    p = ngx_sprintf(p, "{\"type\":\"message\",\"messageId\":\"%uL\","
                    "\"conversationId\":%V,\"seq\":", id, &jconv);
    op->head.len = p - op->head.data;

    /* a userId needs no JSON escaping */

    n = sizeof(",\"senderId\":\"\",\"content\":,\"clientMsgId\":,"
               "\"metadata\":,\"createdAt\":\"2024-01-01T00:00:00.000Z\"}")
        + s->id.user.len + jcontent.len + jcmid.len
        + (meta ? ngx_strlen(meta) : 2);

    op->tail.data = ngx_pnalloc(op->pool, n);
    if (op->tail.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(op->tail.data, ",\"senderId\":\"%V\",\"content\":%V",
                    &s->id.user, &jcontent);

    if (jcmid.len) {
        p = ngx_sprintf(p, ",\"clientMsgId\":%V", &jcmid);
    }

    p = ngx_sprintf(p, ",\"metadata\":%s,\"createdAt\":\"",
                    meta ? meta : "{}");
    p = ngx_chat_format_time(p, ms);
    *p++ = '"';
    *p++ = '}';
    op->tail.len = p - op->tail.data;

    free(meta);
    json_decref(root);

    return NGX_OK;

rejected:

    free(meta);

    if (root) {
        json_decref(root);
    }

    ngx_chat_session_reject(s, code, message, &op->client_msg_id,
                            &op->receipt);
    return NGX_DECLINED;

failed:

    free(meta);

    if (root) {
        json_decref(root);
    }

    return NGX_ERROR;
}


/* chat.typing: {"conversationId"} */

static ngx_int_t
ngx_chat_typing_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    size_t         n;
    json_t        *root;
    ngx_int_t      rc;
    ngx_str_t      jconv;
    json_error_t   jerr;

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);
    rc = ngx_chat_op_conversation(op, root, &jconv);

    if (root) {
        json_decref(root);
    }

    if (rc == NGX_DECLINED) {
        ngx_chat_session_reject(s, "bad_request",
                                "the body must be a JSON object with a "
                                "conversationId", NULL, &op->receipt);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    n = sizeof("/user/queue/typing\n\n{\"type\":\"typing\","
               "\"conversationId\":,\"userId\":\"\","
               "\"at\":\"2024-01-01T00:00:00.000Z\"}")
        + jconv.len + s->id.user.len;

    op->head.data = ngx_pnalloc(op->pool, n);
    if (op->head.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(op->head.data, "/user/queue/typing\n\n"
                    "{\"type\":\"typing\",\"conversationId\":%V,"
                    "\"userId\":\"%V\",\"at\":\"", &jconv, &s->id.user);
    p = ngx_chat_format_time(p, ngx_chat_now_ms());
    *p++ = '"';
    *p++ = '}';
    op->head.len = p - op->head.data;

    return NGX_OK;
}


/*
 * chat.read: {"conversationId", "seq"}; the payload is split around the
 * watermark that Redis settles on.
 */

static ngx_int_t
ngx_chat_read_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    size_t         n;
    json_t        *root, *seq;
    ngx_int_t      rc;
    ngx_str_t      jconv;
    json_int_t     value;
    json_error_t   jerr;

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);
    rc = ngx_chat_op_conversation(op, root, &jconv);
    seq = json_object_get(root, "seq");
    value = json_is_integer(seq) ? json_integer_value(seq) : 0;

    if (root) {
        json_decref(root);
    }

    if (rc == NGX_DECLINED || value < 1) {
        ngx_chat_session_reject(s, "bad_request",
                                "the body must be a JSON object with a "
                                "conversationId and a seq of at least 1",
                                NULL, &op->receipt);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    n = NGX_INT64_LEN
        + sizeof("/user/queue/receipts\n\n{\"type\":\"read\","
                 "\"conversationId\":,\"userId\":\"\",\"seq\":")
        + jconv.len + s->id.user.len
        + sizeof(",\"at\":\"2024-01-01T00:00:00.000Z\"}");

    p = ngx_pnalloc(op->pool, n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    op->seq.data = p;
    p = ngx_sprintf(p, "%L", (int64_t) value);
    op->seq.len = p - op->seq.data;

    op->head.data = p;
    p = ngx_sprintf(p, "/user/queue/receipts\n\n{\"type\":\"read\","
                    "\"conversationId\":%V,\"userId\":\"%V\",\"seq\":",
                    &jconv, &s->id.user);
    op->head.len = p - op->head.data;

    op->tail.data = p;
    p = ngx_cpymem(p, ",\"at\":\"", 7);
    p = ngx_chat_format_time(p, ngx_chat_now_ms());
    *p++ = '"';
    *p++ = '}';
    op->tail.len = p - op->tail.data;

    return NGX_OK;
}


static void
ngx_chat_send_run(ngx_chat_send_t *op)
{
    u_char                   *p;
    size_t                    n;
    ngx_str_t                *user;
    ngx_uint_t                i, nkeys, argc;
    const char               *argv[11];
    size_t                    argvlen[11];
    ngx_chat_rebuild_t       *rb;
    ngx_chat_redis_script_t  *script;
    u_char                    interval[NGX_INT64_LEN];

    /* the cache is being rebuilt: after the ops that wait for it already */

    rb = ngx_chat_rebuild_find(&op->conversation);
    if (rb) {
        ngx_chat_rebuild_wait(rb, op);
        return;
    }

    user = &op->op.session->id.user;

    /*
     * KEYS: members, seq, generation, then per kind: SEND dedup and
     * history, READ reads and delivered, TYPING the limiter
     */

    nkeys = (op->kind == NGX_CHAT_OP_TYPING) ? 4 : 5;

    if (op->keys[0].len == 0) {
        n = 5 * (sizeof("chat:dl:") + NGX_CHAT_CONV_ID_MAX)
            + NGX_CHAT_USER_ID_MAX + NGX_CHAT_CLIENT_ID_MAX + 2;

        p = ngx_pnalloc(op->pool, n);
        if (p == NULL) {
            ngx_chat_send_finish(op, "unavailable", "out of memory");
            return;
        }

        for (i = 0; i < nkeys; i++) {
            op->keys[i].data = p;

            switch (i) {
            case 0: case 1: case 2:
                p = ngx_sprintf(p, "chat:%c:%V", "msg"[i],
                                &op->conversation);
                break;

            case 3:
                if (op->kind == NGX_CHAT_OP_READ) {
                    p = ngx_sprintf(p, "chat:r:%V", &op->conversation);

                } else if (op->kind == NGX_CHAT_OP_TYPING) {
                    p = ngx_sprintf(p, "chat:t:%V:%V", &op->conversation,
                                    user);

                } else if (op->client_msg_id.len) {
                    p = ngx_sprintf(p, "chat:d:%V:%V:%V", &op->conversation,
                                    user, &op->client_msg_id);
                }

                break;

            default:
                p = ngx_sprintf(p, "chat:%s:%V",
                                op->kind == NGX_CHAT_OP_READ ? "dl" : "h",
                                &op->conversation);
            }

            op->keys[i].len = p - op->keys[i].data;
        }
    }

    for (i = 0; i < nkeys; i++) {
        argv[i] = (char *) op->keys[i].data;
        argvlen[i] = op->keys[i].len;
    }

    argc = nkeys;
    argv[argc] = (char *) user->data;
    argvlen[argc++] = user->len;

    switch (op->kind) {

    case NGX_CHAT_OP_SEND:
        script = &ngx_chat_send_script;
        argv[argc] = (char *) op->route.data;
        argvlen[argc++] = op->route.len;
        argv[argc] = (char *) op->head.data;
        argvlen[argc++] = op->head.len;
        argv[argc] = (char *) op->tail.data;
        argvlen[argc++] = op->tail.len;
        argv[argc] = NGX_CHAT_DEDUP_TTL;
        argvlen[argc++] = sizeof(NGX_CHAT_DEDUP_TTL) - 1;
        argv[argc] = NGX_CHAT_HISTORY_LEN;
        argvlen[argc++] = sizeof(NGX_CHAT_HISTORY_LEN) - 1;
        break;

    case NGX_CHAT_OP_READ:
        script = &ngx_chat_read_script;
        argv[argc] = (char *) op->seq.data;
        argvlen[argc++] = op->seq.len;
        argv[argc] = (char *) op->head.data;
        argvlen[argc++] = op->head.len;
        argv[argc] = (char *) op->tail.data;
        argvlen[argc++] = op->tail.len;
        break;

    default: /* NGX_CHAT_OP_TYPING */
        script = &ngx_chat_relay_script;
        argv[argc] = (char *) op->head.data;
        argvlen[argc++] = op->head.len;
        argv[argc] = (char *) interval;
        argvlen[argc++] = ngx_sprintf(interval, "%M",
                                      op->op.session->lcf->typing_interval)
                          - interval;
        break;
    }

    op->redis = ngx_chat_redis_eval(script, ngx_chat_send_reply, op,
                                    (int) nkeys, (int) argc, argv, argvlen);

    if (op->redis == NULL) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message store is unavailable, "
                             "try again");
    }
}


static void
ngx_chat_send_reply(redisReply *reply, void *data)
{
    ngx_chat_send_t  *op = data;

    ngx_int_t     code;
    redisReply   *value;

    op->redis = NULL;

    if (reply == NULL) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message store is unavailable, try again");
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_log_error(NGX_LOG_ERR, op->op.session->log, 0,
                      "chat: unexpected reply from Redis (type %d%s%s)",
                      reply->type,
                      reply->type == REDIS_REPLY_ERROR ? ": " : "",
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        ngx_chat_send_finish(op, "unavailable",
                             "the message store failed, try again");
        return;
    }

    code = (ngx_int_t) reply->element[0]->integer;
    value = reply->element[1];

    switch (code) {

    case 1:
    case 2:
        if (op->kind == NGX_CHAT_OP_SEND) {
            ngx_chat_metric_observe(NGX_CHAT_H_SEND, NGX_CHAT_G_MAX,
                                    ngx_chat_metric_now_us() - op->started);
        }

        if (op->kind == NGX_CHAT_OP_SEND && ngx_chat_kafka_enabled()) {
            ngx_chat_send_produce(op, code, value);
            return;
        }

        if (op->kind == NGX_CHAT_OP_READ && code == 1) {
            ngx_chat_read_produce(op, value);
        }

        ngx_chat_send_finish(op, NULL, NULL);
        return;

    case 3:
        ngx_chat_send_finish(op, NULL, NULL);
        return;

    case 0:
        ngx_chat_send_finish(op, "not_member",
                             "you are not a member of this conversation");
        return;

    default:
        if (++op->tries > NGX_CHAT_REBUILD_TRIES) {
            ngx_chat_send_finish(op, "unavailable",
                                 "the membership of this conversation "
                                 "keeps changing, try again");
            return;
        }

        ngx_chat_send_rebuild(op, value);
        return;
    }
}


static ngx_chat_rebuild_t *
ngx_chat_rebuild_find(ngx_str_t *conversation)
{
    uint32_t         hash;
    ngx_str_node_t  *sn;

    if (ngx_chat_rebuilds.root == ngx_chat_rebuilds.sentinel) {
        return NULL;
    }

    hash = ngx_crc32_short(conversation->data, conversation->len);

    sn = ngx_str_rbtree_lookup(&ngx_chat_rebuilds, conversation, hash);

    return (ngx_chat_rebuild_t *) sn;
}


static void
ngx_chat_rebuild_wait(ngx_chat_rebuild_t *rb, ngx_chat_send_t *op)
{
    ngx_queue_insert_tail(&rb->waiters, &op->wait);
    op->waiting = 1;
}


/*
 * The membership cache missed: ask PostgreSQL, once for all the ops of
 * this worker that miss it until the answer is in Redis.
 */

static void
ngx_chat_send_rebuild(ngx_chat_send_t *op, redisReply *gen)
{
    u_char              *p;
    size_t               n;
    ngx_uint_t           i;
    ngx_pool_t          *pool;
    const char          *values[1];
    int                  lengths[1];
    ngx_chat_rebuild_t  *rb;

    rb = ngx_chat_rebuild_find(&op->conversation);
    if (rb) {
        ngx_chat_rebuild_wait(rb, op);
        return;
    }

    pool = ngx_create_pool(512, ngx_cycle->log);
    if (pool == NULL) {
        ngx_chat_send_finish(op, "unavailable", "out of memory");
        return;
    }

    rb = ngx_pcalloc(pool, sizeof(ngx_chat_rebuild_t));
    if (rb == NULL) {
        goto failed;
    }

    n = op->conversation.len + gen->len;
    for (i = 0; i < 3; i++) {
        n += op->keys[i].len;
    }

    p = ngx_pnalloc(pool, n);
    if (p == NULL) {
        goto failed;
    }

    rb->pool = pool;
    ngx_queue_init(&rb->waiters);

    rb->sn.str.data = p;
    rb->sn.str.len = op->conversation.len;
    p = ngx_cpymem(p, op->conversation.data, op->conversation.len);

    for (i = 0; i < 3; i++) {
        rb->keys[i].data = p;
        rb->keys[i].len = op->keys[i].len;
        p = ngx_cpymem(p, op->keys[i].data, op->keys[i].len);
    }

    rb->gen.data = p;
    rb->gen.len = gen->len;
    ngx_memcpy(p, gen->str, gen->len);

    values[0] = (char *) rb->sn.str.data;
    lengths[0] = (int) rb->sn.str.len;

    rb->pg = ngx_chat_pg_query(ngx_chat_rebuild_sql, 1, values, lengths,
                               ngx_chat_send_rebuild_pg, rb);
    if (rb->pg == NULL) {
        goto failed;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "chat: membership rebuild of \"%V\"", &rb->sn.str);

    rb->sn.node.key = ngx_crc32_short(rb->sn.str.data, rb->sn.str.len);
    ngx_rbtree_insert(&ngx_chat_rebuilds, &rb->sn.node);

    ngx_chat_rebuild_wait(rb, op);

    return;

failed:

    ngx_destroy_pool(pool);
    ngx_chat_send_finish(op, "unavailable", "out of memory");
}


static void
ngx_chat_send_rebuild_pg(PGresult *res, void *data)
{
    ngx_chat_rebuild_t  *rb = data;

    u_char                *p, *end, *comma;
    char                  *floor, *members, *created;
    size_t                 n;
    ngx_uint_t             argc;
    const char           **v;
    size_t                *vl;

    rb->pg = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "chat: membership query failed: %s",
                          PQresultErrorMessage(res));
        }

        ngx_chat_rebuild_done(rb, "unavailable",
                              "the database is unavailable, try again");
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_chat_rebuild_done(rb, "not_found", "no such conversation");
        return;
    }

    floor = PQgetvalue(res, 0, 0);
    members = PQgetvalue(res, 0, 1);
    created = PQgetvalue(res, 0, 2);

    n = 8 + ngx_strlen(members) / 2 + 1;

    v = ngx_palloc(rb->pool, n * sizeof(char *));
    vl = ngx_palloc(rb->pool, n * sizeof(size_t));

    if (v == NULL || vl == NULL) {
        ngx_chat_rebuild_done(rb, "unavailable", "out of memory");
        return;
    }

    v[0] = (char *) rb->keys[0].data;
    vl[0] = rb->keys[0].len;
    v[1] = (char *) rb->keys[1].data;
    vl[1] = rb->keys[1].len;
    v[2] = (char *) rb->keys[2].data;
    vl[2] = rb->keys[2].len;
    v[3] = NGX_CHAT_EPOCH_KEY;
    vl[3] = sizeof(NGX_CHAT_EPOCH_KEY) - 1;
    v[4] = (char *) rb->gen.data;
    vl[4] = rb->gen.len;
    v[5] = floor;
    vl[5] = ngx_strlen(floor);
    v[6] = created;
    vl[6] = ngx_strlen(created);
    v[7] = NGX_CHAT_SEQ_JUMP;
    vl[7] = sizeof(NGX_CHAT_SEQ_JUMP) - 1;
    argc = 8;

    p = (u_char *) members;
    end = p + ngx_strlen(members);

    while (p < end && argc < n) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        v[argc] = (char *) p;
        vl[argc] = comma - p;
        argc++;

        p = comma + 1;
    }

    /* the values point into res, which the script call copies */

    rb->redis = ngx_chat_redis_eval(&ngx_chat_rebuild_script,
                                    ngx_chat_send_rebuild_reply, rb, 4,
                                    (int) argc, v, vl);

    if (rb->redis == NULL) {
        ngx_chat_rebuild_done(rb, "unavailable",
                              "the message store is unavailable, try again");
    }
}


static void
ngx_chat_send_rebuild_reply(redisReply *reply, void *data)
{
    ngx_chat_rebuild_t  *rb = data;

    rb->redis = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_chat_rebuild_done(rb, "unavailable",
                              "the message store is unavailable, try again");
        return;
    }

    /* rebuilt, or the membership changed meanwhile: try again */
    ngx_chat_rebuild_done(rb, NULL, NULL);
}


/*
 * The rebuild is over: its waiters run again (or fail) in arrival order.
 * They move to a list of this frame first: an op that finishes may close
 * its session, which cancels that session's other ops, waiters of this
 * list included (ngx_chat_send_cancel takes them out of it), so the list
 * is only ever read at its head.
 */

static void
ngx_chat_rebuild_done(ngx_chat_rebuild_t *rb, const char *code,
    const char *message)
{
    ngx_queue_t       run, *q;
    ngx_chat_send_t  *op;

    ngx_rbtree_delete(&ngx_chat_rebuilds, &rb->sn.node);

    ngx_queue_init(&run);

    if (!ngx_queue_empty(&rb->waiters)) {
        ngx_queue_add(&run, &rb->waiters);
    }

    ngx_destroy_pool(rb->pool);

    while (!ngx_queue_empty(&run)) {
        q = ngx_queue_head(&run);
        ngx_queue_remove(q);

        op = ngx_queue_data(q, ngx_chat_send_t, wait);
        op->waiting = 0;

        if (code) {
            ngx_chat_send_finish(op, code, message);

        } else {
            ngx_chat_send_run(op);
        }
    }
}


/*
 * The message is accepted and live; its RECEIPT waits for Kafka to hold it
 * (acks=all). A retry of an accepted message (code 2) is produced again
 * with the JSON Redis kept: the persistence worker stores (conversation,
 * seq) once.
 */

static void
ngx_chat_send_produce(ngx_chat_send_t *op, ngx_int_t code, redisReply *value)
{
    u_char  *json, *p, *end;
    size_t   len;

    if (code == 1) {
        len = op->head.len + value->len + op->tail.len;

        json = ngx_pnalloc(op->pool, len);
        if (json == NULL) {
            ngx_chat_send_finish(op, "unavailable", "out of memory");
            return;
        }

        p = ngx_cpymem(json, op->head.data, op->head.len);
        p = ngx_cpymem(p, value->str, value->len);
        ngx_memcpy(p, op->tail.data, op->tail.len);

    } else {
        /* "<seq> <json>" */
        p = (u_char *) value->str;
        end = p + value->len;
        json = ngx_strlchr(p, end, ' ');

        if (json == NULL) {
            ngx_chat_send_finish(op, "unavailable",
                                 "the message store failed, try again");
            return;
        }

        json++;
        len = end - json;
    }

    op->kafka = ngx_chat_kafka_produce(
                    (char *) ngx_chat_worker.mcf->kafka_topic.data,
                    op->conversation.data, op->conversation.len,
                    json, len, ngx_chat_send_delivered, op);

    if (op->kafka == NULL) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message log is unavailable, try again");
    }
}


/* a read watermark that moved goes to Kafka: the JSON relayed, unrouted */

static void
ngx_chat_read_produce(ngx_chat_send_t *op, redisReply *value)
{
    u_char  *json, *p;
    size_t   skip, len;

    skip = sizeof("/user/queue/receipts\n\n") - 1;
    len = op->head.len - skip + value->len + op->tail.len;

    json = ngx_pnalloc(op->pool, len);
    if (json == NULL) {
        return;
    }

    p = ngx_cpymem(json, op->head.data + skip, op->head.len - skip);
    p = ngx_cpymem(p, value->str, value->len);
    ngx_memcpy(p, op->tail.data, op->tail.len);

    ngx_chat_receipts_produce(json, len);
}


static void
ngx_chat_send_delivered(ngx_int_t rc, void *data)
{
    ngx_chat_send_t  *op = data;

    op->kafka = NULL;

    if (rc != NGX_OK) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message could not be stored in time, "
                             "try again with the same clientMsgId");
        return;
    }

    ngx_chat_send_finish(op, NULL, NULL);
}


static void
ngx_chat_send_finish(ngx_chat_send_t *op, const char *code,
    const char *message)
{
    ngx_chat_session_t  *s = op->op.session;

    if (code == NULL) {
        if (op->kind == NGX_CHAT_OP_SEND) {
            ngx_chat_metric_inc(NGX_CHAT_M_MESSAGES_IN, 1);
        }

        if (op->receipt.len) {
            ngx_chat_session_receipt(s, &op->receipt);
        }

    } else {
        if (op->kind != NGX_CHAT_OP_TYPING
            || ngx_strcmp(code, "unavailable") != 0)
        {
            ngx_chat_session_reject(s, code, message, &op->client_msg_id,
                                    &op->receipt);
        }
    }

    ngx_chat_session_op_done(s, &op->op);
    ngx_destroy_pool(op->pool);
}


static void
ngx_chat_send_cancel(ngx_chat_op_t *o)
{
    ngx_chat_send_t  *op = (ngx_chat_send_t *) o;

    if (op->waiting) {
        ngx_queue_remove(&op->wait);
    }

    if (op->redis) {
        ngx_chat_redis_cancel(op->redis);
    }

    if (op->kafka) {
        ngx_chat_kafka_cancel(op->kafka);
    }

    ngx_destroy_pool(op->pool);
}


/* a JSON string literal, quotes included */

static ngx_int_t
ngx_chat_json_string(ngx_pool_t *pool, ngx_str_t *out, const char *s,
    size_t len)
{
    u_char  *p;
    size_t   n;

    n = len + ngx_escape_json(NULL, (u_char *) s, len) + 2;

    p = ngx_pnalloc(pool, n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, (u_char *) s, len);
    *p++ = '"';
    out->len = p - out->data;

    return NGX_OK;
}


/*
 * 63-bit time-sortable ids: 41 bits of milliseconds since 2024-01-01,
 * 7 bits of chat_node_id, 5 bits of worker number, 10 bits of counter.
 * More than 1024 ids in one millisecond borrow the next millisecond, and
 * a clock that steps back never makes an id go back.
 */

static uint64_t
ngx_chat_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


static uint64_t
ngx_chat_next_id(uint64_t *ms_out)
{
    uint64_t  ms;

    ms = ngx_chat_now_ms();

    if (ms > ngx_chat_id_last_ms) {
        ngx_chat_id_last_ms = ms;
        ngx_chat_id_counter = 0;

    } else if (++ngx_chat_id_counter == 1024) {
        ngx_chat_id_last_ms++;
        ngx_chat_id_counter = 0;
    }

    *ms_out = ngx_chat_id_last_ms;

    return ((ngx_chat_id_last_ms - NGX_CHAT_ID_EPOCH) << 22)
           | ((uint64_t) (ngx_chat_worker.mcf->node_id & 0x7f) << 15)
           | ((uint64_t) (ngx_worker & 0x1f) << 10)
           | ngx_chat_id_counter;
}


/* RFC 3339 UTC with milliseconds */

static u_char *
ngx_chat_format_time(u_char *p, uint64_t ms)
{
    ngx_tm_t  tm;

    ngx_gmtime((time_t) (ms / 1000), &tm);

    return ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       (int) (ms % 1000));
}
