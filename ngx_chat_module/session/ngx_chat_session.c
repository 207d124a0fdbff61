/* ngx_chat_session.c: the STOMP session state machine on a transport. */

#include "ngx_chat_session_int.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_SESSION_RECHECK   1000   /* ms: a heart-beat deadline
                                             passed with bytes unread */
#define NGX_CHAT_IN_INITIAL        1024
#define NGX_CHAT_PAUSED_FRAMES     4      /* frames' worth of bytes kept
                                             while parsing waits */


/* the WebSocket sub-protocols of STOMP: the value is the version */
ngx_chat_ws_protocol_t  ngx_chat_session_protocols[] = {
    { "v12.stomp", 12 },
    { "v11.stomp", 11 },
    { "v10.stomp", 10 },
    { NULL, 0 }
};


static void ngx_chat_session_on_data(ngx_chat_transport_t *t, u_char *data,
    size_t len);
static void ngx_chat_session_on_message_end(ngx_chat_transport_t *t);
static void ngx_chat_session_on_eof(ngx_chat_transport_t *t);
static void ngx_chat_session_on_closed(ngx_chat_transport_t *t);
static ngx_int_t ngx_chat_session_frame(ngx_chat_session_t *s,
    ngx_chat_stomp_frame_t *f);
static ngx_int_t ngx_chat_session_connect(ngx_chat_session_t *s,
    ngx_chat_stomp_frame_t *f);
static ngx_int_t ngx_chat_session_connect_done(ngx_chat_session_t *s,
    ngx_str_t *receipt);
static void ngx_chat_session_connect_resume(ngx_chat_session_t *s);
static ngx_uint_t ngx_chat_session_input_waits(ngx_chat_session_t *s);
static void ngx_chat_session_timer_handler(ngx_event_t *ev);
static ngx_uint_t ngx_chat_session_negotiate(ngx_str_t *accept);
static ngx_int_t ngx_chat_session_set_id(ngx_chat_session_t *s,
    ngx_chat_identity_t *id);
static ngx_int_t ngx_chat_session_token(ngx_chat_session_t *s,
    u_char *token, size_t len, const char **err);


static uint64_t  ngx_chat_session_counter;


/*
 * The session is one allocation of its own (freed by on_closed), as are
 * its identity strings, subscriptions and buffers: nothing points into
 * the handshake's request, which is freed right after it.
 */

ngx_int_t
ngx_chat_session_start(ngx_chat_transport_t *t)
{
    ngx_chat_session_t   *s;
    ngx_chat_identity_t   id;

    s = ngx_calloc(sizeof(ngx_chat_session_t), t->log);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->t = t;
    s->lcf = t->lcf;
    s->log = t->log;

    ngx_memzero(&id, sizeof(ngx_chat_identity_t));

    if (t->request) {
        /* credentials of the handshake: a query token or Authorization */
        s->handshake_auth = ngx_chat_identity_from_request(t->request,
                                                           s->lcf, 1, &id,
                                                           &s->handshake_err);

    } else if (t->user.len) {
        /* the transport's own (chat_stomp_user: a client certificate) */

        if (ngx_chat_user_id_valid(t->user.data, t->user.len)) {
            id.user = t->user;
            ngx_str_set(&id.name, "");
            s->handshake_auth = NGX_OK;
            s->transport_auth = 1;

        } else {
            s->handshake_auth = NGX_ERROR;
            s->handshake_err = "chat_stomp_user is not a valid userId";
        }

    } else {
        s->handshake_auth = NGX_DECLINED;
    }

    if (s->handshake_auth == NGX_OK
        && ngx_chat_session_set_id(s, &id) != NGX_OK)
    {
        ngx_free(s);
        return NGX_ERROR;
    }

    s->session_id_len = ngx_sprintf(s->session_id, "%ui-%uL",
                                    ngx_chat_worker.mcf->node_id,
                                    ++ngx_chat_session_counter)
                        - s->session_id;

    ngx_queue_init(&s->transactions);
    ngx_queue_init(&s->ops);
    ngx_queue_init(&s->user_link);

    t->data = s;
    t->on_data = ngx_chat_session_on_data;
    t->on_message_end = ngx_chat_session_on_message_end;
    t->on_eof = ngx_chat_session_on_eof;
    t->on_closed = ngx_chat_session_on_closed;

    s->timer.handler = ngx_chat_session_timer_handler;
    s->timer.data = s;
    s->timer.log = s->log;
    s->timer.cancelable = 1;

    ngx_add_timer(&s->timer, s->lcf->connect_timeout);

    return NGX_OK;
}


static void
ngx_chat_session_on_data(ngx_chat_transport_t *t, u_char *data, size_t len)
{
    ngx_chat_session_t  *s = t->data;

    u_char  *p;
    size_t   n, size, limit;

    /*
     * The buffer holds at most one frame (plus trailing EOLs): the bytes
     * are taken in pieces that fit and parsed as they come, so that a
     * WebSocket message or a TCP read may carry any number of frames
     * under the limit, and a frame may come in any number of pieces.
     */

    limit = s->lcf->max_frame + 2;

    if (s->paused) {
        /* a SUBSCRIBE is being checked: a few more frames may wait */
        limit *= NGX_CHAT_PAUSED_FRAMES;
    }

    while (len && !s->closing) {

        if (s->in_len >= limit) {
            /* the parser gives up on such a frame first; be safe */
            ngx_chat_session_error(s, "frame too large", NULL, NULL,
                                   NGX_CHAT_WS_CLOSE_TOO_BIG);
            return;
        }

        n = ngx_min(len, limit - s->in_len);

        if (s->in_len + n > s->in_size) {
            size = ngx_max(s->in_size * 2, NGX_CHAT_IN_INITIAL);

            while (size < s->in_len + n) {
                size *= 2;
            }

            size = ngx_min(size, limit);

            p = ngx_alloc(size, s->log);
            if (p == NULL) {
                ngx_chat_transport_close(t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
                return;
            }

            if (s->in_len) {
                ngx_memcpy(p, s->in, s->in_len);
            }

            if (s->in) {
                ngx_free(s->in);
            }

            s->in = p;
            s->in_size = size;
        }

        ngx_memcpy(s->in + s->in_len, data, n);
        s->in_len += n;
        data += n;
        len -= n;

        ngx_chat_session_parse(s);
    }
}


static void
ngx_chat_session_on_message_end(ngx_chat_transport_t *t)
{
    ngx_chat_session_t  *s = t->data;

    /* frames may span messages: nothing to do but free an idle buffer */

    if (s->in_len == 0 && s->in != NULL) {
        ngx_free(s->in);
        s->in = NULL;
        s->in_size = 0;
    }
}


void
ngx_chat_session_parse(ngx_chat_session_t *s)
{
    size_t                   consumed, off;
    const char              *err;
    ngx_chat_stomp_rc_e      rc;
    ngx_chat_stomp_limits_t  lim;
    ngx_chat_stomp_frame_t   f;

    lim.max_frame = s->lcf->max_frame;
    lim.max_headers = s->lcf->max_headers;
    lim.max_header_len = s->lcf->max_header_len;

    off = 0;

    while (off < s->in_len && !s->closing && !s->paused) {

        rc = ngx_chat_stomp_parse(s->in + off, s->in_len - off, &lim,
                                  s->version ? s->version : 12, &f,
                                  &consumed, &err);

        if (rc == NGX_CHAT_STOMP_AGAIN) {
            break;
        }

        if (rc == NGX_CHAT_STOMP_INVALID) {
            ngx_log_error(NGX_LOG_INFO, s->log, 0,
                          "chat: malformed STOMP frame: %s", err);
            ngx_chat_session_error(s, "malformed frame", err, NULL,
                                   NGX_CHAT_WS_CLOSE_PROTOCOL);
            return;
        }

        off += consumed;

        if (rc == NGX_CHAT_STOMP_HEARTBEAT) {
            continue;
        }

        ngx_chat_metric_inc(NGX_CHAT_M_FRAMES_IN, 1);

        if (ngx_chat_session_frame(s, &f) != NGX_OK) {
            return;
        }
    }

    if (s->closing) {
        return;
    }

    if (off) {
        s->in_len -= off;

        if (s->in_len) {
            ngx_memmove(s->in, s->in + off, s->in_len);
        }
    }
}


static ngx_int_t
ngx_chat_session_frame(ngx_chat_session_t *s, ngx_chat_stomp_frame_t *f)
{
    ngx_str_t  receipt, destination, tx_name, id, sub;
    ngx_int_t  rc;

    ngx_chat_stomp_header_value(f, "receipt", &receipt.data, &receipt.len);

    if (!s->connected) {
        if (f->command == NGX_CHAT_STOMP_CONNECT
            || f->command == NGX_CHAT_STOMP_STOMP)
        {
            return ngx_chat_session_connect(s, f);
        }

        ngx_chat_session_error(s, "expected CONNECT", NULL, &receipt,
                               NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    if (s->disconnecting) {
        return NGX_OK;
    }

    /* frames inside a transaction wait for its COMMIT */

    if ((f->command == NGX_CHAT_STOMP_SEND
         || f->command == NGX_CHAT_STOMP_ACK
         || f->command == NGX_CHAT_STOMP_NACK)
        && ngx_chat_stomp_header_value(f, "transaction", &tx_name.data,
                                       &tx_name.len) == 0)
    {
        if (ngx_chat_session_tx_hold(s, &tx_name, f, &receipt) != NGX_OK) {
            return NGX_ERROR;
        }

        if (receipt.len) {
            ngx_chat_session_receipt(s, &receipt);
        }

        return NGX_OK;
    }

    switch (f->command) {

    case NGX_CHAT_STOMP_SEND:
        if (ngx_chat_stomp_header_value(f, "destination", &destination.data,
                                        &destination.len) != 0)
        {
            ngx_chat_session_error(s, "SEND without destination", NULL,
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }

        /*
         * refused before it becomes an op: it enters no FIFO, so no later
         * SEND overtakes one that is in flight, and the client is told
         */
        if (s->lcf->max_in_flight && s->nops >= s->lcf->max_in_flight) {
            ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_IN_FLIGHT, 1);
            ngx_chat_session_reject(s, "rate_limited",
                                    "too many requests in flight "
                                    "(chat_max_requests_in_flight)",
                                    NULL, &receipt);
            return s->closing ? NGX_ERROR : NGX_OK;
        }

        return ngx_chat_session_send(s, &destination, f->body, f->body_len,
                                     &receipt);

    case NGX_CHAT_STOMP_SUBSCRIBE:
        rc = ngx_chat_session_subscribe(s, f);

        if (rc == NGX_AGAIN) {
            /* checked asynchronously: the RECEIPT follows the check */
            return NGX_OK;
        }

        break;

    case NGX_CHAT_STOMP_UNSUBSCRIBE:
        rc = ngx_chat_session_unsubscribe(s, f);
        break;

    case NGX_CHAT_STOMP_ACK:
    case NGX_CHAT_STOMP_NACK:
        if (ngx_chat_stomp_header_value(f, "id", &id.data, &id.len) != 0
            && ngx_chat_stomp_header_value(f, "message-id", &id.data,
                                           &id.len) != 0)
        {
            ngx_chat_session_error(s, "ACK without id", NULL, &receipt,
                                   NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }

        ngx_chat_stomp_header_value(f, "subscription", &sub.data, &sub.len);
        rc = ngx_chat_session_ack(s, f->command, &id, &sub);
        break;

    case NGX_CHAT_STOMP_BEGIN:
    case NGX_CHAT_STOMP_COMMIT:
    case NGX_CHAT_STOMP_ABORT:
        if (ngx_chat_stomp_header_value(f, "transaction", &tx_name.data,
                                        &tx_name.len) != 0)
        {
            ngx_chat_session_error(s, "transaction header missing", NULL,
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }

        if (f->command == NGX_CHAT_STOMP_BEGIN) {
            rc = ngx_chat_session_begin(s, &tx_name, &receipt);

        } else if (f->command == NGX_CHAT_STOMP_COMMIT) {
            /* its RECEIPT waits for the SENDs it commits */
            return ngx_chat_session_commit(s, &tx_name, &receipt);

        } else {
            rc = ngx_chat_session_abort(s, &tx_name, &receipt);
        }

        break;

    case NGX_CHAT_STOMP_DISCONNECT:
        s->disconnecting = 1;

        if (receipt.len == 0) {
            ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_NORMAL, NULL);
            return NGX_ERROR;
        }

        s->disconnect_receipt.data = ngx_alloc(receipt.len, s->log);
        if (s->disconnect_receipt.data == NULL) {
            ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }

        ngx_memcpy(s->disconnect_receipt.data, receipt.data, receipt.len);
        s->disconnect_receipt.len = receipt.len;

        if (s->nops == 0) {
            ngx_chat_session_receipt(s, &s->disconnect_receipt);
            ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_NORMAL, NULL);
            return NGX_ERROR;
        }

        /* the receipt follows the last request still in flight */
        return NGX_OK;

    case NGX_CHAT_STOMP_CONNECT:
    case NGX_CHAT_STOMP_STOMP:
        ngx_chat_session_error(s, "already connected", NULL, &receipt,
                               NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;

    default:
        ngx_chat_session_error(s, "unexpected frame",
                               ngx_chat_stomp_command_name(f->command),
                               &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (receipt.len) {
        ngx_chat_session_receipt(s, &receipt);
    }

    return s->closing ? NGX_ERROR : NGX_OK;
}


static ngx_int_t
ngx_chat_session_connect(ngx_chat_session_t *s, ngx_chat_stomp_frame_t *f)
{
    u_char      *p;
    ngx_str_t    accept, passcode, login, auth, hb, receipt;
    ngx_int_t    rc;
    ngx_msec_t   cx, cy;
    const char  *err;
    u_char       detail[128];

    ngx_chat_stomp_header_value(f, "receipt", &receipt.data, &receipt.len);

    /* version */

    if (ngx_chat_stomp_header_value(f, "accept-version", &accept.data,
                                    &accept.len) == 0)
    {
        s->version = ngx_chat_session_negotiate(&accept);

        if (s->version == 0) {
            s->version = 12;
            ngx_chat_session_error(s, "unsupported protocol version",
                                   "supported versions are 1.0,1.1,1.2",
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }

    } else {
        s->version = 10;
    }

    /* identity: CONNECT credentials first, then those of the handshake */

    rc = NGX_DECLINED;
    err = "no credentials";

    if (s->lcf->identity == NULL) {

        if (ngx_chat_stomp_header_value(f, "passcode", &passcode.data,
                                        &passcode.len) == 0
            && passcode.len)
        {
            rc = ngx_chat_session_token(s, passcode.data, passcode.len,
                                        &err);

        } else if (ngx_chat_stomp_header_value(f, "Authorization",
                                               &auth.data, &auth.len) == 0
                   || ngx_chat_stomp_header_value(f, "authorization",
                                                  &auth.data, &auth.len) == 0)
        {
            if (auth.len > 7
                && ngx_strncasecmp(auth.data, (u_char *) "Bearer ", 7) == 0)
            {
                rc = ngx_chat_session_token(s, auth.data + 7, auth.len - 7,
                                            &err);
            } else {
                rc = NGX_ERROR;
                err = "Authorization is not a Bearer token";
            }
        }
    }

    if (rc == NGX_DECLINED) {
        rc = s->handshake_auth;

        if (s->handshake_err) {
            err = s->handshake_err;
        }

    } else {
        s->transport_auth = 0;
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: unauthorized STOMP session: %s", err);
        ngx_chat_session_error(s, "unauthorized", err, &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    if (ngx_chat_stomp_header_value(f, "login", &login.data,
                                    &login.len) == 0
        && login.len
        && (login.len != s->id.user.len
            || ngx_strncmp(login.data, s->id.user.data, login.len) != 0)
        && s->lcf->identity == NULL
        && !s->transport_auth)
    {
        ngx_chat_session_error(s, "unauthorized",
                               "login does not match the token", &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    /* heart-beats: "cx,cy" of the client against ours */

    cx = 0;
    cy = 0;

    if (ngx_chat_stomp_header_value(f, "heart-beat", &hb.data,
                                    &hb.len) == 0
        && s->version >= 11)
    {
        p = ngx_strlchr(hb.data, hb.data + hb.len, ',');

        if (p == NULL
            || (cx = ngx_atoi(hb.data, p - hb.data)) == (ngx_msec_t) NGX_ERROR
            || (cy = ngx_atoi(p + 1, hb.data + hb.len - p - 1))
               == (ngx_msec_t) NGX_ERROR)
        {
            ngx_chat_session_error(s, "invalid heart-beat header", NULL,
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }
    }

    s->hb_send = (cy && s->lcf->heartbeat) ? ngx_max(cy, s->lcf->heartbeat)
                                           : 0;
    s->hb_recv = (cx && s->lcf->heartbeat) ? ngx_max(cx, s->lcf->heartbeat)
                                           : 0;

    /* the features hear of it; on_closed tells them it ended */

    s->connected = 1;
    ngx_chat_metric_inc(NGX_CHAT_M_SESSIONS, 1);
    ngx_chat_metric_gauge_add(NGX_CHAT_G_SESSIONS, 1);

    rc = ngx_chat_session_connected(s);

    if (rc == NGX_DECLINED) {
        p = ngx_snprintf(detail, sizeof(detail) - 1,
                         "at most %ui sessions of a user on a worker "
                         "(chat_max_sessions_per_user)",
                         s->lcf->max_sessions_per_user);
        *p = '\0';
        ngx_chat_session_error(s, "too many sessions", (char *) detail,
                               &receipt, NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    if (rc == NGX_AGAIN) {
        /*
         * a feature is not ready for the session yet (its user's channels
         * are being subscribed): CONNECTED and the frames behind CONNECT
         * wait, at most chat_connect_timeout (ngx_chat_session_ready)
         */

        if (receipt.len) {
            s->connect_receipt.data = ngx_alloc(receipt.len, s->log);
            if (s->connect_receipt.data == NULL) {
                ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL,
                                         NULL);
                return NGX_ERROR;
            }

            ngx_memcpy(s->connect_receipt.data, receipt.data, receipt.len);
            s->connect_receipt.len = receipt.len;
        }

        s->connecting = 1;
        s->paused = 1;

        if (s->timer.timer_set) {
            ngx_del_timer(&s->timer);
        }

        ngx_add_timer(&s->timer, s->lcf->connect_timeout);

        return NGX_OK;
    }

    if (rc != NGX_OK) {
        ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    return ngx_chat_session_connect_done(s, &receipt);
}


/* CONNECTED (and the CONNECT's RECEIPT); heart-beats start */

static ngx_int_t
ngx_chat_session_connect_done(ngx_chat_session_t *s, ngx_str_t *receipt)
{
    u_char      *p, *head;
    size_t       len;
    ngx_int_t    rc;
    ngx_str_t    hb;
    ngx_msec_t   t;
    u_char       hbuf[64];

    ngx_chat_identity_ensure_user(&s->id, s->log);

    /* CONNECTED */

    hb.data = hbuf;
    hb.len = ngx_sprintf(hbuf, "%M,%M", s->lcf->heartbeat,
                         s->lcf->heartbeat) - hbuf;

    len = sizeof("CONNECTED\nversion:1.x\nheart-beat:\nsession:\nserver:"
                 NGX_CHAT_SERVER "\nuser-name:\nmax-content-size:\n\n")
          + hb.len + s->session_id_len + s->id.user.len + NGX_SIZE_T_LEN;

    head = ngx_alloc(len, s->log);
    if (head == NULL) {
        ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    p = ngx_sprintf(head, "CONNECTED\nversion:1.%ui\nheart-beat:%V\n"
                    "session:%*s\nserver:" NGX_CHAT_SERVER
                    "\nuser-name:%V\nmax-content-size:%uz\n\n",
                    s->version - 10, &hb, s->session_id_len, s->session_id,
                    &s->id.user, s->lcf->max_content);
    *p++ = '\0';

    rc = ngx_chat_session_write(s, head, p - head, NULL);
    ngx_free(head);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (receipt->len) {
        ngx_chat_session_receipt(s, receipt);
    }

    /* the connect timer becomes the heart-beat timer */

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    /* a client that sends no heart-beats is held to chat_idle_timeout */

    t = s->hb_recv ? s->hb_recv : s->lcf->idle_timeout;

    if (s->hb_send && t) {
        ngx_add_timer(&s->timer, ngx_min(s->hb_send, t));

    } else if (s->hb_send || t) {
        ngx_add_timer(&s->timer, s->hb_send ? s->hb_send : t);
    }

    return NGX_OK;
}


/*
 * The hooks are ready, or chat_connect_timeout passed (Redis is slow or
 * went down meanwhile: the session connects as it would with Redis down,
 * and its feature catches up when Redis is back): CONNECTED goes out, then
 * the frames that waited behind CONNECT, in order.
 */

static void
ngx_chat_session_connect_resume(ngx_chat_session_t *s)
{
    ngx_int_t  rc;
    ngx_str_t  receipt;

    if (s->connect_waits) {
        ngx_log_error(NGX_LOG_WARN, s->log, 0,
                      "chat: session not ready within %M ms "
                      "(chat_connect_timeout), connected anyway",
                      s->lcf->connect_timeout);
        s->connect_waits = 0;
    }

    s->connecting = 0;
    s->paused = 0;

    receipt = s->connect_receipt;
    ngx_str_null(&s->connect_receipt);

    rc = ngx_chat_session_connect_done(s, &receipt);

    if (receipt.data) {
        ngx_free(receipt.data);
    }

    if (rc != NGX_OK || s->closing) {
        return;
    }

    ngx_chat_session_parse(s);
}


static ngx_uint_t
ngx_chat_session_negotiate(ngx_str_t *accept)
{
    u_char      *p, *end, *comma;
    size_t       len;
    ngx_uint_t   best, v;

    best = 0;
    p = accept->data;
    end = p + accept->len;

    while (p < end) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        while (p < comma && *p == ' ') {
            p++;
        }

        len = comma - p;

        while (len && p[len - 1] == ' ') {
            len--;
        }

        v = 0;

        if (len == 3 && p[0] == '1' && p[1] == '.') {
            if (p[2] == '0') {
                v = 10;

            } else if (p[2] == '1') {
                v = 11;

            } else if (p[2] == '2') {
                v = 12;
            }
        }

        best = ngx_max(best, v);
        p = comma + 1;
    }

    return best;
}


ngx_int_t
ngx_chat_session_send(ngx_chat_session_t *s, ngx_str_t *destination,
    u_char *body, size_t len, ngx_str_t *receipt)
{
    ngx_int_t         rc;
    ngx_str_t         arg;
    ngx_chat_dest_t  *d;

    d = ngx_chat_session_find_dest(destination, &arg);

    rc = (d && d->send) ? d->send(s, destination, body, len, receipt)
                        : NGX_DECLINED;

    if (rc == NGX_DECLINED) {
        ngx_chat_session_error(s, "unknown destination",
                               ngx_chat_session_send_names(), receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    return s->closing ? NGX_ERROR : NGX_OK;
}


/*
 * The peer half-closed (TCP): what it sent is parsed already; the requests
 * in flight are answered (their RECEIPTs written), then the connection is
 * closed, as after a DISCONNECT without a receipt. Frames that wait for a
 * SUBSCRIBE's check are dropped with it.
 */

static void
ngx_chat_session_on_eof(ngx_chat_transport_t *t)
{
    ngx_chat_session_t  *s = t->data;

    if (s->closing) {
        return;
    }

    if (!s->connected || s->nops == 0) {
        ngx_chat_transport_close(t, NGX_CHAT_WS_CLOSE_NORMAL, NULL);
        return;
    }

    s->disconnecting = 1;
}


static void
ngx_chat_session_on_closed(ngx_chat_transport_t *t)
{
    ngx_chat_session_t  *s = t->data;

    ngx_queue_t    *q;
    ngx_chat_op_t  *op;

    s->closing = 1;

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    while (!ngx_queue_empty(&s->ops)) {
        q = ngx_queue_head(&s->ops);
        op = ngx_queue_data(q, ngx_chat_op_t, link);
        ngx_queue_remove(q);
        s->nops--;
        op->cancel(op);
    }

    ngx_chat_session_tx_free_all(s);

    while (s->nsubs) {
        ngx_chat_session_sub_free(s, &s->subs[s->nsubs - 1]);
    }

    if (s->connected) {
        ngx_chat_session_closed(s);

        s->connected = 0;
        ngx_chat_metric_gauge_add(NGX_CHAT_G_SESSIONS, -1);
    }

    if (s->in) {
        ngx_free(s->in);
        s->in = NULL;
    }

    if (s->subs) {
        ngx_free(s->subs);
    }

    if (s->id.user.data) {
        ngx_free(s->id.user.data);
    }

    if (s->disconnect_receipt.data) {
        ngx_free(s->disconnect_receipt.data);
    }

    if (s->connect_receipt.data) {
        ngx_free(s->connect_receipt.data);
    }

    t->data = NULL;
    t->on_data = NULL;
    t->on_message_end = NULL;
    t->on_eof = NULL;
    t->on_closed = NULL;

    ngx_free(s);
}


/* s->id: a copy of id in one allocation of its own (user, then name) */

static ngx_int_t
ngx_chat_session_set_id(ngx_chat_session_t *s, ngx_chat_identity_t *id)
{
    u_char  *p;

    p = ngx_alloc(id->user.len + id->name.len + 1, s->log);
    if (p == NULL) {
        return NGX_ERROR;
    }

    if (s->id.user.data) {
        ngx_free(s->id.user.data);
    }

    s->id.user.data = p;
    s->id.user.len = id->user.len;
    p = ngx_cpymem(p, id->user.data, id->user.len);

    s->id.name.data = p;
    s->id.name.len = id->name.len;
    p = ngx_cpymem(p, id->name.data, id->name.len);
    *p = '\0';

    return NGX_OK;
}


/* a token of CONNECT: verified with a pool that lives for the call */

static ngx_int_t
ngx_chat_session_token(ngx_chat_session_t *s, u_char *token, size_t len,
    const char **err)
{
    ngx_int_t             rc;
    ngx_pool_t           *pool;
    ngx_chat_identity_t   id;

    pool = ngx_create_pool(512, s->log);
    if (pool == NULL) {
        *err = "out of memory";
        return NGX_ERROR;
    }

    ngx_memzero(&id, sizeof(ngx_chat_identity_t));

    rc = ngx_chat_identity_from_token(pool, s->lcf, token, len, &id, err);

    if (rc == NGX_OK && ngx_chat_session_set_id(s, &id) != NGX_OK) {
        *err = "out of memory";
        rc = NGX_ERROR;
    }

    ngx_destroy_pool(pool);

    return rc;
}


void
ngx_chat_session_op_start(ngx_chat_session_t *s, ngx_chat_op_t *op,
    ngx_chat_op_cancel_pt cancel)
{
    op->session = s;
    op->cancel = cancel;
    ngx_queue_insert_tail(&s->ops, &op->link);
    s->nops++;
}


void
ngx_chat_session_op_done(ngx_chat_session_t *s, ngx_chat_op_t *op)
{
    ngx_queue_remove(&op->link);
    s->nops--;

    /* receipts whose requests are all done now */

    ngx_chat_session_barriers_done(s);

    if (s->disconnecting && s->nops == 0 && !s->closing) {
        if (s->disconnect_receipt.len) {
            ngx_chat_session_receipt(s, &s->disconnect_receipt);
        }

        ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_NORMAL, NULL);
    }
}


/*
 * Bytes of the client wait in the socket, unread: a worker that had no CPU
 * for longer than the grace (a machine under load, a storm of handshakes)
 * runs its expired timers before it reads every ready connection (epoll
 * hands it a few hundred at a time), and the client is not silent.
 */

static ngx_uint_t
ngx_chat_session_input_waits(ngx_chat_session_t *s)
{
    u_char             byte;
    ngx_connection_t  *c;

    c = s->t->connection;

    if (c == NULL || c->fd == (ngx_socket_t) -1) {
        return 0;
    }

    return recv(c->fd, &byte, 1, MSG_PEEK) == 1;
}


static void
ngx_chat_session_timer_handler(ngx_event_t *ev)
{
    ngx_chat_session_t  *s = ev->data;

    ngx_msec_t  now, next, idle;

    if (s->connecting) {
        ngx_chat_session_connect_resume(s);
        return;
    }

    if (!s->connected) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: no CONNECT within %M ms", s->lcf->connect_timeout);
        ngx_chat_session_error(s, "CONNECT timed out", NULL, NULL,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return;
    }

    now = ngx_current_msec;
    next = NGX_MAX_INT32_VALUE;

    if (s->hb_recv) {
        idle = now - s->t->last_read;

        if (idle < s->hb_recv + s->lcf->heartbeat_grace) {
            next = s->hb_recv + s->lcf->heartbeat_grace - idle;

        } else if (ngx_chat_session_input_waits(s)) {
            /* its bytes are there, not read yet: look again soon */
            next = NGX_CHAT_SESSION_RECHECK;

        } else {
            ngx_log_error(NGX_LOG_INFO, s->log, 0,
                          "chat: client silent for %M ms, heart-beat missed",
                          idle);
            ngx_chat_session_error(s, "heart-beat timeout", NULL, NULL,
                                   NGX_CHAT_WS_CLOSE_POLICY);
            return;
        }

    } else if (s->lcf->idle_timeout) {
        idle = now - s->t->last_read;

        if (idle >= s->lcf->idle_timeout) {
            ngx_log_error(NGX_LOG_INFO, s->log, 0,
                          "chat: client silent for %M ms without "
                          "heart-beats, idle timeout", idle);
            ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_IDLE, 1);
            ngx_chat_session_error(s, "idle timeout",
                                   "no frame within chat_idle_timeout and "
                                   "no heart-beats: send heart-beats to "
                                   "stay connected", NULL,
                                   NGX_CHAT_WS_CLOSE_POLICY);
            return;
        }

        next = s->lcf->idle_timeout - idle;
    }

    if (s->hb_send) {
        idle = now - s->t->last_write;

        if (idle + 10 >= s->hb_send) {
            if (ngx_chat_session_write(s, (u_char *) "\n", 1, NULL)
                != NGX_OK)
            {
                return;
            }

            idle = 0;
        }

        next = ngx_min(next, s->hb_send - idle);
    }

    if (!ngx_exiting && next != NGX_MAX_INT32_VALUE) {
        ngx_add_timer(&s->timer, next);
    }
}
