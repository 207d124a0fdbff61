/* ngx_chat_fanout.c: the worker's registry of users with sessions here, their
 * routes in Redis, and the delivery of what is published on the worker's
 * route to their sessions. */

#include "ngx_chat_fanout.h"
#include "ngx_chat_fanout_int.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_presence.h"
#include "ngx_chat_keys.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_lua.h"
#include "ngx_chat_sockjs.h"

#include <openssl/rand.h>


static ngx_int_t ngx_chat_fanout_register(ngx_chat_session_t *s);
static void ngx_chat_fanout_unregister(ngx_chat_session_t *s);
static ngx_int_t ngx_chat_fanout_route(ngx_str_t *user,
    ngx_chat_redis_script_t *script);
static ngx_int_t ngx_chat_fanout_route_add(ngx_chat_user_t *u);
static void ngx_chat_fanout_routed(redisReply *reply, void *data);
static ngx_uint_t ngx_chat_fanout_ready(ngx_chat_user_t *u);
static void ngx_chat_fanout_on_subscribed(u_char *channel, size_t len);
static void ngx_chat_fanout_deliver(u_char *payload, size_t len);
static void ngx_chat_fanout_user(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);
static void ngx_chat_fanout_sessions(ngx_chat_user_t *u,
    ngx_uint_t dest, ngx_str_t *mid, ngx_chat_blob_t *b);
static ngx_int_t ngx_chat_fanout_about(u_char *json, u_char *end,
    ngx_str_t *user);
static ngx_chat_blob_t *ngx_chat_fanout_blob(u_char *json, u_char *end);
static ngx_int_t ngx_chat_fanout_channel_user(u_char *channel, size_t len,
    ngx_str_t *user);


static ngx_rbtree_t       ngx_chat_users;
static ngx_rbtree_node_t  ngx_chat_users_sentinel;

/* "chat:w:<route>"; the route is 16 random hex digits */
static u_char             ngx_chat_route_channel[
                              sizeof(NGX_CHAT_CHANNEL_WORKER) + 16];
static ngx_str_t          ngx_chat_route_name;
static ngx_uint_t         ngx_chat_route_subscribed;

/* the users of one publish that have sessions here */
static ngx_chat_user_t  **ngx_chat_fanout_local;
static ngx_uint_t         ngx_chat_fanout_nlocal;


/*
 * Publishes to one user (membership events): KEYS none, ARGV user, message
 * ("<destination>\n\n<json>").
 */
static ngx_chat_redis_script_t  ngx_chat_user_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_FANOUT_USER,
    ""
};


/* adds a route to a user: KEYS none, ARGV user, route */
static ngx_chat_redis_script_t  ngx_chat_route_add_script = {
    NGX_CHAT_LUA_FANOUT_ROUTE_ADD,
    ""
};


/* removes a route from a user: KEYS none, ARGV user, route */
static ngx_chat_redis_script_t  ngx_chat_route_del_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_FANOUT_ROUTE_DEL,
    ""
};


/* the user queues: what is published to users goes to one of them */

static ngx_chat_dest_t  ngx_chat_fanout_messages = {
    ngx_string("/user/queue/messages"), 0, NULL, NULL, NULL, NULL, 0, 1, 1
};

static ngx_chat_dest_t  ngx_chat_fanout_receipts = {
    ngx_string("/user/queue/receipts"), 0, NULL, NULL, NULL, NULL, 0, 1, 0
};

static ngx_chat_dest_t  ngx_chat_fanout_typing = {
    ngx_string("/user/queue/typing"), 0, NULL, NULL, NULL, NULL, 0, 1, 0
};

static ngx_chat_dest_t  ngx_chat_fanout_events = {
    ngx_string("/user/queue/events"), 0, NULL, NULL, NULL, NULL, 0, 1, 0
};

static ngx_chat_dest_t  *ngx_chat_fanout_queues[] = {
    &ngx_chat_fanout_messages,
    &ngx_chat_fanout_receipts,
    &ngx_chat_fanout_typing,
    &ngx_chat_fanout_events,
    NULL
};


static ngx_chat_session_hooks_t  ngx_chat_fanout_hooks = {
    ngx_chat_fanout_register,
    ngx_chat_fanout_unregister,
    NULL
};


ngx_int_t
ngx_chat_fanout_init(void)
{
    u_char            *p;
    ngx_chat_dest_t  **d;
    u_char             rnd[8];

    ngx_rbtree_init(&ngx_chat_users, &ngx_chat_users_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_chat_fanout_convs_init();

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "chat: RAND_bytes() failed for the worker's route");
        return NGX_ERROR;
    }

    p = ngx_cpymem(ngx_chat_route_channel, NGX_CHAT_CHANNEL_WORKER,
                   sizeof(NGX_CHAT_CHANNEL_WORKER) - 1);
    p = ngx_hex_dump(p, rnd, sizeof(rnd));

    ngx_chat_route_name.data = ngx_chat_route_channel
                               + sizeof(NGX_CHAT_CHANNEL_WORKER) - 1;
    ngx_chat_route_name.len = p - ngx_chat_route_name.data;
    ngx_chat_route_subscribed = 0;

    if (ngx_chat_fanout_script(&ngx_chat_user_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_route_add_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_route_del_script) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (d = ngx_chat_fanout_queues; *d; d++) {
        if (ngx_chat_session_add_dest(*d) == NGX_ERROR) {
            return NGX_ERROR;
        }
    }

    return ngx_chat_session_add_hooks(&ngx_chat_fanout_hooks);
}


ngx_int_t
ngx_chat_fanout_start(void)
{
    ngx_chat_redis_on_subscribed(ngx_chat_fanout_on_subscribed);

    if (ngx_chat_redis_is_cluster()) {
        /* no routes: the conversations' and users' sharded channels */
        return NGX_OK;
    }

    return ngx_chat_redis_subscribe(ngx_chat_route_channel,
                                    sizeof(ngx_chat_route_channel) - 1);
}


/*
 * Our channel is subscribed (again): publishes that found nobody while it
 * was not may have taken this worker's route off its users' sets.
 */

static void
ngx_chat_fanout_on_subscribed(u_char *channel, size_t len)
{
    uint32_t          hash;
    ngx_str_t         user;
    ngx_chat_user_t  *u;

    if (len == sizeof(ngx_chat_route_channel) - 1
        && ngx_strncmp(channel, ngx_chat_route_channel, len) == 0)
    {
        ngx_chat_route_subscribed = 1;
        ngx_chat_fanout_reroute();
        return;
    }

    if (len > sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1
        && ngx_strncmp(channel, NGX_CHAT_CHANNEL_PRESENCE,
                       sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1) == 0)
    {
        ngx_chat_presence_on_subscribed(channel, len);
        return;
    }

    if (len > sizeof(NGX_CHAT_CHANNEL_CONV) - 1
        && ngx_strncmp(channel, NGX_CHAT_CHANNEL_CONV,
                       sizeof(NGX_CHAT_CHANNEL_CONV) - 1) == 0)
    {
        ngx_chat_fanout_conv_acked(channel, len);
        return;
    }

    /* a user's channel: its sessions may wait for it (CONNECTED) */

    if (ngx_chat_fanout_channel_user(channel, len, &user) != NGX_OK) {
        return;
    }

    hash = ngx_crc32_short(user.data, user.len);

    u = (ngx_chat_user_t *) ngx_str_rbtree_lookup(&ngx_chat_users, &user,
                                                  hash);
    if (u == NULL || u->subscribed) {
        return;
    }

    u->subscribed = 1;
    ngx_chat_fanout_wake(u);
}


void
ngx_chat_fanout_reroute(void)
{
    ngx_rbtree_node_t  *node;
    ngx_chat_user_t    *u;

    if (!ngx_chat_route_subscribed
        || ngx_chat_users.root == &ngx_chat_users_sentinel)
    {
        return;
    }

    for (node = ngx_rbtree_min(ngx_chat_users.root, &ngx_chat_users_sentinel);
         node;
         node = ngx_rbtree_next(&ngx_chat_users, node))
    {
        u = (ngx_chat_user_t *) node;

        if (ngx_chat_fanout_route_add(u) != NGX_OK) {
            /* Redis is down: the next link up does this again */
            return;
        }
    }
}


/*
 * The route of the user to this worker, added once the worker's channel is
 * subscribed (before, a publish to it would find nobody and take the route
 * off again); its answer may let the user's sessions connect.
 */

static ngx_int_t
ngx_chat_fanout_route_add(ngx_chat_user_t *u)
{
    const char  *argv[2];
    size_t       argvlen[2];

    if (ngx_chat_redis_is_cluster()) {
        /* no routes hash: publishes go to the users' own channels */
        u->routed = 1;
        return NGX_OK;
    }

    if (!ngx_chat_route_subscribed) {
        /* ngx_chat_fanout_on_subscribed adds it */
        return NGX_OK;
    }

    if (u->route_req) {
        ngx_chat_redis_cancel(u->route_req);
        u->route_req = NULL;
    }

    argv[0] = (char *) u->sn.str.data;
    argvlen[0] = u->sn.str.len;
    argv[1] = (char *) ngx_chat_route_name.data;
    argvlen[1] = ngx_chat_route_name.len;

    u->route_req = ngx_chat_redis_eval(&ngx_chat_route_add_script,
                                       ngx_chat_fanout_routed, u, 0, 2,
                                       argv, argvlen);

    return u->route_req ? NGX_OK : NGX_ERROR;
}


static void
ngx_chat_fanout_routed(redisReply *reply, void *data)
{
    ngx_chat_user_t  *u = data;

    u->route_req = NULL;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_chat_redis_log_reply(reply, NULL);

        /* the sessions that wait connect at their timeout */
        return;
    }

    u->routed = 1;
    ngx_chat_fanout_wake(u);
}


/*
 * A publish routed to the user from now on reaches this worker: on its
 * route (the worker's channel is subscribed, the route is added) or, in a
 * cluster, on the user's channel (subscribed).
 */

static ngx_uint_t
ngx_chat_fanout_ready(ngx_chat_user_t *u)
{
    if (!u->subscribed) {
        return 0;
    }

    if (ngx_chat_redis_is_cluster()) {
        /* and the channels of its conversations */
        return u->loaded && u->pending == 0;
    }

    return ngx_chat_route_subscribed && u->routed;
}


void
ngx_chat_fanout_wake(ngx_chat_user_t *u)
{
    ngx_queue_t  *q;

    if (!ngx_chat_fanout_ready(u)) {
        return;
    }

    if (ngx_chat_redis_is_cluster()) {
        /* each confirmation wakes: the sessions are told once */

        if (u->woken) {
            return;
        }

        u->woken = 1;
    }

    /* ngx_chat_session_ready() only arms the sessions' timers */

    for (q = ngx_queue_head(&u->sessions);
         q != ngx_queue_sentinel(&u->sessions);
         q = ngx_queue_next(q))
    {
        ngx_chat_session_ready(ngx_queue_data(q, ngx_chat_session_t,
                                              user_link));
    }
}


ngx_int_t
ngx_chat_fanout_script(ngx_chat_redis_script_t *script)
{
    u_char      *p, *at;
    size_t       len, head;

    static size_t  route_len = sizeof(NGX_CHAT_LUA_ROUTE) - 1;

    /* a cluster: route.lua becomes route_cluster.lua where it is included */

    at = (u_char *) ngx_strstr(script->source, NGX_CHAT_LUA_ROUTE);

    if (ngx_chat_redis_is_cluster() && at != NULL) {
        len = ngx_strlen(script->source);
        head = at - (u_char *) script->source;

        p = ngx_alloc(len - route_len + sizeof(NGX_CHAT_LUA_ROUTE_CLUSTER),
                      ngx_cycle->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, script->source, head);
        ngx_memcpy(p + head, NGX_CHAT_LUA_ROUTE_CLUSTER,
                   sizeof(NGX_CHAT_LUA_ROUTE_CLUSTER) - 1);
        ngx_memcpy(p + head + sizeof(NGX_CHAT_LUA_ROUTE_CLUSTER) - 1,
                   at + route_len, len - head - route_len + 1);

        /* kept for the worker's life, like the static sources */
        script->source = (const char *) p;
    }

    return ngx_chat_redis_script(script);
}


static ngx_int_t
ngx_chat_fanout_route(ngx_str_t *user, ngx_chat_redis_script_t *script)
{
    const char  *argv[2];
    size_t       argvlen[2];

    if (ngx_chat_redis_is_cluster()) {
        /* no routes hash: publishes go to the users' own channels */
        return NGX_OK;
    }

    argv[0] = (char *) user->data;
    argvlen[0] = user->len;
    argv[1] = (char *) ngx_chat_route_name.data;
    argvlen[1] = ngx_chat_route_name.len;

    if (ngx_chat_redis_eval(script, ngx_chat_redis_log_reply, NULL, 0, 2,
                            argv, argvlen)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/*
 * The registry: users with sessions in this worker. A session CONNECTed as
 * s->id.user gets the user's events from now on (a session hook). More
 * sessions of the user than chat_max_sessions_per_user are refused here:
 * the count is of this worker (README.md, "Limits").
 */

static ngx_int_t
ngx_chat_fanout_register(ngx_chat_session_t *s)
{
    uint32_t          hash;
    ngx_chat_user_t  *u;

    hash = ngx_crc32_short(s->id.user.data, s->id.user.len);

    u = (ngx_chat_user_t *) ngx_str_rbtree_lookup(&ngx_chat_users,
                                                  &s->id.user, hash);

    if (u != NULL && s->lcf->max_sessions_per_user
        && u->nsessions >= s->lcf->max_sessions_per_user)
    {
        ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_SESSIONS, 1);
        return NGX_DECLINED;
    }

    if (u == NULL) {
        u = ngx_alloc(sizeof(ngx_chat_user_t) + s->id.user.len
                      + sizeof(NGX_CHAT_CHANNEL_USER) + 1, s->log);
        if (u == NULL) {
            return NGX_ERROR;
        }

        u->channel.data = (u_char *) (u + 1);

        if (ngx_chat_redis_is_cluster()) {
            u->channel.len = ngx_sprintf(u->channel.data,
                                         NGX_CHAT_CHANNEL_USER "{%V}",
                                         &s->id.user)
                             - u->channel.data;
            u->sn.str.data = u->channel.data
                             + sizeof(NGX_CHAT_CHANNEL_USER);

        } else {
            u->channel.len = ngx_sprintf(u->channel.data,
                                         NGX_CHAT_CHANNEL_USER "%V",
                                         &s->id.user)
                             - u->channel.data;
            u->sn.str.data = u->channel.data
                             + sizeof(NGX_CHAT_CHANNEL_USER) - 1;
        }

        u->sn.str.len = s->id.user.len;
        u->sn.node.key = hash;

        if (ngx_chat_redis_subscribe(u->channel.data, u->channel.len)
            != NGX_OK)
        {
            ngx_free(u);
            return NGX_ERROR;
        }

        ngx_queue_init(&u->sessions);
        u->nsessions = 0;
        u->excess = 0;
        u->last = 0;
        u->route_req = NULL;
        u->sent = 0;
        u->subscribed = 0;
        u->routed = 0;
        u->convs = NULL;
        u->nconvs = 0;
        u->aconvs = 0;
        u->pending = 0;
        u->convs_req = NULL;
        u->loaded = 0;
        u->woken = 0;
        ngx_rbtree_insert(&ngx_chat_users, &u->sn.node);

        /*
         * With Redis down the route is added when the link is up again
         * (ngx_chat_fanout_reroute); the user's channel serves meanwhile.
         */
        (void) ngx_chat_fanout_route_add(u);
    }

    ngx_queue_insert_tail(&u->sessions, &s->user_link);
    u->nsessions++;
    s->user = u;

    if (ngx_chat_redis_is_cluster() && !u->loaded && u->convs_req == NULL) {
        /* the first session, or PostgreSQL failed the last time */
        ngx_chat_fanout_convs_load(u);
    }

    /*
     * CONNECTED waits until what is routed to the user from then on reaches
     * this worker, unless Redis is down (messaging answers "unavailable"
     * then, as it does to sessions that connected before): bounded by
     * chat_connect_timeout (ngx_chat_session.c).
     */

    if (!ngx_chat_fanout_ready(u) && ngx_chat_redis_ready()) {
        u->woken = 0;
        return NGX_AGAIN;
    }

    return NGX_OK;
}


static void
ngx_chat_fanout_unregister(ngx_chat_session_t *s)
{
    ngx_chat_user_t  *u = s->user;

    if (u == NULL) {
        return;
    }

    ngx_queue_remove(&s->user_link);
    u->nsessions--;
    s->user = NULL;

    if (ngx_queue_empty(&u->sessions)) {
        if (u->route_req) {
            ngx_chat_redis_cancel(u->route_req);
        }

        if (u->convs_req) {
            ngx_chat_pg_cancel(u->convs_req);
        }

        ngx_chat_fanout_leave_all(u);

        /* if Redis is down, a publish that finds nobody removes it */
        (void) ngx_chat_fanout_route(&u->sn.str, &ngx_chat_route_del_script);
        ngx_chat_redis_unsubscribe(u->channel.data, u->channel.len);
        ngx_rbtree_delete(&ngx_chat_users, &u->sn.node);
        ngx_free(u);
    }
}


/*
 * The bucket of limit_req (ngx_http_limit_req_module.c): excess grows by
 * 1000 a SEND and drains at the rate (per 1000 s); over the burst the SEND
 * is refused and leaves the bucket as it was.
 */

ngx_int_t
ngx_chat_fanout_send_rate(ngx_chat_session_t *s)
{
    ngx_int_t         excess;
    ngx_msec_int_t    ms;
    ngx_chat_user_t  *u = s->user;

    if (u == NULL || s->lcf->send_rate == 0) {
        return NGX_OK;
    }

    if (!u->sent) {
        u->sent = 1;
        u->excess = 0;
        u->last = ngx_current_msec;
        return NGX_OK;
    }

    ms = (ngx_msec_int_t) (ngx_current_msec - u->last);

    if (ms < 0) {
        ms = 0;
    }

    excess = (ngx_int_t) u->excess
             - (ngx_int_t) (s->lcf->send_rate * ms / 1000) + 1000;

    if (excess < 0) {
        excess = 0;
    }

    if ((ngx_uint_t) excess > s->lcf->send_burst) {
        ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_RATE, 1);
        return NGX_BUSY;
    }

    u->excess = excess;
    u->last = ngx_current_msec;

    return NGX_OK;
}


void
ngx_chat_fanout_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len)
{
    if (channel_len == sizeof(ngx_chat_route_channel) - 1
        && ngx_strncmp(channel, ngx_chat_route_channel, channel_len) == 0)
    {
        ngx_chat_fanout_deliver(payload, len);
        return;
    }

    /* a cluster: a conversation's channel, in the same format, or its
     * members here ("*<skip>\n...") */

    if (channel_len > sizeof(NGX_CHAT_CHANNEL_CONV) - 1
        && ngx_strncmp(channel, NGX_CHAT_CHANNEL_CONV,
                       sizeof(NGX_CHAT_CHANNEL_CONV) - 1) == 0)
    {
        if (len > 0 && payload[0] == '*') {
            ngx_chat_fanout_deliver_conv(channel, channel_len, payload, len);

        } else {
            ngx_chat_fanout_deliver(payload, len);
        }

        return;
    }

    if (ngx_chat_sockjs_relay_channel(channel, channel_len)) {
        ngx_chat_sockjs_relay_message(payload, len);
        return;
    }

    if (channel_len > sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1
        && ngx_strncmp(channel, NGX_CHAT_CHANNEL_PRESENCE,
                       sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1) == 0)
    {
        ngx_chat_presence_on_message(channel, channel_len, payload, len);
        return;
    }

    ngx_chat_fanout_user(channel, channel_len, payload, len);
}


/*
 * A publish on this worker's route:
 * "<user> <user>...\n<destination>\n<message-id>\n<json>".
 */

static void
ngx_chat_fanout_deliver(u_char *payload, size_t len)
{
    u_char            *p, *end, *users_end, *json;
    uint32_t           hash;
    ngx_str_t          user, mid;
    ngx_uint_t         n, max;
    ngx_chat_user_t   *u, **local;
    ngx_uint_t         dest;

    end = payload + len;

    users_end = ngx_strlchr(payload, end, '\n');
    if (users_end == NULL) {
        goto invalid;
    }

    json = ngx_chat_fanout_head(users_end + 1, end, &dest, &mid);
    if (json == NULL) {
        goto invalid;
    }

    /* at most one user per two bytes ("u ") */

    max = (users_end - payload + 1) / 2;

    local = ngx_chat_fanout_local_users(max);
    if (local == NULL) {
        return;
    }

    n = 0;

    for (p = payload; p < users_end; p = user.data + user.len + 1) {
        user.data = p;
        p = ngx_strlchr(p, users_end, ' ');
        user.len = (p ? p : users_end) - user.data;

        hash = ngx_crc32_short(user.data, user.len);
        u = (ngx_chat_user_t *) ngx_str_rbtree_lookup(&ngx_chat_users, &user,
                                                      hash);
        if (u && n < max) {
            local[n++] = u;
        }
    }

    if (n) {
        ngx_chat_fanout_body(local, n, dest, &mid, json, end);
    }

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "chat: invalid payload on \"%s\"", ngx_chat_route_channel);
}


/* a publish on a user's channel: "<destination>\n<message-id>\n<json>" */

static void
ngx_chat_fanout_user(u_char *channel, size_t channel_len, u_char *payload,
    size_t len)
{
    u_char           *json;
    uint32_t          hash;
    ngx_str_t         user, mid;
    ngx_chat_user_t  *u;
    ngx_uint_t        dest;

    if (ngx_chat_fanout_channel_user(channel, channel_len, &user) != NGX_OK)
    {
        return;
    }

    hash = ngx_crc32_short(user.data, user.len);

    u = (ngx_chat_user_t *) ngx_str_rbtree_lookup(&ngx_chat_users, &user,
                                                  hash);
    if (u == NULL) {
        return;
    }

    json = ngx_chat_fanout_head(payload, payload + len, &dest, &mid);
    if (json == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: invalid payload on \"%*s\"", channel_len,
                      channel);
        return;
    }

    if (ngx_chat_redis_is_cluster() && dest == ngx_chat_fanout_events.id) {
        /* before the sessions see it: the channel is asked for first */
        ngx_chat_fanout_membership(u, json, payload + len);
    }

    ngx_chat_fanout_body(&u, 1, dest, &mid, json, payload + len);
}


/*
 * The body goes to every session of the users, copied once into a blob
 * they share. Receipts come as lines, one receipt each, and a user does
 * not get the receipt about the user.
 */

void
ngx_chat_fanout_body(ngx_chat_user_t **users, ngx_uint_t n,
    ngx_uint_t dest, ngx_str_t *mid, u_char *json, u_char *end)
{
    u_char           *nl;
    ngx_str_t         about;
    ngx_uint_t        i;
    ngx_chat_blob_t  *b;

    for ( /* void */ ; json < end; json = nl + 1) {

        if (dest == ngx_chat_fanout_receipts.id) {
            nl = ngx_strlchr(json, end, '\n');
            if (nl == NULL) {
                nl = end;
            }

            if (ngx_chat_fanout_about(json, nl, &about) != NGX_OK) {
                ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                              "chat: a receipt without userId: \"%*s\"",
                              nl - json, json);
                continue;
            }

        } else {
            nl = end;
            ngx_str_null(&about);
        }

        b = ngx_chat_fanout_blob(json, nl);
        if (b == NULL) {
            return;
        }

        for (i = 0; i < n; i++) {
            if (about.len == users[i]->sn.str.len
                && ngx_strncmp(about.data, users[i]->sn.str.data, about.len)
                   == 0)
            {
                continue;
            }

            ngx_chat_fanout_sessions(users[i], dest, mid, b);
        }

        ngx_chat_blob_release(b);
    }
}


/* the "userId" a receipt is about (user ids need no JSON escapes) */

static ngx_int_t
ngx_chat_fanout_about(u_char *json, u_char *end, ngx_str_t *user)
{
    u_char  *p, *q;

    p = ngx_strlcasestrn(json, end, (u_char *) "\"userId\":\"",
                         sizeof("\"userId\":\"") - 2);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p += sizeof("\"userId\":\"") - 1;

    q = ngx_strlchr(p, end, '"');
    if (q == NULL || q == p) {
        return NGX_DECLINED;
    }

    user->data = p;
    user->len = q - p;

    return NGX_OK;
}


/* "<destination>\n<message-id>\n": returns where the JSON starts */

u_char *
ngx_chat_fanout_head(u_char *p, u_char *end, ngx_uint_t *dest,
    ngx_str_t *mid)
{
    u_char            *nl;
    ngx_chat_dest_t  **d;

    nl = ngx_strlchr(p, end, '\n');
    if (nl == NULL) {
        return NULL;
    }

    for (d = ngx_chat_fanout_queues; *d; d++) {
        if ((size_t) (nl - p) == (*d)->name.len
            && ngx_strncmp(p, (*d)->name.data, (*d)->name.len) == 0)
        {
            break;
        }
    }

    if (*d == NULL) {
        return NULL;
    }

    *dest = (*d)->id;

    mid->data = nl + 1;

    nl = ngx_strlchr(mid->data, end, '\n');
    if (nl == NULL) {
        return NULL;
    }

    mid->len = nl - mid->data;

    return nl + 1;
}


/* the JSON and the NUL that ends the STOMP frame */

static ngx_chat_blob_t *
ngx_chat_fanout_blob(u_char *json, u_char *end)
{
    ngx_chat_blob_t  *b;

    b = ngx_chat_blob_create(end - json + 1);
    if (b == NULL) {
        return NULL;
    }

    ngx_memcpy(b->data, json, end - json);
    b->data[end - json] = '\0';

    return b;
}


static void
ngx_chat_fanout_sessions(ngx_chat_user_t *u, ngx_uint_t dest,
    ngx_str_t *mid, ngx_chat_blob_t *b)
{
    ngx_queue_t  *q, *next;

    for (q = ngx_queue_head(&u->sessions);
         q != ngx_queue_sentinel(&u->sessions);
         q = next)
    {
        next = ngx_queue_next(q);
        ngx_chat_session_deliver(ngx_queue_data(q, ngx_chat_session_t,
                                                user_link),
                                 dest, mid->data, mid->len, b);
    }
}


ngx_int_t
ngx_chat_fanout_to_user(ngx_str_t *user, const char *destination,
    u_char *json, size_t len)
{
    u_char                *p, *buf, *chan;
    size_t                 dlen;
    const char            *argv[3];
    size_t                 argvlen[3];
    ngx_chat_redis_req_t  *req;

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

    if (ngx_chat_redis_is_cluster()) {
        /* the user's sharded channel, in the user's slot */

        chan = ngx_alloc(sizeof(NGX_CHAT_CHANNEL_USER) + 1 + user->len,
                         ngx_cycle->log);
        if (chan == NULL) {
            ngx_free(buf);
            return NGX_ERROR;
        }

        argv[0] = "SPUBLISH";
        argvlen[0] = sizeof("SPUBLISH") - 1;
        argv[1] = (char *) chan;
        argvlen[1] = ngx_sprintf(chan, NGX_CHAT_CHANNEL_USER "{%V}", user)
                     - chan;
        argv[2] = (char *) buf;
        argvlen[2] = p - buf;

        req = ngx_chat_redis_command(ngx_chat_redis_log_reply, NULL, 3,
                                     argv, argvlen);
        ngx_free(chan);
        ngx_free(buf);

        return req ? NGX_OK : NGX_ERROR;
    }

    argv[0] = (char *) user->data;
    argvlen[0] = user->len;
    argv[1] = (char *) buf;
    argvlen[1] = p - buf;

    req = ngx_chat_redis_eval(&ngx_chat_user_script, ngx_chat_redis_log_reply,
                              NULL, 0, 2, argv, argvlen);
    ngx_free(buf);

    return req ? NGX_OK : NGX_ERROR;
}


/* the user of "chat:u:<user>" (a cluster: "chat:u:{<user>}") */

static ngx_int_t
ngx_chat_fanout_channel_user(u_char *channel, size_t len, ngx_str_t *user)
{
    size_t  n;

    n = sizeof(NGX_CHAT_CHANNEL_USER) - 1;

    if (len <= n || ngx_strncmp(channel, NGX_CHAT_CHANNEL_USER, n) != 0) {
        return NGX_DECLINED;
    }

    user->data = channel + n;
    user->len = len - n;

    if (ngx_chat_redis_is_cluster()) {
        if (user->len < 3 || user->data[0] != '{'
            || user->data[user->len - 1] != '}')
        {
            return NGX_DECLINED;
        }

        user->data++;
        user->len -= 2;
    }

    return NGX_OK;
}


/* room for n users of one publish (kept: the largest so far) */

ngx_chat_user_t **
ngx_chat_fanout_local_users(ngx_uint_t n)
{
    ngx_chat_user_t  **local;

    if (n > ngx_chat_fanout_nlocal) {
        local = ngx_alloc(n * sizeof(ngx_chat_user_t *), ngx_cycle->log);
        if (local == NULL) {
            return NULL;
        }

        if (ngx_chat_fanout_local) {
            ngx_free(ngx_chat_fanout_local);
        }

        ngx_chat_fanout_local = local;
        ngx_chat_fanout_nlocal = n;
    }

    return ngx_chat_fanout_local;
}
