/* ngx_chat_tcp.c: STOMP over a plain TCP or TLS connection (chat_stomp):
 * the bytes as they come to the session, its frames written as they are. */

#include "ngx_chat_tcp.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_ws_parser.h"      /* the close codes */


/*
 * STOMP needs no framing of its own on a byte stream: frames end with a
 * NUL, heart-beats are EOLs, and the session's parser takes a frame in any
 * number of pieces or several frames in one read. So this transport only
 * moves bytes; it lives in ngx_chat_stream_module.so and reaches the
 * session through ngx_chat_transport_open.
 *
 *   open:    read -> on_data; EOF -> on_eof (the peer may still read:
 *            the session answers what is in flight, then closes)
 *   closing: ngx_chat_tcp_close() or the send limit: nothing more is
 *            accepted from the session nor handed to it; what is queued
 *            is written, then our FIN, and input is discarded until the
 *            peer's EOF, at most NGX_CHAT_TCP_LINGER (so that an ERROR
 *            frame is not lost to a reset); with TLS the connection is
 *            closed once the queue is written (close_notify)
 *   end:     EOF while closing, I/O error, timeout: the finalize event is
 *            posted and runs from the event loop: on_closed(), then the
 *            stream session is finalized (logged, connection closed).
 *
 * So on_closed() is never called from inside the transport's send or
 * close, nor from inside another session callback. c->data is the
 * connection state while we hold the connection.
 */


#define NGX_CHAT_TCP_READ_SIZE      (16 * 1024)
#define NGX_CHAT_TCP_BUFS           64     /* two per queued frame */

#define NGX_CHAT_TCP_SEND_TIMEOUT   60000
#define NGX_CHAT_TCP_CLOSE_TIMEOUT  10000  /* flush the rest */
#define NGX_CHAT_TCP_EXIT_TIMEOUT   3000   /* the same while shutting down */
#define NGX_CHAT_TCP_LINGER         2000   /* wait for the peer's EOF */


/* bytes to write, one allocation: head copied after the struct, body
 * referenced */
typedef struct {
    ngx_queue_t             queue;
    u_char                 *head;
    size_t                  head_len;
    size_t                  head_sent;
    ngx_chat_blob_t        *body;
    size_t                  body_sent;
} ngx_chat_tcp_out_t;


typedef struct {
    ngx_chat_transport_t    t;            /* what the session sees */
    ngx_stream_session_t   *session;
    ngx_queue_t             out;
    ngx_event_t             timer;        /* close timeout, linger, then
                                             the finalize event */
    unsigned                eof:1;        /* the peer sends no more */
    unsigned                closing:1;
    unsigned                lingering:1;
    unsigned                dead:1;       /* the finalize event is posted */
} ngx_chat_tcp_conn_t;


static void ngx_chat_tcp_read_handler(ngx_event_t *rev);
static void ngx_chat_tcp_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_chat_tcp_send(ngx_chat_transport_t *t, u_char *head,
    size_t head_len, ngx_chat_blob_t *body);
static void ngx_chat_tcp_close(ngx_chat_transport_t *t, uint16_t code,
    const char *reason);
static ngx_int_t ngx_chat_tcp_flush(ngx_chat_tcp_conn_t *tc);
static void ngx_chat_tcp_drop_queue(ngx_chat_tcp_conn_t *tc, ngx_uint_t all);
static void ngx_chat_tcp_timer_handler(ngx_event_t *ev);
static void ngx_chat_tcp_abort(ngx_chat_tcp_conn_t *tc);
static void ngx_chat_tcp_finalize_handler(ngx_event_t *ev);


static u_char       ngx_chat_tcp_rbuf[NGX_CHAT_TCP_READ_SIZE];
static ngx_chain_t  ngx_chat_tcp_links[NGX_CHAT_TCP_BUFS];
static ngx_buf_t    ngx_chat_tcp_bufs[NGX_CHAT_TCP_BUFS];


void
ngx_chat_tcp_start(ngx_stream_session_t *ss, ngx_chat_loc_conf_t *lcf,
    ngx_str_t *user)
{
    u_char                      *p;
    size_t                       len;
    ngx_int_t                    rc;
    ngx_connection_t            *c;
    ngx_chat_tcp_conn_t         *tc;
    ngx_stream_core_srv_conf_t  *cscf;

    c = ss->connection;

    /* in the connection's pool: freed when the stream session ends */
    tc = ngx_pcalloc(c->pool, sizeof(ngx_chat_tcp_conn_t));
    if (tc == NULL) {
        ngx_stream_finalize_session(ss, NGX_STREAM_INTERNAL_SERVER_ERROR);
        return;
    }

    tc->session = ss;
    tc->t.connection = c;
    tc->t.log = c->log;
    tc->t.lcf = lcf;
    tc->t.user = *user;
    tc->t.kind = NGX_CHAT_TRANSPORT_TCP;
    tc->t.last_read = ngx_current_msec;
    tc->t.last_write = ngx_current_msec;
    tc->t.send = ngx_chat_tcp_send;
    tc->t.close = ngx_chat_tcp_close;

    ngx_queue_init(&tc->out);

    tc->timer.handler = ngx_chat_tcp_timer_handler;
    tc->timer.data = tc;
    tc->timer.log = c->log;

    ngx_chat_metric_inc(NGX_CHAT_M_TCP_CONNECTIONS, 1);
    ngx_chat_metric_gauge_add(NGX_CHAT_G_TCP_CONNECTIONS, 1);

    c->data = tc;
    c->read->handler = ngx_chat_tcp_read_handler;
    c->write->handler = ngx_chat_tcp_write_handler;
    c->log->action = "handling STOMP";

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    cscf = ngx_stream_get_module_srv_conf(ss, ngx_stream_core_module);

    if (cscf->tcp_nodelay && ngx_tcp_nodelay(c) != NGX_OK) {
        ngx_chat_tcp_abort(tc);
        return;
    }

    /* ngx_close_idle_connections() calls the read handler on shutdown */
    c->idle = 1;

    rc = ngx_chat_transport_open ? ngx_chat_transport_open(&tc->t)
                                 : NGX_ERROR;

    ngx_str_null(&tc->t.user);

    if (rc != NGX_OK) {
        ngx_chat_tcp_close(&tc->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);

    } else if (ngx_exiting) {
        ngx_chat_tcp_close(&tc->t, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                           "server shutting down");
    }

    /* bytes the stream module read ahead (preread phase) */

    if (c->buffer && c->buffer->pos < c->buffer->last && !tc->closing) {
        p = c->buffer->pos;
        len = c->buffer->last - p;
        c->buffer->pos = c->buffer->last;

        tc->t.on_data(&tc->t, p, len);
    }

    if (tc->dead) {
        return;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);

    } else if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_chat_tcp_abort(tc);
    }
}


/* reading */

static void
ngx_chat_tcp_read_handler(ngx_event_t *rev)
{
    ssize_t               n;
    ngx_connection_t     *c;
    ngx_chat_tcp_conn_t  *tc;

    c = rev->data;
    tc = c->data;

    if (tc->dead) {
        return;
    }

    if (c->close) {
        c->close = 0;

        if (c->error) {
            /* worker_shutdown_timeout */
            ngx_chat_tcp_abort(tc);
            return;
        }

        /* graceful shutdown: ngx_close_idle_connections() */

        c->idle = 0;

        ngx_chat_tcp_close(&tc->t, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                           "server shutting down");

        /* called from the worker cycle, not the event loop: write now */
        ngx_chat_tcp_write_handler(c->write);

        if (tc->dead) {
            return;
        }
    }

    if (tc->eof) {
        return;
    }

    c->log->action = "reading STOMP frames";

    for ( ;; ) {
        n = c->recv(c, ngx_chat_tcp_rbuf, NGX_CHAT_TCP_READ_SIZE);

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == NGX_ERROR) {
            ngx_chat_tcp_abort(tc);
            return;
        }

        if (n == 0) {
            tc->eof = 1;

            if (tc->closing) {
                /* lingering, or the session closed anyway */
                ngx_chat_tcp_abort(tc);
                return;
            }

            ngx_log_debug0(NGX_LOG_DEBUG_STREAM, c->log, 0,
                           "STOMP client half-closed");

            if (tc->t.on_eof) {
                tc->t.on_eof(&tc->t);

            } else {
                ngx_chat_tcp_close(&tc->t, NGX_CHAT_WS_CLOSE_NORMAL, NULL);
            }

            if (tc->dead) {
                return;
            }

            /* nothing more to read: a level-triggered method must not
             * report the EOF forever */

            if ((ngx_event_flags & NGX_USE_LEVEL_EVENT) && rev->active) {
                if (ngx_del_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
                    ngx_chat_tcp_abort(tc);
                }
            }

            return;
        }

        tc->t.last_read = ngx_current_msec;

        if (tc->closing) {
            /* lingering: discarded */
            continue;
        }

        tc->t.on_data(&tc->t, ngx_chat_tcp_rbuf, n);

        if (tc->dead) {
            return;
        }

        c->log->action = "reading STOMP frames";
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_chat_tcp_abort(tc);
    }
}


/* writing */

static ngx_int_t
ngx_chat_tcp_send(ngx_chat_transport_t *t, u_char *head, size_t head_len,
    ngx_chat_blob_t *body)
{
    size_t                body_len;
    ngx_connection_t     *c;
    ngx_chat_tcp_out_t   *e;
    ngx_chat_tcp_conn_t  *tc;

    tc = (ngx_chat_tcp_conn_t *) t;
    c = t->connection;

    if (tc->closing || tc->dead) {
        return NGX_ERROR;
    }

    body_len = body ? body->len : 0;

    if (t->out_bytes
        && t->out_bytes + head_len + body_len > t->lcf->send_limit
        && c->write->ready)
    {
        /* what is queued may just not have been written yet */

        if (ngx_chat_tcp_flush(tc) == NGX_ERROR) {
            ngx_chat_tcp_abort(tc);
            return NGX_ERROR;
        }
    }

    /* a frame alone may be larger than the limit */

    if (t->out_bytes
        && t->out_bytes + head_len + body_len > t->lcf->send_limit)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "STOMP client too slow: %uz bytes queued",
                      t->out_bytes);

        ngx_chat_tcp_drop_queue(tc, 0);
        ngx_chat_tcp_close(t, NGX_CHAT_WS_CLOSE_POLICY, "send buffer limit");
        return NGX_ERROR;
    }

    e = ngx_alloc(sizeof(ngx_chat_tcp_out_t) + head_len, c->log);
    if (e == NULL) {
        ngx_chat_tcp_abort(tc);
        return NGX_ERROR;
    }

    e->head = (u_char *) (e + 1);
    e->head_len = head_len;
    e->head_sent = 0;
    e->body = body;
    e->body_sent = 0;

    if (head_len) {
        ngx_memcpy(e->head, head, head_len);
    }

    if (body) {
        body->refs++;
    }

    ngx_queue_insert_tail(&tc->out, &e->queue);

    t->out_bytes += head_len + body_len;
    t->last_write = ngx_current_msec;

    /* written at the end of this event loop pass, several frames at once */
    ngx_post_event(c->write, &ngx_posted_events);

    return NGX_OK;
}


static void
ngx_chat_tcp_write_handler(ngx_event_t *wev)
{
    ngx_int_t             rc;
    ngx_connection_t     *c;
    ngx_chat_tcp_conn_t  *tc;

    c = wev->data;
    tc = c->data;

    if (tc->dead) {
        return;
    }

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_INFO, c->log, NGX_ETIMEDOUT,
                      "client timed out reading STOMP frames");
        c->timedout = 1;
        ngx_chat_tcp_abort(tc);
        return;
    }

    c->log->action = "writing STOMP frames";

    rc = ngx_chat_tcp_flush(tc);

    c->log->action = "handling STOMP";

    if (rc == NGX_ERROR) {
        ngx_chat_tcp_abort(tc);
        return;
    }

    if (rc == NGX_AGAIN || !tc->closing || tc->lingering) {
        return;
    }

    /* closing, and everything is written */

    if (tc->eof) {
        ngx_chat_tcp_abort(tc);
        return;
    }

#if (NGX_SSL)
    if (c->ssl) {
        /* the record layer may write: no half-close; close_notify */
        ngx_chat_tcp_abort(tc);
        return;
    }
#endif

    tc->lingering = 1;

    if (tc->timer.timer_set) {
        ngx_del_timer(&tc->timer);
    }

    ngx_add_timer(&tc->timer, NGX_CHAT_TCP_LINGER);

    if (ngx_shutdown_socket(c->fd, NGX_WRITE_SHUTDOWN) == -1) {
        ngx_connection_error(c, ngx_socket_errno,
                             ngx_shutdown_socket_n " failed");
        ngx_chat_tcp_abort(tc);
        return;
    }

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);
    }
}


static ngx_int_t
ngx_chat_tcp_flush(ngx_chat_tcp_conn_t *tc)
{
    off_t                 sent;
    ngx_buf_t            *b;
    ngx_uint_t            i, n, progress;
    ngx_event_t          *wev;
    ngx_queue_t          *q, *next;
    ngx_chain_t          *cl;
    ngx_connection_t     *c;
    ngx_chat_tcp_out_t   *e;
    ngx_chat_transport_t *t;

    t = &tc->t;
    c = t->connection;
    wev = c->write;
    progress = 0;

    for ( ;; ) {

        if (!wev->ready) {
            goto again;
        }

        n = 0;

        for (q = ngx_queue_head(&tc->out);
             q != ngx_queue_sentinel(&tc->out) && n < NGX_CHAT_TCP_BUFS - 1;
             q = ngx_queue_next(q))
        {
            e = ngx_queue_data(q, ngx_chat_tcp_out_t, queue);

            if (e->head_sent < e->head_len) {
                b = &ngx_chat_tcp_bufs[n++];
                ngx_memzero(b, sizeof(ngx_buf_t));
                b->start = e->head;
                b->pos = e->head + e->head_sent;
                b->last = e->head + e->head_len;
                b->end = b->last;
                b->memory = 1;
            }

            if (e->body && e->body_sent < e->body->len) {
                b = &ngx_chat_tcp_bufs[n++];
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
                ngx_ssl_free_buffer(c);
            }
#endif

            return NGX_OK;
        }

        for (i = 0; i < n; i++) {
            ngx_chat_tcp_links[i].buf = &ngx_chat_tcp_bufs[i];
            ngx_chat_tcp_links[i].next = (i + 1 < n)
                                         ? &ngx_chat_tcp_links[i + 1]
                                         : NULL;
        }

        ngx_chat_tcp_bufs[n - 1].flush = 1;

        cl = c->send_chain(c, ngx_chat_tcp_links, 0);

        if (cl == NGX_CHAIN_ERROR) {
            c->error = 1;
            return NGX_ERROR;
        }

        /* account what send_chain() took, in queue order */

        i = 0;

        for (q = ngx_queue_head(&tc->out);
             q != ngx_queue_sentinel(&tc->out) && i < n;
             q = next)
        {
            next = ngx_queue_next(q);
            e = ngx_queue_data(q, ngx_chat_tcp_out_t, queue);

            if (e->head_sent < e->head_len) {
                b = &ngx_chat_tcp_bufs[i++];
                sent = b->pos - (e->head + e->head_sent);
                e->head_sent += sent;
                t->out_bytes -= sent;
                progress |= (sent != 0);
            }

            if (e->body && e->body_sent < e->body->len && i < n) {
                b = &ngx_chat_tcp_bufs[i++];
                sent = b->pos - (e->body->data + e->body_sent);
                e->body_sent += sent;
                t->out_bytes -= sent;
                progress |= (sent != 0);
            }

            if (e->head_sent < e->head_len
                || (e->body && e->body_sent < e->body->len))
            {
                break;
            }

            ngx_queue_remove(q);
            ngx_chat_blob_release(e->body);
            ngx_free(e);
        }

        if (cl != NULL) {
            goto again;
        }
    }

again:

    if (progress || !wev->timer_set) {
        ngx_add_timer(wev, NGX_CHAT_TCP_SEND_TIMEOUT);
    }

    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


/* all: everything; else keeps a frame partly written (or the stream breaks) */

static void
ngx_chat_tcp_drop_queue(ngx_chat_tcp_conn_t *tc, ngx_uint_t all)
{
    ngx_queue_t         *q, *next;
    ngx_chat_tcp_out_t  *e;

    for (q = ngx_queue_head(&tc->out);
         q != ngx_queue_sentinel(&tc->out);
         q = next)
    {
        next = ngx_queue_next(q);
        e = ngx_queue_data(q, ngx_chat_tcp_out_t, queue);

        if (!all && (e->head_sent || e->body_sent)) {
            continue;
        }

        tc->t.out_bytes -= (e->head_len - e->head_sent)
                           + (e->body ? e->body->len - e->body_sent : 0);

        ngx_queue_remove(q);
        ngx_chat_blob_release(e->body);
        ngx_free(e);
    }
}


/* closing */

static void
ngx_chat_tcp_close(ngx_chat_transport_t *t, uint16_t code,
    const char *reason)
{
    ngx_connection_t     *c;
    ngx_chat_tcp_conn_t  *tc;

    tc = (ngx_chat_tcp_conn_t *) t;
    c = t->connection;

    if (tc->closing || tc->dead) {
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_STREAM, c->log, 0,
                   "STOMP connection closing: %ui %s", (ngx_uint_t) code,
                   reason ? reason : "");

    tc->closing = 1;
    c->idle = 0;

    ngx_add_timer(&tc->timer, ngx_exiting ? NGX_CHAT_TCP_EXIT_TIMEOUT
                                          : NGX_CHAT_TCP_CLOSE_TIMEOUT);

    /* the write handler writes the rest, then half-closes */
    ngx_post_event(c->write, &ngx_posted_events);
}


static void
ngx_chat_tcp_timer_handler(ngx_event_t *ev)
{
    ngx_chat_tcp_conn_t  *tc;

    tc = ev->data;

    if (tc->dead) {
        return;
    }

    if (!tc->lingering) {
        ngx_log_error(NGX_LOG_INFO, ev->log, NGX_ETIMEDOUT,
                      "STOMP frames not written in time");
        tc->t.connection->timedout = 1;
    }

    ngx_chat_tcp_abort(tc);
}


/* the end, at most once: the timer becomes the finalize event */

static void
ngx_chat_tcp_abort(ngx_chat_tcp_conn_t *tc)
{
    ngx_event_t  *ev;

    if (tc->dead) {
        return;
    }

    tc->dead = 1;
    tc->closing = 1;

    ev = &tc->timer;

    if (ev->timer_set) {
        ngx_del_timer(ev);
    }

    if (ev->posted) {
        ngx_delete_posted_event(ev);
    }

    ev->handler = ngx_chat_tcp_finalize_handler;

    ngx_post_event(ev, &ngx_posted_events);
}


static void
ngx_chat_tcp_finalize_handler(ngx_event_t *ev)
{
    ngx_connection_t      *c;
    ngx_chat_tcp_conn_t   *tc;
    ngx_stream_session_t  *ss;

    tc = ev->data;
    c = tc->t.connection;
    ss = tc->session;

    ngx_chat_metric_gauge_add(NGX_CHAT_G_TCP_CONNECTIONS, -1);

    c->log->action = "closing STOMP connection";

    if (tc->t.on_closed) {
        tc->t.on_closed(&tc->t);
    }

    ngx_chat_tcp_drop_queue(tc, 1);

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    /* tc is in c->pool: gone with the session */
    c->data = ss;

    ngx_stream_finalize_session(ss, NGX_STREAM_OK);
}
