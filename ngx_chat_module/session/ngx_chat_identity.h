/* ngx_chat_identity.h: who a request or a session is: a verified JWT or
 * the chat_identity variable, and the user row it implies. */

#ifndef _NGX_CHAT_IDENTITY_H_INCLUDED_
#define _NGX_CHAT_IDENTITY_H_INCLUDED_

#include "ngx_chat.h"


/* who a request or session is */
typedef struct {
    ngx_str_t                  user;           /* userId */
    ngx_str_t                  name;           /* display name, may be "" */
} ngx_chat_identity_t;

/*
 * Establishes the caller of a request (REST API and
 * WebSocket handshake). With chat_identity set, the variable's value is the
 * userId. Otherwise a bearer token from "Authorization: Bearer" or (only
 * when allow_query is set) the access_token query argument is verified.
 * NGX_OK: id filled (strings in r->pool). NGX_DECLINED: no credentials.
 * NGX_ERROR: credentials present but invalid (*err says why).
 */
ngx_int_t ngx_chat_identity_from_request(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_uint_t allow_query,
    ngx_chat_identity_t *id, const char **err);

/* verifies a raw JWT with the location's secret; strings in pool */
ngx_int_t ngx_chat_identity_from_token(ngx_pool_t *pool,
    ngx_chat_loc_conf_t *lcf, u_char *token, size_t len,
    ngx_chat_identity_t *id, const char **err);

/*
 * Makes sure the user row exists ("unknown users are created on first
 * sight"); cached per worker so it costs one query per user per worker.
 * Fire and forget: failures are logged and retried on the next sight.
 */
void ngx_chat_identity_ensure_user(ngx_chat_identity_t *id, ngx_log_t *log);

#endif /* _NGX_CHAT_IDENTITY_H_INCLUDED_ */
