/* ngx_chat_session_int.h: what the session's own files share (private). */

#ifndef _NGX_CHAT_SESSION_INT_H_INCLUDED_
#define _NGX_CHAT_SESSION_INT_H_INCLUDED_

#include "ngx_chat_session.h"


/* ngx_chat_session.c: the state machine */

ngx_int_t ngx_chat_session_send(ngx_chat_session_t *s,
    ngx_str_t *destination, u_char *body, size_t len, ngx_str_t *receipt);
ngx_int_t ngx_chat_session_ack(ngx_chat_session_t *s,
    ngx_chat_stomp_command_e cmd, ngx_str_t *id, ngx_str_t *subscription);

/* a header of a frame: NGX_OK, or NGX_DECLINED and an empty value */
ngx_int_t ngx_chat_header_value(ngx_chat_stomp_frame_t *f,
    const char *name, ngx_str_t *value);


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
    ngx_chat_dest_e dest, ngx_str_t *destination, ngx_str_t *sub_id,
    u_char *message_id, size_t message_id_len, ngx_chat_blob_t *body);

/* ERROR frame, then the connection closes */
void ngx_chat_session_error(ngx_chat_session_t *s, const char *msg,
    const char *detail, ngx_str_t *receipt, uint16_t code);

ngx_int_t ngx_chat_session_write(ngx_chat_session_t *s, u_char *head,
    size_t len, ngx_chat_blob_t *body);

#endif /* _NGX_CHAT_SESSION_INT_H_INCLUDED_ */
