/* ngx_chat_session_int.h: what the session's own files share (private).
 *
 * They call each other on purpose, over one state (ngx_chat_session_t):
 * the state machine (ngx_chat_session.c) holds frames of a transaction in
 * ngx_chat_session_tx.c, which replays them through the state machine at
 * COMMIT; it hands subscriptions to ngx_chat_session_sub.c, which resumes
 * its parsing once a topic's check is over; all write frames with
 * ngx_chat_session_out.c, which tells the delivered hooks what a write
 * delivered. */

#ifndef _NGX_CHAT_SESSION_INT_H_INCLUDED_
#define _NGX_CHAT_SESSION_INT_H_INCLUDED_

#include "ngx_chat_session.h"


/* ngx_chat_session.c: the state machine */

/* parses what waits in s->in (after a SUBSCRIBE's check) */
void ngx_chat_session_parse(ngx_chat_session_t *s);


ngx_int_t ngx_chat_session_send(ngx_chat_session_t *s,
    ngx_str_t *destination, u_char *body, size_t len, ngx_str_t *receipt);
ngx_int_t ngx_chat_session_ack(ngx_chat_session_t *s,
    ngx_chat_stomp_command_e cmd, ngx_str_t *id, ngx_str_t *subscription);


/* ngx_chat_session_sub.c: destinations, hooks, subscriptions */

/* the registered destinations, by id */
extern ngx_chat_dest_t  *ngx_chat_session_dests[NGX_CHAT_DEST_MAX];

/* the destination a client names (arg: after a prefix); NULL if none */
ngx_chat_dest_t *ngx_chat_session_find_dest(ngx_str_t *destination,
    ngx_str_t *arg);

/* "SEND goes to ...": the destinations that take a SEND */
const char *ngx_chat_session_send_names(void);

/* the hooks: connected (NGX_ERROR: one failed, NGX_DECLINED: a limit
 * refused the session), closed, delivered */
ngx_int_t ngx_chat_session_connected(ngx_chat_session_t *s);
void ngx_chat_session_closed(ngx_chat_session_t *s);
void ngx_chat_session_delivered(ngx_chat_session_t *s, u_char *conv,
    size_t conv_len, uint64_t seq);

/* SUBSCRIBE (NGX_AGAIN: a check runs, frames wait), UNSUBSCRIBE */
ngx_int_t ngx_chat_session_subscribe(ngx_chat_session_t *s,
    ngx_chat_stomp_frame_t *f);
ngx_int_t ngx_chat_session_unsubscribe(ngx_chat_session_t *s,
    ngx_chat_stomp_frame_t *f);

/* drops a subscription (the last one takes its place) */
void ngx_chat_session_sub_free(ngx_chat_session_t *s, ngx_chat_sub_t *sub);


/* ngx_chat_session_tx.c: transactions */

ngx_int_t ngx_chat_session_begin(ngx_chat_session_t *s, ngx_str_t *name,
    ngx_str_t *receipt);

/* COMMIT: its RECEIPT waits for the SENDs it commits */
ngx_int_t ngx_chat_session_commit(ngx_chat_session_t *s, ngx_str_t *name,
    ngx_str_t *receipt);
ngx_int_t ngx_chat_session_abort(ngx_chat_session_t *s, ngx_str_t *name,
    ngx_str_t *receipt);

/* a SEND, ACK or NACK of transaction name, held until its COMMIT */
ngx_int_t ngx_chat_session_tx_hold(ngx_chat_session_t *s, ngx_str_t *name,
    ngx_chat_stomp_frame_t *f, ngx_str_t *receipt);

/* the session ends: its transactions are dropped */
void ngx_chat_session_tx_free_all(ngx_chat_session_t *s);

/* an op is done: answers the COMMIT receipts now at the head of s->ops */
void ngx_chat_session_barriers_done(ngx_chat_session_t *s);


/* ngx_chat_session_out.c: the frames the server sends */

void ngx_chat_session_deliver_to(ngx_chat_session_t *s,
    ngx_uint_t dest, ngx_str_t *destination, ngx_str_t *sub_id,
    u_char *message_id, size_t message_id_len, ngx_chat_blob_t *body);

/* ERROR frame, then the connection closes */
void ngx_chat_session_error(ngx_chat_session_t *s, const char *msg,
    const char *detail, ngx_str_t *receipt, uint16_t code);

ngx_int_t ngx_chat_session_write(ngx_chat_session_t *s, u_char *head,
    size_t len, ngx_chat_blob_t *body);

#endif /* _NGX_CHAT_SESSION_INT_H_INCLUDED_ */
