/* ngx_chat_api_users.h: the REST API's calls about users: profiles,
 * devices, presence and blocks. */

#ifndef _NGX_CHAT_API_USERS_H_INCLUDED_
#define _NGX_CHAT_API_USERS_H_INCLUDED_

#include "ngx_chat_api_request.h"


/* values: userId, name, the id of the route */
ngx_int_t ngx_chat_api_get_user(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);
ngx_int_t ngx_chat_api_put_user(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, json_t *body);
ngx_int_t ngx_chat_api_device_add(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, json_t *body);
ngx_int_t ngx_chat_api_device_delete(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);
ngx_int_t ngx_chat_api_presence_ask(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);

/* GET /blocks, POST and DELETE /blocks/{userId}; values as above */
ngx_int_t ngx_chat_api_blocks(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);

#endif /* _NGX_CHAT_API_USERS_H_INCLUDED_ */
