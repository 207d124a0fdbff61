/* ngx_chat_fanout_int.h: what ngx_chat_fanout.c (the registry, one Redis's
 * routes) and ngx_chat_fanout_convs.c (a cluster's conversation channels)
 * share. */

#ifndef _NGX_CHAT_FANOUT_INT_H_INCLUDED_
#define _NGX_CHAT_FANOUT_INT_H_INCLUDED_

#include "ngx_chat_fanout.h"
#include "ngx_chat_pg.h"


typedef struct ngx_chat_conv_s  ngx_chat_conv_t;


/* a user with at least one session in this worker */
struct ngx_chat_user_s {
    ngx_str_node_t            sn;          /* key: userId */
    ngx_queue_t               sessions;
    ngx_uint_t                nsessions;   /* chat_max_sessions_per_user */
    ngx_str_t                 channel;     /* "chat:u:<userId>" (a
                                              cluster: "chat:u:{<userId>}") */
    ngx_uint_t                excess;      /* chat_send_rate: SENDs over
                                              the rate, times 1000 */
    ngx_msec_t                last;        /* the last SEND let through */
    ngx_chat_redis_req_t     *route_req;   /* its route add in flight */
    unsigned                  sent:1;      /* there was one */
    unsigned                  subscribed:1; /* Redis confirmed the
                                               SUBSCRIBE of the channel */
    unsigned                  routed:1;    /* Redis answered a route add
                                              sent after the worker's
                                              channel was subscribed */

    /* a cluster: the conversations whose channels it needs */
    ngx_chat_conv_t         **convs;
    ngx_uint_t                nconvs;
    ngx_uint_t                aconvs;
    ngx_uint_t                pending;     /* of them, not yet confirmed */
    ngx_chat_pg_req_t        *convs_req;   /* their list, in flight */
    unsigned                  loaded:1;    /* the list came */
    unsigned                  woken:1;     /* its waiting sessions were
                                              told it is ready */
};


/*
 * A cluster: a conversation that users here are members of; its sharded
 * channel is subscribed while there is one (reference count: nusers).
 */
struct ngx_chat_conv_s {
    ngx_str_node_t            sn;          /* key: conversationId */
    ngx_chat_user_t         **users;
    ngx_uint_t                nusers;
    ngx_uint_t                ausers;
    ngx_str_t                 channel;     /* "chat:c:{<conv>}" */
    unsigned                  acked:1;     /* Redis confirmed SSUBSCRIBE */
};


/*
 * Sharded fan-out (a cluster, README.md "Redis Cluster"): a message is
 * published once on its conversation's channel; the worker subscribes to
 * the channels of the conversations of its users, learnt from PostgreSQL at
 * the user's first session here (convs_load) and from the membership events
 * on the user's channel afterwards (membership, before the sessions get the
 * event). The user's sessions are CONNECTED once every one of those
 * SSUBSCRIBEs is confirmed (conv_acked; bounded by chat_connect_timeout);
 * leave_all drops the user from them with its last session. deliver_conv
 * takes a large conversation's publish ("*<skip>\n...").
 */
void ngx_chat_fanout_convs_init(void);
void ngx_chat_fanout_convs_load(ngx_chat_user_t *u);
void ngx_chat_fanout_leave_all(ngx_chat_user_t *u);
void ngx_chat_fanout_conv_acked(u_char *channel, size_t len);
void ngx_chat_fanout_membership(ngx_chat_user_t *u, u_char *json,
    u_char *end);
void ngx_chat_fanout_deliver_conv(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);

/*
 * ngx_chat_fanout.c: the user's waiting sessions are told it is ready (if
 * it is); "<destination>\n<message-id>\n" parsed (where the JSON starts);
 * a body delivered to the sessions of users; room for n users of one
 * publish (NULL: no memory)
 */
void ngx_chat_fanout_wake(ngx_chat_user_t *u);
u_char *ngx_chat_fanout_head(u_char *p, u_char *end, ngx_uint_t *dest,
    ngx_str_t *mid);
void ngx_chat_fanout_body(ngx_chat_user_t **users, ngx_uint_t n,
    ngx_uint_t dest, ngx_str_t *mid, u_char *json, u_char *end);
ngx_chat_user_t **ngx_chat_fanout_local_users(ngx_uint_t n);


#endif /* _NGX_CHAT_FANOUT_INT_H_INCLUDED_ */
