/* ngx_chat_fanout.h: the worker's registry of users and the delivery of
 * published events to their sessions. */

#ifndef _NGX_CHAT_FANOUT_H_INCLUDED_
#define _NGX_CHAT_FANOUT_H_INCLUDED_

#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"


/*
 * Routing: every worker has a channel of its own, "chat:w:<route>", where
 * <route> is random per worker process. The hash "chat:routes" maps a user
 * to the routes of the workers that have sessions of the user ("<route>" or
 * "<route> <route>..."). A script that delivers to users reads their routes
 * with one HMGET, groups the users by route and publishes once per worker:
 * "<user> <user>...\n<destination>\n<message-id>\n<json>". A publish
 * nobody received (a worker that is gone, or whose pub/sub link is down)
 * removes that route from those users; the worker puts its users back when
 * its channel is subscribed again and when its command link comes up.
 *
 * When the hash is missing altogether (Redis lost its data, or nobody is
 * online) every user gets a publish on the user's own channel,
 * "chat:u:<user>", which every worker with sessions of the user also
 * subscribes to: "<destination>\n<message-id>\n<json>". Nothing is lost
 * while routes are rebuilt.
 *
 * A Redis Cluster has neither routes nor worker channels: route() is
 * store/lua/route_cluster.lua, one SPUBLISH on the conversation's sharded
 * channel "chat:c:{<conv>}" in the format of a route ("<user>...\n..."),
 * and the worker SSUBSCRIBEs to the channels of its users' conversations
 * (from PostgreSQL at a user's first session, then the membership events
 * on the user's channel "chat:u:{<user>}"); CONNECTED waits for them.
 *
 * NGX_CHAT_LUA_ROUTE (store/lua/route.lua) defines, for scripts,
 * unroute(user, route) and route(members, skip, msg): members is a list of
 * user ids ('' is ignored), skip a user left out; and publish(prefix, id,
 * msg), on the channel "<prefix><id>" (a cluster: "<prefix>{<id>}", sharded,
 * in the slot of id's keys).
 */


/* in init_process: the scripts, the user queues and the session hooks */
ngx_int_t ngx_chat_fanout_init(void);

/*
 * In init_process, for a script whose source includes NGX_CHAT_LUA_ROUTE:
 * ngx_chat_redis_script(), with route_cluster.lua in its place when Redis
 * is a cluster (no routes hash there: the conversation's sharded channel).
 */
ngx_int_t ngx_chat_fanout_script(ngx_chat_redis_script_t *script);

/* in init_process, after the Redis links started: subscribes the route */
ngx_int_t ngx_chat_fanout_start(void);

/*
 * Delivers an event to every session of a user on every worker of every
 * server (one Redis PUBLISH per worker the user is on).
 * destination: e.g. "/user/queue/events"; json: the body.
 */
ngx_int_t ngx_chat_fanout_to_user(ngx_str_t *user, const char *destination,
    u_char *json, size_t len);

/* the command link is up: puts this worker's users back on their routes */
void ngx_chat_fanout_reroute(void);

/*
 * chat_send_rate: takes one SEND from the token bucket of s's user in this
 * worker (limit_req's leaky bucket: rate and burst of s->lcf). NGX_OK: it
 * may go; NGX_BUSY: over the rate, the SEND is to be refused.
 */
ngx_int_t ngx_chat_fanout_send_rate(ngx_chat_session_t *s);

/* the Redis pub/sub handler */
void ngx_chat_fanout_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);

#endif /* _NGX_CHAT_FANOUT_H_INCLUDED_ */
