/* ngx_chat_presence.c: presence: sessions in Redis with a TTL, renewed per
 * worker, expiry scans for dead gateways, /topic/presence.<userId>. */

#include "ngx_chat_presence.h"
#include "ngx_chat_pg.h"


/*
 * Redis keys (all times are Redis's TIME, in ms):
 *
 *   chat:p:<user>      sorted set: the user's session ids, scored by expiry
 *   chat:p:expiry      sorted set: users scored by their latest expiry
 *   chat:ls:<user>     when the user was last seen (ms)
 *
 * and the channel chat:presence:<user>, whose payloads are the bodies of
 * /topic/presence.<user>. A session registers at CONNECT, every worker
 * renews its own sessions every TTL/3 in one script call, a clean end
 * removes it at once. Sessions of a gateway that died expire: every
 * worker scans chat:p:expiry every few seconds and the first to see a
 * user whose sessions all expired publishes that it went offline (the
 * scan is one script, so it happens once).
 */


#define NGX_CHAT_PRESENCE_BATCH    256     /* sessions per renewal call */
#define NGX_CHAT_PRESENCE_SCAN_MAX "100"   /* users per scan call */


/* a session of this worker, registered in Redis */
typedef struct {
    ngx_queue_t               link;
    ngx_str_t                 user;
    ngx_str_t                 sid;
} ngx_chat_presence_reg_t;


/* a user some session of this worker follows */
typedef struct {
    ngx_str_node_t            sn;          /* key: userId */
    ngx_queue_t               watches;
    ngx_str_t                 channel;     /* chat:presence:<user> */
    ngx_str_t                 destination; /* /topic/presence.<user> */
} ngx_chat_presence_node_t;


/* the subscriptions of one session to one user */
typedef struct {
    ngx_queue_t               link;
    ngx_chat_session_t       *session;
    ngx_uint_t                refs;
} ngx_chat_presence_watch_t;


/* the check of a new subscription */
typedef struct {
    ngx_chat_op_t             op;          /* first */
    ngx_chat_pg_req_t        *pg;
    ngx_chat_redis_req_t     *redis;
    ngx_event_t               ev;          /* an answer known at once */
    ngx_int_t                 rc;
    ngx_chat_blob_t          *body;
    ngx_str_t                 sub_id;
    ngx_str_t                 user;
    ngx_str_t                 receipt;
} ngx_chat_presence_check_t;


static void ngx_chat_presence_timer_handler(ngx_event_t *ev);
static void ngx_chat_presence_renew(void);
static void ngx_chat_presence_scan(void);
static void ngx_chat_presence_check_pg(PGresult *res, void *data);
static void ngx_chat_presence_check_snapshot(redisReply *reply, void *data);
static void ngx_chat_presence_check_later(ngx_event_t *ev);
static void ngx_chat_presence_check_finish(ngx_chat_presence_check_t *ck,
    ngx_int_t rc, ngx_chat_blob_t *body);
static void ngx_chat_presence_check_cancel(ngx_chat_op_t *op);
static ngx_chat_blob_t *ngx_chat_presence_self(ngx_str_t *user);
static void ngx_chat_presence_reply(redisReply *reply, void *data);


static ngx_queue_t         ngx_chat_presence_regs;
static ngx_uint_t          ngx_chat_presence_nregs;
static ngx_rbtree_t        ngx_chat_presence_tree;
static ngx_rbtree_node_t   ngx_chat_presence_sentinel;
static ngx_event_t         ngx_chat_presence_timer;
static ngx_connection_t    ngx_chat_presence_dummy;  /* for the timer's debug
                                                   log: fd -1 */
static ngx_msec_t          ngx_chat_presence_renewed;
static uint64_t            ngx_chat_presence_counter;
static ngx_uint_t          ngx_chat_presence_ready;


/* what every script shares: Redis's clock, RFC 3339 and the body */

#define NGX_CHAT_PRESENCE_LUA                                                \
    NGX_CHAT_LUA_NOW_ISO                                                      \
    "local function body(u, on, ms)"                                          \
    "  local ls = 'null'"                                                     \
    "  if ms then ls = '\"' .. iso(ms) .. '\"' end"                           \
    "  return '{\"type\":\"presence\",\"userId\":' .. cjson.encode(u)"        \
    "    .. ',\"online\":' .. (on and 'true' or 'false')"                     \
    "    .. ',\"lastSeen\":' .. ls .. '}'"                                    \
    " end "                                                                   \
    "local function pub(u, on, ms)"                                           \
    "  redis.call('PUBLISH', 'chat:presence:' .. u, body(u, on, ms))"         \
    " end "


/*
 * A session comes: the first live one of its user publishes online.
 * KEYS: chat:p:<user>, chat:p:expiry. ARGV: session id, ttl, user.
 */
static ngx_chat_redis_script_t  ngx_chat_presence_online_script = {
    NGX_CHAT_PRESENCE_LUA
    "local exp = now + tonumber(ARGV[2]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
    "local live = redis.call('ZCARD', KEYS[1]) "
    "redis.call('ZADD', KEYS[1], exp, ARGV[1]) "
    "local cur = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[3]) or '0') "
    "if cur < exp then redis.call('ZADD', KEYS[2], exp, ARGV[3]) end "
    "if live == 0 then pub(ARGV[3], true, now) end "
    "return live",
    ""
};


/*
 * A worker's sessions live on (one call for many). A session that Redis
 * had let go (Redis was away or lost its data) comes back.
 * KEYS: chat:p:expiry. ARGV: ttl, then user, session id, user, ...
 */
static ngx_chat_redis_script_t  ngx_chat_presence_renew_script = {
    NGX_CHAT_PRESENCE_LUA
    "local exp = now + tonumber(ARGV[1]) "
    "for i = 2, #ARGV - 1, 2 do"
    "  local u = ARGV[i]"
    "  local key = 'chat:p:' .. u"
    "  if not redis.call('ZSCORE', key, ARGV[i + 1]) then"
    "    redis.call('ZREMRANGEBYSCORE', key, '-inf', now)"
    "    if redis.call('ZCARD', key) == 0 then pub(u, true, now) end"
    "  end"
    "  redis.call('ZADD', key, exp, ARGV[i + 1])"
    "  local cur = tonumber(redis.call('ZSCORE', KEYS[1], u) or '0')"
    "  if cur < exp then redis.call('ZADD', KEYS[1], exp, u) end "
    "end "
    "return 1",
    ""
};


/*
 * A session ended cleanly: the last live one of its user publishes
 * offline, lastSeen now.
 * KEYS: chat:p:<user>, chat:p:expiry, chat:ls:<user>. ARGV: session id,
 * user.
 */
static ngx_chat_redis_script_t  ngx_chat_presence_offline_script = {
    NGX_CHAT_PRESENCE_LUA
    "local gone = redis.call('ZREM', KEYS[1], ARGV[1]) "
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now) "
    "local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES') "
    "if #top > 0 then"
    "  redis.call('ZADD', KEYS[2], top[2], ARGV[2])"
    "  return 0 "
    "end "
    "redis.call('ZREM', KEYS[2], ARGV[2]) "
    "redis.call('SET', KEYS[3], now) "
    "if gone == 1 then pub(ARGV[2], false, now) end "
    "return gone",
    ""
};


/*
 * Users whose sessions all expired (their gateway died): offline, last
 * seen at their last renewal.
 * KEYS: chat:p:expiry. ARGV: ttl, most users per call.
 */
static ngx_chat_redis_script_t  ngx_chat_presence_scan_script = {
    NGX_CHAT_PRESENCE_LUA
    "local users = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now,"
    " 'LIMIT', 0, tonumber(ARGV[2])) "
    "for _, u in ipairs(users) do"
    "  local key = 'chat:p:' .. u"
    "  local last = tonumber(redis.call('ZSCORE', KEYS[1], u))"
    "  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)"
    "  local top = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')"
    "  if #top > 0 then"
    "    redis.call('ZADD', KEYS[1], top[2], u)"
    "  else"
    "    redis.call('ZREM', KEYS[1], u)"
    "    local ls = math.min(math.max(last - tonumber(ARGV[1]), 0), now)"
    "    redis.call('SET', 'chat:ls:' .. u, ls)"
    "    pub(u, false, ls)"
    "  end "
    "end "
    "return #users",
    ""
};


/*
 * The snapshot of a subscription: the body.
 * KEYS: chat:p:<user>, chat:ls:<user>. ARGV: user.
 */
static ngx_chat_redis_script_t  ngx_chat_presence_snapshot_script = {
    NGX_CHAT_PRESENCE_LUA
    "if redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf') > 0 then"
    "  return body(ARGV[1], true, now) end "
    "local ls = redis.call('GET', KEYS[2]) "
    "return body(ARGV[1], false, ls and tonumber(ls) or nil)",
    ""
};


/* GET /presence: ARGV: users. {"userId","online","lastSeen"} each. */
static ngx_chat_redis_script_t  ngx_chat_presence_query_script = {
    NGX_CHAT_PRESENCE_LUA
    "local out = {} "
    "for i, u in ipairs(ARGV) do"
    "  local on = redis.call('ZCOUNT', 'chat:p:' .. u, '(' .. now, '+inf')"
    "    > 0"
    "  local ls = nil"
    "  if on then ls = now else"
    "    ls = redis.call('GET', 'chat:ls:' .. u)"
    "    if ls then ls = tonumber(ls) end"
    "  end"
    "  local j = '{\"userId\":' .. cjson.encode(u) .. ',\"online\":'"
    "    .. (on and 'true' or 'false') .. ',\"lastSeen\":'"
    "  if ls then j = j .. '\"' .. iso(ls) .. '\"}' else"
    "    j = j .. 'null}' end"
    "  out[i] = j "
    "end "
    "return out",
    ""
};


static const char  ngx_chat_presence_sql[] =
    "SELECT 1 FROM conversation_members a"
    " JOIN conversation_members b USING (conversation_id)"
    " WHERE a.user_id = $1 AND b.user_id = $2 LIMIT 1";


ngx_int_t
ngx_chat_presence_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_chat_presence_regs);
    ngx_chat_presence_nregs = 0;

    ngx_rbtree_init(&ngx_chat_presence_tree, &ngx_chat_presence_sentinel,
                    ngx_str_rbtree_insert_value);

    if (ngx_chat_redis_script(&ngx_chat_presence_online_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_presence_renew_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_presence_offline_script)
           != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_presence_scan_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_presence_snapshot_script)
           != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_presence_query_script) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_chat_presence_timer.handler = ngx_chat_presence_timer_handler;
    ngx_chat_presence_timer.log = cycle->log;
    ngx_chat_presence_dummy.fd = (ngx_socket_t) -1;
    ngx_chat_presence_timer.data = &ngx_chat_presence_dummy;
    ngx_chat_presence_timer.cancelable = 1;

    ngx_chat_presence_renewed = ngx_current_msec;
    ngx_chat_presence_ready = 1;

    /* the workers of a server do not all scan at the same moment */
    ngx_add_timer(&ngx_chat_presence_timer,
                  NGX_CHAT_PRESENCE_SCAN / 2
                  + (ngx_msec_t) ngx_random() % NGX_CHAT_PRESENCE_SCAN);

    return NGX_OK;
}


void
ngx_chat_presence_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_chat_presence_timer.timer_set) {
        ngx_del_timer(&ngx_chat_presence_timer);
    }

    ngx_chat_presence_ready = 0;
}


static void
ngx_chat_presence_timer_handler(ngx_event_t *ev)
{
    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (ngx_current_msec - ngx_chat_presence_renewed
        >= ngx_chat_worker.mcf->presence_ttl / 3)
    {
        ngx_chat_presence_renewed = ngx_current_msec;
        ngx_chat_presence_renew();
    }

    ngx_chat_presence_scan();

    ngx_add_timer(ev, ngx_min(NGX_CHAT_PRESENCE_SCAN,
                              ngx_chat_worker.mcf->presence_ttl / 3));
}


/* every session of this worker, NGX_CHAT_PRESENCE_BATCH per call */

static void
ngx_chat_presence_renew(void)
{
    size_t                    *lens;
    ngx_uint_t                 n, argc;
    ngx_queue_t               *q;
    const char               **argv;
    ngx_chat_presence_reg_t   *reg;
    u_char                     ttl[NGX_INT_T_LEN];

    if (ngx_chat_presence_nregs == 0 || !ngx_chat_redis_ready()) {
        return;
    }

    n = ngx_min(ngx_chat_presence_nregs, NGX_CHAT_PRESENCE_BATCH);

    argv = ngx_alloc((3 + 2 * n) * (sizeof(char *) + sizeof(size_t)),
                     ngx_cycle->log);
    if (argv == NULL) {
        return;
    }

    lens = (size_t *) (argv + 3 + 2 * n);

    argv[0] = "chat:p:expiry";
    lens[0] = sizeof("chat:p:expiry") - 1;
    argv[1] = (char *) ttl;
    lens[1] = ngx_sprintf(ttl, "%M", ngx_chat_worker.mcf->presence_ttl)
              - ttl;
    argc = 2;

    for (q = ngx_queue_head(&ngx_chat_presence_regs);
         q != ngx_queue_sentinel(&ngx_chat_presence_regs);
         q = ngx_queue_next(q))
    {
        reg = ngx_queue_data(q, ngx_chat_presence_reg_t, link);

        argv[argc] = (char *) reg->user.data;
        lens[argc++] = reg->user.len;
        argv[argc] = (char *) reg->sid.data;
        lens[argc++] = reg->sid.len;

        if (argc == 2 + 2 * n
            || ngx_queue_next(q) == ngx_queue_sentinel(&ngx_chat_presence_regs))
        {
            if (ngx_chat_redis_eval(&ngx_chat_presence_renew_script,
                                    ngx_chat_presence_reply, NULL, 1,
                                    (int) argc, argv, lens)
                == NULL)
            {
                break;
            }

            argc = 2;
        }
    }

    ngx_free(argv);
}


static void
ngx_chat_presence_scan(void)
{
    const char  *argv[3];
    size_t       lens[3];
    u_char       ttl[NGX_INT_T_LEN];

    if (!ngx_chat_redis_ready()) {
        return;
    }

    argv[0] = "chat:p:expiry";
    lens[0] = sizeof("chat:p:expiry") - 1;
    argv[1] = (char *) ttl;
    lens[1] = ngx_sprintf(ttl, "%M", ngx_chat_worker.mcf->presence_ttl)
              - ttl;
    argv[2] = NGX_CHAT_PRESENCE_SCAN_MAX;
    lens[2] = sizeof(NGX_CHAT_PRESENCE_SCAN_MAX) - 1;

    (void) ngx_chat_redis_eval(&ngx_chat_presence_scan_script,
                               ngx_chat_presence_reply, NULL, 1, 3, argv,
                               lens);
}


/* sessions */

ngx_int_t
ngx_chat_presence_online(ngx_chat_session_t *s)
{
    u_char                   *p;
    const char               *argv[5];
    size_t                    lens[5];
    ngx_chat_presence_reg_t  *reg;
    u_char                    key[sizeof("chat:p:") + NGX_CHAT_USER_ID_MAX];
    u_char                    ttl[NGX_INT_T_LEN];

    if (!ngx_chat_presence_ready || s->id.user.len > NGX_CHAT_USER_ID_MAX) {
        return NGX_OK;
    }

    reg = ngx_alloc(sizeof(ngx_chat_presence_reg_t) + s->id.user.len
                    + 3 * NGX_INT64_LEN + 3, s->log);
    if (reg == NULL) {
        return NGX_ERROR;
    }

    reg->user.data = (u_char *) (reg + 1);
    reg->user.len = s->id.user.len;
    p = ngx_cpymem(reg->user.data, s->id.user.data, s->id.user.len);

    /* unique among the gateways: node, process, counter */
    reg->sid.data = p;
    reg->sid.len = ngx_sprintf(p, "%ui-%P-%uL",
                               ngx_chat_worker.mcf->node_id, ngx_pid,
                               ++ngx_chat_presence_counter)
                   - p;

    ngx_queue_insert_tail(&ngx_chat_presence_regs, &reg->link);
    ngx_chat_presence_nregs++;
    s->presence = reg;

    argv[0] = (char *) key;
    lens[0] = ngx_sprintf(key, "chat:p:%V", &reg->user) - key;
    argv[1] = "chat:p:expiry";
    lens[1] = sizeof("chat:p:expiry") - 1;
    argv[2] = (char *) reg->sid.data;
    lens[2] = reg->sid.len;
    argv[3] = (char *) ttl;
    lens[3] = ngx_sprintf(ttl, "%M", ngx_chat_worker.mcf->presence_ttl)
              - ttl;
    argv[4] = (char *) reg->user.data;
    lens[4] = reg->user.len;

    /* Redis down: the next renewal registers it */
    (void) ngx_chat_redis_eval(&ngx_chat_presence_online_script,
                               ngx_chat_presence_reply, NULL, 2, 5, argv,
                               lens);

    return NGX_OK;
}


void
ngx_chat_presence_offline(ngx_chat_session_t *s)
{
    const char               *argv[5];
    size_t                    lens[5];
    ngx_chat_presence_reg_t  *reg;
    u_char                    key[sizeof("chat:p:") + NGX_CHAT_USER_ID_MAX];
    u_char                    ls[sizeof("chat:ls:") + NGX_CHAT_USER_ID_MAX];

    reg = s->presence;

    if (reg == NULL) {
        return;
    }

    s->presence = NULL;
    ngx_queue_remove(&reg->link);
    ngx_chat_presence_nregs--;

    argv[0] = (char *) key;
    lens[0] = ngx_sprintf(key, "chat:p:%V", &reg->user) - key;
    argv[1] = "chat:p:expiry";
    lens[1] = sizeof("chat:p:expiry") - 1;
    argv[2] = (char *) ls;
    lens[2] = ngx_sprintf(ls, "chat:ls:%V", &reg->user) - ls;
    argv[3] = (char *) reg->sid.data;
    lens[3] = reg->sid.len;
    argv[4] = (char *) reg->user.data;
    lens[4] = reg->user.len;

    /* Redis down: the session expires and a scan says so */
    (void) ngx_chat_redis_eval(&ngx_chat_presence_offline_script,
                               ngx_chat_presence_reply, NULL, 3, 5, argv,
                               lens);

    ngx_free(reg);
}


static void
ngx_chat_presence_reply(redisReply *reply, void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: presence script failed: %*s",
                      (size_t) reply->len, reply->str);
    }
}


/* watchers */

ngx_int_t
ngx_chat_presence_watch(ngx_chat_session_t *s, ngx_str_t *user)
{
    u_char                     *p;
    uint32_t                    hash;
    ngx_queue_t                *q;
    ngx_chat_presence_node_t   *node;
    ngx_chat_presence_watch_t  *w;

    hash = ngx_crc32_short(user->data, user->len);

    node = (ngx_chat_presence_node_t *)
               ngx_str_rbtree_lookup(&ngx_chat_presence_tree, user, hash);

    if (node == NULL) {
        node = ngx_alloc(sizeof(ngx_chat_presence_node_t)
                         + sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1
                         + sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1
                         + 2 * user->len, s->log);
        if (node == NULL) {
            return NGX_ERROR;
        }

        p = (u_char *) (node + 1);
        node->channel.data = p;
        p = ngx_sprintf(p, NGX_CHAT_PRESENCE_CHANNEL "%V", user);
        node->channel.len = p - node->channel.data;

        node->destination.data = p;
        p = ngx_sprintf(p, NGX_CHAT_PRESENCE_TOPIC "%V", user);
        node->destination.len = p - node->destination.data;

        node->sn.str.data = node->channel.data
                            + sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1;
        node->sn.str.len = user->len;
        node->sn.node.key = hash;

        if (ngx_chat_redis_subscribe(node->channel.data, node->channel.len)
            != NGX_OK)
        {
            ngx_free(node);
            return NGX_ERROR;
        }

        ngx_queue_init(&node->watches);
        ngx_rbtree_insert(&ngx_chat_presence_tree, &node->sn.node);
    }

    for (q = ngx_queue_head(&node->watches);
         q != ngx_queue_sentinel(&node->watches);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_chat_presence_watch_t, link);

        if (w->session == s) {
            w->refs++;
            return NGX_OK;
        }
    }

    w = ngx_alloc(sizeof(ngx_chat_presence_watch_t), s->log);
    if (w == NULL) {
        if (ngx_queue_empty(&node->watches)) {
            ngx_chat_redis_unsubscribe(node->channel.data, node->channel.len);
            ngx_rbtree_delete(&ngx_chat_presence_tree, &node->sn.node);
            ngx_free(node);
        }

        return NGX_ERROR;
    }

    w->session = s;
    w->refs = 1;
    ngx_queue_insert_tail(&node->watches, &w->link);

    return NGX_OK;
}


void
ngx_chat_presence_unwatch(ngx_chat_session_t *s, ngx_str_t *user)
{
    uint32_t                    hash;
    ngx_queue_t                *q;
    ngx_chat_presence_node_t   *node;
    ngx_chat_presence_watch_t  *w;

    hash = ngx_crc32_short(user->data, user->len);

    node = (ngx_chat_presence_node_t *)
               ngx_str_rbtree_lookup(&ngx_chat_presence_tree, user, hash);

    if (node == NULL) {
        return;
    }

    for (q = ngx_queue_head(&node->watches);
         q != ngx_queue_sentinel(&node->watches);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_chat_presence_watch_t, link);

        if (w->session != s) {
            continue;
        }

        if (--w->refs == 0) {
            ngx_queue_remove(&w->link);
            ngx_free(w);
        }

        break;
    }

    if (ngx_queue_empty(&node->watches)) {
        ngx_chat_redis_unsubscribe(node->channel.data, node->channel.len);
        ngx_rbtree_delete(&ngx_chat_presence_tree, &node->sn.node);
        ngx_free(node);
    }
}


void
ngx_chat_presence_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len)
{
    uint32_t                    hash;
    ngx_str_t                   user;
    ngx_queue_t                *q, *next;
    ngx_chat_blob_t            *b;
    ngx_chat_presence_node_t   *node;
    ngx_chat_presence_watch_t  *w;

    if (channel_len <= sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1
        || ngx_strncmp(channel, NGX_CHAT_PRESENCE_CHANNEL,
                       sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1) != 0)
    {
        return;
    }

    user.data = channel + sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1;
    user.len = channel_len - (sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1);
    hash = ngx_crc32_short(user.data, user.len);

    node = (ngx_chat_presence_node_t *)
               ngx_str_rbtree_lookup(&ngx_chat_presence_tree, &user, hash);

    if (node == NULL) {
        return;
    }

    /* the JSON and the NUL that ends the STOMP frame */
    b = ngx_chat_blob_create(len + 1);
    if (b == NULL) {
        return;
    }

    ngx_memcpy(b->data, payload, len);
    b->data[len] = '\0';

    /* a delivery may not end a session here (on_closed comes later) */

    for (q = ngx_queue_head(&node->watches);
         q != ngx_queue_sentinel(&node->watches);
         q = next)
    {
        next = ngx_queue_next(q);
        w = ngx_queue_data(q, ngx_chat_presence_watch_t, link);

        ngx_chat_session_deliver_topic(w->session, NGX_CHAT_DEST_PRESENCE,
                                       &node->destination, NULL, b);
    }

    ngx_chat_blob_release(b);
}


/* the check of a new subscription: authorization, then the snapshot */

ngx_int_t
ngx_chat_presence_check(ngx_chat_session_t *s, ngx_str_t *sub_id,
    ngx_str_t *user, ngx_str_t *receipt)
{
    u_char                     *p;
    int                         lengths[2];
    const char                 *values[2];
    ngx_chat_presence_check_t  *ck;

    ck = ngx_calloc(sizeof(ngx_chat_presence_check_t) + sub_id->len
                    + user->len + receipt->len, s->log);
    if (ck == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) (ck + 1);

    ck->sub_id.data = p;
    ck->sub_id.len = sub_id->len;
    p = ngx_cpymem(p, sub_id->data, sub_id->len);

    ck->user.data = p;
    ck->user.len = user->len;
    p = ngx_cpymem(p, user->data, user->len);

    ck->receipt.data = p;
    ck->receipt.len = receipt->len;
    ngx_memcpy(p, receipt->data, receipt->len);

    ck->ev.handler = ngx_chat_presence_check_later;
    ck->ev.data = ck;
    ck->ev.log = s->log;

    if (user->len == s->id.user.len
        && ngx_strncmp(user->data, s->id.user.data, user->len) == 0)
    {
        /* oneself, and online: this session is */
        ck->rc = NGX_OK;
        ck->body = ngx_chat_presence_self(user);

        if (ck->body == NULL) {
            ngx_free(ck);
            return NGX_ERROR;
        }

        ngx_chat_session_op_start(s, &ck->op, ngx_chat_presence_check_cancel);
        ngx_post_event(&ck->ev, &ngx_posted_events);

        return NGX_OK;
    }

    ngx_chat_session_op_start(s, &ck->op, ngx_chat_presence_check_cancel);

    values[0] = (char *) s->id.user.data;
    lengths[0] = (int) s->id.user.len;
    values[1] = (char *) ck->user.data;
    lengths[1] = (int) ck->user.len;

    ck->pg = ngx_chat_pg_query(ngx_chat_presence_sql, 2, values, lengths,
                               ngx_chat_presence_check_pg, ck);

    if (ck->pg == NULL) {
        ck->rc = NGX_ERROR;
        ngx_post_event(&ck->ev, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_chat_presence_check_pg(PGresult *res, void *data)
{
    ngx_chat_presence_check_t  *ck = data;

    const char  *argv[3];
    size_t       lens[3];
    u_char       key[sizeof("chat:p:") + NGX_CHAT_USER_ID_MAX];
    u_char       ls[sizeof("chat:ls:") + NGX_CHAT_USER_ID_MAX];

    ck->pg = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res) {
            ngx_log_error(NGX_LOG_ERR, ck->op.session->log, 0,
                          "chat: presence authorization query failed: %s",
                          PQresultErrorMessage(res));
        }

        ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_chat_presence_check_finish(ck, NGX_DECLINED, NULL);
        return;
    }

    argv[0] = (char *) key;
    lens[0] = ngx_sprintf(key, "chat:p:%V", &ck->user) - key;
    argv[1] = (char *) ls;
    lens[1] = ngx_sprintf(ls, "chat:ls:%V", &ck->user) - ls;
    argv[2] = (char *) ck->user.data;
    lens[2] = ck->user.len;

    ck->redis = ngx_chat_redis_eval(&ngx_chat_presence_snapshot_script,
                                    ngx_chat_presence_check_snapshot, ck, 2,
                                    3, argv, lens);

    if (ck->redis == NULL) {
        ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
    }
}


static void
ngx_chat_presence_check_snapshot(redisReply *reply, void *data)
{
    ngx_chat_presence_check_t  *ck = data;

    ngx_chat_blob_t  *b;

    ck->redis = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ck->op.session->log, 0,
                          "chat: presence snapshot failed: %*s",
                          (size_t) reply->len, reply->str);
        }

        ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
        return;
    }

    b = ngx_chat_blob_create(reply->len + 1);
    if (b == NULL) {
        ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
        return;
    }

    ngx_memcpy(b->data, reply->str, reply->len);
    b->data[reply->len] = '\0';

    ngx_chat_presence_check_finish(ck, NGX_OK, b);
}


static void
ngx_chat_presence_check_later(ngx_event_t *ev)
{
    ngx_chat_presence_check_t  *ck = ev->data;

    ngx_chat_presence_check_finish(ck, ck->rc, ck->body);
}


static void
ngx_chat_presence_check_finish(ngx_chat_presence_check_t *ck, ngx_int_t rc,
    ngx_chat_blob_t *body)
{
    ngx_chat_session_t  *s = ck->op.session;

    ck->body = NULL;

    ngx_chat_session_op_done(s, &ck->op);
    ngx_chat_session_presence_ready(s, &ck->sub_id, rc, body, &ck->receipt);

    ngx_chat_blob_release(body);
    ngx_free(ck);
}


static void
ngx_chat_presence_check_cancel(ngx_chat_op_t *op)
{
    ngx_chat_presence_check_t  *ck = (ngx_chat_presence_check_t *) op;

    if (ck->pg) {
        ngx_chat_pg_cancel(ck->pg);
    }

    if (ck->redis) {
        ngx_chat_redis_cancel(ck->redis);
    }

    if (ck->ev.posted) {
        ngx_delete_posted_event(&ck->ev);
    }

    ngx_chat_blob_release(ck->body);
    ngx_free(ck);
}


/* oneself: online, seen now */

static ngx_chat_blob_t *
ngx_chat_presence_self(ngx_str_t *user)
{
    u_char           *p;
    size_t            len;
    ngx_tm_t          tm;
    ngx_time_t       *tp;
    ngx_chat_blob_t  *b;

    len = sizeof("{\"type\":\"presence\",\"userId\":\"\",\"online\":true,"
                 "\"lastSeen\":\"2024-01-01T00:00:00.000Z\"}")
          + user->len + ngx_escape_json(NULL, user->data, user->len);

    b = ngx_chat_blob_create(len);
    if (b == NULL) {
        return NULL;
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    p = ngx_cpymem(b->data, "{\"type\":\"presence\",\"userId\":\"", 29);
    p = (u_char *) ngx_escape_json(p, user->data, user->len);
    p = ngx_sprintf(p, "\",\"online\":true,\"lastSeen\":"
                    "\"%4d-%02d-%02dT%02d:%02d:%02d.%03dZ\"}",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                    (int) tp->msec);
    *p++ = '\0';
    b->len = p - b->data;

    return b;
}


ngx_chat_redis_req_t *
ngx_chat_presence_query(ngx_str_t *users, ngx_uint_t n,
    ngx_chat_redis_reply_pt handler, void *data)
{
    size_t                *lens;
    ngx_uint_t             i;
    const char           **argv;
    ngx_chat_redis_req_t  *req;

    argv = ngx_alloc((n + 1) * (sizeof(char *) + sizeof(size_t)),
                     ngx_cycle->log);
    if (argv == NULL) {
        return NULL;
    }

    lens = (size_t *) (argv + n + 1);

    for (i = 0; i < n; i++) {
        argv[i] = (char *) users[i].data;
        lens[i] = users[i].len;
    }

    req = ngx_chat_redis_eval(&ngx_chat_presence_query_script, handler, data,
                              0, (int) n, argv, lens);
    ngx_free(argv);

    return req;
}
