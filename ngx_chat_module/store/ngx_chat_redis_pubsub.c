/* ngx_chat_redis_pubsub.c: the Redis pub/sub link and its reference-counted
 * channel set, subscribed again in batches on every reconnect; in a cluster,
 * channels with a hash tag are sharded (SSUBSCRIBE on the link to their
 * slot's primary, one link per primary, moved with the slot map). */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_chat_redis.h"
#include "ngx_chat_redis_int.h"


#define NGX_CHAT_REDIS_SUB_BATCH     256


typedef struct {
    ngx_str_node_t               sn;
    ngx_uint_t                   refs;
    uint16_t                     slot;        /* sharded: its slot */
    uint16_t                     node;        /* sharded: the node its
                                                 SSUBSCRIBE went to, or
                                                 NGX_CHAT_REDIS_NO_NODE */
    unsigned                     sharded:1;
    u_char                       name[1];
} ngx_chat_redis_channel_t;


#define ngx_chat_redis_ssub_node(link)                                       \
    ((ngx_chat_redis_node_t *) ((u_char *) (link)                            \
                                - offsetof(ngx_chat_redis_node_t, ssub)))


static void ngx_chat_redis_sub_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_sub_close(ngx_chat_redis_link_t *link);
static ngx_int_t ngx_chat_redis_sub_reply(ngx_chat_redis_link_t *link,
    redisReply *reply);
static ngx_chat_redis_channel_t *ngx_chat_redis_channel(u_char *channel,
    size_t len, uint32_t *hash);
static ngx_int_t ngx_chat_redis_sub_send(const char *verb, u_char *channel,
    size_t len);
static ngx_int_t ngx_chat_redis_ssub_send(ngx_uint_t node, const char *verb,
    ngx_chat_redis_channel_t *ch);
static void ngx_chat_redis_ssub_place(ngx_chat_redis_channel_t *ch);
static void ngx_chat_redis_ssub_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_ssub_close(ngx_chat_redis_link_t *link);
static ngx_int_t ngx_chat_redis_ssub_reply(ngx_chat_redis_link_t *link,
    redisReply *reply);
static void ngx_chat_redis_ssub_moved(ngx_chat_redis_node_t *node,
    redisReply *reply);
static void ngx_chat_redis_ssub_lost(ngx_chat_redis_node_t *node,
    u_char *channel, size_t len);
static ngx_int_t ngx_chat_redis_pubsub_reply(ngx_chat_redis_link_t *link,
    redisReply *reply, ngx_uint_t sharded);


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
    ch->node = NGX_CHAT_REDIS_NO_NODE;
    ch->sharded = (r->cluster
                   && ngx_strlchr(channel, channel + len, '{') != NULL);

    if (ch->sharded) {
        ch->slot = (uint16_t) ngx_chat_redis_slot(channel, len);
        ngx_rbtree_insert(&r->channels, &ch->sn.node);

        /* not sent (a link is down, or no memory): sent when it is up, or
         * at the next map refresh */
        ngx_chat_redis_ssub_place(ch);

        return NGX_OK;
    }

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

    if (ch->sharded) {
        if (ch->node != NGX_CHAT_REDIS_NO_NODE
            && ngx_chat_redis_ssub_send(ch->node, "SUNSUBSCRIBE", ch)
               != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->log, 0,
                          "chat redis: SUNSUBSCRIBE failed, reconnecting");
            ngx_chat_redis_close(&r->nodes[ch->node]->ssub);
        }

        ngx_free(ch);
        return;
    }

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

        if (ch->sharded) {
            /* on the links of the nodes (ngx_chat_redis_ssub_place) */
            continue;
        }

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
    /* the channel set is kept: sub_connect subscribes to it again (in a
     * cluster on the next node: Redis carries PUBLISH to every node) */

    ngx_chat_redis_sub_next(link);
}


static ngx_int_t
ngx_chat_redis_sub_reply(ngx_chat_redis_link_t *link, redisReply *reply)
{
    return ngx_chat_redis_pubsub_reply(link, reply, 0);
}


/*
 * The replies of both kinds of link: "subscribe" / "ssubscribe" confirm,
 * "message" / "smessage" deliver; on a sharded link "sunsubscribe" of a
 * channel still wanted there is Redis dropping it (its slot moved away),
 * and an error is a "MOVED" (the map was stale).
 */

static ngx_int_t
ngx_chat_redis_pubsub_reply(ngx_chat_redis_link_t *link, redisReply *reply,
    ngx_uint_t sharded)
{
    uint32_t                   hash;
    ngx_uint_t                 skip;
    redisReply                *kind, *channel, *payload;
    ngx_chat_redis_node_t     *node;
    ngx_chat_redis_channel_t  *ch;

    node = sharded ? ngx_chat_redis_ssub_node(link) : NULL;

    if (reply->type == REDIS_REPLY_ERROR) {
        if (node && reply->len > 6
            && ngx_strncmp(reply->str, "MOVED ", 6) == 0)
        {
            ngx_chat_redis_ssub_moved(node, reply);
            return NGX_OK;
        }

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

    skip = sharded ? 1 : 0;     /* the "s" of the sharded kinds */

    if (sharded
        && (kind->len < 1 || kind->str[0] != 's'))
    {
        return NGX_OK;
    }

    if (sharded && kind->len == 12
        && ngx_strncmp(kind->str, "sunsubscribe", 12) == 0)
    {
        ngx_chat_redis_ssub_lost(node, (u_char *) channel->str,
                                 channel->len);
        return NGX_OK;
    }

    if (kind->len == 9 + skip
        && ngx_strncmp(kind->str + skip, "subscribe", 9) == 0)
    {
        if (sharded) {
            ch = ngx_chat_redis_channel((u_char *) channel->str,
                                        channel->len, &hash);

            if (ch == NULL || ch->node != node->index) {
                /* dropped or moved since */
                return NGX_OK;
            }
        }

        if (ngx_chat_redis_subscribed
            && ngx_chat_redis_channel((u_char *) channel->str, channel->len,
                                      &hash)
               != NULL)
        {
            ngx_chat_redis_subscribed((u_char *) channel->str, channel->len);
        }

        return NGX_OK;
    }

    if (kind->len != 7 + skip
        || ngx_strncmp(kind->str + skip, "message", 7) != 0
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


/*
 * Sharded pub/sub (a cluster). A channel is SSUBSCRIBEd on the link of its
 * slot's primary as the map knows it, one command per channel (SSUBSCRIBE
 * of several channels needs them in one slot). ch->node says where it was
 * sent; the map's refresh (ngx_chat_redis_ssub_sync), the link's loss, a
 * "sunsubscribe" from Redis (the slot moved away) and a MOVED reset it, and
 * it is sent again where the slot is now. Messages published in between
 * are not received here (PROTOCOL.md section 6: the client sees a seq gap
 * and reads the history).
 */

void
ngx_chat_redis_ssub_init(ngx_chat_redis_node_t *node)
{
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    node->ssub.name = "sharded pub/sub";
    node->ssub.on_connect = ngx_chat_redis_ssub_connect;
    node->ssub.on_close = ngx_chat_redis_ssub_close;
    node->ssub.on_reply = ngx_chat_redis_ssub_reply;

    ngx_chat_redis_link_init(&node->ssub, r->log, &node->addr, r->timeout);

    ngx_post_event(&node->ssub.reconnect, &ngx_posted_events);
}


static ngx_int_t
ngx_chat_redis_ssub_send(ngx_uint_t node, const char *verb,
    ngx_chat_redis_channel_t *ch)
{
    const char             *argv[2];
    size_t                  argvlen[2];
    ngx_chat_redis_link_t  *link;

    link = &ngx_chat_redis.nodes[node]->ssub;

    if (!link->connected) {
        return NGX_OK;
    }

    argv[0] = verb;
    argvlen[0] = ngx_strlen(verb);
    argv[1] = (const char *) ch->name;
    argvlen[1] = ch->sn.str.len;

    if (ngx_chat_redis_append_argv(link, 2, argv, argvlen) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_chat_redis_flush(link);

    return NGX_OK;
}


/* a sharded channel to the node of its slot, if the map has one and its
 * link is up (otherwise its connect or the next map does it) */

static void
ngx_chat_redis_ssub_place(ngx_chat_redis_channel_t *ch)
{
    ngx_uint_t         n;
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    n = r->map_ok ? r->slots[ch->slot] : NGX_CHAT_REDIS_NO_NODE;

    if (n == ch->node) {
        return;
    }

    if (ch->node != NGX_CHAT_REDIS_NO_NODE
        && ngx_chat_redis_ssub_send(ch->node, "SUNSUBSCRIBE", ch) != NGX_OK)
    {
        ngx_chat_redis_close(&r->nodes[ch->node]->ssub);
    }

    ch->node = NGX_CHAT_REDIS_NO_NODE;

    if (n == NGX_CHAT_REDIS_NO_NODE || n >= r->nnodes
        || !r->nodes[n]->ssub.connected)
    {
        return;
    }

    if (ngx_chat_redis_ssub_send(n, "SSUBSCRIBE", ch) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->log, 0,
                      "chat redis: SSUBSCRIBE failed, reconnecting");
        ngx_chat_redis_close(&r->nodes[n]->ssub);
        return;
    }

    ch->node = (uint16_t) n;
}


void
ngx_chat_redis_ssub_sync(void)
{
    ngx_rbtree_t              *tree;
    ngx_rbtree_node_t         *node;
    ngx_chat_redis_channel_t  *ch;

    tree = &ngx_chat_redis.channels;

    if (tree->root == tree->sentinel) {
        return;
    }

    for (node = ngx_rbtree_min(tree->root, tree->sentinel);
         node;
         node = ngx_rbtree_next(tree, node))
    {
        ch = (ngx_chat_redis_channel_t *) node;

        if (ch->sharded) {
            ngx_chat_redis_ssub_place(ch);
        }
    }
}


static void
ngx_chat_redis_ssub_connect(ngx_chat_redis_link_t *link)
{
    const char  *argv[1];
    size_t       argvlen[1];

    argv[0] = "PING";
    argvlen[0] = sizeof("PING") - 1;

    if (ngx_chat_redis_append_argv(link, 1, argv, argvlen) != NGX_OK) {
        ngx_chat_redis_close(link);
        return;
    }

    ngx_chat_redis_flush(link);

    /* the channels of its slots (ch->node was reset when it was lost) */

    ngx_chat_redis_ssub_sync();
}


static void
ngx_chat_redis_ssub_close(ngx_chat_redis_link_t *link)
{
    ngx_uint_t                 index;
    ngx_rbtree_t              *tree;
    ngx_rbtree_node_t         *node;
    ngx_chat_redis_channel_t  *ch;

    tree = &ngx_chat_redis.channels;
    index = ngx_chat_redis_ssub_node(link)->index;

    /* the link layer clears "connected" after this: nothing is sent here */

    link->connected = 0;

    if (tree->root != tree->sentinel) {
        for (node = ngx_rbtree_min(tree->root, tree->sentinel);
             node;
             node = ngx_rbtree_next(tree, node))
        {
            ch = (ngx_chat_redis_channel_t *) node;

            if (ch->sharded && ch->node == index) {
                ch->node = NGX_CHAT_REDIS_NO_NODE;
            }
        }
    }

    if (!ngx_chat_redis.exiting) {
        /* its slots may have moved (a failover): subscribed where the new
         * map puts them; the link itself reconnects with backoff */
        ngx_chat_redis_refresh(100);
    }
}


static ngx_int_t
ngx_chat_redis_ssub_reply(ngx_chat_redis_link_t *link, redisReply *reply)
{
    return ngx_chat_redis_pubsub_reply(link, reply, 1);
}


/* Redis dropped a channel we still want there: its slot moved away */

static void
ngx_chat_redis_ssub_lost(ngx_chat_redis_node_t *node, u_char *channel,
    size_t len)
{
    uint32_t                   hash;
    ngx_chat_redis_channel_t  *ch;

    ch = ngx_chat_redis_channel(channel, len, &hash);

    if (ch == NULL || ch->node != node->index) {
        /* the answer to our own SUNSUBSCRIBE */
        return;
    }

    ngx_log_error(NGX_LOG_NOTICE, &node->ssub.log, 0,
                  "chat redis: %V dropped \"%*s\" (its slot moved), "
                  "subscribing where it is now", &node->addr.name, len,
                  channel);

    ch->node = NGX_CHAT_REDIS_NO_NODE;

    ngx_chat_redis_refresh(0);
}


/* "MOVED <slot> <host>:<port>" to an SSUBSCRIBE: the slot's channels sent
 * there are sent again where the map, loaded again, puts them */

static void
ngx_chat_redis_ssub_moved(ngx_chat_redis_node_t *node, redisReply *reply)
{
    u_char                    *p, *last;
    ngx_int_t                  slot;
    ngx_rbtree_t              *tree;
    ngx_rbtree_node_t         *rn;
    ngx_chat_redis_channel_t  *ch;

    p = (u_char *) reply->str + 6;
    last = (u_char *) reply->str + reply->len;

    last = ngx_strlchr(p, last, ' ');
    slot = last ? ngx_atoi(p, last - p) : NGX_ERROR;

    tree = &ngx_chat_redis.channels;

    if (tree->root != tree->sentinel) {
        for (rn = ngx_rbtree_min(tree->root, tree->sentinel);
             rn;
             rn = ngx_rbtree_next(tree, rn))
        {
            ch = (ngx_chat_redis_channel_t *) rn;

            if (ch->sharded && ch->node == node->index
                && (slot == NGX_ERROR || ch->slot == slot))
            {
                ch->node = NGX_CHAT_REDIS_NO_NODE;
            }
        }
    }

    ngx_chat_redis_refresh(0);
}
