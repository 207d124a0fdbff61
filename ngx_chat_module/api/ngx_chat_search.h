/* ngx_chat_search.h: GET /search, full-text search of the caller's
 * messages (PROTOCOL.md section 11). */

#ifndef _NGX_CHAT_SEARCH_H_INCLUDED_
#define _NGX_CHAT_SEARCH_H_INCLUDED_

#include "ngx_chat_api_request.h"


/* GET /search?q=&conversationId=&limit=&offset=: checks the arguments and
 * asks PostgreSQL (chat_api_search, sql/010_search.sql) */
ngx_int_t ngx_chat_search(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx);

#endif /* _NGX_CHAT_SEARCH_H_INCLUDED_ */
