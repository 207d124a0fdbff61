/* ngx_chat_fanout.h: the worker's registry of users and the delivery of
 * published events to their sessions. */

#ifndef _NGX_CHAT_FANOUT_H_INCLUDED_
#define _NGX_CHAT_FANOUT_H_INCLUDED_

#include "ngx_chat.h"
#include <hiredis/hiredis.h>


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
 * NGX_CHAT_LUA_ROUTE defines, for scripts, unroute(user, route) and
 * route(members, skip, msg): members is a list of user ids ('' is
 * ignored), skip a user left out.
 */
#define NGX_CHAT_LUA_ROUTE                                                    \
    "local function unroute(m, w)"                                            \
    "  local x = redis.call('HGET', 'chat:routes', m)"                        \
    "  if not x then return end"                                              \
    "  local rest = {}"                                                       \
    "  for v in string.gmatch(x, '%S+') do"                                   \
    "    if v ~= w then rest[#rest + 1] = v end"                              \
    "  end"                                                                   \
    "  if #rest == 0 then redis.call('HDEL', 'chat:routes', m)"               \
    "  else redis.call('HSET', 'chat:routes', m, table.concat(rest, ' '))"    \
    "  end "                                                                  \
    "end "                                                                    \
    "local function route(members, skip, msg)"                                \
    "  local to, order = {}, {}"                                              \
    "  local function add(w, m)"                                              \
    "    local l = to[w]"                                                     \
    "    if not l then l = {} to[w] = l order[#order + 1] = w end"            \
    "    l[#l + 1] = m"                                                       \
    "  end"                                                                   \
    "  local lost = redis.call('EXISTS', 'chat:routes') == 0"                 \
    "  local n, i = #members, 1"                                              \
    "  while i <= n do"                                                       \
    "    local j = math.min(i + 999, n)"                                      \
    "    local ws = redis.call('HMGET', 'chat:routes',"                       \
    "                          unpack(members, i, j))"                        \
    "    for k = i, j do"                                                     \
    "      local m, x = members[k], ws[k - i + 1]"                            \
    "      if m ~= '' and m ~= skip then"                                     \
    "        if x then"                                                       \
    "          if not string.find(x, ' ', 1, true) then add(x, m)"            \
    "          else for w in string.gmatch(x, '%S+') do add(w, m) end end"    \
    "        elseif lost then"                                                \
    "          redis.call('PUBLISH', 'chat:u:' .. m, msg)"                    \
    "        end"                                                             \
    "      end"                                                               \
    "    end"                                                                 \
    "    i = j + 1"                                                           \
    "  end"                                                                   \
    "  for _, w in ipairs(order) do"                                          \
    "    local l = to[w]"                                                     \
    "    if redis.call('PUBLISH', 'chat:w:' .. w,"                            \
    "                  table.concat(l, ' ') .. '\\n' .. msg) == 0 then"        \
    "      for _, m in ipairs(l) do unroute(m, w) end"                        \
    "    end"                                                                 \
    "  end "                                                                  \
    "end "


/* in init_process, before the Redis links start */
ngx_int_t ngx_chat_fanout_init(void);

/* in init_process, after the Redis links started: subscribes the route */
ngx_int_t ngx_chat_fanout_start(void);

/* the command link is up: puts this worker's users back on their routes */
void ngx_chat_fanout_reroute(void);

/* the Redis pub/sub handler */
void ngx_chat_fanout_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);

/* a Redis reply handler for commands whose answer only matters if it is an
 * error: it logs it */
void ngx_chat_redis_log_reply(redisReply *reply, void *data);

#endif /* _NGX_CHAT_FANOUT_H_INCLUDED_ */
