/* ngx_chat_sockjs_http.c: SockJS's HTTP transports (xhr, xhr_streaming,
 * eventsource, xhr_send): a session that outlives its requests. */

#include "ngx_chat.h"
#include "ngx_chat_sockjs_int.h"


/*
 * An HTTP session (ngx_chat_sockjs_t) is a transport that outlives its
 * requests: frames the session sends wait in sj->out (the JSON strings of
 * an "a" frame, comma-separated) until a receiving request (xhr,
 * xhr_streaming, eventsource) is open; xhr_send requests hand the
 * client's frames to the session. With no receiving request for
 * chat_sockjs_disconnect_delay the session ends; while one is open an "h"
 * goes out every NGX_CHAT_SOCKJS_HEARTBEAT. A streaming request ends after
 * NGX_CHAT_SOCKJS_STREAM_LIMIT bytes: the client opens the next one.
 * Sessions are found by id in a per-worker tree.
 */

#define NGX_CHAT_SOCKJS_HEARTBEAT     25000
#define NGX_CHAT_SOCKJS_STREAM_LIMIT  (128 * 1024)
#define NGX_CHAT_SOCKJS_REASON_MAX    64


typedef struct {
    ngx_chat_transport_t   t;           /* the session's; first */
    ngx_str_node_t         node;        /* in ngx_chat_sockjs_tree */
    u_char                 id[NGX_CHAT_SOCKJS_ID_MAX];

    ngx_http_request_t    *recv;        /* the open receiving request */
    uint64_t               remote;      /* or a forwarder's (non-zero) */
    u_char                 remote_from[NGX_CHAT_SOCKJS_ROUTE_LEN];
    ngx_pool_cleanup_t    *recv_cln;
    ngx_uint_t             recv_kind;
    size_t                 recv_sent;   /* bytes on a streaming one */

    u_char                *out;         /* "msg","msg": not yet sent */
    size_t                 out_len;
    size_t                 out_size;

    ngx_event_t            timer;       /* heartbeat, or expiry */
    ngx_event_t            flush;       /* posted: out to recv */
    ngx_event_t            closed;      /* posted: on_closed */

    uint16_t               close_code;
    u_char                 close_reason[NGX_CHAT_SOCKJS_REASON_MAX];

    unsigned               opened:1;    /* "o" is out */
    unsigned               closing:1;   /* the session closed it */
    unsigned               close_sent:1;
    unsigned               owned:1;     /* chat:sj:<id> names this worker */
} ngx_chat_sockjs_t;

#define ngx_chat_sockjs_attached(sj)  ((sj)->recv != NULL || (sj)->remote)


/* an xhr_send request: its session, found again once the body is read */
typedef struct {
    ngx_str_t              id;
    ngx_chat_loc_conf_t   *lcf;
} ngx_chat_sockjs_ctx_t;


static void ngx_chat_sockjs_xhr_send_body(ngx_http_request_t *r);
static ngx_chat_sockjs_t *ngx_chat_sockjs_lookup(ngx_str_t *id);
static ngx_chat_sockjs_t *ngx_chat_sockjs_create(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_str_t *id, ngx_uint_t owned);
static void ngx_chat_sockjs_free(ngx_chat_sockjs_t *sj);
static ngx_int_t ngx_chat_sockjs_frame(ngx_chat_sockjs_t *sj, u_char *f,
    size_t len);
static void ngx_chat_sockjs_flush(ngx_chat_sockjs_t *sj);
static void ngx_chat_sockjs_finish(ngx_chat_sockjs_t *sj, ngx_int_t rc);
static void ngx_chat_sockjs_recv_cleanup(void *data);
static void ngx_chat_sockjs_flush_handler(ngx_event_t *ev);
static void ngx_chat_sockjs_timer_handler(ngx_event_t *ev);
static void ngx_chat_sockjs_closed_handler(ngx_event_t *ev);
static ngx_int_t ngx_chat_sockjs_send(ngx_chat_transport_t *t, u_char *head,
    size_t head_len, ngx_chat_blob_t *body);
static void ngx_chat_sockjs_close(ngx_chat_transport_t *t, uint16_t code,
    const char *reason);


static ngx_rbtree_t       ngx_chat_sockjs_tree;
static ngx_rbtree_node_t  ngx_chat_sockjs_sentinel;
static ngx_uint_t         ngx_chat_sockjs_tree_ready;


ngx_int_t
ngx_chat_sockjs_receive(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf,
    ngx_str_t *id, ngx_uint_t kind)
{
    ngx_int_t  rc;

    if (r->method == NGX_HTTP_OPTIONS) {
        rc = ngx_chat_sockjs_cors(r, lcf,
                                  kind == NGX_CHAT_SOCKJS_EVENTSOURCE
                                  ? "OPTIONS, GET" : "OPTIONS, POST");
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_chat_send_response(r, NGX_HTTP_NO_CONTENT, NULL, NULL, 0);
    }

    if (kind == NGX_CHAT_SOCKJS_EVENTSOURCE
        ? r->method != NGX_HTTP_GET : r->method != NGX_HTTP_POST)
    {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    rc = ngx_chat_sockjs_cors(r, lcf, NULL);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_chat_sockjs_lookup(id) == NULL) {
        /* another worker's, or a new one: Redis says which */

        rc = ngx_chat_sockjs_relay_receive(r, lcf, id, kind);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    return ngx_chat_sockjs_receive_local(r, lcf, id, kind, 0);
}


ngx_int_t
ngx_chat_sockjs_receive_local(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf,
    ngx_str_t *id, ngx_uint_t kind, ngx_uint_t owned)
{
    u_char               *p;
    ngx_int_t             rc;
    ngx_chat_sockjs_t    *sj;
    ngx_pool_cleanup_t   *cln;
    u_char                frame[32 + 6 * NGX_CHAT_SOCKJS_REASON_MAX];

    sj = ngx_chat_sockjs_lookup(id);

    if (sj != NULL && ngx_chat_sockjs_attached(sj)) {
        /* SockJS: the other one stays, this one is told */
        p = ngx_chat_sockjs_close_frame(frame, 2010,
                                        "Another connection still open");
        *p++ = '\n';
        goto answer;
    }

    if (sj != NULL && sj->close_sent) {
        p = ngx_chat_sockjs_close_frame(frame, sj->close_code,
                                        (char *) sj->close_reason);
        *p++ = '\n';
        goto answer;
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (sj == NULL) {
        sj = ngx_chat_sockjs_create(r, lcf, id, owned);
        if (sj == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    if (sj->timer.timer_set) {
        ngx_del_timer(&sj->timer);
    }

    sj->recv = r;
    sj->recv_cln = cln;
    sj->recv_kind = kind;
    sj->recv_sent = 0;
    cln->handler = ngx_chat_sockjs_recv_cleanup;
    cln->data = sj;

    ngx_chat_sockjs_relay_refresh(id, sj->t.lcf, sj->owned);

    rc = ngx_chat_sockjs_start(r, kind);

    if (rc != NGX_OK) {
        ngx_chat_sockjs_finish(sj, rc);
        return NGX_DONE;
    }

    if (!sj->opened) {
        sj->opened = 1;

        if (ngx_chat_sockjs_frame(sj, (u_char *) "o", 1) != NGX_OK) {
            return NGX_DONE;
        }

        if (kind == NGX_CHAT_SOCKJS_XHR) {
            /* a poll carries one frame */
            return NGX_DONE;
        }
    }

    ngx_chat_sockjs_flush(sj);

    if (sj->recv == r) {
        /* an exiting worker waits for it: the client is told (1001) */
        sj->timer.cancelable = 0;
        ngx_add_timer(&sj->timer, NGX_CHAT_SOCKJS_HEARTBEAT);
    }

    return NGX_DONE;

answer:

    return ngx_chat_sockjs_receive_answer(r, kind, frame, p - frame);
}


/*
 * A receiving request's header and prelude; the request is held (count)
 * and its handlers set. NGX_OK, or what to finalize it with.
 */

ngx_int_t
ngx_chat_sockjs_start(ngx_http_request_t *r, ngx_uint_t kind)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   cl;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = -1;

    if (kind == NGX_CHAT_SOCKJS_EVENTSOURCE) {
        ngx_str_set(&r->headers_out.content_type,
                    "text/event-stream; charset=UTF-8");
        r->headers_out.content_type_len = sizeof("text/event-stream") - 1;

    } else {
        ngx_str_set(&r->headers_out.content_type,
                    "application/javascript; charset=UTF-8");
        r->headers_out.content_type_len = sizeof("application/javascript")
                                          - 1;
    }

    r->headers_out.content_type_lowcase = NULL;

    /* held until finished: ngx_chat_sockjs_finish() */

    r->main->count++;
    r->write_event_handler = ngx_chat_sockjs_writer;

    if (!r->discard_body) {
        /* else the rest of a body is being read and thrown away first */
        r->read_event_handler = ngx_chat_sockjs_test_reading;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        /* (no HEAD gets here) */
        return rc == NGX_OK ? NGX_ERROR : rc;
    }

    if (kind != NGX_CHAT_SOCKJS_XHR) {
        /* a prelude, so that browsers and proxies hand over what comes */

        b = ngx_create_temp_buf(r->pool, 2049);
        if (b == NULL) {
            return NGX_ERROR;
        }

        if (kind == NGX_CHAT_SOCKJS_XHR_STREAMING) {
            ngx_memset(b->last, 'h', 2048);
            b->last += 2048;
            *b->last++ = '\n';

        } else {
            *b->last++ = '\r';
            *b->last++ = '\n';
        }

        b->flush = 1;
        cl.buf = b;
        cl.next = NULL;

        rc = ngx_http_output_filter(r, &cl);

        if (rc == NGX_ERROR) {
            return rc;
        }
    }

    return NGX_OK;
}


/* a one-frame answer (a close frame) to a receiving request */

ngx_int_t
ngx_chat_sockjs_receive_answer(ngx_http_request_t *r, ngx_uint_t kind,
    u_char *frame, size_t len)
{
    u_char  *f;

    f = ngx_pnalloc(r->pool, len);
    if (f == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(f, frame, len);

    return ngx_chat_send_response(r, NGX_HTTP_OK,
                                  kind == NGX_CHAT_SOCKJS_EVENTSOURCE
                                  ? "text/event-stream; charset=UTF-8"
                                  : "application/javascript; charset=UTF-8",
                                  f, len);
}


/* writes one frame to the receiving request; a poll then ends */

static ngx_int_t
ngx_chat_sockjs_frame(ngx_chat_sockjs_t *sj, u_char *f, size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_uint_t           last;
    ngx_chain_t          cl;
    ngx_http_request_t  *r;

    if (sj->remote) {
        /* a forwarding worker writes it, framed as below */

        sj->recv_sent += len + (sj->recv_kind == NGX_CHAT_SOCKJS_EVENTSOURCE
                                ? 10 : 1);
        sj->t.last_write = ngx_current_msec;

        last = (sj->recv_kind == NGX_CHAT_SOCKJS_XHR
                || sj->recv_sent >= NGX_CHAT_SOCKJS_STREAM_LIMIT
                || (len && f[0] == 'c'));

        rc = ngx_chat_sockjs_relay_frame(&sj->node.str, sj->remote_from,
                                         sj->remote, last,
                                         f, len);

        if (rc != NGX_OK || last) {
            ngx_chat_sockjs_finish(sj, NGX_OK);
            return NGX_DONE;
        }

        return NGX_OK;
    }

    r = sj->recv;

    b = ngx_create_temp_buf(r->pool, len + 16);
    if (b == NULL) {
        ngx_chat_sockjs_finish(sj, NGX_ERROR);
        return NGX_ERROR;
    }

    if (sj->recv_kind == NGX_CHAT_SOCKJS_EVENTSOURCE) {
        b->last = ngx_cpymem(b->last, "data: ", 6);
        b->last = ngx_cpymem(b->last, f, len);
        b->last = ngx_cpymem(b->last, "\r\n\r\n", 4);

    } else {
        b->last = ngx_cpymem(b->last, f, len);
        *b->last++ = '\n';
    }

    sj->recv_sent += b->last - b->pos;
    sj->t.last_write = ngx_current_msec;

    last = (sj->recv_kind == NGX_CHAT_SOCKJS_XHR
            || sj->recv_sent >= NGX_CHAT_SOCKJS_STREAM_LIMIT
            || (len && f[0] == 'c'));

    b->flush = 1;
    b->last_buf = last;
    b->last_in_chain = 1;
    cl.buf = b;
    cl.next = NULL;

    if (sj->recv_sent >= NGX_CHAT_SOCKJS_STREAM_LIMIT) {
        ngx_log_error(NGX_LOG_INFO, sj->t.log, 0,
                      "SockJS stream of \"%V\" ends after %uz bytes, "
                      "the client opens the next one",
                      &sj->node.str, sj->recv_sent);
    }

    rc = ngx_http_output_filter(r, &cl);

    if (rc == NGX_ERROR || last) {
        ngx_chat_sockjs_finish(sj, rc);
        return NGX_DONE;
    }

    return NGX_OK;
}


/* what waits in sj->out, then the close frame, to the receiving request */

static void
ngx_chat_sockjs_flush(ngx_chat_sockjs_t *sj)
{
    u_char  *p, *f;
    u_char   frame[32 + 6 * NGX_CHAT_SOCKJS_REASON_MAX];

    if (!ngx_chat_sockjs_attached(sj)) {
        return;
    }

    if (sj->out_len) {
        f = ngx_alloc(sj->out_len + 3, sj->t.log);
        if (f == NULL) {
            ngx_chat_sockjs_finish(sj, NGX_ERROR);
            return;
        }

        p = ngx_cpymem(f, "a[", 2);
        p = ngx_cpymem(p, sj->out, sj->out_len);
        *p++ = ']';

        sj->out_len = 0;

        if (ngx_chat_sockjs_frame(sj, f, p - f) != NGX_OK) {
            ngx_free(f);
            return;
        }

        ngx_free(f);
    }

    if (sj->closing && !sj->close_sent) {
        sj->close_sent = 1;
        p = ngx_chat_sockjs_close_frame(frame, sj->close_code,
                                        (char *) sj->close_reason);
        (void) ngx_chat_sockjs_frame(sj, frame, p - frame);
    }
}


/* the receiving request ends; the session waits for the next one */

static void
ngx_chat_sockjs_finish(ngx_chat_sockjs_t *sj, ngx_int_t rc)
{
    ngx_http_request_t  *r;

    if (sj->remote) {
        sj->remote = 0;

        if (sj->timer.timer_set) {
            ngx_del_timer(&sj->timer);
        }

        sj->timer.cancelable = 1;
        ngx_add_timer(&sj->timer, sj->t.lcf->sockjs_disconnect);
        return;
    }

    r = sj->recv;

    if (r == NULL) {
        return;
    }

    sj->recv = NULL;
    sj->recv_cln->handler = NULL;
    sj->recv_cln = NULL;

    if (sj->timer.timer_set) {
        ngx_del_timer(&sj->timer);
    }

    sj->timer.cancelable = 1;
    ngx_add_timer(&sj->timer, sj->t.lcf->sockjs_disconnect);

    if (r->read_event_handler == ngx_chat_sockjs_test_reading) {
        r->read_event_handler = ngx_http_block_reading;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_http_finalize_request(r, rc);
}


/* the receiving request ended otherwise (client gone, timeout) */

static void
ngx_chat_sockjs_recv_cleanup(void *data)
{
    ngx_chat_sockjs_t  *sj = data;

    sj->recv = NULL;
    sj->recv_cln = NULL;

    if (sj->timer.timer_set) {
        ngx_del_timer(&sj->timer);
    }

    sj->timer.cancelable = 1;
    ngx_add_timer(&sj->timer, sj->t.lcf->sockjs_disconnect);
}


/* a held request: the client going away ends it */

void
ngx_chat_sockjs_test_reading(ngx_http_request_t *r)
{
    u_char             buf[1];
    ssize_t            n;
    ngx_err_t          err;
    ngx_connection_t  *c;

    c = r->connection;

#if (NGX_HTTP_V2)
    if (r->stream) {
        return;
    }
#endif

#if (NGX_SSL)
    if (c->ssl) {
        /* TLS records cannot be peeked at: the next write tells */
        if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        }

        return;
    }
#endif

    n = recv(c->fd, (char *) buf, 1, MSG_PEEK);
    err = ngx_socket_errno;

    if (n == 0 || (n == -1 && err != NGX_EAGAIN)) {
        c->read->eof = 1;
        c->error = 1;
        ngx_log_error(NGX_LOG_INFO, c->log, n == 0 ? 0 : err,
                      "client closed SockJS request");
        ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
        return;
    }

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
}


/* a held streaming request could not write everything at once */

void
ngx_chat_sockjs_writer(ngx_http_request_t *r)
{
    ngx_int_t  rc;

    if (r->connection->write->timedout) {
        r->connection->timedout = 1;
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_TIME_OUT);
        return;
    }

    rc = ngx_http_output_filter(r, NULL);

    if (rc == NGX_ERROR) {
        ngx_http_finalize_request(r, rc);
        return;
    }

    if (ngx_handle_write_event(r->connection->write, 0) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_ERROR);
    }
}


/* an xhr_send: the client's frames */

ngx_int_t
ngx_chat_sockjs_xhr_send(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf,
    ngx_str_t *id)
{
    ngx_int_t               rc;
    ngx_chat_sockjs_t      *sj;
    ngx_chat_sockjs_ctx_t  *ctx;

    if (r->method == NGX_HTTP_OPTIONS) {
        rc = ngx_chat_sockjs_cors(r, lcf, "OPTIONS, POST");
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_chat_send_response(r, NGX_HTTP_NO_CONTENT, NULL, NULL, 0);
    }

    if (r->method != NGX_HTTP_POST) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_chat_sockjs_cors(r, lcf, NULL);
    if (rc != NGX_OK) {
        return rc;
    }

    sj = ngx_chat_sockjs_lookup(id);

    if (sj == NULL ? !ngx_chat_sockjs_relay_ready(id) : sj->closing) {
        return NGX_HTTP_NOT_FOUND;
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_chat_sockjs_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->id.data = ngx_pstrdup(r->pool, id);
    if (ctx->id.data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->id.len = id->len;
    ctx->lcf = lcf;
    ngx_http_set_ctx(r, ctx, ngx_chat_module);

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_chat_sockjs_xhr_send_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static void
ngx_chat_sockjs_xhr_send_body(ngx_http_request_t *r)
{
    u_char                 *p;
    size_t                  len;
    ssize_t                 n;
    ngx_int_t               rc;
    ngx_buf_t              *b;
    const char             *err;
    ngx_chain_t            *cl;
    ngx_chat_sockjs_t      *sj;
    ngx_chat_sockjs_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_chat_module);

    /* the body, in one piece */

    len = 0;

    if (r->request_body) {
        for (cl = r->request_body->bufs; cl; cl = cl->next) {
            len += ngx_buf_size(cl->buf);
        }
    }

    if (len > ctx->lcf->max_message) {
        ngx_http_finalize_request(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE);
        return;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    len = 0;

    for (cl = r->request_body ? r->request_body->bufs : NULL;
         cl;
         cl = cl->next)
    {
        b = cl->buf;

        if (ngx_buf_in_memory(b)) {
            ngx_memcpy(p + len, b->pos, b->last - b->pos);
            len += b->last - b->pos;
            continue;
        }

        if (!b->in_file || b->file == NULL) {
            /* the end of a chunked body */
            continue;
        }

        n = ngx_read_file(b->file, p + len, b->file_last - b->file_pos,
                          b->file_pos);
        if (n != b->file_last - b->file_pos) {
            ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        len += n;
    }

    sj = ngx_chat_sockjs_lookup(&ctx->id);

    if (sj == NULL) {
        /* the owner worker's, if any: it answers */
        ngx_chat_sockjs_relay_send(r, &ctx->id, p, len);
        return;
    }

    rc = ngx_chat_sockjs_remote_send(&ctx->id, p, len, &err);

    ngx_http_finalize_request(r, ngx_chat_sockjs_send_answer(r, rc, err));
}


/* an xhr_send's answer: 204, 404, or 500 with what was wrong */

ngx_int_t
ngx_chat_sockjs_send_answer(ngx_http_request_t *r, ngx_int_t status,
    const char *err)
{
    if (status == NGX_HTTP_NO_CONTENT) {
        return ngx_chat_send_response(r, NGX_HTTP_NO_CONTENT,
                                      "text/plain; charset=UTF-8", NULL, 0);
    }

    if (status != NGX_HTTP_INTERNAL_SERVER_ERROR || err == NULL) {
        return status;
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "SockJS xhr_send: %s", err);

    r->headers_out.content_type_lowcase = NULL;

    return ngx_chat_send_response(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "text/plain; charset=UTF-8",
                                  (u_char *) err, ngx_strlen(err));
}


/* the client's frames to the session id (this worker's): an HTTP status */

ngx_int_t
ngx_chat_sockjs_remote_send(ngx_str_t *id, u_char *p, size_t len,
    const char **err)
{
    ngx_chat_sockjs_t  *sj;

    *err = NULL;

    sj = ngx_chat_sockjs_lookup(id);

    if (sj == NULL || sj->closing) {
        return NGX_HTTP_NOT_FOUND;
    }

    if (ngx_chat_sockjs_deliver(&sj->t, p, len, err) != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_HTTP_NO_CONTENT;
}


/*
 * A forwarding worker's receiving request (from, rid) for the session id
 * of this worker: as ngx_chat_sockjs_receive_local() does for one of ours.
 */

void
ngx_chat_sockjs_remote_attach(ngx_str_t *id, u_char *from, uint64_t rid,
    ngx_uint_t kind)
{
    u_char             *p;
    ngx_chat_sockjs_t  *sj;
    u_char              frame[32 + 6 * NGX_CHAT_SOCKJS_REASON_MAX];

    ngx_log_debug4(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "SockJS session \"%V\": attach %*s %uL", id,
                   (size_t) NGX_CHAT_SOCKJS_ROUTE_LEN, from, rid);

    sj = ngx_chat_sockjs_lookup(id);

    if (sj == NULL) {
        p = ngx_chat_sockjs_close_frame(frame, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                                        "Session not found");
        goto answer;
    }

    if (ngx_chat_sockjs_attached(sj)) {
        p = ngx_chat_sockjs_close_frame(frame, 2010,
                                        "Another connection still open");
        goto answer;
    }

    if (sj->close_sent) {
        p = ngx_chat_sockjs_close_frame(frame, sj->close_code,
                                        (char *) sj->close_reason);
        goto answer;
    }

    if (sj->timer.timer_set) {
        ngx_del_timer(&sj->timer);
    }

    sj->remote = rid;
    ngx_memcpy(sj->remote_from, from, NGX_CHAT_SOCKJS_ROUTE_LEN);
    sj->recv_kind = kind;
    sj->recv_sent = 0;

    ngx_chat_sockjs_relay_refresh(id, sj->t.lcf, sj->owned);

    if (!sj->opened) {
        sj->opened = 1;

        if (ngx_chat_sockjs_frame(sj, (u_char *) "o", 1) != NGX_OK
            || kind == NGX_CHAT_SOCKJS_XHR)
        {
            return;
        }
    }

    ngx_chat_sockjs_flush(sj);

    if (sj->remote == rid) {
        sj->timer.cancelable = 0;
        ngx_add_timer(&sj->timer, NGX_CHAT_SOCKJS_HEARTBEAT);
    }

    return;

answer:

    (void) ngx_chat_sockjs_relay_frame(id, from, rid, 1, frame, p - frame);
}


/* the forwarder's request (from, rid) ended: the session waits */

void
ngx_chat_sockjs_remote_detach(ngx_str_t *id, u_char *from, uint64_t rid)
{
    ngx_chat_sockjs_t  *sj;

    sj = ngx_chat_sockjs_lookup(id);


    if (sj != NULL && sj->remote == rid
        && ngx_memcmp(sj->remote_from, from, NGX_CHAT_SOCKJS_ROUTE_LEN) == 0)
    {
        ngx_chat_sockjs_finish(sj, NGX_OK);
    }
}


/* a client's ["frame", ...] to the session above t */

static ngx_chat_sockjs_t *
ngx_chat_sockjs_lookup(ngx_str_t *id)
{
    ngx_str_node_t  *sn;

    if (!ngx_chat_sockjs_tree_ready) {
        return NULL;
    }

    sn = ngx_str_rbtree_lookup(&ngx_chat_sockjs_tree, id,
                               ngx_crc32_short(id->data, id->len));

    if (sn == NULL) {
        return NULL;
    }

    return (ngx_chat_sockjs_t *) ((u_char *) sn
                                  - offsetof(ngx_chat_sockjs_t, node));
}


static ngx_chat_sockjs_t *
ngx_chat_sockjs_create(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf,
    ngx_str_t *id, ngx_uint_t owned)
{
    ngx_int_t           rc;
    ngx_log_t          *log;
    ngx_chat_sockjs_t  *sj;

    if (!ngx_chat_sockjs_tree_ready) {
        ngx_rbtree_init(&ngx_chat_sockjs_tree, &ngx_chat_sockjs_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_chat_sockjs_tree_ready = 1;
    }

    sj = ngx_calloc(sizeof(ngx_chat_sockjs_t), r->connection->log);
    if (sj == NULL) {
        return NULL;
    }

    /* the session outlives the request: a log of its own */

    log = ngx_alloc(sizeof(ngx_log_t), r->connection->log);
    if (log == NULL) {
        ngx_free(sj);
        return NULL;
    }

    *log = *ngx_cycle->log;
    log->connection = r->connection->number;

    ngx_memcpy(sj->id, id->data, id->len);
    sj->node.str.data = sj->id;
    sj->node.str.len = id->len;
    sj->node.node.key = ngx_crc32_short(id->data, id->len);

    sj->t.log = log;
    sj->t.lcf = lcf;
    sj->t.kind = NGX_CHAT_TRANSPORT_SOCKJS;
    sj->t.send = ngx_chat_sockjs_send;
    sj->t.close = ngx_chat_sockjs_close;
    sj->t.last_read = ngx_current_msec;
    sj->t.last_write = ngx_current_msec;
    sj->owned = owned;

    sj->timer.handler = ngx_chat_sockjs_timer_handler;
    sj->timer.data = sj;
    sj->timer.log = log;
    sj->timer.cancelable = 1;

    sj->flush.handler = ngx_chat_sockjs_flush_handler;
    sj->flush.data = sj;
    sj->flush.log = log;

    sj->closed.handler = ngx_chat_sockjs_closed_handler;
    sj->closed.data = sj;
    sj->closed.log = log;

    /* the session: credentials of this first request, as on WebSocket */

    sj->t.request = r;
    rc = ngx_chat_transport_open ? ngx_chat_transport_open(&sj->t)
                                 : NGX_ERROR;
    sj->t.request = NULL;

    if (rc != NGX_OK) {
        ngx_free(log);
        ngx_free(sj);
        return NULL;
    }

    ngx_rbtree_insert(&ngx_chat_sockjs_tree, &sj->node.node);

    return sj;
}


/* the end: the session above is gone (or never was) */

static void
ngx_chat_sockjs_free(ngx_chat_sockjs_t *sj)
{
    if (sj->t.on_closed) {
        sj->t.on_closed(&sj->t);
    }

    if (ngx_chat_sockjs_attached(sj)) {
        ngx_chat_sockjs_finish(sj, NGX_HTTP_CLIENT_CLOSED_REQUEST);
    }

    if (sj->owned) {
        ngx_chat_sockjs_relay_disown(&sj->node.str);
    }

    if (sj->timer.timer_set) {
        ngx_del_timer(&sj->timer);
    }

    if (sj->flush.posted) {
        ngx_delete_posted_event(&sj->flush);
    }

    if (sj->closed.posted) {
        ngx_delete_posted_event(&sj->closed);
    }

    ngx_rbtree_delete(&ngx_chat_sockjs_tree, &sj->node.node);

    if (sj->out) {
        ngx_free(sj->out);
    }

    ngx_free(sj->t.log);
    ngx_free(sj);
}


static void
ngx_chat_sockjs_flush_handler(ngx_event_t *ev)
{
    ngx_chat_sockjs_flush(ev->data);
}


/* heartbeat while a request is open; expiry while none is */

static void
ngx_chat_sockjs_timer_handler(ngx_event_t *ev)
{
    ngx_chat_sockjs_t  *sj = ev->data;

    if (!ngx_chat_sockjs_attached(sj)) {
        ngx_log_error(NGX_LOG_INFO, sj->t.log, 0,
                      "SockJS session \"%V\" expired", &sj->node.str);
        ngx_chat_sockjs_free(sj);
        return;
    }

    if (ngx_exiting) {
        /* what waits, then c[1001,...]; the request ends */
        ngx_chat_sockjs_close(&sj->t, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                              "server shutting down");
        ngx_chat_sockjs_flush(sj);
        ngx_chat_sockjs_finish(sj, NGX_OK);
        return;
    }

    ngx_chat_sockjs_relay_refresh(&sj->node.str, sj->t.lcf, sj->owned);

    if (ngx_chat_sockjs_frame(sj, (u_char *) "h", 1) == NGX_OK) {
        ngx_add_timer(&sj->timer, NGX_CHAT_SOCKJS_HEARTBEAT);
    }
}


static void
ngx_chat_sockjs_closed_handler(ngx_event_t *ev)
{
    ngx_chat_sockjs_t  *sj = ev->data;

    if (sj->t.on_closed) {
        sj->t.on_closed(&sj->t);
    }

    if (sj->close_sent && !ngx_chat_sockjs_attached(sj)
        && !sj->timer.timer_set)
    {
        sj->timer.cancelable = 1;
        ngx_add_timer(&sj->timer, sj->t.lcf->sockjs_disconnect);
    }
}


/* the transport's send and close */

static ngx_int_t
ngx_chat_sockjs_send(ngx_chat_transport_t *t, u_char *head, size_t head_len,
    ngx_chat_blob_t *body)
{
    ngx_chat_sockjs_t *sj = (ngx_chat_sockjs_t *) t;

    u_char  *p;
    size_t   len, size;

    if (sj->closing) {
        return NGX_ERROR;
    }

    len = ngx_chat_sockjs_quote_len(head, head_len)
          + (body ? ngx_chat_sockjs_quote_len(body->data, body->len) - 2 : 0)
          + 1;

    if (sj->out_len + len > t->lcf->send_limit && sj->out_len) {
        ngx_log_error(NGX_LOG_INFO, t->log, 0,
                      "SockJS client too slow: %uz bytes waiting",
                      sj->out_len);
        sj->out_len = 0;
        ngx_chat_sockjs_close(t, NGX_CHAT_WS_CLOSE_POLICY,
                              "send buffer limit");
        return NGX_ERROR;
    }

    if (sj->out_len + len > sj->out_size) {
        size = ngx_max(sj->out_size * 2, 1024);

        while (size < sj->out_len + len) {
            size *= 2;
        }

        p = ngx_alloc(size, t->log);
        if (p == NULL) {
            ngx_chat_sockjs_close(t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }

        if (sj->out_len) {
            ngx_memcpy(p, sj->out, sj->out_len);
        }

        if (sj->out) {
            ngx_free(sj->out);
        }

        sj->out = p;
        sj->out_size = size;
    }

    p = sj->out + sj->out_len;

    if (sj->out_len) {
        *p++ = ',';
    }

    *p++ = '"';
    p = ngx_chat_sockjs_quote(p, head, head_len);

    if (body) {
        p = ngx_chat_sockjs_quote(p, body->data, body->len);
    }

    *p++ = '"';

    sj->out_len = p - sj->out;
    t->last_write = ngx_current_msec;

    if (ngx_chat_sockjs_attached(sj) && !sj->flush.posted) {
        ngx_post_event(&sj->flush, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_chat_sockjs_close(ngx_chat_transport_t *t, uint16_t code,
    const char *reason)
{
    ngx_chat_sockjs_t *sj = (ngx_chat_sockjs_t *) t;

    size_t  len;

    if (sj->closing) {
        return;
    }

    sj->closing = 1;
    sj->close_code = (code == NGX_CHAT_WS_CLOSE_NORMAL) ? 3000 : code;

    if (code == NGX_CHAT_WS_CLOSE_NORMAL && reason == NULL) {
        reason = "Go away!";
    }

    len = reason ? ngx_min(ngx_strlen(reason), NGX_CHAT_SOCKJS_REASON_MAX - 1)
                 : 0;
    ngx_memcpy(sj->close_reason, reason ? reason : "", len);
    sj->close_reason[len] = '\0';

    ngx_post_event(&sj->closed, &ngx_posted_events);

    if (ngx_chat_sockjs_attached(sj) && !sj->flush.posted) {
        ngx_post_event(&sj->flush, &ngx_posted_events);
    }
}


/* SockJS framing on a WebSocket */
