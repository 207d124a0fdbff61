/* ngx_chat_ws.h: a WebSocket connection inside nginx: the RFC 6455
 * handshake, reading and writing frames, ping/pong, the close handshake. */

#ifndef _NGX_CHAT_WS_H_INCLUDED_
#define _NGX_CHAT_WS_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_ws_parser.h"


typedef struct ngx_chat_ws_s  ngx_chat_ws_t;

/* a piece of a text or binary message (unmasked); more may follow */
typedef void (*ngx_chat_ws_data_pt)(ngx_chat_ws_t *ws, u_char *data,
    size_t len);

/* the current message is complete */
typedef void (*ngx_chat_ws_message_end_pt)(ngx_chat_ws_t *ws);

/*
 * The connection is gone (closed by either side, error, timeout, worker
 * exit). Called exactly once; after it returns ws is freed, so the session
 * must drop every reference to ws (and free what it allocated).
 */
typedef void (*ngx_chat_ws_closed_pt)(ngx_chat_ws_t *ws);

/*
 * Memory: ws and the session are small allocations of their own; the
 * upgraded HTTP request (its pool, header buffers) is released as soon as
 * the 101 is written, so an idle session costs little more than these
 * structures and the connection.
 */

struct ngx_chat_ws_s {
    ngx_http_request_t          *request;   /* the handshake: valid inside
                                               ngx_chat_session_start(),
                                               NULL once released (must
                                               stay the first field) */
    ngx_connection_t            *connection;
    ngx_chat_loc_conf_t         *lcf;

    void                        *data;      /* the session */
    ngx_chat_ws_data_pt          on_data;
    ngx_chat_ws_message_end_pt   on_message_end;
    ngx_chat_ws_closed_pt        on_closed;

    ngx_uint_t                   stomp_version; /* from the sub-protocol:
                                                   12, 11, 10; 0: none */
    ngx_msec_t                   last_read;  /* ngx_current_msec of the last
                                                frame received */
    ngx_msec_t                   last_write; /* ... of the last frame sent */
    size_t                       out_bytes;  /* queued, not yet written */

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

/*
 * ngx_chat_session.c: a handshake succeeded and the 101 response is out;
 * ws->request is still valid for identity, but only during this call:
 * nothing may be kept that points into the request. The session sets the
 * handlers. NGX_ERROR: the ws layer closes the connection (1011), and
 * on_closed is called if it was set.
 */
ngx_int_t ngx_chat_session_start(ngx_chat_ws_t *ws);

/*
 * Queues one complete WebSocket message (text opcode): head (copied) then
 * body (referenced: refs + 1, released once written; may be NULL). If the
 * queue would pass lcf->send_limit the client is too slow: the connection
 * is closed with 1008 and NGX_ERROR returned. NGX_ERROR also while closing.
 */
ngx_int_t ngx_chat_ws_send(ngx_chat_ws_t *ws, u_char *head, size_t head_len,
    ngx_chat_blob_t *body);

/*
 * Starts the close handshake: what is queued is written, then a close
 * frame with code and reason, then the connection is closed once the
 * peer's close frame arrives or after a short timeout (lingering close, so
 * the last frames are not lost to a reset). on_closed follows.
 */
void ngx_chat_ws_close(ngx_chat_ws_t *ws, uint16_t code, const char *reason);

#endif /* _NGX_CHAT_WS_H_INCLUDED_ */
