/* ngx_chat_sockjs.h: SockJS 0.3 under a "chat_websocket" location: /info,
 * WebSocket with SockJS framing, raw WebSocket, and the HTTP transports
 * (xhr, xhr_streaming, eventsource, xhr_send) as one transport each. */

#ifndef _NGX_CHAT_SOCKJS_H_INCLUDED_
#define _NGX_CHAT_SOCKJS_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_transport.h"


/*
 * Content handler of "chat_websocket" locations: the location's own URL
 * is the WebSocket endpoint (ngx_chat_ws_handler()); below it, SockJS:
 *
 *   <base>/info                          GET, OPTIONS
 *   <base>/websocket                     raw WebSocket (the same as <base>)
 *   <base>/<server>/<session>/websocket  WebSocket, SockJS frames
 *   <base>/<server>/<session>/xhr        POST: one poll
 *   <base>/<server>/<session>/xhr_streaming
 *   <base>/<server>/<session>/eventsource
 *   <base>/<server>/<session>/xhr_send   POST: ["frame", ...]
 *
 * An HTTP session lives in the worker that created it; the others hand
 * its requests over through Redis (ngx_chat_sockjs_relay.c).
 */
ngx_int_t ngx_chat_sockjs_handler(ngx_http_request_t *r);

/*
 * In init_process, once Redis is set up: this worker's relay channel
 * (chat:sjw:<route>), on which other workers hand over requests of its
 * HTTP sessions. The pub/sub dispatcher passes that channel's messages to
 * ngx_chat_sockjs_relay_message().
 */
ngx_int_t ngx_chat_sockjs_relay_init(void);
ngx_uint_t ngx_chat_sockjs_relay_channel(u_char *channel, size_t len);
void ngx_chat_sockjs_relay_message(u_char *payload, size_t len);


#endif /* _NGX_CHAT_SOCKJS_H_INCLUDED_ */
