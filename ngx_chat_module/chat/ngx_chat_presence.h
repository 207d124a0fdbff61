/* ngx_chat_presence.h: who is online: sessions registered in Redis with a
 * TTL, renewed per worker, and /topic/presence.<userId> subscriptions. */

#ifndef _NGX_CHAT_PRESENCE_H_INCLUDED_
#define _NGX_CHAT_PRESENCE_H_INCLUDED_

#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"


#define NGX_CHAT_PRESENCE_SCAN     2000    /* ms between expiry scans */

#define NGX_CHAT_PRESENCE_TOPIC    "/topic/presence."


/*
 * In init_process, after ngx_chat_messaging_init_process(): prepares the
 * scripts, registers /topic/presence.<userId> and the session hooks
 * (online at CONNECT, offline at the end), and starts the worker's renewal
 * and expiry-scan timer.
 */
ngx_int_t ngx_chat_presence_init_process(ngx_cycle_t *cycle);
void ngx_chat_presence_exit_process(ngx_cycle_t *cycle);

/* a publish on "chat:presence:<userId>" (the Redis message dispatcher) */
void ngx_chat_presence_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);

/* Redis confirmed the SUBSCRIBE of "chat:presence:<userId>" (the
 * dispatcher): the subscriptions' checks waiting for it go on */
void ngx_chat_presence_on_subscribed(u_char *channel, size_t len);

/*
 * A block between the users of pair ("<a> <b>", committed): every
 * subscription of a session of either to the other's presence ends, on
 * every worker of every server (one publish per user). NGX_ERROR: Redis is
 * down (the subscriptions stay until they are renewed by a new SUBSCRIBE,
 * which is refused) or pair is malformed.
 */
ngx_int_t ngx_chat_presence_cut(u_char *pair, size_t len);

/*
 * For GET /presence: one script call; the reply is an array with one
 * JSON object {"userId","online","lastSeen"} (a string) per user, in
 * order. Returns NULL when Redis is down or memory ran out, and in a
 * cluster when the users are not all of one slot (ngx_chat_presence_slot:
 * the caller makes one call per slot).
 */
ngx_uint_t ngx_chat_presence_slot(ngx_str_t *user);
ngx_chat_redis_req_t *ngx_chat_presence_query(ngx_str_t *users,
    ngx_uint_t n, ngx_chat_redis_reply_pt handler, void *data);

#endif /* _NGX_CHAT_PRESENCE_H_INCLUDED_ */
