/* ngx_chat_transport.h: what the session layer sees of a connection,
 * whichever transport carries its STOMP bytes (WebSocket, SockJS, plain
 * TCP/TLS). */

#ifndef _NGX_CHAT_TRANSPORT_H_INCLUDED_
#define _NGX_CHAT_TRANSPORT_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_blob.h"
#include "ngx_chat_ws_parser.h"     /* the close codes: NGX_CHAT_WS_CLOSE_* */


#define NGX_CHAT_TRANSPORT_WEBSOCKET  0
#define NGX_CHAT_TRANSPORT_TCP        1     /* STOMP over TCP or TLS */
#define NGX_CHAT_TRANSPORT_SOCKJS     2     /* SockJS (any of its
                                               transports) */


typedef struct ngx_chat_transport_s  ngx_chat_transport_t;

/* STOMP bytes from the peer: a piece of the stream; more may follow */
typedef void (*ngx_chat_transport_data_pt)(ngx_chat_transport_t *t,
    u_char *data, size_t len);

/* the transport's message is over (WebSocket); frames may span messages */
typedef void (*ngx_chat_transport_event_pt)(ngx_chat_transport_t *t);

/*
 * Queues bytes to write: head (copied) then body (referenced: refs + 1,
 * released once written; may be NULL). The transport frames them as it
 * must (one WebSocket text message; as they are on TCP). Past
 * lcf->send_limit the peer is too slow: the connection is closed and
 * NGX_ERROR returned. NGX_ERROR also while closing.
 */
typedef ngx_int_t (*ngx_chat_transport_send_pt)(ngx_chat_transport_t *t,
    u_char *head, size_t head_len, ngx_chat_blob_t *body);

/*
 * Closes after what is queued is written; code and reason are a
 * WebSocket close code (NGX_CHAT_WS_CLOSE_*), which a transport without
 * one only logs. on_closed follows, never from inside this call.
 */
typedef void (*ngx_chat_transport_close_pt)(ngx_chat_transport_t *t,
    uint16_t code, const char *reason);


struct ngx_chat_transport_s {
    /* set by the transport */
    ngx_http_request_t           *request;  /* the WebSocket handshake, valid
                                               only inside the open handler;
                                               else NULL (must stay the
                                               first field) */
    ngx_connection_t             *connection; /* NULL for transports over
                                                  several requests (SockJS
                                                  xhr, eventsource) */
    ngx_log_t                    *log;
    ngx_chat_loc_conf_t          *lcf;
    ngx_str_t                     user;      /* a userId the transport
                                                established (chat_stomp_user),
                                                valid inside open; "": none */
    ngx_uint_t                    kind;      /* NGX_CHAT_TRANSPORT_* */
    ngx_uint_t                    protocol;  /* the STOMP version the
                                                transport negotiated (10, 11,
                                                12); 0: none */
    ngx_msec_t                    last_read;  /* ngx_current_msec of the
                                                 last bytes received */
    ngx_msec_t                    last_write; /* ... of the last queued */
    size_t                        out_bytes;  /* queued, not yet written */

    ngx_chat_transport_send_pt    send;
    ngx_chat_transport_close_pt   close;

    /* set by the layer above in its open handler */
    void                         *data;      /* the session */
    ngx_chat_transport_data_pt    on_data;
    ngx_chat_transport_event_pt   on_message_end; /* NULL: nothing */
    ngx_chat_transport_event_pt   on_eof;    /* the peer half-closed (TCP):
                                                it sends nothing more, but
                                                may read; NULL: the
                                                transport closes */
    /*
     * The connection is gone (closed by either side, error, timeout,
     * worker exit). Called exactly once; after it returns t is freed, so
     * the session must drop every reference to t.
     */
    ngx_chat_transport_event_pt   on_closed;
};


/*
 * The layer above, which transports know only through this handler (set
 * once at startup by the module: the session): a connection is ready and
 * speaks STOMP. It sets the data handlers. NGX_ERROR: the transport
 * closes the connection, and on_closed is called if it was set.
 */
typedef ngx_int_t (*ngx_chat_transport_open_pt)(ngx_chat_transport_t *t);

extern ngx_chat_transport_open_pt  ngx_chat_transport_open;


#define ngx_chat_transport_send(t, head, len, body)                          \
    (t)->send(t, head, len, body)

#define ngx_chat_transport_close(t, code, reason)                            \
    (t)->close(t, code, reason)


#endif /* _NGX_CHAT_TRANSPORT_H_INCLUDED_ */
