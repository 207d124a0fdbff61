/* ngx_chat_redis_int.h: what the Redis command and pub/sub links share.
 *
 * ngx_chat_redis.c and ngx_chat_redis_pubsub.c call each other on purpose:
 * the first starts and stops the pub/sub link whose replies the second
 * reads, and the second uses the worker's state (ngx_chat_redis) that the
 * first defines. Both drive their links with ngx_chat_redis_link.c. */

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
    ngx_msec_t                   timeout;     /* of a connect */
    ngx_msec_t                   backoff;
    ngx_uint_t                   failures;

    ngx_chat_redis_link_pt       on_connect;
    ngx_chat_redis_link_pt       on_close;
    ngx_chat_redis_on_reply_pt   on_reply;

    unsigned                     connecting:1;
    unsigned                     connected:1;
    unsigned                     alive:1;     /* a good reply came */
    unsigned                     exiting:1;   /* no reconnect */
};


struct ngx_chat_redis_req_s {
    ngx_queue_t                  queue;
    ngx_chat_redis_reply_pt      handler;     /* NULL once cancelled */
    void                        *data;
    ngx_msec_t                   start;
    uint64_t                     start_us;    /* metrics: the RTT */
    ngx_chat_redis_script_t     *script;      /* EVALSHA requests only */
    char                        *cmd;         /* kept: EVALSHA, a cluster */
    size_t                       cmd_len;
    ngx_int_t                    slot;        /* -1: any node */
    ngx_uint_t                   retried;
    ngx_uint_t                   redirects;   /* MOVED and ASK followed */
    ngx_uint_t                   tryagain;    /* TRYAGAIN answers */
    unsigned                     bg:1;        /* a background request */
    unsigned                     asking:1;    /* the ASKING before one */
    unsigned                     asked:1;     /* sent after ASKING */
};


#define NGX_CHAT_REDIS_SLOTS      16384
#define NGX_CHAT_REDIS_NODES_MAX  64
#define NGX_CHAT_REDIS_NO_NODE    0xffff


/* a Redis server the worker sends commands to: the one Redis, or a cluster
 * node */
typedef struct {
    ngx_chat_redis_link_t        cmd;         /* first: a link is its node */
    ngx_chat_redis_link_t        ssub;        /* a cluster: its sharded
                                                 pub/sub link */
    ngx_addr_t                   addr;
    ngx_queue_t                  pending;     /* sent, waiting for replies */
    ngx_event_t                  timer;       /* the head request's timeout */
    ngx_uint_t                   index;
    u_char                      *bumps;       /* a cluster: bitmap of the
                                                 slots whose epoch it must
                                                 move (it was promoted) */
    ngx_uint_t                   nbumps;
    u_char                       id[41];      /* a cluster: the node id */
} ngx_chat_redis_node_t;


typedef struct {
    ngx_pool_t                  *pool;
    ngx_log_t                   *log;
    ngx_addr_t                   addr;        /* the pub/sub link's */
    ngx_msec_t                   timeout;
    ngx_chat_redis_message_pt    on_message;
    ngx_chat_redis_state_pt      on_state;

    ngx_chat_redis_node_t       *nodes[NGX_CHAT_REDIS_NODES_MAX];
    ngx_uint_t                   nnodes;      /* one unless a cluster */
    ngx_chat_redis_link_t        sub;

    ngx_queue_t                  free;
    ngx_queue_t                  bg_wait;     /* background, not yet sent */
    ngx_uint_t                   bg_inflight; /* background, sent */
    ngx_uint_t                   nfree;

    ngx_rbtree_t                 channels;
    ngx_rbtree_node_t            sentinel;

    /* a cluster: the slot map (index of the primary's node per slot) */
    uint16_t                    *slots;
    uint16_t                    *old_slots;   /* the map before a refresh */
    uint32_t                    *tags;        /* per slot: a number whose
                                                 decimal text hashes there */
    ngx_event_t                  refresh;     /* CLUSTER SLOTS again */
    ngx_queue_t                  retry;       /* TRYAGAIN: sent again soon */
    ngx_event_t                  retry_timer;
    ngx_msec_t                   refreshed;   /* when it was last asked */
    ngx_uint_t                   sub_node;    /* the pub/sub link's node */

    unsigned                     cluster:1;
    unsigned                     up:1;        /* every slot was served */
    unsigned                     map_ok:1;    /* a slot map was loaded */
    unsigned                     refreshing:1;
    unsigned                     exiting:1;
} ngx_chat_redis_t;


/* the worker's Redis state, defined in ngx_chat_redis.c */
extern ngx_chat_redis_t  ngx_chat_redis;


/*
 * ngx_chat_redis_link.c: a link connects (from the event loop once its
 * reconnect event is posted), reconnects with backoff until link_exit,
 * hands each reply to on_reply and writes what is appended, pipelined
 * (flush: at the end of the event cycle)
 */
void ngx_chat_redis_link_init(ngx_chat_redis_link_t *link, ngx_log_t *log,
    ngx_addr_t *addr, ngx_msec_t timeout);
void ngx_chat_redis_link_exit(ngx_chat_redis_link_t *link);
void ngx_chat_redis_close(ngx_chat_redis_link_t *link);
ngx_int_t ngx_chat_redis_reserve(ngx_chat_redis_link_t *link, size_t len);
ngx_int_t ngx_chat_redis_append(ngx_chat_redis_link_t *link,
    const u_char *data, size_t len);
ngx_int_t ngx_chat_redis_append_argv(ngx_chat_redis_link_t *link, int argc,
    const char **argv, const size_t *argvlen);
void ngx_chat_redis_flush(ngx_chat_redis_link_t *link);


/*
 * ngx_chat_redis.c for the cluster code: a node with its command link
 * (connecting from the event loop), and a formatted command sent on a
 * node's link as the next request of its queue (the request and cmd are
 * taken over; "asking": preceded by ASKING)
 */
ngx_chat_redis_node_t *ngx_chat_redis_node_add(ngx_addr_t *addr);
ngx_chat_redis_req_t *ngx_chat_redis_node_request(char *cmd, int len,
    ngx_chat_redis_reply_pt handler, void *data);
ngx_int_t ngx_chat_redis_node_send(ngx_chat_redis_node_t *node,
    ngx_chat_redis_req_t *req, ngx_uint_t asking);
void ngx_chat_redis_fail_req(ngx_chat_redis_req_t *req);
void ngx_chat_redis_retry_failed(ngx_chat_redis_req_t *req);


/*
 * ngx_chat_redis_cluster.c: the slot of a key (its hash tag's CRC16), the
 * node serving a slot (NULL: none known or its link is down; a refresh is
 * then scheduled), the map's refresh (CLUSTER SLOTS on any live node, at
 * most every 100 ms), MOVED and ASK (NGX_DECLINED: not a redirect), the
 * seed nodes, and the pub/sub link moving on to the next node
 */
ngx_uint_t ngx_chat_redis_slot(const u_char *key, size_t len);
ngx_chat_redis_node_t *ngx_chat_redis_slot_node(ngx_int_t slot);
void ngx_chat_redis_refresh(ngx_msec_t delay);
ngx_int_t ngx_chat_redis_redirect(ngx_chat_redis_req_t *req,
    redisReply *reply);
ngx_int_t ngx_chat_redis_cluster_init(ngx_chat_redis_t *r,
    ngx_array_t *seeds);
void ngx_chat_redis_sub_next(ngx_chat_redis_link_t *link);
void ngx_chat_redis_cluster_connected(ngx_chat_redis_node_t *node);


/*
 * the pub/sub link (ngx_chat_redis_pubsub.c): sub_init sets up the channel
 * set and the sub link's handlers, sub_exit frees the channel set
 */
void ngx_chat_redis_sub_init(ngx_chat_redis_t *r);
void ngx_chat_redis_sub_exit(ngx_chat_redis_t *r);

/*
 * a cluster: a node's sharded pub/sub link (started with its command link),
 * and the sharded channels moved to the nodes of the slot map just loaded
 * (SUNSUBSCRIBE on the old owner if it is still up, SSUBSCRIBE on the new)
 */
void ngx_chat_redis_ssub_init(ngx_chat_redis_node_t *node);
void ngx_chat_redis_ssub_sync(void);


#endif /* _NGX_CHAT_REDIS_INT_H_INCLUDED_ */
