/* ngx_chat_redis_pubsub.c: the Redis pub/sub link and its reference-counted
 * channel set, subscribed again in batches on every reconnect. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_chat_redis.h"
#include "ngx_chat_redis_int.h"


#define NGX_CHAT_REDIS_SUB_BATCH     256


typedef struct {
    ngx_str_node_t               sn;
    ngx_uint_t                   refs;
    u_char                       name[1];
} ngx_chat_redis_channel_t;


static void ngx_chat_redis_sub_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_sub_close(ngx_chat_redis_link_t *link);
static ngx_int_t ngx_chat_redis_sub_reply(ngx_chat_redis_link_t *link,
    redisReply *reply);
static ngx_chat_redis_channel_t *ngx_chat_redis_channel(u_char *channel,
    size_t len, uint32_t *hash);
static ngx_int_t ngx_chat_redis_sub_send(const char *verb, u_char *channel,
    size_t len);


static ngx_chat_redis_subscribed_pt  ngx_chat_redis_subscribed;


void
ngx_chat_redis_sub_init(ngx_chat_redis_t *r)
{
    ngx_rbtree_init(&r->channels, &r->sentinel, ngx_str_rbtree_insert_value);

    r->sub.name = "pub/sub";
    r->sub.on_connect = ngx_chat_redis_sub_connect;
    r->sub.on_close = ngx_chat_redis_sub_close;
    r->sub.on_reply = ngx_chat_redis_sub_reply;
}


void
ngx_chat_redis_on_subscribed(ngx_chat_redis_subscribed_pt handler)
{
    ngx_chat_redis_subscribed = handler;
}


void
ngx_chat_redis_sub_exit(ngx_chat_redis_t *r)
{
    ngx_rbtree_node_t         *node;
    ngx_chat_redis_channel_t  *ch;

    while (r->channels.root != r->channels.sentinel) {
        node = ngx_rbtree_min(r->channels.root, r->channels.sentinel);
        ngx_rbtree_delete(&r->channels, node);
        ch = (ngx_chat_redis_channel_t *) node;
        ngx_free(ch);
    }
}


ngx_int_t
ngx_chat_redis_subscribe(u_char *channel, size_t len)
{
    uint32_t                   hash;
    ngx_chat_redis_t          *r;
    ngx_chat_redis_channel_t  *ch;

    r = &ngx_chat_redis;

    if (r->pool == NULL) {
        return NGX_ERROR;
    }

    ch = ngx_chat_redis_channel(channel, len, &hash);

    if (ch) {
        ch->refs++;
        return NGX_OK;
    }

    ch = ngx_alloc(offsetof(ngx_chat_redis_channel_t, name) + len + 1,
                   r->log);
    if (ch == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(ch->name, channel, len);
    ch->name[len] = '\0';
    ch->sn.str.len = len;
    ch->sn.str.data = ch->name;
    ch->sn.node.key = hash;
    ch->refs = 1;

    if (r->sub.connected
        && ngx_chat_redis_sub_send("SUBSCRIBE", channel, len) != NGX_OK)
    {
        ngx_free(ch);
        return NGX_ERROR;
    }

    ngx_rbtree_insert(&r->channels, &ch->sn.node);

    return NGX_OK;
}


void
ngx_chat_redis_unsubscribe(u_char *channel, size_t len)
{
    uint32_t                   hash;
    ngx_chat_redis_t          *r;
    ngx_chat_redis_channel_t  *ch;

    r = &ngx_chat_redis;

    if (r->pool == NULL) {
        return;
    }

    ch = ngx_chat_redis_channel(channel, len, &hash);

    if (ch == NULL || --ch->refs > 0) {
        return;
    }

    ngx_rbtree_delete(&r->channels, &ch->sn.node);

    if (r->sub.connected
        && ngx_chat_redis_sub_send("UNSUBSCRIBE", ch->name, len) != NGX_OK)
    {
        /* no memory: start over on a fresh link with the right set */
        ngx_log_error(NGX_LOG_ERR, &r->sub.log, 0,
                      "chat redis: UNSUBSCRIBE failed, reconnecting");
        ngx_chat_redis_close(&r->sub);
    }

    ngx_free(ch);
}


static ngx_chat_redis_channel_t *
ngx_chat_redis_channel(u_char *channel, size_t len, uint32_t *hash)
{
    ngx_str_t        name;
    ngx_str_node_t  *sn;

    name.len = len;
    name.data = channel;

    *hash = ngx_crc32_long(channel, len);

    sn = ngx_str_rbtree_lookup(&ngx_chat_redis.channels, &name, *hash);

    return (ngx_chat_redis_channel_t *) sn;
}


static ngx_int_t
ngx_chat_redis_sub_send(const char *verb, u_char *channel, size_t len)
{
    const char  *argv[2];
    size_t       argvlen[2];

    argv[0] = verb;
    argvlen[0] = ngx_strlen(verb);
    argv[1] = (const char *) channel;
    argvlen[1] = len;

    if (ngx_chat_redis_append_argv(&ngx_chat_redis.sub, 2, argv, argvlen)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_chat_redis_flush(&ngx_chat_redis.sub);

    return NGX_OK;
}


static void
ngx_chat_redis_sub_connect(ngx_chat_redis_link_t *link)
{
    int                        n;
    ngx_rbtree_t              *tree;
    ngx_rbtree_node_t         *node;
    ngx_chat_redis_channel_t  *ch;
    const char                *argv[NGX_CHAT_REDIS_SUB_BATCH + 1];
    size_t                     argvlen[NGX_CHAT_REDIS_SUB_BATCH + 1];

    tree = &ngx_chat_redis.channels;

    argv[0] = "PING";
    argvlen[0] = sizeof("PING") - 1;

    if (ngx_chat_redis_append_argv(link, 1, argv, argvlen) != NGX_OK) {
        goto failed;
    }

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    n = 1;

    for (node = tree->root == tree->sentinel
                ? NULL : ngx_rbtree_min(tree->root, tree->sentinel);
         node;
         node = ngx_rbtree_next(tree, node))
    {
        ch = (ngx_chat_redis_channel_t *) node;

        argv[n] = (const char *) ch->name;
        argvlen[n] = ch->sn.str.len;
        n++;

        if (n == NGX_CHAT_REDIS_SUB_BATCH + 1) {
            if (ngx_chat_redis_append_argv(link, n, argv, argvlen) != NGX_OK) {
                goto failed;
            }

            n = 1;
        }
    }

    if (n > 1 && ngx_chat_redis_append_argv(link, n, argv, argvlen) != NGX_OK)
    {
        goto failed;
    }

    ngx_chat_redis_flush(link);

    return;

failed:

    ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                  "chat redis: could not subscribe again, reconnecting");

    /* closing here is safe: the caller checks link->connection */
    ngx_chat_redis_close(link);
}


static void
ngx_chat_redis_sub_close(ngx_chat_redis_link_t *link)
{
    /* the channel set is kept: sub_connect subscribes to it again */

    (void) link;
}


static ngx_int_t
ngx_chat_redis_sub_reply(ngx_chat_redis_link_t *link, redisReply *reply)
{
    uint32_t     hash;
    redisReply  *kind, *channel, *payload;

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                      "chat redis: pub/sub link error: %*s",
                      reply->len, reply->str);
        return NGX_OK;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        return NGX_OK;
    }

    kind = reply->element[0];
    channel = reply->element[1];
    payload = reply->element[2];

    if (kind->type != REDIS_REPLY_STRING
        || channel->type != REDIS_REPLY_STRING)
    {
        return NGX_OK;
    }

    if (kind->len == 9 && ngx_strncmp(kind->str, "subscribe", 9) == 0) {

        if (ngx_chat_redis_subscribed
            && ngx_chat_redis_channel((u_char *) channel->str, channel->len,
                                      &hash)
               != NULL)
        {
            ngx_chat_redis_subscribed((u_char *) channel->str, channel->len);
        }

        return NGX_OK;
    }

    if (kind->len != 7 || ngx_strncmp(kind->str, "message", 7) != 0
        || payload->type != REDIS_REPLY_STRING)
    {
        /* unsubscribe confirmations */
        return NGX_OK;
    }

    /* drop messages still in flight for channels just unsubscribed */

    if (ngx_chat_redis_channel((u_char *) channel->str, channel->len, &hash)
        == NULL)
    {
        return NGX_OK;
    }

    if (ngx_chat_redis.on_message) {
        ngx_chat_redis.on_message((u_char *) channel->str, channel->len,
                                  (u_char *) payload->str, payload->len);
    }

    return NGX_OK;
}
