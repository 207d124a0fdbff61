/* ngx_chat_fanout.c: the worker's registry of users with sessions here, their
 * routes in Redis, and the delivery of what is published on the worker's
 * route to their sessions. */

#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_fanout.h"
#include "ngx_chat_presence.h"

#include <openssl/rand.h>


/* a user with at least one session in this worker */
struct ngx_chat_user_s {
    ngx_str_node_t            sn;          /* key: userId */
    ngx_queue_t               sessions;
    ngx_str_t                 channel;     /* "chat:u:<userId>" */
};


typedef struct {
    const char               *name;
    size_t                    len;
    ngx_chat_dest_e           dest;
} ngx_chat_channel_dest_t;


static ngx_int_t ngx_chat_fanout_route(ngx_str_t *user,
    ngx_chat_redis_script_t *script);
static void ngx_chat_fanout_on_subscribed(u_char *channel, size_t len);
static void ngx_chat_fanout_deliver(u_char *payload, size_t len);
static void ngx_chat_fanout_user(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);
static u_char *ngx_chat_fanout_head(u_char *p, u_char *end,
    ngx_chat_dest_e *dest, ngx_str_t *mid);
static void ngx_chat_fanout_sessions(ngx_chat_user_t *u,
    ngx_chat_dest_e dest, ngx_str_t *mid, ngx_chat_blob_t *b);
static void ngx_chat_fanout_body(ngx_chat_user_t **users, ngx_uint_t n,
    ngx_chat_dest_e dest, ngx_str_t *mid, u_char *json, u_char *end);
static ngx_int_t ngx_chat_fanout_about(u_char *json, u_char *end,
    ngx_str_t *user);
static ngx_chat_blob_t *ngx_chat_fanout_blob(u_char *json, u_char *end);


static ngx_rbtree_t       ngx_chat_users;
static ngx_rbtree_node_t  ngx_chat_users_sentinel;

/* "chat:w:<route>"; the route is 16 random hex digits */
static u_char             ngx_chat_route_channel[sizeof("chat:w:") + 16];
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
    NGX_CHAT_LUA_ROUTE
    "route({ARGV[1]}, '', ARGV[2]) "
    "return 1",
    ""
};


/* adds a route to a user: KEYS none, ARGV user, route */
static ngx_chat_redis_script_t  ngx_chat_route_add_script = {
    "local x = redis.call('HGET', 'chat:routes', ARGV[1]) "
    "if x then"
    "  for v in string.gmatch(x, '%S+') do"
    "    if v == ARGV[2] then return 0 end"
    "  end"
    "  x = x .. ' ' .. ARGV[2] "
    "else"
    "  x = ARGV[2] "
    "end "
    "redis.call('HSET', 'chat:routes', ARGV[1], x) "
    "return 1",
    ""
};


/* removes a route from a user: KEYS none, ARGV user, route */
static ngx_chat_redis_script_t  ngx_chat_route_del_script = {
    NGX_CHAT_LUA_ROUTE
    "unroute(ARGV[1], ARGV[2]) "
    "return 1",
    ""
};


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


ngx_int_t
ngx_chat_fanout_init(void)
{
    u_char  *p;
    u_char   rnd[8];

    ngx_rbtree_init(&ngx_chat_users, &ngx_chat_users_sentinel,
                    ngx_str_rbtree_insert_value);

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "chat: RAND_bytes() failed for the worker's route");
        return NGX_ERROR;
    }

    p = ngx_cpymem(ngx_chat_route_channel, "chat:w:", sizeof("chat:w:") - 1);
    p = ngx_hex_dump(p, rnd, sizeof(rnd));

    ngx_chat_route_name.data = ngx_chat_route_channel + sizeof("chat:w:") - 1;
    ngx_chat_route_name.len = p - ngx_chat_route_name.data;
    ngx_chat_route_subscribed = 0;

    if (ngx_chat_redis_script(&ngx_chat_user_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_route_add_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_route_del_script) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


ngx_int_t
ngx_chat_fanout_start(void)
{
    ngx_chat_redis_on_subscribed(ngx_chat_fanout_on_subscribed);

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
    if (len != sizeof(ngx_chat_route_channel) - 1
        || ngx_strncmp(channel, ngx_chat_route_channel, len) != 0)
    {
        return;
    }

    ngx_chat_route_subscribed = 1;
    ngx_chat_fanout_reroute();
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

        if (ngx_chat_fanout_route(&u->sn.str, &ngx_chat_route_add_script)
            != NGX_OK)
        {
            /* Redis is down: the next link up does this again */
            return;
        }
    }
}


static ngx_int_t
ngx_chat_fanout_route(ngx_str_t *user, ngx_chat_redis_script_t *script)
{
    const char  *argv[2];
    size_t       argvlen[2];

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

        /*
         * With Redis down the route is added when the link is up again
         * (ngx_chat_fanout_reroute); the user's channel serves meanwhile.
         */
        (void) ngx_chat_fanout_route(&u->sn.str, &ngx_chat_route_add_script);
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
        /* if Redis is down, a publish that finds nobody removes it */
        (void) ngx_chat_fanout_route(&u->sn.str, &ngx_chat_route_del_script);
        ngx_chat_redis_unsubscribe(u->channel.data, u->channel.len);
        ngx_rbtree_delete(&ngx_chat_users, &u->sn.node);
        ngx_free(u);
    }
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

    if (channel_len > sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1
        && ngx_strncmp(channel, NGX_CHAT_PRESENCE_CHANNEL,
                       sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1) == 0)
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
    ngx_chat_dest_e    dest;

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

    if (max > ngx_chat_fanout_nlocal) {
        local = ngx_alloc(max * sizeof(ngx_chat_user_t *), ngx_cycle->log);
        if (local == NULL) {
            return;
        }

        if (ngx_chat_fanout_local) {
            ngx_free(ngx_chat_fanout_local);
        }

        ngx_chat_fanout_local = local;
        ngx_chat_fanout_nlocal = max;
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
            ngx_chat_fanout_local[n++] = u;
        }
    }

    if (n) {
        ngx_chat_fanout_body(ngx_chat_fanout_local, n, dest, &mid, json, end);
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
    ngx_chat_dest_e   dest;

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

    json = ngx_chat_fanout_head(payload, payload + len, &dest, &mid);
    if (json == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: invalid payload on \"%*s\"", channel_len,
                      channel);
        return;
    }

    ngx_chat_fanout_body(&u, 1, dest, &mid, json, payload + len);
}


/*
 * The body goes to every session of the users, copied once into a blob
 * they share. Receipts come as lines, one receipt each, and a user does
 * not get the receipt about the user.
 */

static void
ngx_chat_fanout_body(ngx_chat_user_t **users, ngx_uint_t n,
    ngx_chat_dest_e dest, ngx_str_t *mid, u_char *json, u_char *end)
{
    u_char           *nl;
    ngx_str_t         about;
    ngx_uint_t        i;
    ngx_chat_blob_t  *b;

    for ( /* void */ ; json < end; json = nl + 1) {

        if (dest == NGX_CHAT_DEST_RECEIPTS) {
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

static u_char *
ngx_chat_fanout_head(u_char *p, u_char *end, ngx_chat_dest_e *dest,
    ngx_str_t *mid)
{
    u_char                   *nl;
    ngx_chat_channel_dest_t  *cd;

    nl = ngx_strlchr(p, end, '\n');
    if (nl == NULL) {
        return NULL;
    }

    *dest = NGX_CHAT_DEST_NONE;

    for (cd = ngx_chat_channel_dests; cd->name; cd++) {
        if ((size_t) (nl - p) == cd->len && ngx_strncmp(p, cd->name, cd->len)
                                            == 0)
        {
            *dest = cd->dest;
            break;
        }
    }

    if (*dest == NGX_CHAT_DEST_NONE) {
        return NULL;
    }

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
ngx_chat_fanout_sessions(ngx_chat_user_t *u, ngx_chat_dest_e dest,
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
ngx_chat_publish_to_user(ngx_str_t *user, const char *destination,
    u_char *json, size_t len)
{
    u_char                *p, *buf;
    size_t                 dlen;
    const char            *argv[2];
    size_t                 argvlen[2];
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

    argv[0] = (char *) user->data;
    argvlen[0] = user->len;
    argv[1] = (char *) buf;
    argvlen[1] = p - buf;

    req = ngx_chat_redis_eval(&ngx_chat_user_script, ngx_chat_redis_log_reply,
                              NULL, 0, 2, argv, argvlen);
    ngx_free(buf);

    return req ? NGX_OK : NGX_ERROR;
}


void
ngx_chat_redis_log_reply(redisReply *reply, void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: Redis error: %*s", (size_t) reply->len,
                      reply->str);
    }
}
