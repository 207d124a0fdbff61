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
 * In init_process: both links connect (non-blocking, from the event loop,
 * once init_process is over) to addr (sockaddr of host:port); they
 * reconnect with backoff (100 ms doubling to 5 s) forever, and the pub/sub
 * link subscribes again to every channel on reconnect. timeout bounds each
 * command (reply or NULL after it).
 *
 * seeds (ngx_addr_t, or NULL: one Redis at addr): a Redis Cluster. The
 * worker loads the slot map from any seed (CLUSTER SLOTS), keeps a command
 * link per primary and sends each command to the primary of its key's slot
 * (a command's first argument after the name, a script's first key; none:
 * any node), following MOVED and ASK and loading the map again when it
 * changes. A slot whose primary is down answers NULL (the command is not
 * queued) until the map names a new one. Plain pub/sub uses one node's
 * link (Redis Cluster carries PUBLISH to every node), the next node when it
 * is lost; channels with a hash tag are sharded: SSUBSCRIBE on a link to
 * the primary of their slot, moved with the map.
 */
ngx_int_t ngx_chat_redis_init(ngx_cycle_t *cycle, ngx_addr_t *addr,
    ngx_array_t *seeds, ngx_msec_t timeout);

/*
 * After ngx_chat_redis_init(), by the one consumer of the pub/sub link:
 * where published messages go, and who hears the command link go up and
 * down.
 */
void ngx_chat_redis_set_handlers(ngx_chat_redis_message_pt on_message,
    ngx_chat_redis_state_pt on_state);

/* 1 when chat_redis names a cluster */
ngx_uint_t ngx_chat_redis_is_cluster(void);

/*
 * In a cluster: the slot (0-16383) a key hashes to (its hash tag, or the
 * whole key), and a short text whose hash is that slot: a key tagged
 * "{<text>}" lives in the slot (a per-slot key beside others of the slot).
 * slot_tag writes at most NGX_INT_T_LEN bytes to buf and returns how many.
 */
#define NGX_CHAT_REDIS_SLOT_COUNT  16384

ngx_uint_t ngx_chat_redis_key_slot_of(const u_char *key, size_t len);
size_t ngx_chat_redis_slot_tag(ngx_uint_t slot, u_char *buf);

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

/* a reply handler for commands whose answer only matters if it is an
 * error: it logs it */
void ngx_chat_redis_log_reply(redisReply *reply, void *data);

/*
 * Reference-counted channel subscriptions on the pub/sub link: the first
 * subscribe of a channel sends SUBSCRIBE, the last unsubscribe sends
 * UNSUBSCRIBE. Kept across reconnects. NGX_ERROR only on memory failure.
 * In a cluster a channel with a hash tag ("chat:c:{<conv>}") is sharded:
 * SSUBSCRIBE / SUNSUBSCRIBE on the sharded link of its slot's primary,
 * subscribed again where the slot is after a move or a failover.
 */
ngx_int_t ngx_chat_redis_subscribe(u_char *channel, size_t len);
void ngx_chat_redis_unsubscribe(u_char *channel, size_t len);

/*
 * Called when Redis confirms a SUBSCRIBE or SSUBSCRIBE (the first one and
 * every one after a reconnect or a slot move): from then on the channel's
 * messages reach this worker.
 */
typedef void (*ngx_chat_redis_subscribed_pt)(u_char *channel, size_t len);

void ngx_chat_redis_on_subscribed(ngx_chat_redis_subscribed_pt handler);


#endif /* _NGX_CHAT_REDIS_H_INCLUDED_ */
