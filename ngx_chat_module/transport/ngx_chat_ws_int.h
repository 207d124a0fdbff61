/* ngx_chat_ws_int.h: how the WebSocket handshake hands over a connection. */

#ifndef _NGX_CHAT_WS_INT_H_INCLUDED_
#define _NGX_CHAT_WS_INT_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_ws.h"


/* the connection state: ngx_chat_ws_t and what only ngx_chat_ws.c uses */
typedef struct ngx_chat_ws_conn_s  ngx_chat_ws_conn_t;

/*
 * Allocates the connection state, zeroed (ngx_calloc(), freed with r->pool
 * unless ngx_chat_ws_start() takes it over); NULL on failure. Called
 * before the 101 is sent, so a failure can still be a 500.
 */
ngx_chat_ws_conn_t *ngx_chat_ws_create(ngx_http_request_t *r);

/*
 * The 101 is handed to the filters and r->main->count was raised: takes
 * over the connection (our read and write handlers) and hands it to the
 * layer above through open. Once the handler has returned and the 101 is
 * written, the request is freed (access logged) and the connection kept:
 * c->data then points to the connection state instead of the request.
 */
void ngx_chat_ws_start(ngx_http_request_t *r, ngx_chat_ws_conn_t *wc,
    ngx_chat_loc_conf_t *lcf, ngx_uint_t version,
    ngx_chat_transport_open_pt open);

/* the request's Origin is allowed by chat_allowed_origins (or absent) */
ngx_int_t ngx_chat_ws_check_origin(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf);

#endif /* _NGX_CHAT_WS_INT_H_INCLUDED_ */
