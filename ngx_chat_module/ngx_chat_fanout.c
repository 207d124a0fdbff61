/* ngx_chat_fanout.c: the worker's registry of users with sessions here, and
 * the delivery of what Redis publishes on their channels to those sessions. */

#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_fanout.h"
#include "ngx_chat_presence.h"


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


static ngx_rbtree_t       ngx_chat_users;
static ngx_rbtree_node_t  ngx_chat_users_sentinel;


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


void
ngx_chat_fanout_init(void)
{
    ngx_rbtree_init(&ngx_chat_users, &ngx_chat_users_sentinel,
                    ngx_str_rbtree_insert_value);
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

void
ngx_chat_fanout_on_message(u_char *channel, size_t channel_len,
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

    if (channel_len > sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1
        && ngx_strncmp(channel, NGX_CHAT_PRESENCE_CHANNEL,
                       sizeof(NGX_CHAT_PRESENCE_CHANNEL) - 1) == 0)
    {
        ngx_chat_presence_on_message(channel, channel_len, payload, len);
        return;
    }

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

    req = ngx_chat_redis_command(ngx_chat_redis_log_reply, NULL, 3, argv,
                                 argvlen);
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
