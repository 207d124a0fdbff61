/* ngx_chat_session_out.c: the frames a session sends, header escaping. */

#include "ngx_chat_session_int.h"
#include "ngx_chat_metrics.h"


static size_t ngx_chat_header_len(const char *name, u_char *value,
    size_t len, ngx_uint_t escape);
static u_char *ngx_chat_put_header(u_char *p, const char *name,
    u_char *value, size_t len, ngx_uint_t escape);


void
ngx_chat_session_deliver(ngx_chat_session_t *s, ngx_uint_t dest,
    u_char *message_id, size_t message_id_len, ngx_chat_blob_t *body)
{
    ngx_chat_session_deliver_to(s, dest, NULL, NULL, message_id,
                                message_id_len, body);
}


void
ngx_chat_session_deliver_topic(ngx_chat_session_t *s, ngx_uint_t dest,
    ngx_str_t *destination, ngx_str_t *sub_id, ngx_chat_blob_t *body)
{
    ngx_chat_session_deliver_to(s, dest, destination, sub_id, NULL, 0, body);
}


void
ngx_chat_session_deliver_to(ngx_chat_session_t *s, ngx_uint_t dest,
    ngx_str_t *destination, ngx_str_t *sub_id, u_char *message_id,
    size_t message_id_len, ngx_chat_blob_t *body)
{
    u_char              *p;
    size_t               len;
    uint64_t             ack, seq;
    ngx_str_t            conv;
    ngx_uint_t           i, esc, delivered, messages;
    ngx_chat_sub_t      *sub;
    ngx_chat_pending_t  *pe;
    u_char               mid[NGX_INT64_LEN + 2];
    u_char               head[1024];

    if (s->closing || !s->connected || s->dest_subs[dest] == 0) {
        return;
    }

    esc = (s->version >= 11);

    /* a message: what its delivery makes delivered (read once a blob) */

    delivered = 0;

    messages = ngx_chat_session_dests[dest]->messages;

    if (messages && !body->parsed) {
        body->parsed = 1;

        if (ngx_chat_blob_message_ids(body->data, body->len - 1,
                                      &body->conv, &body->seq)
            != NGX_OK
            || body->conv.len > NGX_CHAT_PENDING_CONV)
        {
            body->seq = 0;
        }
    }

    seq = 0;
    ngx_str_null(&conv);

    if (messages) {
        seq = body->seq;
        conv = body->conv;
    }

    for (i = 0; i < s->nsubs && !s->closing; i++) {
        sub = &s->subs[i];

        if (sub->dest != dest) {
            continue;
        }

        if (destination
            && (sub->destination.len != destination->len
                || ngx_strncmp(sub->destination.data, destination->data,
                               destination->len) != 0))
        {
            continue;
        }

        if (sub_id) {
            if (sub->id.len != sub_id->len
                || ngx_strncmp(sub->id.data, sub_id->data, sub_id->len) != 0)
            {
                continue;
            }

            sub->waiting = 0;

        } else if (sub->waiting) {
            /* its snapshot, which is newer, is on its way */
            continue;
        }

        if (message_id_len == 0) {
            message_id = mid;
            message_id_len = ngx_sprintf(mid, "m%uL", ++s->ack_counter) - mid;
        }

        ack = 0;

        if (sub->ack != NGX_CHAT_ACK_AUTO) {
            ack = ++s->ack_counter;

            if (sub->npending == NGX_CHAT_PENDING_ACKS) {
                /* the oldest unacknowledged one is forgotten */
                ngx_memmove(&sub->pending[0], &sub->pending[1],
                            (NGX_CHAT_PENDING_ACKS - 1)
                            * sizeof(ngx_chat_pending_t));
                sub->npending--;
            }

            pe = &sub->pending[sub->npending++];
            pe->ack = ack;
            pe->seq = seq;
            pe->conv_len = (u_char) conv.len;

            if (seq) {
                ngx_memcpy(pe->conv, conv.data, conv.len);
            }
        }

        len = sizeof("MESSAGE\ncontent-type:application/json\n"
                     "content-length:\n\n") + NGX_SIZE_T_LEN
              + ngx_chat_header_len("subscription", sub->id.data,
                                    sub->id.len, esc)
              + ngx_chat_header_len("message-id", message_id,
                                    message_id_len, esc)
              + ngx_chat_header_len("destination", sub->destination.data,
                                    sub->destination.len, esc)
              + (ack ? sizeof("ack:\n") + NGX_INT64_LEN : 0);

        if (len > sizeof(head)) {
            ngx_log_error(NGX_LOG_INFO, s->log, 0,
                          "chat: MESSAGE headers too long, not delivered");
            continue;
        }

        p = ngx_cpymem(head, "MESSAGE\n", sizeof("MESSAGE\n") - 1);
        p = ngx_chat_put_header(p, "subscription", sub->id.data, sub->id.len,
                                esc);
        p = ngx_chat_put_header(p, "message-id", message_id, message_id_len,
                                esc);
        p = ngx_chat_put_header(p, "destination", sub->destination.data,
                                sub->destination.len, esc);

        if (ack) {
            p = ngx_sprintf(p, "ack:%uL\n", ack);
        }

        p = ngx_sprintf(p, "content-type:application/json\n"
                        "content-length:%uz\n\n", body->len - 1);

        /* the blob carries the body and the frame's closing NUL */
        if (ngx_chat_session_write(s, head, p - head, body) != NGX_OK) {
            return;
        }

        if (messages) {
            ngx_chat_metric_inc(NGX_CHAT_M_MESSAGES_OUT, 1);
        }

        /* written (queued) on an auto subscription: delivered */

        if (sub->ack == NGX_CHAT_ACK_AUTO && seq) {
            delivered = 1;
        }
    }

    if (delivered) {
        ngx_chat_session_delivered(s, conv.data, conv.len, seq);
    }
}


void
ngx_chat_session_reject(ngx_chat_session_t *s, const char *code,
    const char *message, ngx_str_t *client_msg_id, ngx_str_t *receipt)
{
    u_char           *p;
    size_t            len;
    ngx_chat_blob_t  *b;

    ngx_chat_metric_error(code);

    if (s->closing || s->dest_subs[NGX_CHAT_DEST_ERRORS] == 0) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: request rejected (%s: %s), the session does not "
                      "subscribe to /user/queue/errors", code, message);
        return;
    }

    len = sizeof("{\"type\":\"error\",\"code\":\"\",\"message\":\"\","
                 "\"clientMsgId\":\"\",\"receiptId\":\"\"}")
          + ngx_strlen(code) + ngx_strlen(message)
          + (client_msg_id ? 6 * client_msg_id->len : 0)
          + (receipt ? 6 * receipt->len : 0);

    b = ngx_chat_blob_create(len);
    if (b == NULL) {
        return;
    }

    p = ngx_sprintf(b->data, "{\"type\":\"error\",\"code\":\"%s\","
                    "\"message\":\"%s\"", code, message);

    if (client_msg_id && client_msg_id->len) {
        p = ngx_cpymem(p, ",\"clientMsgId\":\"", 16);
        p = (u_char *) ngx_escape_json(p, client_msg_id->data,
                                       client_msg_id->len);
        *p++ = '"';
    }

    if (receipt && receipt->len) {
        p = ngx_cpymem(p, ",\"receiptId\":\"", 14);
        p = (u_char *) ngx_escape_json(p, receipt->data, receipt->len);
        *p++ = '"';
    }

    *p++ = '}';
    *p++ = '\0';
    b->len = p - b->data;

    ngx_chat_session_deliver(s, NGX_CHAT_DEST_ERRORS, NULL, 0, b);
    ngx_chat_blob_release(b);
}


void
ngx_chat_session_receipt(ngx_chat_session_t *s, ngx_str_t *receipt)
{
    u_char      *p, *head;
    size_t       len;
    ngx_uint_t   esc;

    if (s->closing) {
        return;
    }

    esc = (s->version >= 11);
    len = sizeof("RECEIPT\n\n") + ngx_chat_header_len("receipt-id",
                                                      receipt->data,
                                                      receipt->len, esc);

    head = ngx_alloc(len, s->log);
    if (head == NULL) {
        ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return;
    }

    p = ngx_cpymem(head, "RECEIPT\n", sizeof("RECEIPT\n") - 1);
    p = ngx_chat_put_header(p, "receipt-id", receipt->data, receipt->len,
                            esc);
    *p++ = '\n';
    *p++ = '\0';

    (void) ngx_chat_session_write(s, head, p - head, NULL);
    ngx_free(head);
}


/* ERROR frame, then the connection closes */

void
ngx_chat_session_error(ngx_chat_session_t *s, const char *msg,
    const char *detail, ngx_str_t *receipt, uint16_t code)
{
    u_char      *p, *head;
    size_t       len, dlen;
    ngx_uint_t   esc;

    if (s->closing) {
        return;
    }

    esc = (s->version != 10);
    dlen = detail ? ngx_strlen(detail) : 0;

    ngx_chat_metric_inc(NGX_CHAT_M_ERR_PROTOCOL, 1);

    len = sizeof("ERROR\nmessage:\ncontent-type:text/plain\n"
                 "content-length:\n\n\n") + NGX_SIZE_T_LEN + dlen
          + ngx_strlen(msg)
          + (receipt && receipt->len
             ? ngx_chat_header_len("receipt-id", receipt->data,
                                   receipt->len, esc)
             : 0);

    head = ngx_alloc(len, s->log);

    if (head != NULL) {
        p = ngx_sprintf(head, "ERROR\nmessage:%s\n", msg);

        if (receipt && receipt->len) {
            p = ngx_chat_put_header(p, "receipt-id", receipt->data,
                                    receipt->len, esc);
        }

        p = ngx_sprintf(p, "content-type:text/plain\ncontent-length:%uz\n\n",
                        dlen);
        p = ngx_cpymem(p, detail ? detail : "", dlen);
        *p++ = '\0';

        (void) ngx_chat_session_write(s, head, p - head, NULL);
        ngx_free(head);
    }

    s->closing = 1;
    ngx_chat_transport_close(s->t, code, msg);
}


ngx_int_t
ngx_chat_session_write(ngx_chat_session_t *s, u_char *head, size_t len,
    ngx_chat_blob_t *body)
{
    if (ngx_chat_transport_send(s->t, head, len, body) != NGX_OK) {
        s->closing = 1;
        return NGX_ERROR;
    }

    if (len != 1 || body != NULL) {
        /* not a heart-beat */
        ngx_chat_metric_inc(NGX_CHAT_M_FRAMES_OUT, 1);
    }

    return NGX_OK;
}


static size_t
ngx_chat_header_len(const char *name, u_char *value, size_t len,
    ngx_uint_t escape)
{
    return ngx_strlen(name) + 2
           + (escape ? ngx_chat_stomp_escaped_len(value, len) : len);
}


static u_char *
ngx_chat_put_header(u_char *p, const char *name, u_char *value, size_t len,
    ngx_uint_t escape)
{
    size_t  i;

    p = ngx_cpymem(p, name, ngx_strlen(name));
    *p++ = ':';

    if (escape) {
        p = ngx_chat_stomp_escape(p, value, len);

    } else {
        /* STOMP 1.0 has no escapes: a line break may not pass */
        for (i = 0; i < len; i++) {
            *p++ = (value[i] == '\n' || value[i] == '\r') ? ' ' : value[i];
        }
    }

    *p++ = '\n';

    return p;
}
