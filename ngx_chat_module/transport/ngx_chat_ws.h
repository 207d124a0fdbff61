/* ngx_chat_ws.h: a WebSocket connection inside nginx: the RFC 6455
 * handshake, reading and writing frames, ping/pong, the close handshake. */

#ifndef _NGX_CHAT_WS_H_INCLUDED_
#define _NGX_CHAT_WS_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_ws_parser.h"
#include "ngx_chat_blob.h"
#include "ngx_chat_transport.h"


typedef struct ngx_chat_ws_s  ngx_chat_ws_t;

/*
 * Memory: ws and the session are small allocations of their own; the
 * upgraded HTTP request (its pool, header buffers) is released as soon as
 * the 101 is written, so an idle session costs little more than these
 * structures and the connection.
 */

struct ngx_chat_ws_s {
    ngx_chat_transport_t         t;         /* what the session sees
                                               (t.request: the handshake,
                                               NULL once released; must
                                               stay the first field) */

    /* private to ngx_chat_ws.c */
    ngx_chat_ws_reader_t         reader;
    ngx_queue_t                  out;
    ngx_event_t                  close_timer; /* then the finalize event */
    uint16_t                     close_code;
    unsigned                     close_sent:1;
    unsigned                     close_received:1;
    unsigned                     closing:1;
    unsigned                     finalized:1;
    unsigned                     in_handler:1;
};

/* ngx_chat_ws_handshake.c: content handler of "chat_websocket" locations */
ngx_int_t ngx_chat_ws_handler(ngx_http_request_t *r);

/*
 * The handshake of r, then the connection goes to open (the handler's:
 * ngx_chat_transport_open; SockJS's own for its framing). Returns what a
 * content handler returns.
 */
ngx_int_t ngx_chat_ws_upgrade(ngx_http_request_t *r,
    ngx_chat_transport_open_pt open);

/*
 * The sub-protocols the layer above speaks (set with
 * ngx_chat_transport_open): of those a client offers, the one with the
 * highest value is echoed, and its value is t.protocol. The table ends
 * with a NULL name.
 */
typedef struct {
    const char                  *name;
    ngx_uint_t                   value;
} ngx_chat_ws_protocol_t;

extern ngx_chat_ws_protocol_t  *ngx_chat_ws_protocols;

/*
 * The transport's send and close (ngx_chat_transport.h): a send is one
 * WebSocket message (text opcode); past the send limit the connection is
 * closed with 1008. A close starts the close handshake: what is queued is
 * written, then a close frame with code and reason, then the connection is
 * closed once the peer's close frame arrives or after a short timeout
 * (lingering close, so the last frames are not lost to a reset).
 */
ngx_int_t ngx_chat_ws_send(ngx_chat_transport_t *t, u_char *head,
    size_t head_len, ngx_chat_blob_t *body);
void ngx_chat_ws_close(ngx_chat_transport_t *t, uint16_t code,
    const char *reason);

#endif /* _NGX_CHAT_WS_H_INCLUDED_ */
