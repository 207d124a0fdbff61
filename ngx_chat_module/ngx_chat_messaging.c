/* ngx_chat_messaging.c: messages, typing and events: validation, ids,
 * per-conversation seq and fan-out through Redis, and the worker's registry
 * of which users have sessions here. */

#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_pg.h"

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


/* a user with at least one session in this worker */
struct ngx_chat_user_s {
    ngx_str_node_t            sn;          /* key: userId */
    ngx_queue_t               sessions;
    ngx_str_t                 channel;     /* "chat:u:<userId>" */
};


/* a SEND to /app/... in flight */
typedef struct {
    ngx_chat_op_t             op;
    ngx_pool_t               *pool;
    ngx_uint_t                kind;
    ngx_uint_t                tries;
    ngx_chat_redis_req_t     *redis;
    ngx_chat_pg_req_t        *pg;
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
    ngx_str_t                 gen;
} ngx_chat_send_t;


typedef struct {
    const char               *name;
    size_t                    len;
    ngx_chat_dest_e           dest;
} ngx_chat_channel_dest_t;


static void ngx_chat_messaging_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);
static ngx_int_t ngx_chat_send_prepare(ngx_chat_session_t *s,
    ngx_chat_send_t *op, u_char *body, size_t len);
static ngx_int_t ngx_chat_typing_prepare(ngx_chat_session_t *s,
    ngx_chat_send_t *op, u_char *body, size_t len);
static ngx_int_t ngx_chat_read_prepare(ngx_chat_session_t *s,
    ngx_chat_send_t *op, u_char *body, size_t len);
static void ngx_chat_send_run(ngx_chat_send_t *op);
static void ngx_chat_send_reply(redisReply *reply, void *data);
static void ngx_chat_send_rebuild(ngx_chat_send_t *op);
static void ngx_chat_send_rebuild_pg(PGresult *res, void *data);
static void ngx_chat_send_rebuild_reply(redisReply *reply, void *data);
static void ngx_chat_send_produce(ngx_chat_send_t *op, ngx_int_t code,
    redisReply *value);
static void ngx_chat_send_delivered(ngx_int_t rc, void *data);
static void ngx_chat_send_finish(ngx_chat_send_t *op, const char *code,
    const char *message);
static void ngx_chat_send_cancel(ngx_chat_op_t *op);
static ngx_int_t ngx_chat_json_string(ngx_pool_t *pool, ngx_str_t *out,
    const char *s, size_t len);
static uint64_t ngx_chat_next_id(uint64_t *ms);
static u_char *ngx_chat_format_time(u_char *p, uint64_t ms);
static void ngx_chat_ignore_reply(redisReply *reply, void *data);
static void ngx_chat_messaging_on_state(ngx_uint_t up);


static ngx_rbtree_t       ngx_chat_users;
static ngx_rbtree_node_t  ngx_chat_users_sentinel;
static uint64_t           ngx_chat_id_last_ms;
static uint64_t           ngx_chat_id_counter;


static ngx_chat_channel_dest_t  ngx_chat_channel_dests[] = {
    { "/user/queue/messages", sizeof("/user/queue/messages") - 1,
      NGX_CHAT_DEST_MESSAGES },
    { "/user/queue/typing", sizeof("/user/queue/typing") - 1,
      NGX_CHAT_DEST_TYPING },
    { "/user/queue/events", sizeof("/user/queue/events") - 1,
      NGX_CHAT_DEST_EVENTS },
    { "/user/queue/receipts", sizeof("/user/queue/receipts") - 1,
      NGX_CHAT_DEST_RECEIPTS },
    { NULL, 0, NGX_CHAT_DEST_NONE }
};


/*
 * One script accepts a message: membership check, idempotency on the
 * client's id, the next seq, the publish to every member's channel and the
 * recent-history buffer, all atomic, so publish order is seq order on
 * every subscriber.
 *
 * KEYS: members set, seq counter, membership generation, dedup key or "",
 * history list.
 * ARGV: sender, route ("<destination>\n<id>\n"), JSON head (ends with
 * "seq":), JSON tail, dedup ttl, history length.
 * Returns {1, seq}, {2, "<seq> <json>"} (a retry of an accepted message),
 * {0, ""} (not a member) or {-1, generation} (rebuild the cache first).
 */
static ngx_chat_redis_script_t  ngx_chat_send_script = {
    "if redis.call('EXISTS', KEYS[1]) == 0"
    " or redis.call('EXISTS', KEYS[2]) == 0 then"
    "  return {-1, redis.call('GET', KEYS[3]) or '0'} end "
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then"
    "  return {0, ''} end "
    "if KEYS[4] ~= '' then"
    "  local old = redis.call('GET', KEYS[4])"
    "  if old then return {2, old} end "
    "end "
    "local seq = redis.call('INCR', KEYS[2]) "
    "local json = ARGV[3] .. seq .. ARGV[4] "
    "local msg = ARGV[2] .. json "
    "for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do"
    "  if m ~= '' then redis.call('PUBLISH', 'chat:u:' .. m, msg) end "
    "end "
    "redis.call('LPUSH', KEYS[5], json) "
    "redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[6]) - 1) "
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
    "if redis.call('EXISTS', KEYS[1]) == 0"
    " or redis.call('EXISTS', KEYS[2]) == 0 then"
    "  return {-1, redis.call('GET', KEYS[3]) or '0'} end "
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then"
    "  return {0, ''} end "
    "if tonumber(ARGV[3]) > 0 and not redis.call('SET', KEYS[4], '1',"
    " 'PX', ARGV[3], 'NX') then return {1, ''} end "
    "for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do"
    "  if m ~= '' and m ~= ARGV[1] then"
    "    redis.call('PUBLISH', 'chat:u:' .. m, ARGV[2]) end "
    "end "
    "return {1, ''}",
    ""
};


/*
 * A read watermark: it only moves forward and never past the last seq;
 * a move is relayed to the other members.
 * KEYS: members set, seq counter, generation, reads hash. ARGV: reader,
 * seq, payload head (ends with "seq":), payload tail. Returns {1, seq}
 * (the watermark now), {0, ""} or {-1, generation} as above.
 */
static ngx_chat_redis_script_t  ngx_chat_read_script = {
    "if redis.call('EXISTS', KEYS[1]) == 0"
    " or redis.call('EXISTS', KEYS[2]) == 0 then"
    "  return {-1, redis.call('GET', KEYS[3]) or '0'} end "
    "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then"
    "  return {0, ''} end "
    "local last = tonumber(redis.call('GET', KEYS[2])) "
    "local want = math.min(tonumber(ARGV[2]), last) "
    "local old = tonumber(redis.call('HGET', KEYS[4], ARGV[1]) or '0') "
    "if want <= old then return {1, tostring(old)} end "
    "redis.call('HSET', KEYS[4], ARGV[1], want) "
    "local msg = ARGV[3] .. want .. ARGV[4] "
    "for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do"
    "  if m ~= '' and m ~= ARGV[1] then"
    "    redis.call('PUBLISH', 'chat:u:' .. m, msg) end "
    "end "
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

    ngx_rbtree_init(&ngx_chat_users, &ngx_chat_users_sentinel,
                    ngx_str_rbtree_insert_value);

    if (ngx_chat_redis_script(&ngx_chat_send_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_relay_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_read_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_rebuild_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_invalidate_script) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return ngx_chat_redis_init(cycle, mcf->redis, mcf->redis_timeout,
                               ngx_chat_messaging_on_message,
                               ngx_chat_messaging_on_state);
}


/*
 * Marks when this Redis's data began, if nobody did yet: counters of
 * conversations older than that were lost (see the rebuild script).
 */

static void
ngx_chat_messaging_on_state(ngx_uint_t up)
{
    u_char       *p;
    ngx_time_t   *tp;
    const char   *argv[4];
    size_t        argvlen[4];
    u_char        ms[NGX_INT64_LEN];

    if (!up) {
        return;
    }

    tp = ngx_timeofday();
    p = ngx_sprintf(ms, "%uL", (uint64_t) tp->sec * 1000 + tp->msec);

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = NGX_CHAT_EPOCH_KEY;
    argvlen[1] = sizeof(NGX_CHAT_EPOCH_KEY) - 1;
    argv[2] = (char *) ms;
    argvlen[2] = p - ms;
    argv[3] = "NX";
    argvlen[3] = 2;

    (void) ngx_chat_redis_command(ngx_chat_ignore_reply, NULL, 4, argv,
                                  argvlen);
}


void
ngx_chat_messaging_exit_process(ngx_cycle_t *cycle)
{
    ngx_chat_redis_exit();
}


/* the registry: users with sessions in this worker */

ngx_int_t
ngx_chat_messaging_register(ngx_chat_session_t *s)
{
    uint32_t          hash;
    ngx_chat_user_t  *u;

    hash = ngx_crc32_short(s->id.user.data, s->id.user.len);

    u = (ngx_chat_user_t *) ngx_str_rbtree_lookup(&ngx_chat_users,
                                                  &s->id.user, hash);

    if (u == NULL) {
        u = ngx_alloc(sizeof(ngx_chat_user_t) + s->id.user.len
                      + sizeof("chat:u:") - 1, s->log);
        if (u == NULL) {
            return NGX_ERROR;
        }

        u->channel.data = (u_char *) (u + 1);
        u->channel.len = ngx_sprintf(u->channel.data, "chat:u:%V",
                                     &s->id.user)
                         - u->channel.data;

        u->sn.str.data = u->channel.data + sizeof("chat:u:") - 1;
        u->sn.str.len = s->id.user.len;
        u->sn.node.key = hash;

        if (ngx_chat_redis_subscribe(u->channel.data, u->channel.len)
            != NGX_OK)
        {
            ngx_free(u);
            return NGX_ERROR;
        }

        ngx_queue_init(&u->sessions);
        ngx_rbtree_insert(&ngx_chat_users, &u->sn.node);
    }

    ngx_queue_insert_tail(&u->sessions, &s->user_link);
    s->user = u;

    return NGX_OK;
}


void
ngx_chat_messaging_unregister(ngx_chat_session_t *s)
{
    ngx_chat_user_t  *u = s->user;

    if (u == NULL) {
        return;
    }

    ngx_queue_remove(&s->user_link);
    s->user = NULL;

    if (ngx_queue_empty(&u->sessions)) {
        ngx_chat_redis_unsubscribe(u->channel.data, u->channel.len);
        ngx_rbtree_delete(&ngx_chat_users, &u->sn.node);
        ngx_free(u);
    }
}


/*
 * A publish on a user's channel: "<destination>\n<message-id>\n<json>".
 * The body is copied once into a blob that every session of the user
 * shares.
 */

static void
ngx_chat_messaging_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len)
{
    u_char                   *p, *end, *mid;
    size_t                    mid_len;
    uint32_t                  hash;
    ngx_str_t                 user;
    ngx_queue_t              *q, *next;
    ngx_chat_user_t          *u;
    ngx_chat_blob_t          *b;
    ngx_chat_dest_e           dest;
    ngx_chat_channel_dest_t  *cd;

    if (channel_len <= sizeof("chat:u:") - 1
        || ngx_strncmp(channel, "chat:u:", sizeof("chat:u:") - 1) != 0)
    {
        return;
    }

    user.data = channel + sizeof("chat:u:") - 1;
    user.len = channel_len - (sizeof("chat:u:") - 1);
    hash = ngx_crc32_short(user.data, user.len);

    u = (ngx_chat_user_t *) ngx_str_rbtree_lookup(&ngx_chat_users, &user,
                                                  hash);
    if (u == NULL) {
        return;
    }

    end = payload + len;

    p = ngx_strlchr(payload, end, '\n');
    if (p == NULL) {
        goto invalid;
    }

    dest = NGX_CHAT_DEST_NONE;

    for (cd = ngx_chat_channel_dests; cd->name; cd++) {
        if ((size_t) (p - payload) == cd->len
            && ngx_strncmp(payload, cd->name, cd->len) == 0)
        {
            dest = cd->dest;
            break;
        }
    }

    if (dest == NGX_CHAT_DEST_NONE) {
        goto invalid;
    }

    mid = p + 1;
    p = ngx_strlchr(mid, end, '\n');
    if (p == NULL) {
        goto invalid;
    }

    mid_len = p - mid;
    p++;

    /* the JSON and the NUL that ends the STOMP frame */
    b = ngx_chat_blob_create(end - p + 1);
    if (b == NULL) {
        return;
    }

    ngx_memcpy(b->data, p, end - p);
    b->data[end - p] = '\0';

    for (q = ngx_queue_head(&u->sessions);
         q != ngx_queue_sentinel(&u->sessions);
         q = next)
    {
        next = ngx_queue_next(q);
        ngx_chat_session_deliver(ngx_queue_data(q, ngx_chat_session_t,
                                                user_link),
                                 dest, mid, mid_len, b);
    }

    ngx_chat_blob_release(b);

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "chat: invalid payload on \"%*s\"", channel_len, channel);
}


ngx_int_t
ngx_chat_publish_to_user(ngx_str_t *user, const char *destination,
    u_char *json, size_t len)
{
    u_char                *p, *buf;
    size_t                 dlen;
    const char            *argv[3];
    size_t                 argvlen[3];
    ngx_chat_redis_req_t  *req;
    u_char                 channel[sizeof("chat:u:") + NGX_CHAT_USER_ID_MAX];

    if (user->len > NGX_CHAT_USER_ID_MAX) {
        return NGX_ERROR;
    }

    dlen = ngx_strlen(destination);

    buf = ngx_alloc(dlen + 2 + len, ngx_cycle->log);
    if (buf == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(buf, destination, dlen);
    *p++ = '\n';
    *p++ = '\n';
    p = ngx_cpymem(p, json, len);

    argv[0] = "PUBLISH";
    argvlen[0] = sizeof("PUBLISH") - 1;
    argv[1] = (char *) channel;
    argvlen[1] = ngx_sprintf(channel, "chat:u:%V", user) - channel;
    argv[2] = (char *) buf;
    argvlen[2] = p - buf;

    req = ngx_chat_redis_command(ngx_chat_ignore_reply, NULL, 3, argv,
                                 argvlen);
    ngx_free(buf);

    return req ? NGX_OK : NGX_ERROR;
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
                            ngx_chat_ignore_reply, NULL, 2, 2, argv, argvlen)
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
 * Parses and validates a chat.send body, and builds the payload every
 * member receives, split around the seq that Redis assigns:
 * "/user/queue/messages\n<id>\n{...,"seq":" <seq> ",...}".
 * NGX_DECLINED: rejected (the session was told).
 */

static ngx_int_t
ngx_chat_send_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    char          *meta;
    size_t         n;
    uint64_t       id, ms;
    json_t        *root, *conv, *content, *cmid, *metadata;
    ngx_str_t      jconv, jcontent, jcmid, jsender;
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

    conv = json_object_get(root, "conversationId");

    if (!json_is_string(conv)
        || json_string_length(conv) == 0
        || json_string_length(conv) > NGX_CHAT_CONV_ID_MAX)
    {
        message = "conversationId must be a string of 1 to 36 characters";
        goto rejected;
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

    op->conversation.len = json_string_length(conv);
    op->conversation.data = ngx_pnalloc(op->pool, op->conversation.len);
    if (op->conversation.data == NULL) {
        goto failed;
    }

    ngx_memcpy(op->conversation.data, json_string_value(conv),
               op->conversation.len);

    if (ngx_chat_json_string(op->pool, &jconv, json_string_value(conv),
                             json_string_length(conv)) != NGX_OK
        || ngx_chat_json_string(op->pool, &jcontent,
                                json_string_value(content),
                                json_string_length(content)) != NGX_OK
        || ngx_chat_json_string(op->pool, &jsender,
                                (char *) s->id.user.data, s->id.user.len)
           != NGX_OK)
    {
        goto failed;
    }

    id = ngx_chat_next_id(&ms);

    /* the payload, head and tail */

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

    n = sizeof(",\"senderId\":,\"content\":,\"clientMsgId\":,"
               "\"metadata\":,\"createdAt\":\"2024-01-01T00:00:00.000Z\"}")
        + jsender.len + jcontent.len + jcmid.len
        + (meta ? ngx_strlen(meta) : 2);

    op->tail.data = ngx_pnalloc(op->pool, n);
    if (op->tail.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(op->tail.data, ",\"senderId\":%V,\"content\":%V",
                    &jsender, &jcontent);

    if (jcmid.len) {
        p = ngx_sprintf(p, ",\"clientMsgId\":%V", &jcmid);
    }

    p = ngx_sprintf(p, ",\"metadata\":%s,\"createdAt\":\"",
                    meta ? meta : "{}");
    p = ngx_chat_format_time(p, ms);
    *p++ = '"';
    *p++ = '}';
    op->tail.len = p - op->tail.data;

    if (meta) {
        free(meta);
    }

    json_decref(root);

    return NGX_OK;

rejected:

    if (meta) {
        free(meta);
    }

    if (root) {
        json_decref(root);
    }

    ngx_chat_session_reject(s, code, message, &op->client_msg_id,
                            &op->receipt);
    return NGX_DECLINED;

failed:

    if (meta) {
        free(meta);
    }

    if (root) {
        json_decref(root);
    }

    return NGX_ERROR;
}


static ngx_int_t
ngx_chat_typing_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    size_t         n;
    uint64_t       ms;
    json_t        *root, *conv;
    ngx_str_t      jconv, juser;
    ngx_time_t    *tp;
    json_error_t   jerr;

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);
    conv = root ? json_object_get(root, "conversationId") : NULL;

    if (!json_is_string(conv)
        || json_string_length(conv) == 0
        || json_string_length(conv) > NGX_CHAT_CONV_ID_MAX)
    {
        if (root) {
            json_decref(root);
        }

        ngx_chat_session_reject(s, "bad_request",
                                "the body must be a JSON object with a "
                                "conversationId", NULL, &op->receipt);
        return NGX_DECLINED;
    }

    op->conversation.len = json_string_length(conv);
    op->conversation.data = ngx_pnalloc(op->pool, op->conversation.len);

    if (op->conversation.data == NULL
        || ngx_chat_json_string(op->pool, &jconv, json_string_value(conv),
                                json_string_length(conv)) != NGX_OK
        || ngx_chat_json_string(op->pool, &juser, (char *) s->id.user.data,
                                s->id.user.len) != NGX_OK)
    {
        json_decref(root);
        return NGX_ERROR;
    }

    ngx_memcpy(op->conversation.data, json_string_value(conv),
               op->conversation.len);
    json_decref(root);

    n = sizeof("/user/queue/typing\n\n{\"type\":\"typing\","
               "\"conversationId\":,\"userId\":,"
               "\"at\":\"2024-01-01T00:00:00.000Z\"}")
        + jconv.len + juser.len;

    op->head.data = ngx_pnalloc(op->pool, n);
    if (op->head.data == NULL) {
        return NGX_ERROR;
    }

    tp = ngx_timeofday();
    ms = (uint64_t) tp->sec * 1000 + tp->msec;

    p = ngx_sprintf(op->head.data, "/user/queue/typing\n\n"
                    "{\"type\":\"typing\",\"conversationId\":%V,"
                    "\"userId\":%V,\"at\":\"", &jconv, &juser);
    p = ngx_chat_format_time(p, ms);
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
    uint64_t       ms;
    json_t        *root, *conv, *seq;
    ngx_str_t      jconv, juser;
    ngx_time_t    *tp;
    json_error_t   jerr;

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);
    conv = root ? json_object_get(root, "conversationId") : NULL;
    seq = root ? json_object_get(root, "seq") : NULL;

    if (!json_is_string(conv)
        || json_string_length(conv) == 0
        || json_string_length(conv) > NGX_CHAT_CONV_ID_MAX
        || !json_is_integer(seq)
        || json_integer_value(seq) < 1)
    {
        if (root) {
            json_decref(root);
        }

        ngx_chat_session_reject(s, "bad_request",
                                "the body must be a JSON object with a "
                                "conversationId and a seq of at least 1",
                                NULL, &op->receipt);
        return NGX_DECLINED;
    }

    op->conversation.len = json_string_length(conv);
    op->conversation.data = ngx_pnalloc(op->pool, op->conversation.len);
    op->seq.data = ngx_pnalloc(op->pool, NGX_INT64_LEN);

    if (op->conversation.data == NULL
        || op->seq.data == NULL
        || ngx_chat_json_string(op->pool, &jconv, json_string_value(conv),
                                json_string_length(conv)) != NGX_OK
        || ngx_chat_json_string(op->pool, &juser, (char *) s->id.user.data,
                                s->id.user.len) != NGX_OK)
    {
        json_decref(root);
        return NGX_ERROR;
    }

    ngx_memcpy(op->conversation.data, json_string_value(conv),
               op->conversation.len);
    op->seq.len = ngx_sprintf(op->seq.data, "%L",
                              (int64_t) json_integer_value(seq))
                  - op->seq.data;
    json_decref(root);

    n = sizeof("/user/queue/receipts\n\n{\"type\":\"read\","
               "\"conversationId\":,\"userId\":,\"seq\":")
        + jconv.len + juser.len;

    op->head.data = ngx_pnalloc(op->pool, n);
    op->tail.data = ngx_pnalloc(op->pool,
                                sizeof(",\"at\":\"2024-01-01T00:00:00.000Z\"}"));

    if (op->head.data == NULL || op->tail.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(op->head.data, "/user/queue/receipts\n\n"
                    "{\"type\":\"read\",\"conversationId\":%V,"
                    "\"userId\":%V,\"seq\":", &jconv, &juser);
    op->head.len = p - op->head.data;

    tp = ngx_timeofday();
    ms = (uint64_t) tp->sec * 1000 + tp->msec;

    p = ngx_cpymem(op->tail.data, ",\"at\":\"", 7);
    p = ngx_chat_format_time(p, ms);
    *p++ = '"';
    *p++ = '}';
    op->tail.len = p - op->tail.data;

    return NGX_OK;
}


static void
ngx_chat_send_run(ngx_chat_send_t *op)
{
    u_char      *p;
    size_t       n;
    ngx_uint_t   i;
    const char  *argv[11];
    size_t       argvlen[11];
    u_char       interval[NGX_INT64_LEN];

    if (op->keys[0].len == 0) {
        n = 5 * (sizeof("chat:x:") + NGX_CHAT_CONV_ID_MAX)
            + NGX_CHAT_USER_ID_MAX + NGX_CHAT_CLIENT_ID_MAX + 2;

        p = ngx_pnalloc(op->pool, n);
        if (p == NULL) {
            ngx_chat_send_finish(op, "unavailable", "out of memory");
            return;
        }

        for (i = 0; i < 3; i++) {
            op->keys[i].data = p;
            p = ngx_sprintf(p, "chat:%c:%V", "msg"[i], &op->conversation);
            op->keys[i].len = p - op->keys[i].data;
        }

        op->keys[3].data = p;

        if (op->kind == NGX_CHAT_OP_READ) {
            p = ngx_sprintf(p, "chat:r:%V", &op->conversation);

        } else if (op->kind == NGX_CHAT_OP_TYPING) {
            p = ngx_sprintf(p, "chat:t:%V:%V", &op->conversation,
                            &op->op.session->id.user);

        } else if (op->client_msg_id.len) {
            p = ngx_sprintf(p, "chat:d:%V:%V:%V", &op->conversation,
                            &op->op.session->id.user, &op->client_msg_id);
        }

        op->keys[3].len = p - op->keys[3].data;

        op->keys[4].data = p;
        p = ngx_sprintf(p, "chat:h:%V", &op->conversation);
        op->keys[4].len = p - op->keys[4].data;
    }

    for (i = 0; i < 5; i++) {
        argv[i] = (char *) op->keys[i].data;
        argvlen[i] = op->keys[i].len;
    }

    if (op->kind == NGX_CHAT_OP_SEND) {
        argv[5] = (char *) op->op.session->id.user.data;
        argvlen[5] = op->op.session->id.user.len;
        argv[6] = (char *) op->route.data;
        argvlen[6] = op->route.len;
        argv[7] = (char *) op->head.data;
        argvlen[7] = op->head.len;
        argv[8] = (char *) op->tail.data;
        argvlen[8] = op->tail.len;
        argv[9] = NGX_CHAT_DEDUP_TTL;
        argvlen[9] = sizeof(NGX_CHAT_DEDUP_TTL) - 1;
        argv[10] = NGX_CHAT_HISTORY_LEN;
        argvlen[10] = sizeof(NGX_CHAT_HISTORY_LEN) - 1;

        op->redis = ngx_chat_redis_eval(&ngx_chat_send_script,
                                        ngx_chat_send_reply, op, 5, 11,
                                        argv, argvlen);

    } else if (op->kind == NGX_CHAT_OP_READ) {
        argv[4] = (char *) op->op.session->id.user.data;
        argvlen[4] = op->op.session->id.user.len;
        argv[5] = (char *) op->seq.data;
        argvlen[5] = op->seq.len;
        argv[6] = (char *) op->head.data;
        argvlen[6] = op->head.len;
        argv[7] = (char *) op->tail.data;
        argvlen[7] = op->tail.len;

        op->redis = ngx_chat_redis_eval(&ngx_chat_read_script,
                                        ngx_chat_send_reply, op, 4, 8,
                                        argv, argvlen);

    } else {
        argv[4] = (char *) op->op.session->id.user.data;
        argvlen[4] = op->op.session->id.user.len;
        argv[5] = (char *) op->head.data;
        argvlen[5] = op->head.len;
        argv[6] = (char *) interval;
        argvlen[6] = ngx_sprintf(interval, "%M",
                                 op->op.session->lcf->typing_interval)
                     - interval;

        op->redis = ngx_chat_redis_eval(&ngx_chat_relay_script,
                                        ngx_chat_send_reply, op, 4, 7,
                                        argv, argvlen);
    }

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
        if (op->kind == NGX_CHAT_OP_SEND && ngx_chat_kafka_enabled()) {
            ngx_chat_send_produce(op, code, value);
            return;
        }

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

        op->gen.data = ngx_pnalloc(op->pool, value->len);
        if (op->gen.data == NULL) {
            ngx_chat_send_finish(op, "unavailable", "out of memory");
            return;
        }

        ngx_memcpy(op->gen.data, value->str, value->len);
        op->gen.len = value->len;

        ngx_chat_send_rebuild(op);
        return;
    }
}


/* the membership cache missed: ask PostgreSQL */

static void
ngx_chat_send_rebuild(ngx_chat_send_t *op)
{
    const char  *values[1];
    int          lengths[1];

    values[0] = (char *) op->conversation.data;
    lengths[0] = (int) op->conversation.len;

    op->pg = ngx_chat_pg_query(ngx_chat_rebuild_sql, 1, values, lengths,
                               ngx_chat_send_rebuild_pg, op);

    if (op->pg == NULL) {
        ngx_chat_send_finish(op, "unavailable", "out of memory");
    }
}


static void
ngx_chat_send_rebuild_pg(PGresult *res, void *data)
{
    ngx_chat_send_t  *op = data;

    u_char                *p, *end, *comma;
    char                  *floor, *members, *created;
    size_t                 n;
    ngx_uint_t             argc;
    const char           **v;
    size_t                *vl;

    op->pg = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res) {
            ngx_log_error(NGX_LOG_ERR, op->op.session->log, 0,
                          "chat: membership query failed: %s",
                          PQresultErrorMessage(res));
        }

        ngx_chat_send_finish(op, "unavailable",
                             "the database is unavailable, try again");
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_chat_send_finish(op, "not_found", "no such conversation");
        return;
    }

    floor = PQgetvalue(res, 0, 0);
    members = PQgetvalue(res, 0, 1);
    created = PQgetvalue(res, 0, 2);

    n = 8 + ngx_strlen(members) / 2 + 1;

    v = ngx_palloc(op->pool, n * sizeof(char *));
    vl = ngx_palloc(op->pool, n * sizeof(size_t));

    if (v == NULL || vl == NULL) {
        ngx_chat_send_finish(op, "unavailable", "out of memory");
        return;
    }

    v[0] = (char *) op->keys[0].data;
    vl[0] = op->keys[0].len;
    v[1] = (char *) op->keys[1].data;
    vl[1] = op->keys[1].len;
    v[2] = (char *) op->keys[2].data;
    vl[2] = op->keys[2].len;
    v[3] = NGX_CHAT_EPOCH_KEY;
    vl[3] = sizeof(NGX_CHAT_EPOCH_KEY) - 1;
    v[4] = (char *) op->gen.data;
    vl[4] = op->gen.len;
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

    op->redis = ngx_chat_redis_eval(&ngx_chat_rebuild_script,
                                    ngx_chat_send_rebuild_reply, op, 4,
                                    (int) argc, v, vl);

    if (op->redis == NULL) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message store is unavailable, try again");
    }
}


static void
ngx_chat_send_rebuild_reply(redisReply *reply, void *data)
{
    ngx_chat_send_t  *op = data;

    op->redis = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message store is unavailable, try again");
        return;
    }

    /* rebuilt, or the membership changed meanwhile: try again */
    ngx_chat_send_run(op);
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

    if (op->redis) {
        ngx_chat_redis_cancel(op->redis);
    }

    if (op->pg) {
        ngx_chat_pg_cancel(op->pg);
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
ngx_chat_next_id(uint64_t *ms_out)
{
    uint64_t     ms;
    ngx_time_t  *tp;

    tp = ngx_timeofday();
    ms = (uint64_t) tp->sec * 1000 + tp->msec;

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


static void
ngx_chat_ignore_reply(redisReply *reply, void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: Redis error: %*s", (size_t) reply->len,
                      reply->str);
    }
}
