/* ngx_chat_presence.h: who is online: sessions registered in Redis with a
 * TTL, renewed per worker, and /topic/presence.<userId> subscriptions. */

#ifndef _NGX_CHAT_PRESENCE_H_INCLUDED_
#define _NGX_CHAT_PRESENCE_H_INCLUDED_

#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"


#define NGX_CHAT_PRESENCE_SCAN     2000    /* ms between expiry scans */

#define NGX_CHAT_PRESENCE_TOPIC    "/topic/presence."
#define NGX_CHAT_PRESENCE_CHANNEL  "chat:presence:"


/*
 * In init_process, after ngx_chat_messaging_init_process(): prepares the
 * scripts and starts the worker's renewal and expiry-scan timer.
 */
ngx_int_t ngx_chat_presence_init_process(ngx_cycle_t *cycle);
void ngx_chat_presence_exit_process(ngx_cycle_t *cycle);

/* a session was CONNECTed / ended: NGX_ERROR only on memory failure */
ngx_int_t ngx_chat_presence_online(ngx_chat_session_t *s);
void ngx_chat_presence_offline(ngx_chat_session_t *s);

/*
 * A presence subscription of s to user (the userId after the topic
 * prefix) is added / removed: the worker follows user's channel while
 * some session does. NGX_ERROR only on memory failure.
 */
ngx_int_t ngx_chat_presence_watch(ngx_chat_session_t *s, ngx_str_t *user);
void ngx_chat_presence_unwatch(ngx_chat_session_t *s, ngx_str_t *user);

/*
 * Starts the authorization check and the snapshot of a new presence
 * subscription; ngx_chat_session_presence_ready() follows (never from
 * inside this call). NGX_ERROR: out of memory.
 */
ngx_int_t ngx_chat_presence_check(ngx_chat_session_t *s, ngx_str_t *sub_id,
    ngx_str_t *user, ngx_str_t *receipt);

/* a publish on "chat:presence:<userId>" (the Redis message dispatcher) */
void ngx_chat_presence_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);

/*
 * For GET /presence: one script call; the reply is an array with one
 * JSON object {"userId","online","lastSeen"} (a string) per user, in
 * order. Returns NULL when Redis is down or memory ran out.
 */
ngx_chat_redis_req_t *ngx_chat_presence_query(ngx_str_t *users,
    ngx_uint_t n, ngx_chat_redis_reply_pt handler, void *data);

#endif /* _NGX_CHAT_PRESENCE_H_INCLUDED_ */
