/* ngx_chat_api.h: the REST API (PROTOCOL.md section 7). */

#ifndef _NGX_CHAT_API_H_INCLUDED_
#define _NGX_CHAT_API_H_INCLUDED_

#include "ngx_chat.h"


/* content handler of "chat_api" locations */
ngx_int_t ngx_chat_api_handler(ngx_http_request_t *r);

/* ngx_chat_api_errors.c: JSON for nginx's own error pages in chat_api
 * locations (a header filter, set in postconfiguration) */
ngx_int_t ngx_chat_api_errors_init(ngx_conf_t *cf);

/* per-worker setup (in init_process) */
ngx_int_t ngx_chat_api_init_process(ngx_cycle_t *cycle);

#endif /* _NGX_CHAT_API_H_INCLUDED_ */
