/* ngx_chat_ws.c: WebSocket connections: handshake, frame I/O, closing. */

#include <ngx_sha1.h>

#include "ngx_chat.h"
#include "ngx_chat_ws.h"
#include "ngx_chat_metrics.h"


/*
 * Life of a connection. The handshake is checked and answered with a 101
 * through nginx's header filters; then the request is kept (r->count) and
 * the connection's read and write handlers are replaced by ours, so
 * everything after goes through c->recv() and c->send_chain() (TLS works
 * the same). The request's module context of ngx_chat_module holds the
 * connection state.
 *
 *   open ---- ngx_chat_ws_close(), peer's close, bad frame ----> closing
 *   closing: nothing more is accepted from the session nor handed to it;
 *            what is queued is written, then our close frame;
 *   our close written: the peer's close already came -> end; else wait
 *            for it or EOF, at most NGX_CHAT_WS_LINGER (lingering close:
 *            closing with unread input would reset the connection and
 *            lose our last frames);
 *   end:     EOF, I/O error, timeout, or the above; finalize_ev is posted
 *            and runs from the event loop: on_closed(), then the request
 *            and the connection are freed.
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


#define NGX_CHAT_WS_GUID           "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

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


/* one frame to write: the frame header and head copied, body referenced */
typedef struct {
    ngx_queue_t         queue;
    u_char             *head;        /* ngx_alloc()ed */
    size_t              head_len;
    size_t              head_sent;
    ngx_chat_blob_t    *body;
    size_t              body_sent;
    unsigned            close:1;
} ngx_chat_ws_out_t;


/* what the session sees (ws) and what only this file uses */
typedef struct {
    ngx_chat_ws_t       ws;
    ngx_event_t         finalize_ev;
    size_t              tail_len;
    u_char              tail[NGX_CHAT_WS_TAIL_SIZE];
    unsigned            dead:1;       /* finalize_ev posted */
    unsigned            lingering:1;  /* our close is out, waiting */
} ngx_chat_ws_conn_t;


/* walks the request headers of one name */
typedef struct {
    ngx_list_part_t    *part;
    ngx_uint_t          i;
    const char         *name;
    size_t              len;
} ngx_chat_ws_headers_t;


static ngx_int_t ngx_chat_ws_check(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_str_t *key, ngx_str_t *protocol,
    ngx_uint_t *version, ngx_int_t *refused);
static ngx_int_t ngx_chat_ws_check_origin(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf);
static ngx_int_t ngx_chat_ws_valid_key(ngx_str_t *key);
static void ngx_chat_ws_headers_init(ngx_chat_ws_headers_t *it,
    ngx_http_request_t *r, const char *name);
static ngx_table_elt_t *ngx_chat_ws_headers_next(ngx_chat_ws_headers_t *it);
static ngx_uint_t ngx_chat_ws_header_count(ngx_http_request_t *r,
    const char *name, ngx_str_t *value);
static ngx_uint_t ngx_chat_ws_has_token(ngx_http_request_t *r,
    const char *name, const char *token);
static ngx_uint_t ngx_chat_ws_next_token(u_char **pos, u_char *end,
    ngx_str_t *token);
static ngx_int_t ngx_chat_ws_add_header(ngx_http_request_t *r,
    const char *name, u_char *value, size_t len);
static ngx_int_t ngx_chat_ws_reject(ngx_http_request_t *r,
    ngx_uint_t status, const char *line, const char *name,
    const char *value);
static ngx_int_t ngx_chat_ws_accept(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *protocol);
static void ngx_chat_ws_start(ngx_http_request_t *r,
    ngx_chat_ws_conn_t *wc, ngx_chat_loc_conf_t *lcf, ngx_uint_t version);

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


/* the handshake: RFC 6455, section 4.2 */

ngx_int_t
ngx_chat_ws_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_str_t             key, protocol;
    ngx_uint_t            version;
    ngx_chat_ws_conn_t   *wc;
    ngx_chat_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    if (r != r->main) {
        return NGX_HTTP_NOT_FOUND;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_str_null(&key);
    ngx_str_null(&protocol);
    version = 0;

    if (ngx_chat_ws_check(r, lcf, &key, &protocol, &version, &rc)
        != NGX_OK)
    {
        /* refused: an HTTP status, or the result of sending a response */
        return rc;
    }

    wc = ngx_pcalloc(r->pool, sizeof(ngx_chat_ws_conn_t));
    if (wc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_chat_ws_accept(r, &key, &protocol);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    /* the request now lives until ngx_chat_ws_finalize_handler() */

    r->main->count++;

    ngx_chat_ws_start(r, wc, lcf, version);

    return NGX_DONE;
}


static ngx_int_t
ngx_chat_ws_check(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf,
    ngx_str_t *key, ngx_str_t *protocol, ngx_uint_t *version,
    ngx_int_t *refused)
{
    u_char                 *p, *end;
    ngx_str_t               value, token;
    ngx_uint_t              n, best;
    ngx_table_elt_t        *h;
    ngx_chat_ws_headers_t   it;

    static struct {
        const char  *name;
        ngx_uint_t   version;
    } protocols[] = {
        { "v12.stomp", 12 },
        { "v11.stomp", 11 },
        { "v10.stomp", 10 },
        { NULL, 0 }
    };

    if (!(r->method & NGX_HTTP_GET)) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "WebSocket handshake: method is not GET");
        *refused = ngx_chat_ws_reject(r, NGX_HTTP_NOT_ALLOWED,
                                      "405 Not Allowed", "Allow", "GET");
        return NGX_DECLINED;
    }

    if (r->http_version < NGX_HTTP_VERSION_11
        || r->http_version >= NGX_HTTP_VERSION_20)
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "WebSocket handshake: not HTTP/1.1");
        *refused = NGX_HTTP_BAD_REQUEST;
        return NGX_DECLINED;
    }

    if (r->headers_in.content_length_n > 0 || r->headers_in.chunked) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "WebSocket handshake: request has a body");
        *refused = NGX_HTTP_BAD_REQUEST;
        return NGX_DECLINED;
    }

    if (!ngx_chat_ws_has_token(r, "Upgrade", "websocket")) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "WebSocket handshake: no \"Upgrade: websocket\"");
        *refused = ngx_chat_ws_reject(r, 426, "426 Upgrade Required",
                                      "Upgrade", "websocket");
        return NGX_DECLINED;
    }

    if (!ngx_chat_ws_has_token(r, "Connection", "upgrade")) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "WebSocket handshake: no \"Connection: upgrade\"");
        *refused = NGX_HTTP_BAD_REQUEST;
        return NGX_DECLINED;
    }

    n = ngx_chat_ws_header_count(r, "Sec-WebSocket-Version", &value);

    if (n == 0) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "WebSocket handshake: no Sec-WebSocket-Version");
        *refused = NGX_HTTP_BAD_REQUEST;
        return NGX_DECLINED;
    }

    if (n != 1 || value.len != 2 || value.data[0] != '1'
        || value.data[1] != '3')
    {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "WebSocket handshake: unsupported version \"%V\"",
                      &value);
        *refused = ngx_chat_ws_reject(r, 426, "426 Upgrade Required",
                                      "Sec-WebSocket-Version", "13");
        return NGX_DECLINED;
    }

    n = ngx_chat_ws_header_count(r, "Sec-WebSocket-Key", key);

    if (n != 1 || ngx_chat_ws_valid_key(key) != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "WebSocket handshake: missing or invalid "
                      "Sec-WebSocket-Key");
        *refused = NGX_HTTP_BAD_REQUEST;
        return NGX_DECLINED;
    }

    if (ngx_chat_ws_check_origin(r, lcf) != NGX_OK) {
        *refused = NGX_HTTP_FORBIDDEN;
        return NGX_DECLINED;
    }

    /* the sub-protocol: the highest STOMP version offered */

    best = 0;
    ngx_str_null(protocol);

    ngx_chat_ws_headers_init(&it, r, "Sec-WebSocket-Protocol");

    while ((h = ngx_chat_ws_headers_next(&it)) != NULL) {

        p = h->value.data;
        end = p + h->value.len;

        while (ngx_chat_ws_next_token(&p, end, &token)) {

            for (n = 0; protocols[n].name; n++) {
                if (protocols[n].version > best
                    && token.len == ngx_strlen(protocols[n].name)
                    && ngx_strncasecmp(token.data,
                                       (u_char *) protocols[n].name,
                                       token.len)
                       == 0)
                {
                    /* echoed as the client spelt it */
                    best = protocols[n].version;
                    *protocol = token;
                }
            }
        }
    }

    *version = best;

    return NGX_OK;
}


static ngx_int_t
ngx_chat_ws_check_origin(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf)
{
    ngx_str_t   origin, *allowed;
    ngx_uint_t  i;

    if (lcf->origins == NULL) {
        return NGX_OK;
    }

    if (ngx_chat_ws_header_count(r, "Origin", &origin) == 0) {
        /* not a browser */
        return NGX_OK;
    }

    allowed = lcf->origins->elts;

    for (i = 0; i < lcf->origins->nelts; i++) {

        if (allowed[i].len == 1 && allowed[i].data[0] == '*') {
            return NGX_OK;
        }

        if (allowed[i].len == origin.len
            && ngx_strncasecmp(allowed[i].data, origin.data, origin.len)
               == 0)
        {
            return NGX_OK;
        }
    }

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "WebSocket handshake: origin \"%V\" is not allowed",
                  &origin);

    return NGX_DECLINED;
}


static ngx_int_t
ngx_chat_ws_valid_key(ngx_str_t *key)
{
    u_char     buf[18];
    ngx_str_t  decoded;

    /* base64 of 16 bytes: 22 characters and "==" */

    if (key->len != 24 || key->data[22] != '=' || key->data[23] != '=') {
        return NGX_ERROR;
    }

    decoded.data = buf;

    if (ngx_decode_base64(&decoded, key) != NGX_OK || decoded.len != 16) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_chat_ws_headers_init(ngx_chat_ws_headers_t *it, ngx_http_request_t *r,
    const char *name)
{
    it->part = &r->headers_in.headers.part;
    it->i = 0;
    it->name = name;
    it->len = ngx_strlen(name);
}


static ngx_table_elt_t *
ngx_chat_ws_headers_next(ngx_chat_ws_headers_t *it)
{
    ngx_table_elt_t  *h;

    for ( ;; ) {

        if (it->i >= it->part->nelts) {
            if (it->part->next == NULL) {
                return NULL;
            }

            it->part = it->part->next;
            it->i = 0;
            continue;
        }

        h = it->part->elts;
        h = &h[it->i++];

        if (h->key.len == it->len
            && ngx_strncasecmp(h->key.data, (u_char *) it->name, it->len)
               == 0)
        {
            return h;
        }
    }
}


/* how many request headers are called name; value: the first, trimmed */

static ngx_uint_t
ngx_chat_ws_header_count(ngx_http_request_t *r, const char *name,
    ngx_str_t *value)
{
    u_char                 *p, *last;
    ngx_uint_t              n;
    ngx_table_elt_t        *h;
    ngx_chat_ws_headers_t   it;

    n = 0;

    ngx_chat_ws_headers_init(&it, r, name);

    while ((h = ngx_chat_ws_headers_next(&it)) != NULL) {

        if (n++ > 0) {
            continue;
        }

        p = h->value.data;
        last = p + h->value.len;

        while (p < last && (*p == ' ' || *p == '\t')) {
            p++;
        }

        while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }

        value->data = p;
        value->len = last - p;
    }

    return n;
}


/* a comma separated token list in any header called name holds token */

static ngx_uint_t
ngx_chat_ws_has_token(ngx_http_request_t *r, const char *name,
    const char *token)
{
    size_t                  len;
    u_char                 *p, *end;
    ngx_str_t               t;
    ngx_table_elt_t        *h;
    ngx_chat_ws_headers_t   it;

    len = ngx_strlen(token);

    ngx_chat_ws_headers_init(&it, r, name);

    while ((h = ngx_chat_ws_headers_next(&it)) != NULL) {

        p = h->value.data;
        end = p + h->value.len;

        while (ngx_chat_ws_next_token(&p, end, &t)) {
            if (t.len == len
                && ngx_strncasecmp(t.data, (u_char *) token, len) == 0)
            {
                return 1;
            }
        }
    }

    return 0;
}


static ngx_uint_t
ngx_chat_ws_next_token(u_char **pos, u_char *end, ngx_str_t *token)
{
    u_char  *p, *start, *last;

    for (p = *pos; p < end; p++) {

        if (*p == ',' || *p == ' ' || *p == '\t') {
            continue;
        }

        start = p;

        while (p < end && *p != ',') {
            p++;
        }

        last = p;

        while (last > start && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }

        token->data = start;
        token->len = last - start;
        *pos = p;

        return 1;
    }

    *pos = end;

    return 0;
}


static ngx_int_t
ngx_chat_ws_add_header(ngx_http_request_t *r, const char *name,
    u_char *value, size_t len)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value.data = value;
    h->value.len = len;

    return NGX_OK;
}


/* an error response with a header nginx's own error pages would not have */

static ngx_int_t
ngx_chat_ws_reject(ngx_http_request_t *r, ngx_uint_t status,
    const char *line, const char *name, const char *value)
{
    size_t        len;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    if (ngx_chat_ws_add_header(r, name, (u_char *) value,
                               ngx_strlen(value))
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(line);

    b = ngx_create_temp_buf(r->pool, len + 1);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_cpymem(b->last, line, len);
    *b->last++ = LF;
    b->last_buf = 1;

    r->headers_out.status = status;
    r->headers_out.status_line.data = (u_char *) line;
    r->headers_out.status_line.len = len;
    r->headers_out.content_length_n = len + 1;
    ngx_str_set(&r->headers_out.content_type, "text/plain");
    r->headers_out.content_type_len = r->headers_out.content_type.len;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


/* the 101 response */

static ngx_int_t
ngx_chat_ws_accept(ngx_http_request_t *r, ngx_str_t *key,
    ngx_str_t *protocol)
{
    u_char      *p, hash[20];
    ngx_str_t    src, accept;
    ngx_sha1_t   sha1;

    ngx_sha1_init(&sha1);
    ngx_sha1_update(&sha1, key->data, key->len);
    ngx_sha1_update(&sha1, NGX_CHAT_WS_GUID, sizeof(NGX_CHAT_WS_GUID) - 1);
    ngx_sha1_final(hash, &sha1);

    p = ngx_pnalloc(r->pool, ngx_base64_encoded_length(20));
    if (p == NULL) {
        return NGX_ERROR;
    }

    src.data = hash;
    src.len = 20;
    accept.data = p;

    ngx_encode_base64(&accept, &src);

    if (ngx_chat_ws_add_header(r, "Upgrade", (u_char *) "websocket",
                               sizeof("websocket") - 1)
        != NGX_OK
        || ngx_chat_ws_add_header(r, "Sec-WebSocket-Accept", accept.data,
                                  accept.len)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (protocol->len
        && ngx_chat_ws_add_header(r, "Sec-WebSocket-Protocol",
                                  protocol->data, protocol->len)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the header filter adds "Connection: upgrade" to a 101 */

    r->headers_out.status = NGX_HTTP_SWITCHING_PROTOCOLS;
    ngx_str_set(&r->headers_out.status_line, "101 Switching Protocols");
    r->headers_out.content_length_n = -1;
    r->headers_out.content_type.len = 0;
    r->header_only = 1;
    r->chunked = 0;
    r->keepalive = 0;
    r->allow_ranges = 0;

    return ngx_http_send_header(r);
}


/* takes over the connection and hands it to the session */

static void
ngx_chat_ws_start(ngx_http_request_t *r, ngx_chat_ws_conn_t *wc,
    ngx_chat_loc_conf_t *lcf, ngx_uint_t version)
{
    u_char                    *p;
    size_t                     len;
    ngx_int_t                  rc;
    ngx_chat_ws_t             *ws;
    ngx_connection_t          *c;
    ngx_http_core_loc_conf_t  *clcf;

    c = r->connection;

    ngx_http_set_ctx(r, wc, ngx_chat_module);

    ngx_chat_metric_inc(NGX_CHAT_M_CONNECTIONS, 1);
    ngx_chat_metric_gauge_add(NGX_CHAT_G_CONNECTIONS, 1);

    ws = &wc->ws;
    ws->request = r;
    ws->connection = c;
    ws->pool = r->pool;
    ws->lcf = lcf;
    ws->stomp_version = version;
    ws->last_read = ngx_current_msec;
    ws->last_write = ngx_current_msec;

    ngx_chat_ws_reader_init(&ws->reader, lcf->max_message);
    ngx_queue_init(&ws->out);
    ngx_queue_init(&ws->free_out);

    ws->close_timer.handler = ngx_chat_ws_close_timer_handler;
    ws->close_timer.data = wc;
    ws->close_timer.log = c->log;

    wc->finalize_ev.handler = ngx_chat_ws_finalize_handler;
    wc->finalize_ev.data = wc;
    wc->finalize_ev.log = c->log;

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
    rc = ngx_chat_session_start(ws);
    ws->in_handler = 0;

    if (rc != NGX_OK) {
        ngx_chat_ws_close(ws, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);

    } else if (ngx_exiting) {
        ngx_chat_ws_close(ws, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                          "server shutting down");
    }

    /* frames that came with the handshake */

    len = r->header_in->last - r->header_in->pos;

    if (len && !wc->dead) {
        p = r->header_in->pos;
        r->header_in->pos = r->header_in->last;

        ws->last_read = ngx_current_msec;
        ngx_chat_ws_process(wc, p, len);
    }

    if (wc->dead) {
        return;
    }

    ngx_post_event(c->write, &ngx_posted_events);

    if (c->read->ready) {
        ngx_post_event(c->read, &ngx_posted_events);

    } else if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        ngx_chat_ws_abort(wc);
    }
}


/* reading */

static void
ngx_chat_ws_read_handler(ngx_event_t *rev)
{
    size_t               tail;
    ssize_t              n;
    ngx_chat_ws_t       *ws;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_chat_ws_conn_t  *wc;

    c = rev->data;
    r = c->data;
    wc = ngx_http_get_module_ctx(r, ngx_chat_module);
    ws = &wc->ws;

    if (wc->dead) {
        return;
    }

    if (c->close) {
        c->close = 0;

        if (c->error) {
            /* worker_shutdown_timeout */
            ngx_chat_ws_abort(wc);
            return;
        }

        /* graceful shutdown: ngx_close_idle_connections() */

        c->idle = 0;

        ngx_chat_ws_close(ws, NGX_CHAT_WS_CLOSE_GOING_AWAY,
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
        ngx_memcpy(ngx_chat_ws_rbuf, wc->tail, tail);

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

        ws->last_read = ngx_current_msec;

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
    c = ws->connection;

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
            if (!ws->closing && ws->on_data) {
                ws->in_handler = 1;
                ws->on_data(ws, ev.data, ev.len);
                ws->in_handler = 0;
            }

            break;

        case NGX_CHAT_WS_MESSAGE_END:
            if (!ws->closing && ws->on_message_end) {
                ws->in_handler = 1;
                ws->on_message_end(ws);
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

    ngx_memmove(wc->tail, p, len);
    wc->tail_len = len;
}


/* writing */

ngx_int_t
ngx_chat_ws_send(ngx_chat_ws_t *ws, u_char *head, size_t head_len,
    ngx_chat_blob_t *body)
{
    return ngx_chat_ws_enqueue((ngx_chat_ws_conn_t *) ws,
                               NGX_CHAT_WS_OP_TEXT, head, head_len, body);
}


static ngx_int_t
ngx_chat_ws_enqueue(ngx_chat_ws_conn_t *wc, unsigned opcode, u_char *head,
    size_t head_len, ngx_chat_blob_t *body)
{
    size_t              body_len, hlen;
    u_char             *frame;
    ngx_queue_t        *q;
    ngx_chat_ws_t      *ws;
    ngx_connection_t   *c;
    ngx_chat_ws_out_t  *e;

    ws = &wc->ws;
    c = ws->connection;

    if (ws->finalized || wc->dead
        || (ws->closing && opcode != NGX_CHAT_WS_OP_CLOSE))
    {
        return NGX_ERROR;
    }

    body_len = body ? body->len : 0;

    if (opcode != NGX_CHAT_WS_OP_CLOSE
        && ws->out_bytes
        && ws->out_bytes + 10 + head_len + body_len > ws->lcf->send_limit
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
        && ws->out_bytes
        && ws->out_bytes + 10 + head_len + body_len > ws->lcf->send_limit)
    {
        ngx_log_error(NGX_LOG_INFO, c->log, 0,
                      "WebSocket client too slow: %uz bytes queued",
                      ws->out_bytes);

        ngx_chat_ws_drop_queue(wc, 0);
        ngx_chat_ws_close(ws, NGX_CHAT_WS_CLOSE_POLICY,
                          "send buffer limit");
        return NGX_ERROR;
    }

    frame = ngx_alloc(10 + head_len, c->log);
    if (frame == NULL) {
        goto failed;
    }

    if (!ngx_queue_empty(&ws->free_out)) {
        q = ngx_queue_head(&ws->free_out);
        ngx_queue_remove(q);
        e = ngx_queue_data(q, ngx_chat_ws_out_t, queue);

    } else {
        e = ngx_palloc(ws->pool, sizeof(ngx_chat_ws_out_t));
        if (e == NULL) {
            ngx_free(frame);
            goto failed;
        }
    }

    hlen = ngx_chat_ws_frame_header(frame, opcode, 1, head_len + body_len);

    if (head_len) {
        ngx_memcpy(frame + hlen, head, head_len);
    }

    e->head = frame;
    e->head_len = hlen + head_len;
    e->head_sent = 0;
    e->body = body;
    e->body_sent = 0;
    e->close = (opcode == NGX_CHAT_WS_OP_CLOSE);

    if (body) {
        body->refs++;
    }

    ngx_queue_insert_tail(&ws->out, &e->queue);

    ws->out_bytes += e->head_len + body_len;
    ws->last_write = ngx_current_msec;

    /* written at the end of this event loop pass, several frames at once */
    ngx_post_event(c->write, &ngx_posted_events);

    return NGX_OK;

failed:

    ngx_chat_ws_abort(wc);

    return NGX_ERROR;
}


static void
ngx_chat_ws_write_handler(ngx_event_t *wev)
{
    ngx_int_t            rc;
    ngx_chat_ws_t       *ws;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;
    ngx_chat_ws_conn_t  *wc;

    c = wev->data;
    r = c->data;
    wc = ngx_http_get_module_ctx(r, ngx_chat_module);
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
    c = ws->connection;
    r = ws->request;
    wev = c->write;
    progress = 0;

    if (r->out) {
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
                ws->out_bytes -= sent;
                progress |= (sent != 0);
            }

            if (e->body && e->body_sent < e->body->len && i < n) {
                b = &ngx_chat_ws_bufs[i++];
                sent = b->pos - (e->body->data + e->body_sent);
                e->body_sent += sent;
                ws->out_bytes -= sent;
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
    ngx_chat_ws_t  *ws;

    ws = &wc->ws;

    ngx_free(e->head);
    e->head = NULL;

    if (e->body) {
        ngx_chat_blob_release(e->body);
        e->body = NULL;
    }

    ngx_queue_insert_tail(&ws->free_out, &e->queue);
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

        ws->out_bytes -= (e->head_len - e->head_sent)
                         + (e->body ? e->body->len - e->body_sent : 0);

        ngx_queue_remove(q);
        ngx_chat_ws_free_entry(wc, e);
    }
}


/* closing */

void
ngx_chat_ws_close(ngx_chat_ws_t *ws, uint16_t code, const char *reason)
{
    ngx_chat_ws_conn_t  *wc;

    wc = (ngx_chat_ws_conn_t *) ws;

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
    ws->connection->idle = 0;

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
        wc->ws.connection->timedout = 1;
    }

    ngx_chat_ws_abort(wc);
}


/* the end, at most once: finalize_ev runs from the event loop */

static void
ngx_chat_ws_abort(ngx_chat_ws_conn_t *wc)
{
    if (wc->dead) {
        return;
    }

    wc->dead = 1;
    wc->ws.closing = 1;

    ngx_post_event(&wc->finalize_ev, &ngx_posted_events);
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
    c = ws->connection;
    r = ws->request;

    if (ws->finalized) {
        return;
    }

    ws->finalized = 1;
    ngx_chat_metric_gauge_add(NGX_CHAT_G_CONNECTIONS, -1);

    if (ws->close_timer.timer_set) {
        ngx_del_timer(&ws->close_timer);
    }

    if (ws->close_timer.posted) {
        ngx_delete_posted_event(&ws->close_timer);
    }

    c->log->action = "closing WebSocket";

    if (ws->on_closed) {
        ws->in_handler = 1;
        ws->on_closed(ws);
        ws->in_handler = 0;
    }

    ngx_chat_ws_drop_queue(wc, 1);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0, "WebSocket closed");

    ngx_http_free_request(r, 0);
    ngx_http_close_connection(c);
}
