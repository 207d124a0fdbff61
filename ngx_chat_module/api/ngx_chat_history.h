/* ngx_chat_history.h: a conversation's messages: PostgreSQL merged with
 * the recent ones in Redis (read-your-writes), and the watermarks. */

#ifndef _NGX_CHAT_HISTORY_H_INCLUDED_
#define _NGX_CHAT_HISTORY_H_INCLUDED_

#include "ngx_chat_api_request.h"


ngx_int_t ngx_chat_history_init_process(ngx_cycle_t *cycle);

/* GET /conversations/{id}/messages; values: the query's 6 parameters */
ngx_int_t ngx_chat_history_messages(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);

/*
 * ctx->enrich of a conversation list or a conversation (their latest
 * messages from Redis) and of a history (merged with the recent messages)
 */
ngx_int_t ngx_chat_history_enrich(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);

#endif /* _NGX_CHAT_HISTORY_H_INCLUDED_ */
