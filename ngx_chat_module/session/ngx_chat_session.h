/* ngx_chat_session.h: a STOMP session on a transport, the table of
 * destinations and hooks that features register, and what they may ask
 * of a session. */

#ifndef _NGX_CHAT_SESSION_H_INCLUDED_
#define _NGX_CHAT_SESSION_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_identity.h"
#include "ngx_chat_ws.h"
#include "ngx_chat_transport.h"
#include "ngx_chat_stomp.h"


/* destinations registered (ngx_chat_session_add_dest) */
#define NGX_CHAT_DEST_MAX         12

/* /user/queue/errors, the session's own: rejections */
#define NGX_CHAT_DEST_ERRORS      0

#define NGX_CHAT_ACK_AUTO        0
#define NGX_CHAT_ACK_CLIENT      1
#define NGX_CHAT_ACK_INDIVIDUAL  2

#define NGX_CHAT_PENDING_ACKS    64     /* unacknowledged MESSAGEs kept per
                                           client-ack subscription */
#define NGX_CHAT_PENDING_CONV    36     /* longest conversationId kept */

/* an unacknowledged MESSAGE: its ack id and, on a destination of
 * messages (dest->messages), what its ACK makes delivered (seq 0: nothing) */
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
    uint8_t                   dest;        /* its ngx_chat_dest_t's id */
    uint8_t                   ack;         /* NGX_CHAT_ACK_* */
    uint8_t                   npending;    /* <= NGX_CHAT_PENDING_ACKS */
    unsigned                  waiting:1;   /* until its check is over
                                              (and its snapshot out) */
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
    ngx_chat_transport_t     *t;
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
    size_t                    tx_bytes;        /* held by them (bodies,
                                                  destinations) */

    ngx_queue_t               ops;             /* requests in flight */
    ngx_uint_t                nops;
    ngx_str_t                 disconnect_receipt;
    ngx_str_t                 connect_receipt; /* while connecting */

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
    unsigned                  transport_auth:1; /* the user is the
                                                  transport's (t->user) */
    unsigned                  connecting:1;    /* CONNECTED waits for the
                                                  hooks that answered
                                                  NGX_AGAIN (and the
                                                  frames behind it) */
    unsigned                  connect_waits:4; /* how many of them */
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


/*
 * The session knows no destination by name: each feature registers the
 * ones it serves from its init_process (the module's startup list runs
 * them before any session exists) and keeps the id it gets. A destination
 * is a name, or (max_arg > 0) a prefix and an argument of 1 to max_arg
 * bytes: "/topic/presence." and a userId.
 */
typedef struct ngx_chat_dest_s  ngx_chat_dest_t;

/*
 * A SEND to it. NGX_OK: accepted (an op answers with a RECEIPT or a
 * rejection). NGX_DECLINED: unknown destination. NGX_ERROR: out of memory.
 */
typedef ngx_int_t (*ngx_chat_dest_send_pt)(ngx_chat_session_t *s,
    ngx_str_t *destination, u_char *body, size_t len, ngx_str_t *receipt);

/*
 * A subscription to it was added (sub->waiting is set): NGX_OK: it stands.
 * NGX_AGAIN: a check runs, and ngx_chat_session_subscribed() follows (never
 * from inside this call); the session's next frames wait for it.
 * NGX_ERROR: out of memory, nothing to undo (the session closes).
 */
typedef ngx_int_t (*ngx_chat_dest_subscribe_pt)(ngx_chat_session_t *s,
    ngx_chat_sub_t *sub, ngx_str_t *arg, ngx_str_t *receipt);

/* the subscription goes (UNSUBSCRIBE, a refused check, the session ends) */
typedef void (*ngx_chat_dest_unsubscribe_pt)(ngx_chat_session_t *s,
    ngx_chat_sub_t *sub, ngx_str_t *arg);

struct ngx_chat_dest_s {
    ngx_str_t                      name;        /* or the prefix */
    size_t                         max_arg;     /* 0: name is exact */
    ngx_chat_dest_send_pt          send;        /* NULL: no SEND to it */
    ngx_chat_dest_subscribe_pt     subscribe;   /* NULL: nothing to check */
    ngx_chat_dest_unsubscribe_pt   unsubscribe;
    const char                    *unavailable; /* the rejection when a
                                                   check fails */
    ngx_uint_t                     id;          /* set when registered */
    unsigned                       readable:1;  /* may be subscribed to */
    unsigned                       messages:1;  /* its bodies are messages
                                                   (conversationId, seq):
                                                   told to the delivered
                                                   hooks */
};

/* at startup: d (static) gets its id; NGX_ERROR: the table is full */
ngx_int_t ngx_chat_session_add_dest(ngx_chat_dest_t *d);

/*
 * What a feature hears of every session (NULL: nothing). connected: the
 * session is CONNECTed as s->id.user, in the order of registration;
 * NGX_ERROR closes it (1011), NGX_DECLINED refuses it (a limit: ERROR
 * frame "too many sessions", 1008), NGX_AGAIN holds CONNECTED (and the
 * frames behind CONNECT, in order) until the hook's feature calls
 * ngx_chat_session_ready(s), or chat_connect_timeout passes: then it goes
 * out anyway. closed: a connected session ends, in the
 * reverse order (also after a failed connected hook: it must cope).
 * delivered: s's user has received conv up to seq (a MESSAGE of a
 * messages destination written to an auto subscription, or ACKed).
 */
typedef struct {
    ngx_int_t                    (*connected)(ngx_chat_session_t *s);
    void                         (*closed)(ngx_chat_session_t *s);
    void                         (*delivered)(ngx_chat_session_t *s,
                                     u_char *conv, size_t conv_len,
                                     uint64_t seq);
} ngx_chat_session_hooks_t;

/* at startup: h (static) is kept; NGX_ERROR: too many */
ngx_int_t ngx_chat_session_add_hooks(ngx_chat_session_hooks_t *h);

/*
 * A connected hook that answered NGX_AGAIN is ready: when all are, the
 * session's CONNECTED goes out from the event loop (never from inside this
 * call), so a feature may call it while it walks its own lists.
 */
void ngx_chat_session_ready(ngx_chat_session_t *s);


/*
 * A transport has a connection (a WebSocket handshake succeeded, a TCP
 * client came): a session starts on t (ngx_chat_transport_open, set at
 * startup).
 */
ngx_int_t ngx_chat_session_start(ngx_chat_transport_t *t);

/* the transport's ngx_chat_ws_protocols: STOMP's, the version as value */
extern ngx_chat_ws_protocol_t  ngx_chat_session_protocols[];


/* what features ask of a session */

/*
 * deliver body to every subscription of dest (an id): the blob holds the
 * JSON and the NUL that ends the frame (counted in body->len)
 */
void ngx_chat_session_deliver(ngx_chat_session_t *s, ngx_uint_t dest,
    u_char *message_id, size_t message_id_len, ngx_chat_blob_t *body);

/*
 * deliver body to the subscriptions of dest whose destination is
 * destination (and, if sub_id is not NULL, whose id is sub_id: that one
 * even while it waits for its snapshot)
 */
void ngx_chat_session_deliver_topic(ngx_chat_session_t *s,
    ngx_uint_t dest, ngx_str_t *destination, ngx_str_t *sub_id,
    ngx_chat_blob_t *body);

/*
 * The check of a SUBSCRIBE (sub_id) that said NGX_AGAIN is over. NGX_OK:
 * allowed; the RECEIPT (if any), then the snapshot (body, may be NULL) are
 * sent. NGX_DECLINED: forbidden: ERROR frame, the session closes.
 * NGX_ERROR: the stores failed: the subscription is dropped with the
 * destination's "unavailable" rejection. The frames that came meanwhile
 * are parsed then. The op must be done (ngx_chat_session_op_done) before.
 */
void ngx_chat_session_subscribed(ngx_chat_session_t *s,
    ngx_str_t *sub_id, ngx_int_t rc, ngx_chat_blob_t *body,
    ngx_str_t *receipt);

/*
 * The subscriptions of dest to destination end (not those whose check
 * still runs): each is unsubscribed as by an UNSUBSCRIBE, then one
 * rejection (code, message) goes to /user/queue/errors. Returns how many
 * ended.
 */
ngx_uint_t ngx_chat_session_end_topic(ngx_chat_session_t *s,
    ngx_uint_t dest, ngx_str_t *destination, const char *code,
    const char *message);

/* a rejection on /user/queue/errors (PROTOCOL.md section 5) */
void ngx_chat_session_reject(ngx_chat_session_t *s, const char *code,
    const char *message, ngx_str_t *client_msg_id, ngx_str_t *receipt);

/* a RECEIPT frame */
void ngx_chat_session_receipt(ngx_chat_session_t *s, ngx_str_t *receipt);

/* an op was queued / is done (after its handler said everything) */
void ngx_chat_session_op_start(ngx_chat_session_t *s, ngx_chat_op_t *op,
    ngx_chat_op_cancel_pt cancel);
void ngx_chat_session_op_done(ngx_chat_session_t *s, ngx_chat_op_t *op);


#endif /* _NGX_CHAT_SESSION_H_INCLUDED_ */
