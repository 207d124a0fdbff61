/* ngx_chat_session.h: a STOMP session on a WebSocket, and what the
 * messaging layer and the session say to each other. */

#ifndef _NGX_CHAT_SESSION_H_INCLUDED_
#define _NGX_CHAT_SESSION_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_ws.h"
#include "ngx_chat_stomp.h"


/* destinations a session may subscribe to */
typedef enum {
    NGX_CHAT_DEST_NONE = 0,
    NGX_CHAT_DEST_MESSAGES,      /* /user/queue/messages */
    NGX_CHAT_DEST_RECEIPTS,      /* /user/queue/receipts */
    NGX_CHAT_DEST_TYPING,        /* /user/queue/typing */
    NGX_CHAT_DEST_EVENTS,        /* /user/queue/events */
    NGX_CHAT_DEST_ERRORS,        /* /user/queue/errors */
    NGX_CHAT_DEST_PRESENCE,      /* /topic/presence.<userId> */
    NGX_CHAT_DEST_MAX
} ngx_chat_dest_e;

#define NGX_CHAT_ACK_AUTO        0
#define NGX_CHAT_ACK_CLIENT      1
#define NGX_CHAT_ACK_INDIVIDUAL  2

#define NGX_CHAT_PENDING_ACKS    64     /* unacknowledged MESSAGEs kept per
                                           client-ack subscription */
#define NGX_CHAT_PENDING_CONV    36     /* longest conversationId kept */

/* an unacknowledged MESSAGE: its ack id and, for /user/queue/messages,
 * what its ACK makes delivered (seq 0: nothing) */
typedef struct {
    uint64_t                  ack;
    uint64_t                  seq;
    u_char                    conv_len;
    u_char                    conv[NGX_CHAT_PENDING_CONV];
} ngx_chat_pending_t;

/* kept small: an idle session holds a few of them */
typedef struct {
    ngx_str_t                 id;          /* the client's subscription id */
    ngx_str_t                 destination;
    ngx_chat_pending_t       *pending;     /* client modes only:
                                              NGX_CHAT_PENDING_ACKS */
    uint8_t                   dest;        /* ngx_chat_dest_e */
    uint8_t                   ack;         /* NGX_CHAT_ACK_* */
    uint8_t                   npending;    /* <= NGX_CHAT_PENDING_ACKS */
    unsigned                  waiting:1;   /* presence: until its
                                              snapshot is out */
} ngx_chat_sub_t;

/* subscriptions per session, whatever chat_max_subscriptions says */
#define NGX_CHAT_SUBS_MAX         65535

typedef struct ngx_chat_user_s     ngx_chat_user_t;
typedef struct ngx_chat_session_s  ngx_chat_session_t;

/*
 * One allocation per session (ngx_chat_session.c), kept compact: an idle
 * session is this, its ws, a few subscriptions and the connection.
 */

struct ngx_chat_session_s {
    ngx_chat_ws_t            *ws;
    ngx_chat_loc_conf_t      *lcf;
    ngx_log_t                *log;

    ngx_chat_identity_t       id;              /* one ngx_alloc()ed
                                                  block: user, name */
    const char               *handshake_err;
    int8_t                    handshake_auth;  /* NGX_OK/DECLINED/ERROR */
    uint8_t                   version;         /* 10, 11, 12 */
    uint8_t                   session_id_len;

    uint16_t                  nsubs;
    uint16_t                  subs_size;
    uint16_t                  dest_subs[NGX_CHAT_DEST_MAX];
    ngx_chat_sub_t           *subs;            /* ngx_alloc()ed, grows */

    u_char                   *in;              /* STOMP bytes not yet
                                                  parsed; ngx_alloc()ed
                                                  only while there are */
    size_t                    in_len;
    size_t                    in_size;

    u_char                    session_id[24];

    ngx_msec_t                hb_send;         /* 0: we send none */
    ngx_msec_t                hb_recv;         /* 0: we expect none */
    ngx_event_t               timer;           /* connect timeout, then
                                                  heart-beats */

    ngx_queue_t               transactions;
    ngx_uint_t                ntransactions;

    ngx_queue_t               ops;             /* requests in flight */
    ngx_uint_t                nops;
    ngx_str_t                 disconnect_receipt;

    uint64_t                  ack_counter;

    ngx_chat_user_t          *user;            /* registry entry */
    ngx_queue_t               user_link;

    void                     *presence;        /* ngx_chat_presence.c */

    unsigned                  connected:1;
    unsigned                  paused:1;        /* frames wait in s->in
                                                  (a SUBSCRIBE being
                                                  checked) */
    unsigned                  closing:1;
    unsigned                  disconnecting:1;
};

/* an asynchronous request of a session (SEND, typing), cancelled when the
 * session ends */
typedef struct ngx_chat_op_s  ngx_chat_op_t;

typedef void (*ngx_chat_op_cancel_pt)(ngx_chat_op_t *op);

struct ngx_chat_op_s {
    ngx_queue_t               link;            /* in session->ops */
    ngx_chat_session_t       *session;
    ngx_chat_op_cancel_pt     cancel;
};


/* ngx_chat_session.c, for the messaging layer */

/*
 * deliver body to every subscription of dest: the blob holds the JSON and
 * the NUL that ends the frame (counted in body->len)
 */
void ngx_chat_session_deliver(ngx_chat_session_t *s, ngx_chat_dest_e dest,
    u_char *message_id, size_t message_id_len, ngx_chat_blob_t *body);

/*
 * deliver body to the subscriptions of dest whose destination is
 * destination (and, if sub_id is not NULL, whose id is sub_id: that one
 * even while it waits for its snapshot)
 */
void ngx_chat_session_deliver_topic(ngx_chat_session_t *s,
    ngx_chat_dest_e dest, ngx_str_t *destination, ngx_str_t *sub_id,
    ngx_chat_blob_t *body);

/*
 * ngx_chat_presence.c: the check of a presence SUBSCRIBE (sub_id) is
 * over. NGX_OK: allowed; the RECEIPT (if any), then the snapshot (body,
 * may be NULL) are sent. NGX_DECLINED: forbidden: ERROR frame, the session
 * closes. NGX_ERROR: the stores failed: the subscription is dropped with
 * an "unavailable" rejection. The frames that came meanwhile are parsed
 * then. The op must be done (ngx_chat_session_op_done) before.
 */
void ngx_chat_session_presence_ready(ngx_chat_session_t *s,
    ngx_str_t *sub_id, ngx_int_t rc, ngx_chat_blob_t *body,
    ngx_str_t *receipt);

/* a rejection on /user/queue/errors (PROTOCOL.md section 5) */
void ngx_chat_session_reject(ngx_chat_session_t *s, const char *code,
    const char *message, ngx_str_t *client_msg_id, ngx_str_t *receipt);

/* a RECEIPT frame */
void ngx_chat_session_receipt(ngx_chat_session_t *s, ngx_str_t *receipt);

/* an op was queued / is done (after its handler said everything) */
void ngx_chat_session_op_start(ngx_chat_session_t *s, ngx_chat_op_t *op,
    ngx_chat_op_cancel_pt cancel);
void ngx_chat_session_op_done(ngx_chat_session_t *s, ngx_chat_op_t *op);


/* ngx_chat_messaging.c, for the session */

/* the session is CONNECTed as s->id.user: make its user's channel live */
ngx_int_t ngx_chat_messaging_register(ngx_chat_session_t *s);
void ngx_chat_messaging_unregister(ngx_chat_session_t *s);

/*
 * SEND to /app/...: runs the request. NGX_OK: accepted (the handler will
 * answer with a receipt or a rejection). NGX_DECLINED: unknown destination.
 * NGX_ERROR: out of memory.
 */
ngx_int_t ngx_chat_messaging_send(ngx_chat_session_t *s,
    ngx_str_t *destination, u_char *body, size_t len, ngx_str_t *receipt);

#endif /* _NGX_CHAT_SESSION_H_INCLUDED_ */
