/* ngx_chat_fanout.h: the worker's registry of users and the delivery of
 * published events to their sessions. */

#ifndef _NGX_CHAT_FANOUT_H_INCLUDED_
#define _NGX_CHAT_FANOUT_H_INCLUDED_

#include "ngx_chat.h"
#include <hiredis/hiredis.h>


/* in init_process, before the Redis links start */
void ngx_chat_fanout_init(void);

/* the Redis pub/sub handler: "<destination>\n<message-id>\n<json>" */
void ngx_chat_fanout_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len);

/* a Redis reply handler for commands whose answer only matters if it is an
 * error: it logs it */
void ngx_chat_redis_log_reply(redisReply *reply, void *data);

#endif /* _NGX_CHAT_FANOUT_H_INCLUDED_ */
