/* ngx_chat_ws.c: a WebSocket connection: frame I/O, closing, shutdown. */

#include "ngx_chat.h"
#include "ngx_chat_ws.h"
#include "ngx_chat_ws_int.h"
#include "ngx_chat_metrics.h"


/*
 * Life of a connection. The handshake (ngx_chat_ws_handshake.c) is checked
 * and answered with a 101 through nginx's header filters; then the request
 * is kept (r->count) and ngx_chat_ws_start() replaces the connection's read
 * and write handlers by ours, so everything after goes through c->recv()
 * and c->send_chain() (TLS works the same).
 *
 * Memory. The connection state (ngx_chat_ws_conn_t) is an allocation of
 * its own. The request (ngx_http_request_t, its pool, the header buffers)
 * is needed only for the handshake: once the content handler has returned
 * and the 101 is written, the first of our handlers to run releases it
 * (ngx_chat_ws_release(): the access log line is written then, with the
 * 101) and frees the connection's header buffers; c->data then points to
 * the connection state. Until then c->data is the request, whose module
 * context holds the connection state; ngx_chat_ws_conn() tells them apart
 * by the request's signature (ws.t.request, the first field of the state,
 * is NULL once released). Read buffers: one static buffer per worker; a
 * connection keeps a small tail (allocated only while a frame header or a
 * control frame is incomplete). Frames to write are single allocations,
 * freed once written; the TLS write buffer is freed when the queue drains.
 *
 *   open ---- ngx_chat_ws_close(), peer's close, bad frame ----> closing
 *   closing: nothing more is accepted from the session nor handed to it;
 *            what is queued is written, then our close frame;
 *   our close written: the peer's close already came -> end; else wait
 *            for it or EOF, at most NGX_CHAT_WS_LINGER (lingering close:
 *            closing with unread input would reset the connection and
 *            lose our last frames);
 *   end:     EOF, I/O error, timeout, or the above; the finalize event
 *            is posted and runs from the event loop: on_closed(), then
 *            the state, the request (if still held) and the connection
 *            are freed.
 *
 * So on_closed() is never called from inside ngx_chat_ws_send() or
 * ngx_chat_ws_close(), nor from inside another session callback.
 *
 * Frames are queued whole and written at the end of the event loop pass
 * (c->write is posted), many frames per writev. On graceful shutdown
 * ngx_close_idle_connections() calls our read handler with c->close set:
 * the session is closed with 1001; the close timer (not cancelable, a few
 * seconds) keeps the worker until the close handshake is over.
 */


/* one read pass, shared by the connections of a worker */
#define NGX_CHAT_WS_READ_SIZE      (32 * 1024)

/* frames kept between reads: a frame header or a control frame (<= 131) */
#define NGX_CHAT_WS_TAIL_SIZE      256

/* buffers per c->send_chain() call: two per queued frame */
#define NGX_CHAT_WS_BUFS           64

#define NGX_CHAT_WS_SEND_TIMEOUT   60000
#define NGX_CHAT_WS_CLOSE_TIMEOUT  10000  /* flush the rest and our close */
#define NGX_CHAT_WS_EXIT_TIMEOUT   3000   /* the same while shutting down */
#define NGX_CHAT_WS_LINGER         2000   /* wait for the peer's close */


/*
 * one frame to write, one allocation: the frame header and head copied
 * (head points right after the struct), body referenced
 */
typedef struct {
    ngx_queue_t         queue;
    u_char             *head;
    size_t              head_len;
    size_t              head_sent;
    ngx_chat_blob_t    *body;
    size_t              body_sent;
    unsigned            close:1;
} ngx_chat_ws_out_t;


/* what the session sees (ws, first) and what only this file uses */
struct ngx_chat_ws_conn_s {
    ngx_chat_ws_t        ws;
    ngx_pool_cleanup_t  *cleanup;     /* frees us with r->pool until
                                         ngx_chat_ws_start() */
    u_char              *tail;        /* NGX_CHAT_WS_TAIL_SIZE, while
                                         tail_len != 0 */
    uint16_t             tail_len;
    unsigned             dead:1;      /* close_timer is the finalize
                                         event now, posted */
    unsigned             lingering:1; /* our close is out, waiting */
    unsigned             own_log:1;   /* c->log is log below */

    /*
     * The connection's log and its context, moved here from c->pool by
     * ngx_chat_ws_start() (before anything keeps a pointer to c->log), so
     * that ngx_chat_ws_release() can replace c->pool, a block of
     * connection_pool_size (512 bytes) of which an idle session needs
     * only the addresses, by a pool of their size.
     */
    ngx_log_t            log;
    ngx_http_log_ctx_t   log_ctx;
};


static void ngx_chat_ws_free_unstarted(void *data);
static ngx_chat_ws_conn_t *ngx_chat_ws_conn(ngx_connection_t *c);
static void ngx_chat_ws_release(ngx_chat_ws_conn_t *wc);
static void ngx_chat_ws_own_log(ngx_http_request_t *r,
    ngx_chat_ws_conn_t *wc);
static void ngx_chat_ws_shrink_pool(ngx_connection_t *c);
static void ngx_chat_ws_read_handler(ngx_event_t *rev);
static void ngx_chat_ws_process(ngx_chat_ws_conn_t *wc, u_char *p,
    size_t len);
static void ngx_chat_ws_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_chat_ws_flush(ngx_chat_ws_conn_t *wc);
static ngx_int_t ngx_chat_ws_enqueue(ngx_chat_ws_conn_t *wc,
    unsigned opcode, u_char *head, size_t head_len, ngx_chat_blob_t *body);
static void ngx_chat_ws_free_entry(ngx_chat_ws_conn_t *wc,
    ngx_chat_ws_out_t *e);
static void ngx_chat_ws_drop_queue(ngx_chat_ws_conn_t *wc,
    ngx_uint_t all);
static void ngx_chat_ws_send_close(ngx_chat_ws_conn_t *wc, uint16_t code,
    const char *reason);
static void ngx_chat_ws_close_timer_handler(ngx_event_t *ev);
static void ngx_chat_ws_abort(ngx_chat_ws_conn_t *wc);
static void ngx_chat_ws_finalize_handler(ngx_event_t *ev);


static u_char       ngx_chat_ws_rbuf[NGX_CHAT_WS_READ_SIZE];
static ngx_chain_t  ngx_chat_ws_links[NGX_CHAT_WS_BUFS];
static ngx_buf_t    ngx_chat_ws_bufs[NGX_CHAT_WS_BUFS];


ngx_chat_ws_protocol_t  *ngx_chat_ws_protocols;


/* the connection state, allocated before the 101 goes out */

ngx_chat_ws_conn_t *
ngx_chat_ws_create(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_chat_ws_conn_t  *wc;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NULL;
    }

    wc = ngx_calloc(sizeof(ngx_chat_ws_conn_t), r->connection->log);
    if (wc == NULL) {
        return NULL;
    }

    cln->handler = ngx_chat_ws_free_unstarted;
    cln->data = wc;
    wc->cleanup = cln;

    return wc;
}


/* the handshake failed after ngx_chat_ws_create() */

static void
ngx_chat_ws_free_unstarted(void *data)
{
    ngx_free(data);
}


/* takes over the connection and hands it to the layer above (open) */

void
ngx_chat_ws_start(ngx_http_request_t *r, ngx_chat_ws_conn_t *wc,
    ngx_chat_loc_conf_t *lcf, ngx_uint_t version,
    ngx_chat_transport_open_pt open)
{
    u_char                    *p;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_chat_ws_t             *ws;
    ngx_connection_t          *c;
    ngx_http_core_loc_conf_t  *clcf;

    c = r->connection;

    /* ours now: freed by ngx_chat_ws_finalize_handler() */
    wc->cleanup->handler = NULL;
    wc->cleanup = NULL;

    ngx_http_set_ctx(r, wc, ngx_chat_module);

    ngx_chat_ws_own_log(r, wc);

    ngx_chat_metric_inc(NGX_CHAT_M_CONNECTIONS, 1);
    ngx_chat_metric_gauge_add(NGX_CHAT_G_CONNECTIONS, 1);

    ws = &wc->ws;
    ws->t.request = r;
    ws->t.connection = c;
    ws->t.log = c->log;
    ws->t.lcf = lcf;
    ws->t.protocol = version;
    ws->t.kind = NGX_CHAT_TRANSPORT_WEBSOCKET;
    ws->t.send = ngx_chat_ws_send;
    ws->t.close = ngx_chat_ws_close;
    ws->t.last_read = ngx_current_msec;
    ws->t.last_write = ngx_current_msec;

    ngx_chat_ws_reader_init(&ws->reader, lcf->max_message);
    ngx_queue_init(&ws->out);

    ws->close_timer.handler = ngx_chat_ws_close_timer_handler;
    ws->close_timer.data = wc;
    ws->close_timer.log = c->log;

    c->log->action = "handling WebSocket";

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_request_empty_handler;

    c->read->handler = ngx_chat_ws_read_handler;
    c->write->handler = ngx_chat_ws_write_handler;

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        ngx_chat_ws_abort(wc);
        return;
    }

    /* ngx_close_idle_connections() calls the read handler on shutdown */
    c->idle = 1;

    ws->in_handler = 1;
    rc = open ? open(&ws->t) : NGX_ERROR;
    ws->in_handler = 0;

    if (rc != NGX_OK) {
        ngx_chat_ws_close(&ws->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);

    } else if (ngx_exiting) {
        ngx_chat_ws_close(&ws->t, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                          "server shutting down");
    }

    /* frames that came with the handshake */

    len = r->header_in->last - r->header_in->pos;

    if (len && !wc->dead) {
        p = r->header_in->pos;
        r->header_in->pos = r->header_in->last;

        ws->t.last_read = ngx_current_msec;
        ngx_chat_ws_process(wc, p, len);
    }

    if (wc->dead) {
        return;
    }

    /* the write handler also releases the request, after the 101 */
    ngx_post_event(c->write, &ngx_posted_events);

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);

    } else if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_chat_ws_abort(wc);
    }
}


/*
 * c->data: the request until ngx_chat_ws_release(), then the connection
 * state, whose first bytes (ws.t.request, NULL by then) can never be the
 * request's signature
 */

static ngx_chat_ws_conn_t *
ngx_chat_ws_conn(ngx_connection_t *c)
{
    ngx_http_request_t  *r;

    r = c->data;

    if (r->signature == NGX_HTTP_MODULE) {
        return ngx_http_get_module_ctx(r, ngx_chat_module);
    }

    return c->data;
}


/*
 * Frees the request of the handshake once its 101 is written: called from
 * our event handlers only, never while nginx's HTTP code that called the
 * content handler may still use the request.
 */

static void
ngx_chat_ws_release(ngx_chat_ws_conn_t *wc)
{
    ngx_chain_t            *cl, *next;
    ngx_connection_t       *c;
    ngx_http_request_t     *r;
    ngx_http_connection_t  *hc;

    r = wc->ws.t.request;

    /*
     * the 101 must be written, and we must hold the only reference
     * (ours, from the handler): else the request is kept to the end
     */

    if (r == NULL || wc->dead || r->out
        || (r->connection->buffered & NGX_HTTP_WRITE_BUFFERED)
        || r->main->count != 1 || r->blocked)
    {
        return;
    }

    c = r->connection;
    hc = r->http_connection;

    /* logs the request (status 101) and destroys its pool */
    ngx_http_free_request(r, 0);

    /* the connection lives on */
    c->destroyed = 0;
    c->log->action = "handling WebSocket";

    wc->ws.t.request = NULL;
    c->data = wc;

    /* the header buffers: large allocations of c->pool, as keepalive does */

    if (c->buffer) {
        (void) ngx_pfree(c->pool, c->buffer->start);
        c->buffer = NULL;
    }

    for (cl = hc->busy; cl; cl = next) {
        next = cl->next;
        (void) ngx_pfree(c->pool, cl->buf->start);
        ngx_free_chain(c->pool, cl);
    }

    hc->busy = NULL;
    hc->nbusy = 0;

    for (cl = hc->free; cl; cl = next) {
        next = cl->next;
        (void) ngx_pfree(c->pool, cl->buf->start);
        ngx_free_chain(c->pool, cl);
    }

    hc->free = NULL;

    if (wc->own_log) {
        ngx_chat_ws_shrink_pool(c);
    }
}


/*
 * c->log and its context (both in c->pool) become the connection state's;
 * only for plain HTTP/1 connections, whose pool holds nothing else an
 * idle session needs but the addresses (no TLS, no PROXY protocol).
 * r->pool keeps the old log, which lives until the request is freed.
 */

static void
ngx_chat_ws_own_log(ngx_http_request_t *r, ngx_chat_ws_conn_t *wc)
{
    ngx_connection_t  *c;

    c = r->connection;

#if (NGX_SSL)
    if (c->ssl) {
        return;
    }
#endif

#if (NGX_HTTP_V2)
    if (r->stream) {
        return;
    }
#endif

    if (c->proxy_protocol || c->log->data == NULL) {
        return;
    }

    wc->log = *c->log;
    wc->log_ctx = *(ngx_http_log_ctx_t *) c->log->data;
    wc->log.data = &wc->log_ctx;

    c->log = &wc->log;
    c->read->log = c->log;
    c->write->log = c->log;

    wc->own_log = 1;
}


/*
 * Once the request is freed, c->pool holds the connection's addresses and
 * the HTTP connection state nothing uses any more: the addresses move to a
 * pool of their size and the old one is freed.
 */

static void
ngx_chat_ws_shrink_pool(ngx_connection_t *c)
{
    u_char            *text;
    size_t             size;
    ngx_uint_t         local;
    ngx_pool_t        *pool, *old;
    struct sockaddr   *sa, *lsa;

    old = c->pool;

    if (old->cleanup) {
        /* something of another module's: the pool stays */
        return;
    }

    local = c->local_sockaddr && c->local_sockaddr != c->listening->sockaddr;

    size = sizeof(ngx_pool_t) + ngx_align(c->socklen, NGX_ALIGNMENT)
           + (local ? ngx_align(c->local_socklen, NGX_ALIGNMENT) : 0)
           + c->addr_text.len;

    pool = ngx_create_pool(ngx_align(size, NGX_POOL_ALIGNMENT), c->log);
    if (pool == NULL) {
        /* the old pool serves on */
        return;
    }

    sa = ngx_palloc(pool, c->socklen);
    lsa = local ? ngx_palloc(pool, c->local_socklen) : NULL;
    text = c->addr_text.len ? ngx_pnalloc(pool, c->addr_text.len) : NULL;

    if (sa == NULL || (local && lsa == NULL)
        || (c->addr_text.len && text == NULL))
    {
        ngx_destroy_pool(pool);
        return;
    }

    ngx_memcpy(sa, c->sockaddr, c->socklen);
    c->sockaddr = sa;

    if (local) {
        ngx_memcpy(lsa, c->local_sockaddr, c->local_socklen);
        c->local_sockaddr = lsa;
    }

    if (text) {
        ngx_memcpy(text, c->addr_text.data, c->addr_text.len);
        c->addr_text.data = text;
    }

    c->pool = pool;

    old->log = c->log;
    ngx_destroy_pool(old);
}


/* reading */

static void
ngx_chat_ws_read_handler(ngx_event_t *rev)
{
    size_t               tail;
    ssize_t              n;
    ngx_chat_ws_t       *ws;
    ngx_connection_t    *c;
    ngx_chat_ws_conn_t  *wc;

    c = rev->data;
    wc = ngx_chat_ws_conn(c);
    ws = &wc->ws;

    if (wc->dead) {
        return;
    }

    ngx_chat_ws_release(wc);

    if (c->close) {
        c->close = 0;

        if (c->error) {
            /* worker_shutdown_timeout */
            ngx_chat_ws_abort(wc);
            return;
        }

        /* graceful shutdown: ngx_close_idle_connections() */

        c->idle = 0;

        ngx_chat_ws_close(&ws->t, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                          "server shutting down");

        /*
         * called from the worker cycle, not the event loop: an event
         * posted now would wait for the next wakeup, so write at once
         */

        ngx_chat_ws_write_handler(c->write);

        if (wc->dead) {
            return;
        }
    }

    c->log->action = "reading WebSocket frame";

    for ( ;; ) {
        tail = wc->tail_len;

        if (tail) {
            ngx_memcpy(ngx_chat_ws_rbuf, wc->tail, tail);
        }

        n = c->recv(c, ngx_chat_ws_rbuf + tail, NGX_CHAT_WS_READ_SIZE - tail);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (!ws->closing) {
                ngx_log_error(NGX_LOG_INFO, c->log, 0,
                              "client closed WebSocket connection "
                              "without a close frame");
            }

            ngx_chat_ws_abort(wc);
            return;
        }

        ws->t.last_read = ngx_current_msec;

        if (ws->close_received || ws->reader.closed) {
            /* lingering: discard */
            wc->tail_len = 0;
            continue;
        }

        wc->tail_len = 0;

        ngx_chat_ws_process(wc, ngx_chat_ws_rbuf, tail + n);

        if (wc->dead) {
            return;
        }

        c->log->action = "reading WebSocket frame";
    }

    if (wc->tail_len == 0 && wc->tail) {
        ngx_free(wc->tail);
        wc->tail = NULL;
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_chat_ws_abort(wc);
    }
}


static void
ngx_chat_ws_process(ngx_chat_ws_conn_t *wc, u_char *p, size_t len)
{
    size_t                consumed;
    ngx_chat_ws_t        *ws;
    ngx_connection_t     *c;
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_event_e   rc;

    ws = &wc->ws;
    c = ws->t.connection;

    for ( ;; ) {

        if (wc->dead || ws->close_received || ws->reader.closed) {
            return;
        }

        rc = ngx_chat_ws_read(&ws->reader, p, len, &consumed, &ev);

        p += consumed;
        len -= consumed;

        switch (rc) {

        case NGX_CHAT_WS_AGAIN:
            goto done;

        case NGX_CHAT_WS_DATA:
            if (!ws->closing && ws->t.on_data) {
                ws->in_handler = 1;
                ws->t.on_data(&ws->t, ev.data, ev.len);
                ws->in_handler = 0;
            }

            break;

        case NGX_CHAT_WS_MESSAGE_END:
            if (!ws->closing && ws->t.on_message_end) {
                ws->in_handler = 1;
                ws->t.on_message_end(&ws->t);
                ws->in_handler = 0;
            }

            break;

        case NGX_CHAT_WS_PING:
            if (!ws->closing) {
                (void) ngx_chat_ws_enqueue(wc, NGX_CHAT_WS_OP_PONG, ev.data,
                                           ev.len, NULL);
            }

            break;

        case NGX_CHAT_WS_PONG:
            break;

        case NGX_CHAT_WS_CLOSE:
            ws->close_received = 1;

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, c->log, 0,
                           "WebSocket close frame received: %ui",
                           (ngx_uint_t) ev.code);

            if (!ws->closing) {
                /* echo the code; none received: an empty close frame */
                ngx_chat_ws_send_close(wc, ev.code, NULL);

            } else if (ws->close_sent) {
                ngx_chat_ws_abort(wc);
            }

            return;

        case NGX_CHAT_WS_ERROR:
            ngx_log_error(NGX_LOG_INFO, c->log, 0,
                          "client sent an invalid WebSocket frame: %s",
                          ev.reason ? ev.reason : "?");

            /*
             * while closing, the close under way goes on (the reader
             * is closed, input is discarded): ending the connection now
             * would lose what is queued, or reset what is written
             */

            if (!ws->closing) {
                ngx_chat_ws_send_close(wc, ev.code, ev.reason);
            }

            return;
        }
    }

done:

    if (len > NGX_CHAT_WS_TAIL_SIZE) {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "WebSocket reader left %uz bytes", len);
        ngx_chat_ws_send_close(wc, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return;
    }

    if (len == 0) {
        return;
    }

    if (wc->tail == NULL) {
        wc->tail = ngx_alloc(NGX_CHAT_WS_TAIL_SIZE, c->log);
        if (wc->tail == NULL) {
            ngx_chat_ws_abort(wc);
            return;
        }
    }

    ngx_memmove(wc->tail, p, len);
    wc->tail_len = len;
}


/* writing */

ngx_int_t
ngx_chat_ws_send(ngx_chat_transport_t *t, u_char *head, size_t head_len,
    ngx_chat_blob_t *body)
{
    /* t is the first field of ws, ws of the connection state */
    return ngx_chat_ws_enqueue((ngx_chat_ws_conn_t *) t,
                               NGX_CHAT_WS_OP_TEXT, head, head_len, body);
}


static ngx_int_t
ngx_chat_ws_enqueue(ngx_chat_ws_conn_t *wc, unsigned opcode, u_char *head,
    size_t head_len, ngx_chat_blob_t *body)
{
    size_t              body_len, hlen;
    ngx_chat_ws_t      *ws;
    ngx_connection_t   *c;
    ngx_chat_ws_out_t  *e;

    ws = &wc->ws;
    c = ws->t.connection;

    if (ws->finalized || wc->dead
        || (ws->closing && opcode != NGX_CHAT_WS_OP_CLOSE))
    {
        return NGX_ERROR;
    }

    body_len = body ? body->len : 0;

    if (opcode != NGX_CHAT_WS_OP_CLOSE
        && ws->t.out_bytes
        && ws->t.out_bytes + 10 + head_len + body_len > ws->t.lcf->send_limit
        && c->write->ready)
    {
        /* what is queued may just not have been written yet */

        if (ngx_chat_ws_flush(wc) == NGX_ERROR) {
            ngx_chat_ws_abort(wc);
            return NGX_ERROR;
        }
    }

    /* a message alone may be larger than the limit */

    if (opcode != NGX_CHAT_WS_OP_CLOSE
        && ws->t.out_bytes
        && ws->t.out_bytes + 10 + head_len + body_len > ws->t.lcf->send_limit)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "WebSocket client too slow: %uz bytes queued",
                      ws->t.out_bytes);

        ngx_chat_ws_drop_queue(wc, 0);
        ngx_chat_ws_close(&ws->t, NGX_CHAT_WS_CLOSE_POLICY,
                          "send buffer limit");
        return NGX_ERROR;
    }

    e = ngx_alloc(sizeof(ngx_chat_ws_out_t) + 10 + head_len, c->log);
    if (e == NULL) {
        ngx_chat_ws_abort(wc);
        return NGX_ERROR;
    }

    e->head = (u_char *) (e + 1);

    hlen = ngx_chat_ws_frame_header(e->head, opcode, 1,
                                    head_len + body_len);

    if (head_len) {
        ngx_memcpy(e->head + hlen, head, head_len);
    }

    e->head_len = hlen + head_len;
    e->head_sent = 0;
    e->body = body;
    e->body_sent = 0;
    e->close = (opcode == NGX_CHAT_WS_OP_CLOSE);

    if (body) {
        body->refs++;
    }

    ngx_queue_insert_tail(&ws->out, &e->queue);

    ws->t.out_bytes += e->head_len + body_len;
    ws->t.last_write = ngx_current_msec;

    /* written at the end of this event loop pass, several frames at once */
    ngx_post_event(c->write, &ngx_posted_events);

    return NGX_OK;
}


static void
ngx_chat_ws_write_handler(ngx_event_t *wev)
{
    ngx_int_t            rc;
    ngx_chat_ws_t       *ws;
    ngx_connection_t    *c;
    ngx_chat_ws_conn_t  *wc;

    c = wev->data;
    wc = ngx_chat_ws_conn(c);
    ws = &wc->ws;

    if (wc->dead) {
        return;
    }

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "client timed out reading WebSocket frames");
        c->timedout = 1;
        ngx_chat_ws_abort(wc);
        return;
    }

    c->log->action = "writing WebSocket frame";

    rc = ngx_chat_ws_flush(wc);

    c->log->action = "handling WebSocket";

    if (rc == NGX_ERROR) {
        ngx_chat_ws_abort(wc);
        return;
    }

    ngx_chat_ws_release(wc);

    if (rc == NGX_AGAIN || !ws->close_sent || wc->lingering) {
        return;
    }

    /* our close frame is out */

    if (ws->close_received) {
        ngx_chat_ws_abort(wc);
        return;
    }

    /*
     * lingering close: wait for the peer's close frame or EOF. Nothing
     * more is written, so the peer gets our FIN at once: a client whose
     * connection failed (its close frame is not looked at) or that waits
     * for the server to close TCP first (RFC 6455, 7.1.1) need not wait
     * for the linger timeout. Not with TLS: the record layer may write.
     */

    wc->lingering = 1;
    ngx_add_timer(&ws->close_timer, NGX_CHAT_WS_LINGER);

#if (NGX_SSL)
    if (c->ssl == NULL)
#endif
    {
        if (ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN) == -1) {
            ngx_connection_error(c, ngx_socket_errno,
                                 ngx_shutdown_socket_n " failed");
            ngx_chat_ws_abort(wc);
            return;
        }
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static ngx_int_t
ngx_chat_ws_flush(ngx_chat_ws_conn_t *wc)
{
    off_t                sent;
    ngx_buf_t           *b;
    ngx_uint_t           i, n, progress;
    ngx_event_t         *wev;
    ngx_queue_t         *q, *next;
    ngx_chain_t         *cl;
    ngx_chat_ws_t       *ws;
    ngx_connection_t    *c;
    ngx_chat_ws_out_t   *e;
    ngx_http_request_t  *r;

    ws = &wc->ws;
    c = ws->t.connection;
    r = ws->t.request;
    wev = c->write;
    progress = 0;

    if (r && r->out) {
        /* the rest of the 101 response */

        sent = c->sent;

        if (ngx_http_write_filter(r, NULL) == NGX_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        progress = (c->sent != sent);

        if (r->out) {
            goto again;
        }
    }

    for ( ;; ) {

        if (!wev->ready) {
            goto again;
        }

        n = 0;

        for (q = ngx_queue_head(&ws->out);
             q != ngx_queue_sentinel(&ws->out) && n < NGX_CHAT_WS_BUFS - 1;
             q = ngx_queue_next(q))
        {
            e = ngx_queue_data(q, ngx_chat_ws_out_t, queue);

            if (e->head_sent < e->head_len) {
                b = &ngx_chat_ws_bufs[n++];
                ngx_memzero(b, sizeof(ngx_buf_t));
                b->start = e->head;
                b->pos = e->head + e->head_sent;
                b->last = e->head + e->head_len;
                b->end = b->last;
                b->memory = 1;
            }

            if (e->body && e->body_sent < e->body->len) {
                b = &ngx_chat_ws_bufs[n++];
                ngx_memzero(b, sizeof(ngx_buf_t));
                b->start = e->body->data;
                b->pos = e->body->data + e->body_sent;
                b->last = e->body->data + e->body->len;
                b->end = b->last;
                b->memory = 1;
            }
        }

        if (n == 0) {
            if (c->buffered & NGX_LOWLEVEL_BUFFERED) {
                /* the SSL buffer */

                cl = c->send_chain(c, NULL, 0);

                if (cl == NGX_CHAIN_ERROR) {
                    c->error = 1;
                    return NGX_ERROR;
                }

                if (c->buffered & NGX_LOWLEVEL_BUFFERED) {
                    goto again;
                }
            }

            if (wev->timer_set) {
                ngx_del_timer(wev);
            }

#if (NGX_SSL)
            if (c->ssl) {
                /* the 16k record buffer, allocated again when needed */
                ngx_ssl_free_buffer(c);
            }
#endif

            return NGX_OK;
        }

        for (i = 0; i < n; i++) {
            ngx_chat_ws_links[i].buf = &ngx_chat_ws_bufs[i];
            ngx_chat_ws_links[i].next = (i + 1 < n) ? &ngx_chat_ws_links[i + 1]
                                                    : NULL;
        }

        ngx_chat_ws_bufs[n - 1].flush = 1;

        cl = c->send_chain(c, ngx_chat_ws_links, 0);

        if (cl == NGX_CHAIN_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        /* account what send_chain() took, in queue order */

        i = 0;

        for (q = ngx_queue_head(&ws->out);
             q != ngx_queue_sentinel(&ws->out) && i < n;
             q = next)
        {
            next = ngx_queue_next(q);
            e = ngx_queue_data(q, ngx_chat_ws_out_t, queue);

            if (e->head_sent < e->head_len) {
                b = &ngx_chat_ws_bufs[i++];
                sent = b->pos - (e->head + e->head_sent);
                e->head_sent += sent;
                ws->t.out_bytes -= sent;
                progress |= (sent != 0);
            }

            if (e->body && e->body_sent < e->body->len && i < n) {
                b = &ngx_chat_ws_bufs[i++];
                sent = b->pos - (e->body->data + e->body_sent);
                e->body_sent += sent;
                ws->t.out_bytes -= sent;
                progress |= (sent != 0);
            }

            if (e->head_sent < e->head_len
                || (e->body && e->body_sent < e->body->len))
            {
                break;
            }

            if (e->close) {
                ws->close_sent = 1;
            }

            ngx_queue_remove(q);
            ngx_chat_ws_free_entry(wc, e);
        }

        if (cl != NULL) {
            goto again;
        }
    }

again:

    if (progress || !wev->timer_set) {
        ngx_add_timer(wev, NGX_CHAT_WS_SEND_TIMEOUT);
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_chat_ws_free_entry(ngx_chat_ws_conn_t *wc, ngx_chat_ws_out_t *e)
{
    if (e->body) {
        ngx_chat_blob_release(e->body);
    }

    ngx_free(e);
}


/* all: everything; else keeps a frame partly written (or the stream breaks) */

static void
ngx_chat_ws_drop_queue(ngx_chat_ws_conn_t *wc, ngx_uint_t all)
{
    ngx_queue_t        *q, *next;
    ngx_chat_ws_t      *ws;
    ngx_chat_ws_out_t  *e;

    ws = &wc->ws;

    for (q = ngx_queue_head(&ws->out);
         q != ngx_queue_sentinel(&ws->out);
         q = next)
    {
        next = ngx_queue_next(q);
        e = ngx_queue_data(q, ngx_chat_ws_out_t, queue);

        if (!all && (e->head_sent || e->body_sent)) {
            continue;
        }

        ws->t.out_bytes -= (e->head_len - e->head_sent)
                         + (e->body ? e->body->len - e->body_sent : 0);

        ngx_queue_remove(q);
        ngx_chat_ws_free_entry(wc, e);
    }
}


/* closing */

void
ngx_chat_ws_close(ngx_chat_transport_t *t, uint16_t code, const char *reason)
{
    ngx_chat_ws_t       *ws;
    ngx_chat_ws_conn_t  *wc;

    wc = (ngx_chat_ws_conn_t *) t;
    ws = &wc->ws;

    if (ws->closing || ws->finalized || wc->dead) {
        return;
    }

    ngx_chat_ws_send_close(wc, code, reason);
}


static void
ngx_chat_ws_send_close(ngx_chat_ws_conn_t *wc, uint16_t code,
    const char *reason)
{
    u_char          payload[125];
    size_t          len;
    ngx_chat_ws_t  *ws;

    ws = &wc->ws;

    if (ws->closing || wc->dead) {
        return;
    }

    ws->closing = 1;
    ws->close_code = code;
    ws->t.connection->idle = 0;

    if (code == NGX_CHAT_WS_CLOSE_NO_STATUS || code < 1000) {
        len = 0;

    } else {
        len = ngx_chat_ws_close_payload(payload, code, reason);
    }

    if (ngx_chat_ws_enqueue(wc, NGX_CHAT_WS_OP_CLOSE, payload, len, NULL)
        != NGX_OK)
    {
        return;
    }

    ngx_add_timer(&ws->close_timer, ngx_exiting ? NGX_CHAT_WS_EXIT_TIMEOUT
                                                : NGX_CHAT_WS_CLOSE_TIMEOUT);
}


static void
ngx_chat_ws_close_timer_handler(ngx_event_t *ev)
{
    ngx_chat_ws_conn_t  *wc;

    wc = ev->data;

    if (wc->dead) {
        return;
    }

    if (!wc->lingering) {
        ngx_log_error(NGX_LOG_INFO, ev->log, NGX_ETIMEDOUT,
                      "WebSocket close frame not written in time");
        wc->ws.t.connection->timedout = 1;
    }

    ngx_chat_ws_abort(wc);
}


/*
 * the end, at most once: the close timer becomes the finalize event, which
 * runs from the event loop
 */

static void
ngx_chat_ws_abort(ngx_chat_ws_conn_t *wc)
{
    ngx_event_t  *ev;

    if (wc->dead) {
        return;
    }

    wc->dead = 1;
    wc->ws.closing = 1;

    ev = &wc->ws.close_timer;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    ev->handler = ngx_chat_ws_finalize_handler;

    ngx_post_event(ev, &ngx_posted_events);
}


static void
ngx_chat_ws_finalize_handler(ngx_event_t *ev)
{
    ngx_chat_ws_t       *ws;
    ngx_connection_t    *c;
    ngx_chat_ws_conn_t  *wc;
    ngx_http_request_t  *r;

    wc = ev->data;
    ws = &wc->ws;
    c = ws->t.connection;
    r = ws->t.request;

    if (ws->finalized) {
        return;
    }

    ws->finalized = 1;
    ngx_chat_metric_gauge_add(NGX_CHAT_G_CONNECTIONS, -1);

    c->log->action = "closing WebSocket";

    if (ws->t.on_closed) {
        ws->in_handler = 1;
        ws->t.on_closed(&ws->t);
        ws->in_handler = 0;
    }

    ngx_chat_ws_drop_queue(wc, 1);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0, "WebSocket closed");

    if (wc->tail) {
        ngx_free(wc->tail);
    }

    if (r) {
        /* never released: the 101 was not written */
        ngx_http_free_request(r, 0);
    }

    /* c->log may be wc->log: the state goes last */

    ngx_http_close_connection(c);

    ngx_free(wc);
}
