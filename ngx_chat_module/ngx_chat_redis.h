/* ngx_chat_redis.h: the worker's Redis links (commands and pub/sub), driven
 * by nginx events with hiredis's reader and command formatter. */

#ifndef _NGX_CHAT_REDIS_H_INCLUDED_
#define _NGX_CHAT_REDIS_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <hiredis/hiredis.h>


typedef struct ngx_chat_redis_req_s  ngx_chat_redis_req_t;

/*
 * Called once per command: reply is the parsed reply (owned by the link,
 * freed after the handler returns), or NULL when the command failed
 * (connection lost before the reply, or timed out).
 */
typedef void (*ngx_chat_redis_reply_pt)(redisReply *reply, void *data);

/* a published message arrived on a subscribed channel */
typedef void (*ngx_chat_redis_message_pt)(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);

/* the command link went up (1) or down (0) */
typedef void (*ngx_chat_redis_state_pt)(ngx_uint_t up);

/* a Lua script, run with EVALSHA and loaded again on NOSCRIPT */
typedef struct {
    const char          *source;
    char                 sha1[41];     /* filled by ngx_chat_redis_script() */
} ngx_chat_redis_script_t;

/*
 * In init_process: starts connecting both links (non-blocking) to
 * addr (sockaddr of host:port); they reconnect with backoff (100 ms doubling
 * to 5 s) forever, and the pub/sub link subscribes again to every channel on
 * reconnect. timeout bounds each command (reply or NULL after it).
 */
ngx_int_t ngx_chat_redis_init(ngx_cycle_t *cycle, ngx_addr_t *addr,
    ngx_msec_t timeout, ngx_chat_redis_message_pt on_message,
    ngx_chat_redis_state_pt on_state);

/* in exit_process: closes both links; pending handlers get NULL */
void ngx_chat_redis_exit(void);

/* 1 while the command link is connected */
ngx_uint_t ngx_chat_redis_ready(void);

/*
 * Queues a command (argv with lengths, binary safe). Returns a handle that
 * stays valid until the handler is called or the request is cancelled, or
 * NULL when Redis is down or memory ran out (the handler is then never
 * called). Replies come in order.
 */
ngx_chat_redis_req_t *ngx_chat_redis_command(ngx_chat_redis_reply_pt handler,
    void *data, int argc, const char **argv, const size_t *argvlen);

/* prepares a script's sha1 (once, in init_process); NGX_ERROR on failure */
ngx_int_t ngx_chat_redis_script(ngx_chat_redis_script_t *script);

/*
 * EVALSHA script numkeys argv... ; on a NOSCRIPT error the link sends
 * SCRIPT LOAD/EVAL itself and the handler sees the real reply.
 */
ngx_chat_redis_req_t *ngx_chat_redis_eval(ngx_chat_redis_script_t *script,
    ngx_chat_redis_reply_pt handler, void *data, int numkeys, int argc,
    const char **argv, const size_t *argvlen);

/*
 * The same for work that nobody waits for (timers' batches): at most a few
 * such scripts are in the pipeline at once, the rest wait in the worker, so
 * the commands of clients never queue behind a whole batch. Background
 * replies come in order among themselves.
 */
ngx_chat_redis_req_t *ngx_chat_redis_eval_bg(ngx_chat_redis_script_t *script,
    ngx_chat_redis_reply_pt handler, void *data, int numkeys, int argc,
    const char **argv, const size_t *argvlen);

/* the handler of a pending request will not be called */
void ngx_chat_redis_cancel(ngx_chat_redis_req_t *req);

/*
 * Reference-counted channel subscriptions on the pub/sub link: the first
 * subscribe of a channel sends SUBSCRIBE, the last unsubscribe sends
 * UNSUBSCRIBE. Kept across reconnects. NGX_ERROR only on memory failure.
 */
ngx_int_t ngx_chat_redis_subscribe(u_char *channel, size_t len);
void ngx_chat_redis_unsubscribe(u_char *channel, size_t len);

/*
 * Called when Redis confirms a SUBSCRIBE (the first one and every one after
 * a reconnect): from then on the channel's messages reach this worker.
 */
typedef void (*ngx_chat_redis_subscribed_pt)(u_char *channel, size_t len);

void ngx_chat_redis_on_subscribed(ngx_chat_redis_subscribed_pt handler);

/*
 * Lua for scripts that stamp what they publish with Redis's clock: "now"
 * (ms) and iso(ms), RFC 3339 UTC with milliseconds.
 */
#define NGX_CHAT_LUA_NOW_ISO                                                 \
    "local t = redis.call('TIME') "                                           \
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "  \
    "local function iso(ms)"                                                  \
    "  local s = math.floor(ms / 1000)"                                       \
    "  local z = math.floor(s / 86400) + 719468"                              \
    "  local era = math.floor(z / 146097)"                                    \
    "  local doe = z - era * 146097"                                          \
    "  local yoe = math.floor((doe - math.floor(doe / 1460)"                  \
    "    + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)"        \
    "  local doy = doe - (365 * yoe + math.floor(yoe / 4)"                    \
    "    - math.floor(yoe / 100))"                                            \
    "  local mp = math.floor((5 * doy + 2) / 153)"                            \
    "  local d = doy - math.floor((153 * mp + 2) / 5) + 1"                    \
    "  local m = mp < 10 and mp + 3 or mp - 9"                                \
    "  local y = yoe + era * 400"                                             \
    "  if m <= 2 then y = y + 1 end"                                          \
    "  local r = s % 86400"                                                   \
    "  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', y, m, d,"  \
    "    math.floor(r / 3600), math.floor(r % 3600 / 60), r % 60, ms % 1000)" \
    " end "


#endif /* _NGX_CHAT_REDIS_H_INCLUDED_ */
