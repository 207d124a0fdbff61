/* ngx_chat_session.c: the STOMP session state machine on a WebSocket. */

#include "ngx_chat_session_int.h"
#include "ngx_chat_presence.h"
#include "ngx_chat_receipts.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_IN_INITIAL        1024
#define NGX_CHAT_SUBS_INITIAL      2      /* subscriptions allocated first;
                                             doubled up to the limit */
#define NGX_CHAT_PAUSED_FRAMES     4      /* frames' worth of bytes kept
                                             while parsing waits */


typedef struct {
    const char               *name;
    size_t                    len;
    ngx_chat_dest_e           dest;
} ngx_chat_dest_name_t;


static ngx_chat_dest_name_t  ngx_chat_dest_names[] = {
    { "/user/queue/messages", sizeof("/user/queue/messages") - 1,
      NGX_CHAT_DEST_MESSAGES },
    { "/user/queue/receipts", sizeof("/user/queue/receipts") - 1,
      NGX_CHAT_DEST_RECEIPTS },
    { "/user/queue/typing", sizeof("/user/queue/typing") - 1,
      NGX_CHAT_DEST_TYPING },
    { "/user/queue/events", sizeof("/user/queue/events") - 1,
      NGX_CHAT_DEST_EVENTS },
    { "/user/queue/errors", sizeof("/user/queue/errors") - 1,
      NGX_CHAT_DEST_ERRORS },
    { NULL, 0, NGX_CHAT_DEST_NONE }
};


static void ngx_chat_session_on_data(ngx_chat_ws_t *ws, u_char *data,
    size_t len);
static void ngx_chat_session_on_message_end(ngx_chat_ws_t *ws);
static void ngx_chat_session_on_closed(ngx_chat_ws_t *ws);
static void ngx_chat_session_parse(ngx_chat_session_t *s);
static ngx_int_t ngx_chat_session_frame(ngx_chat_session_t *s,
    ngx_chat_stomp_frame_t *f);
static ngx_int_t ngx_chat_session_connect(ngx_chat_session_t *s,
    ngx_chat_stomp_frame_t *f);
static ngx_int_t ngx_chat_session_subscribe(ngx_chat_session_t *s,
    ngx_chat_stomp_frame_t *f);
static ngx_int_t ngx_chat_session_unsubscribe(ngx_chat_session_t *s,
    ngx_chat_stomp_frame_t *f);
static void ngx_chat_session_timer_handler(ngx_event_t *ev);
static void ngx_chat_session_sub_free(ngx_chat_session_t *s,
    ngx_chat_sub_t *sub);
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
ngx_chat_session_start(ngx_chat_ws_t *ws)
{
    ngx_chat_session_t   *s;
    ngx_chat_identity_t   id;

    s = ngx_calloc(sizeof(ngx_chat_session_t), ws->connection->log);
    if (s == NULL) {
        return NGX_ERROR;
    }

    s->ws = ws;
    s->lcf = ws->lcf;
    s->log = ws->connection->log;

    /* credentials of the handshake: a query token or Authorization */
    ngx_memzero(&id, sizeof(ngx_chat_identity_t));

    s->handshake_auth = ngx_chat_identity_from_request(ws->request, s->lcf,
                                                       1, &id,
                                                       &s->handshake_err);

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

    ws->data = s;
    ws->on_data = ngx_chat_session_on_data;
    ws->on_message_end = ngx_chat_session_on_message_end;
    ws->on_closed = ngx_chat_session_on_closed;

    s->timer.handler = ngx_chat_session_timer_handler;
    s->timer.data = s;
    s->timer.log = s->log;
    s->timer.cancelable = 1;

    ngx_add_timer(&s->timer, s->lcf->connect_timeout);

    return NGX_OK;
}


static void
ngx_chat_session_on_data(ngx_chat_ws_t *ws, u_char *data, size_t len)
{
    ngx_chat_session_t  *s = ws->data;

    u_char  *p;
    size_t   n, size, limit;

    /*
     * The buffer holds at most one frame (plus trailing EOLs): the bytes
     * are taken in pieces that fit and parsed as they come, so that a
     * WebSocket message may carry any number of frames under the limit.
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
                ngx_chat_ws_close(ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
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
ngx_chat_session_on_message_end(ngx_chat_ws_t *ws)
{
    ngx_chat_session_t  *s = ws->data;

    /* frames may span messages: nothing to do but free an idle buffer */

    if (s->in_len == 0 && s->in != NULL) {
        ngx_free(s->in);
        s->in = NULL;
        s->in_size = 0;
    }
}


static void
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

    ngx_chat_header_value(f, "receipt", &receipt);

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
        && ngx_chat_header_value(f, "transaction", &tx_name) == NGX_OK)
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
        if (ngx_chat_header_value(f, "destination", &destination) != NGX_OK) {
            ngx_chat_session_error(s, "SEND without destination", NULL,
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
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
        if (ngx_chat_header_value(f, "id", &id) != NGX_OK
            && ngx_chat_header_value(f, "message-id", &id) != NGX_OK)
        {
            ngx_chat_session_error(s, "ACK without id", NULL, &receipt,
                                   NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }

        ngx_chat_header_value(f, "subscription", &sub);
        rc = ngx_chat_session_ack(s, f->command, &id, &sub);
        break;

    case NGX_CHAT_STOMP_BEGIN:
    case NGX_CHAT_STOMP_COMMIT:
    case NGX_CHAT_STOMP_ABORT:
        if (ngx_chat_header_value(f, "transaction", &tx_name) != NGX_OK) {
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
            ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_NORMAL, NULL);
            return NGX_ERROR;
        }

        s->disconnect_receipt.data = ngx_alloc(receipt.len, s->log);
        if (s->disconnect_receipt.data == NULL) {
            ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }

        ngx_memcpy(s->disconnect_receipt.data, receipt.data, receipt.len);
        s->disconnect_receipt.len = receipt.len;

        if (s->nops == 0) {
            ngx_chat_session_receipt(s, &s->disconnect_receipt);
            ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_NORMAL, NULL);
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
    u_char      *p, *head;
    size_t       len;
    ngx_str_t    accept, passcode, login, auth, hb, receipt;
    ngx_int_t    rc;
    ngx_msec_t   cx, cy;
    const char  *err;
    u_char       hbuf[64];

    ngx_chat_header_value(f, "receipt", &receipt);

    /* version */

    if (ngx_chat_header_value(f, "accept-version", &accept) == NGX_OK) {
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

        if (ngx_chat_header_value(f, "passcode", &passcode) == NGX_OK
            && passcode.len)
        {
            rc = ngx_chat_session_token(s, passcode.data, passcode.len,
                                        &err);

        } else if (ngx_chat_header_value(f, "Authorization", &auth) == NGX_OK
                   || ngx_chat_header_value(f, "authorization", &auth)
                      == NGX_OK)
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
    }

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: unauthorized STOMP session: %s", err);
        ngx_chat_session_error(s, "unauthorized", err, &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    if (ngx_chat_header_value(f, "login", &login) == NGX_OK
        && login.len
        && (login.len != s->id.user.len
            || ngx_strncmp(login.data, s->id.user.data, login.len) != 0)
        && s->lcf->identity == NULL)
    {
        ngx_chat_session_error(s, "unauthorized",
                               "login does not match the token", &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    /* heart-beats: "cx,cy" of the client against ours */

    cx = 0;
    cy = 0;

    if (ngx_chat_header_value(f, "heart-beat", &hb) == NGX_OK
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

    if (ngx_chat_messaging_register(s) != NGX_OK) {
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    s->connected = 1;
    ngx_chat_metric_inc(NGX_CHAT_M_SESSIONS, 1);
    ngx_chat_metric_gauge_add(NGX_CHAT_G_SESSIONS, 1);

    if (ngx_chat_presence_online(s) != NGX_OK) {
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    ngx_chat_identity_ensure_user(&s->id, s->log);

    /* CONNECTED */

    hb.data = hbuf;
    hb.len = ngx_sprintf(hbuf, "%M,%M", s->lcf->heartbeat,
                         s->lcf->heartbeat) - hbuf;

    len = sizeof("CONNECTED\nversion:1.x\nheart-beat:\nsession:\nserver:"
                 NGX_CHAT_SERVER "\nuser-name:\n\n") + hb.len
          + s->session_id_len + s->id.user.len;

    head = ngx_alloc(len, s->log);
    if (head == NULL) {
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    p = ngx_sprintf(head, "CONNECTED\nversion:1.%ui\nheart-beat:%V\n"
                    "session:%*s\nserver:" NGX_CHAT_SERVER
                    "\nuser-name:%V\n\n",
                    s->version - 10, &hb, s->session_id_len, s->session_id,
                    &s->id.user);
    *p++ = '\0';

    rc = ngx_chat_session_write(s, head, p - head, NULL);
    ngx_free(head);

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    if (receipt.len) {
        ngx_chat_session_receipt(s, &receipt);
    }

    /* the connect timer becomes the heart-beat timer */

    if (s->timer.timer_set) {
        ngx_del_timer(&s->timer);
    }

    /* (ngx_min() does not parenthesize its arguments: no ?: inside) */

    if (s->hb_send && s->hb_recv) {
        ngx_add_timer(&s->timer, ngx_min(s->hb_send, s->hb_recv));

    } else if (s->hb_send || s->hb_recv) {
        ngx_add_timer(&s->timer, s->hb_send ? s->hb_send : s->hb_recv);
    }

    return NGX_OK;
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


static ngx_int_t
ngx_chat_session_subscribe(ngx_chat_session_t *s, ngx_chat_stomp_frame_t *f)
{
    ngx_str_t                destination, id, ack, receipt, user;
    ngx_uint_t               i, n, mode;
    ngx_chat_sub_t          *sub;
    ngx_chat_dest_e          dest;
    ngx_chat_dest_name_t    *dn;

    ngx_chat_header_value(f, "receipt", &receipt);

    if (ngx_chat_header_value(f, "destination", &destination) != NGX_OK) {
        ngx_chat_session_error(s, "SUBSCRIBE without destination", NULL,
                               &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    if (ngx_chat_header_value(f, "id", &id) != NGX_OK) {
        if (s->version >= 11) {
            ngx_chat_session_error(s, "SUBSCRIBE without id", NULL,
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }

        id = destination;     /* STOMP 1.0: the destination names it */
    }

    mode = NGX_CHAT_ACK_AUTO;

    if (ngx_chat_header_value(f, "ack", &ack) == NGX_OK) {
        if (ack.len == 4 && ngx_strncmp(ack.data, "auto", 4) == 0) {
            mode = NGX_CHAT_ACK_AUTO;

        } else if (ack.len == 6 && ngx_strncmp(ack.data, "client", 6) == 0) {
            mode = NGX_CHAT_ACK_CLIENT;

        } else if (ack.len == 17
                   && ngx_strncmp(ack.data, "client-individual", 17) == 0)
        {
            mode = NGX_CHAT_ACK_INDIVIDUAL;

        } else {
            ngx_chat_session_error(s, "invalid ack mode", NULL, &receipt,
                                   NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }
    }

    dest = NGX_CHAT_DEST_NONE;

    for (dn = ngx_chat_dest_names; dn->name; dn++) {
        if (destination.len == dn->len
            && ngx_strncmp(destination.data, dn->name, dn->len) == 0)
        {
            dest = dn->dest;
            break;
        }
    }

    /* /topic/presence.<userId>: who may read it is checked below */

    if (destination.len > sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1
        && destination.len <= sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1
                              + NGX_CHAT_USER_ID_MAX
        && ngx_strncmp(destination.data, NGX_CHAT_PRESENCE_TOPIC,
                       sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1) == 0)
    {
        dest = NGX_CHAT_DEST_PRESENCE;
    }

    if (dest == NGX_CHAT_DEST_NONE) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: SUBSCRIBE to forbidden destination \"%V\"",
                      &destination);
        ngx_chat_session_error(s, "forbidden destination",
                               "this destination does not exist or may not "
                               "be read by this user", &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    for (i = 0; i < s->nsubs; i++) {
        if (s->subs[i].id.len == id.len
            && ngx_strncmp(s->subs[i].id.data, id.data, id.len) == 0)
        {
            ngx_chat_session_error(s, "duplicate subscription id", NULL,
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }
    }

    if (s->nsubs >= ngx_min(s->lcf->max_subscriptions, NGX_CHAT_SUBS_MAX)) {
        ngx_chat_session_error(s, "too many subscriptions", NULL, &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    if (s->nsubs == s->subs_size) {
        /* the array grows: nothing keeps pointers to its elements */

        n = s->subs_size ? s->subs_size * 2 : NGX_CHAT_SUBS_INITIAL;
        n = ngx_min(n, s->lcf->max_subscriptions);
        n = ngx_min(n, NGX_CHAT_SUBS_MAX);

        sub = ngx_alloc(n * sizeof(ngx_chat_sub_t), s->log);
        if (sub == NULL) {
            ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }

        if (s->subs) {
            ngx_memcpy(sub, s->subs, s->nsubs * sizeof(ngx_chat_sub_t));
            ngx_free(s->subs);
        }

        s->subs = sub;
        s->subs_size = n;
    }

    sub = &s->subs[s->nsubs];
    ngx_memzero(sub, sizeof(ngx_chat_sub_t));

    /* id and destination live in a small allocation of their own */
    sub->id.data = ngx_alloc(id.len + destination.len + 1, s->log);
    if (sub->id.data == NULL) {
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    sub->id.len = id.len;
    ngx_memcpy(sub->id.data, id.data, id.len);
    sub->destination.data = sub->id.data + id.len;
    sub->destination.len = destination.len;
    ngx_memcpy(sub->destination.data, destination.data, destination.len);
    sub->dest = dest;
    sub->ack = mode;

    if (mode != NGX_CHAT_ACK_AUTO) {
        sub->pending = ngx_alloc(NGX_CHAT_PENDING_ACKS
                                 * sizeof(ngx_chat_pending_t), s->log);
        if (sub->pending == NULL) {
            ngx_free(sub->id.data);
            ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }
    }

    s->nsubs++;
    s->dest_subs[dest]++;
    ngx_chat_metric_gauge_add(NGX_CHAT_G_SUBSCRIPTIONS, 1);

    if (dest != NGX_CHAT_DEST_PRESENCE) {
        return NGX_OK;
    }

    /*
     * The channel is followed at once, the events wait for the snapshot;
     * the session's next frames wait for the check.
     */

    sub->waiting = 1;

    user.data = sub->destination.data + sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1;
    user.len = sub->destination.len - (sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1);

    if (ngx_chat_presence_watch(s, &user) != NGX_OK) {
        s->dest_subs[dest]--;
        s->nsubs--;
        ngx_chat_metric_gauge_add(NGX_CHAT_G_SUBSCRIPTIONS, -1);
        ngx_free(sub->pending);
        ngx_free(sub->id.data);
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    if (ngx_chat_presence_check(s, &sub->id, &user, &receipt) != NGX_OK) {
        ngx_chat_session_sub_free(s, sub);
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    s->paused = 1;

    return NGX_AGAIN;
}


/* drops a subscription (which then is replaced by the last one) */

static void
ngx_chat_session_sub_free(ngx_chat_session_t *s, ngx_chat_sub_t *sub)
{
    ngx_str_t  user;

    if (sub->dest == NGX_CHAT_DEST_PRESENCE) {
        user.data = sub->destination.data
                    + sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1;
        user.len = sub->destination.len
                   - (sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1);
        ngx_chat_presence_unwatch(s, &user);
    }

    s->dest_subs[sub->dest]--;
    ngx_chat_metric_gauge_add(NGX_CHAT_G_SUBSCRIPTIONS, -1);

    if (sub->pending) {
        ngx_free(sub->pending);
    }

    ngx_free(sub->id.data);

    *sub = s->subs[--s->nsubs];
}


static ngx_int_t
ngx_chat_session_unsubscribe(ngx_chat_session_t *s, ngx_chat_stomp_frame_t *f)
{
    ngx_str_t   id, receipt;
    ngx_uint_t  i;

    ngx_chat_header_value(f, "receipt", &receipt);

    if (ngx_chat_header_value(f, "id", &id) != NGX_OK
        && ngx_chat_header_value(f, "destination", &id) != NGX_OK)
    {
        ngx_chat_session_error(s, "UNSUBSCRIBE without id", NULL, &receipt,
                               NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    for (i = 0; i < s->nsubs; i++) {
        if (s->subs[i].id.len == id.len
            && ngx_strncmp(s->subs[i].id.data, id.data, id.len) == 0)
        {
            ngx_chat_session_sub_free(s, &s->subs[i]);
            return NGX_OK;
        }
    }

    ngx_chat_session_error(s, "no such subscription", NULL, &receipt,
                           NGX_CHAT_WS_CLOSE_PROTOCOL);
    return NGX_ERROR;
}


ngx_int_t
ngx_chat_session_ack(ngx_chat_session_t *s, ngx_chat_stomp_command_e cmd,
    ngx_str_t *id, ngx_str_t *subscription)
{
    uint64_t             n;
    ngx_uint_t           i, j, k, m;
    ngx_chat_sub_t      *sub;
    ngx_chat_pending_t  *pe;

    n = 0;

    for (i = 0; i < id->len; i++) {
        if (id->data[i] < '0' || id->data[i] > '9' || n > NGX_MAX_INT_T_VALUE)
        {
            n = 0;
            break;
        }

        n = n * 10 + (id->data[i] - '0');
    }

    for (i = 0; i < s->nsubs; i++) {
        sub = &s->subs[i];

        for (j = 0; j < sub->npending; j++) {
            if (sub->pending[j].ack != n) {
                continue;
            }

            /*
             * client mode acknowledges everything up to this one,
             * client-individual (and any NACK) only this one; an ACKed
             * message is delivered, a NACKed one is not
             */

            m = j;

            if (sub->ack == NGX_CHAT_ACK_CLIENT
                && cmd == NGX_CHAT_STOMP_ACK)
            {
                m = 0;
            }

            for (k = m; cmd == NGX_CHAT_STOMP_ACK && k <= j; k++) {
                pe = &sub->pending[k];

                if (pe->seq) {
                    ngx_chat_receipts_delivered(&s->id.user, pe->conv,
                                                pe->conv_len, pe->seq);
                }
            }

            if (m == j) {
                ngx_memmove(&sub->pending[j], &sub->pending[j + 1],
                            (sub->npending - j - 1)
                            * sizeof(ngx_chat_pending_t));
                sub->npending--;
                return NGX_OK;
            }

            k = j + 1;

            ngx_memmove(&sub->pending[0], &sub->pending[k],
                        (sub->npending - k) * sizeof(ngx_chat_pending_t));
            sub->npending -= k;

            return NGX_OK;
        }
    }

    /* already acknowledged (cumulatively) or never sent: harmless */

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "chat: ACK of unknown id \"%V\"", id);

    return NGX_OK;
}


ngx_int_t
ngx_chat_session_send(ngx_chat_session_t *s, ngx_str_t *destination,
    u_char *body, size_t len, ngx_str_t *receipt)
{
    ngx_int_t  rc;

    rc = ngx_chat_messaging_send(s, destination, body, len, receipt);

    if (rc == NGX_DECLINED) {
        ngx_chat_session_error(s, "unknown destination",
                               "SEND goes to /app/chat.send, "
                               "/app/chat.typing or /app/chat.read",
                               receipt, NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    if (rc != NGX_OK) {
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    return s->closing ? NGX_ERROR : NGX_OK;
}


static void
ngx_chat_session_on_closed(ngx_chat_ws_t *ws)
{
    ngx_chat_session_t  *s = ws->data;

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
        ngx_chat_presence_offline(s);
        ngx_chat_messaging_unregister(s);
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

    ws->data = NULL;
    ws->on_data = NULL;
    ws->on_message_end = NULL;
    ws->on_closed = NULL;

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
        ngx_chat_session_receipt(s, &s->disconnect_receipt);
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_NORMAL, NULL);
    }
}


void
ngx_chat_session_presence_ready(ngx_chat_session_t *s, ngx_str_t *sub_id,
    ngx_int_t rc, ngx_chat_blob_t *body, ngx_str_t *receipt)
{
    ngx_uint_t       i;
    ngx_chat_sub_t  *sub;

    s->paused = 0;

    if (s->closing) {
        return;
    }

    sub = NULL;

    for (i = 0; i < s->nsubs; i++) {
        if (s->subs[i].id.len == sub_id->len
            && ngx_strncmp(s->subs[i].id.data, sub_id->data, sub_id->len)
               == 0)
        {
            sub = &s->subs[i];
            break;
        }
    }

    if (sub == NULL) {
        /* cannot be: frames waited */
        ngx_chat_ws_close(s->ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return;
    }

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: SUBSCRIBE to \"%V\" refused: no shared "
                      "conversation", &sub->destination);
        ngx_chat_session_sub_free(s, sub);
        ngx_chat_session_error(s, "forbidden destination",
                               "this destination does not exist or may not "
                               "be read by this user", receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return;
    }

    if (rc != NGX_OK) {
        ngx_chat_session_sub_free(s, sub);
        ngx_chat_session_reject(s, "unavailable",
                                "presence is unavailable, subscribe again",
                                NULL, receipt);

    } else {
        if (receipt && receipt->len) {
            ngx_chat_session_receipt(s, receipt);
        }

        if (body) {
            ngx_chat_session_deliver_to(s, NGX_CHAT_DEST_PRESENCE,
                                        &sub->destination, &sub->id, NULL, 0,
                                        body);

        } else {
            sub->waiting = 0;
        }
    }

    if (s->closing) {
        return;
    }

    /* the frames that waited */

    ngx_chat_session_parse(s);
}


static void
ngx_chat_session_timer_handler(ngx_event_t *ev)
{
    ngx_chat_session_t  *s = ev->data;

    ngx_msec_t  now, next, idle;

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
        idle = now - s->ws->last_read;

        if (idle >= s->hb_recv + s->lcf->heartbeat_grace) {
            ngx_log_error(NGX_LOG_INFO, s->log, 0,
                          "chat: client silent for %M ms, heart-beat missed",
                          idle);
            ngx_chat_session_error(s, "heart-beat timeout", NULL, NULL,
                                   NGX_CHAT_WS_CLOSE_POLICY);
            return;
        }

        next = s->hb_recv + s->lcf->heartbeat_grace - idle;
    }

    if (s->hb_send) {
        idle = now - s->ws->last_write;

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


ngx_int_t
ngx_chat_header_value(ngx_chat_stomp_frame_t *f, const char *name,
    ngx_str_t *value)
{
    ngx_chat_stomp_header_t  *h;

    h = ngx_chat_stomp_header(f, name);

    if (h == NULL) {
        ngx_str_null(value);
        return NGX_DECLINED;
    }

    value->data = h->value;
    value->len = h->value_len;

    return NGX_OK;
}
