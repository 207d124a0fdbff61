/* ngx_chat_sockjs_ws.c: SockJS framing on a WebSocket (o, a[...], c[...]),
 * between the WebSocket transport and the session. */

#include "ngx_chat.h"
#include "ngx_chat_sockjs_int.h"
#include "ngx_chat_ws.h"


/* SockJS framing on a WebSocket: between it and the session */
typedef struct {
    ngx_chat_transport_t   t;           /* the session's; first */
    ngx_chat_ws_t         *ws;
    u_char                *in;          /* the message being received */
    size_t                 in_len;
    size_t                 in_size;
    ngx_event_t            heartbeat;   /* "h" when quiet for a while */
    unsigned               closing:1;
} ngx_chat_sockjs_ws_t;


#define NGX_CHAT_SOCKJS_WS_HEARTBEAT  25000


static void ngx_chat_sockjs_ws_on_data(ngx_chat_transport_t *wt,
    u_char *data, size_t len);
static void ngx_chat_sockjs_ws_on_message_end(ngx_chat_transport_t *wt);
static void ngx_chat_sockjs_ws_on_closed(ngx_chat_transport_t *wt);
static ngx_int_t ngx_chat_sockjs_ws_send(ngx_chat_transport_t *t,
    u_char *head, size_t head_len, ngx_chat_blob_t *body);
static void ngx_chat_sockjs_ws_close(ngx_chat_transport_t *t, uint16_t code,
    const char *reason);
static void ngx_chat_sockjs_ws_heartbeat(ngx_event_t *ev);


ngx_int_t
ngx_chat_sockjs_ws_open(ngx_chat_transport_t *wt)
{
    ngx_int_t              rc;
    ngx_chat_sockjs_ws_t  *a;

    a = ngx_calloc(sizeof(ngx_chat_sockjs_ws_t), wt->log);
    if (a == NULL) {
        return NGX_ERROR;
    }

    a->ws = (ngx_chat_ws_t *) wt;
    a->t.request = wt->request;
    a->t.log = wt->log;
    a->t.lcf = wt->lcf;
    a->t.connection = wt->connection;
    a->t.kind = NGX_CHAT_TRANSPORT_SOCKJS;
    a->t.protocol = wt->protocol;
    a->t.send = ngx_chat_sockjs_ws_send;
    a->t.close = ngx_chat_sockjs_ws_close;
    a->t.last_read = wt->last_read;
    a->t.last_write = wt->last_write;

    if (ngx_chat_ws_send(&a->ws->t, (u_char *) "o", 1, NULL) != NGX_OK) {
        ngx_free(a);
        return NGX_ERROR;
    }

    rc = ngx_chat_transport_open ? ngx_chat_transport_open(&a->t)
                                 : NGX_ERROR;
    a->t.request = NULL;

    if (rc != NGX_OK) {
        ngx_free(a);
        return NGX_ERROR;
    }

    a->heartbeat.handler = ngx_chat_sockjs_ws_heartbeat;
    a->heartbeat.data = a;
    a->heartbeat.log = wt->log;
    a->heartbeat.cancelable = 1;
    ngx_add_timer(&a->heartbeat, NGX_CHAT_SOCKJS_WS_HEARTBEAT);

    wt->data = a;
    wt->on_data = ngx_chat_sockjs_ws_on_data;
    wt->on_message_end = ngx_chat_sockjs_ws_on_message_end;
    wt->on_closed = ngx_chat_sockjs_ws_on_closed;

    return NGX_OK;
}


static void
ngx_chat_sockjs_ws_on_data(ngx_chat_transport_t *wt, u_char *data,
    size_t len)
{
    ngx_chat_sockjs_ws_t  *a = wt->data;

    u_char  *p;
    size_t   size;

    /* the WebSocket reader keeps a message under chat_max_message_size */

    if (a->in_len + len > a->in_size) {
        size = ngx_max(a->in_size * 2, 1024);

        while (size < a->in_len + len) {
            size *= 2;
        }

        p = ngx_alloc(size, wt->log);
        if (p == NULL) {
            ngx_chat_ws_close(&a->ws->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return;
        }

        if (a->in_len) {
            ngx_memcpy(p, a->in, a->in_len);
        }

        if (a->in) {
            ngx_free(a->in);
        }

        a->in = p;
        a->in_size = size;
    }

    ngx_memcpy(a->in + a->in_len, data, len);
    a->in_len += len;
    a->t.last_read = wt->last_read;
}


static void
ngx_chat_sockjs_ws_on_message_end(ngx_chat_transport_t *wt)
{
    ngx_chat_sockjs_ws_t  *a = wt->data;

    size_t       len;
    const char  *err;

    len = a->in_len;
    a->in_len = 0;

    if (len == 0) {
        /* SockJS: an empty message is ignored */
        return;
    }

    if (ngx_chat_sockjs_deliver(&a->t, a->in, len, &err) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, wt->log, 0, "SockJS WebSocket: %s", err);
        ngx_chat_ws_close(&a->ws->t, NGX_CHAT_WS_CLOSE_PROTOCOL, err);
    }

    if (a->in_size > 4096) {
        ngx_free(a->in);
        a->in = NULL;
        a->in_size = 0;
    }
}


static void
ngx_chat_sockjs_ws_on_closed(ngx_chat_transport_t *wt)
{
    ngx_chat_sockjs_ws_t  *a = wt->data;

    if (a->t.on_closed) {
        a->t.on_closed(&a->t);
    }

    if (a->heartbeat.timer_set) {
        ngx_del_timer(&a->heartbeat);
    }

    if (a->in) {
        ngx_free(a->in);
    }

    wt->data = NULL;
    wt->on_data = NULL;
    wt->on_message_end = NULL;
    wt->on_closed = NULL;

    ngx_free(a);
}


static ngx_int_t
ngx_chat_sockjs_ws_send(ngx_chat_transport_t *t, u_char *head,
    size_t head_len, ngx_chat_blob_t *body)
{
    ngx_chat_sockjs_ws_t *a = (ngx_chat_sockjs_ws_t *) t;

    u_char     *f, *p;
    size_t      len;
    ngx_int_t   rc;

    if (a->closing) {
        return NGX_ERROR;
    }

    len = 4 + ngx_chat_sockjs_quote_len(head, head_len)
          + (body ? ngx_chat_sockjs_quote_len(body->data, body->len) : 0);

    f = ngx_alloc(len, t->log);
    if (f == NULL) {
        ngx_chat_ws_close(&a->ws->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    p = ngx_cpymem(f, "a[\"", 3);
    p = ngx_chat_sockjs_quote(p, head, head_len);

    if (body) {
        p = ngx_chat_sockjs_quote(p, body->data, body->len);
    }

    p = ngx_cpymem(p, "\"]", 2);

    rc = ngx_chat_ws_send(&a->ws->t, f, p - f, NULL);
    ngx_free(f);

    t->last_write = ngx_current_msec;

    return rc;
}


static void
ngx_chat_sockjs_ws_close(ngx_chat_transport_t *t, uint16_t code,
    const char *reason)
{
    ngx_chat_sockjs_ws_t *a = (ngx_chat_sockjs_ws_t *) t;

    u_char  *p;
    u_char   frame[32 + 6 * 125];

    if (a->closing) {
        return;
    }

    a->closing = 1;

    if (reason && ngx_strlen(reason) > 120) {
        reason = NULL;
    }

    p = ngx_chat_sockjs_close_frame(frame,
                                    code == NGX_CHAT_WS_CLOSE_NORMAL
                                    ? 3000 : code,
                                    reason ? reason
                                    : (code == NGX_CHAT_WS_CLOSE_NORMAL
                                       ? "Go away!" : ""));

    (void) ngx_chat_ws_send(&a->ws->t, frame, p - frame, NULL);

    ngx_chat_ws_close(&a->ws->t, code, reason);
}


/* SockJS's heartbeat frame, when nothing else went out for a while */

static void
ngx_chat_sockjs_ws_heartbeat(ngx_event_t *ev)
{
    ngx_chat_sockjs_ws_t  *a = ev->data;

    ngx_msec_t  idle;

    if (a->closing || ngx_exiting) {
        return;
    }

    idle = ngx_current_msec - a->t.last_write;

    if (idle + 10 >= NGX_CHAT_SOCKJS_WS_HEARTBEAT) {
        if (ngx_chat_ws_send(&a->ws->t, (u_char *) "h", 1, NULL) != NGX_OK) {
            return;
        }

        a->t.last_write = ngx_current_msec;
        idle = 0;
    }

    ngx_add_timer(&a->heartbeat, NGX_CHAT_SOCKJS_WS_HEARTBEAT - idle);
}
