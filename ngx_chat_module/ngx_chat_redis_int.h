/* ngx_chat_redis_int.h: what the Redis command and pub/sub links share. */

#ifndef _NGX_CHAT_REDIS_INT_H_INCLUDED_
#define _NGX_CHAT_REDIS_INT_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_chat_redis.h"


typedef struct ngx_chat_redis_link_s  ngx_chat_redis_link_t;

typedef void (*ngx_chat_redis_link_pt)(ngx_chat_redis_link_t *link);
typedef ngx_int_t (*ngx_chat_redis_on_reply_pt)(ngx_chat_redis_link_t *link,
    redisReply *reply);


struct ngx_chat_redis_link_s {
    const char                  *name;
    ngx_log_t                    log;
    ngx_peer_connection_t        peer;
    ngx_connection_t            *connection;
    redisReader                 *reader;

    u_char                      *out;         /* pending output */
    u_char                      *out_pos;
    u_char                      *out_last;
    u_char                      *out_end;

    ngx_event_t                  reconnect;
    ngx_msec_t                   backoff;
    ngx_uint_t                   failures;

    ngx_chat_redis_link_pt       on_connect;
    ngx_chat_redis_link_pt       on_close;
    ngx_chat_redis_on_reply_pt   on_reply;

    unsigned                     connecting:1;
    unsigned                     connected:1;
    unsigned                     alive:1;     /* a good reply came */
};


typedef struct {
    ngx_pool_t                  *pool;
    ngx_log_t                   *log;
    ngx_addr_t                   addr;
    ngx_msec_t                   timeout;
    ngx_chat_redis_message_pt    on_message;
    ngx_chat_redis_state_pt      on_state;

    ngx_chat_redis_link_t        cmd;
    ngx_chat_redis_link_t        sub;

    ngx_queue_t                  pending;     /* sent, waiting for replies */
    ngx_queue_t                  free;
    ngx_queue_t                  bg_wait;     /* background, not yet sent */
    ngx_uint_t                   bg_inflight; /* background, sent */
    ngx_uint_t                   nfree;
    ngx_event_t                  timer;       /* the head request's timeout */

    ngx_rbtree_t                 channels;
    ngx_rbtree_node_t            sentinel;

    unsigned                     exiting:1;
} ngx_chat_redis_t;


/* the worker's Redis state, defined in ngx_chat_redis.c */
extern ngx_chat_redis_t  ngx_chat_redis;


/* the shared link machinery (ngx_chat_redis.c) */
void ngx_chat_redis_close(ngx_chat_redis_link_t *link);
ngx_int_t ngx_chat_redis_append_argv(ngx_chat_redis_link_t *link, int argc,
    const char **argv, const size_t *argvlen);
void ngx_chat_redis_flush(ngx_chat_redis_link_t *link);

/*
 * the pub/sub link (ngx_chat_redis_pubsub.c): sub_init sets up the channel
 * set and the sub link's handlers, sub_exit frees the channel set
 */
void ngx_chat_redis_sub_init(ngx_chat_redis_t *r);
void ngx_chat_redis_sub_exit(ngx_chat_redis_t *r);


#endif /* _NGX_CHAT_REDIS_INT_H_INCLUDED_ */
