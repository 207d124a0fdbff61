/* ngx_chat_messaging.h: what sessions SEND to /app/...: messages, typing
 * and read watermarks, and the membership cache they are checked against. */

#ifndef _NGX_CHAT_MESSAGING_H_INCLUDED_
#define _NGX_CHAT_MESSAGING_H_INCLUDED_

#include "ngx_chat_session.h"


/*
 * In init_process, once the stores started: the scripts, the fan-out, the
 * /app/chat.* destinations, and the Redis pub/sub handlers.
 */
ngx_int_t ngx_chat_messaging_init_process(ngx_cycle_t *cycle);

/*
 * The membership of a conversation changed in PostgreSQL (committed):
 * invalidates the Redis membership cache.
 */
void ngx_chat_messaging_membership_changed(ngx_str_t *conversation_id);

#endif /* _NGX_CHAT_MESSAGING_H_INCLUDED_ */
