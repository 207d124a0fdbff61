/* ngx_chat_ws_handshake.c: the RFC 6455 opening handshake, up to the 101. */

#include <ngx_sha1.h>

#include "ngx_chat.h"
#include "ngx_chat_ws.h"
#include "ngx_chat_ws_int.h"


#define NGX_CHAT_WS_GUID           "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


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


ngx_int_t
ngx_chat_ws_handler(ngx_http_request_t *r)
{
    return ngx_chat_ws_upgrade(r, ngx_chat_transport_open);
}


/* the handshake: RFC 6455, section 4.2 */

ngx_int_t
ngx_chat_ws_upgrade(ngx_http_request_t *r, ngx_chat_transport_open_pt open)
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

    wc = ngx_chat_ws_create(r);
    if (wc == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_chat_ws_accept(r, &key, &protocol);
    if (rc == NGX_ERROR || rc > NGX_OK) {
        return rc;
    }

    /* the request now lives until ngx_chat_ws_finalize_handler() */

    r->main->count++;

    ngx_chat_ws_start(r, wc, lcf, version, open);

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

    ngx_chat_ws_protocol_t  *protocols;

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

    /* the sub-protocol: of those the layer above speaks, the highest */

    best = 0;
    ngx_str_null(protocol);
    protocols = ngx_chat_ws_protocols;

    ngx_chat_ws_headers_init(&it, r, "Sec-WebSocket-Protocol");

    while ((h = ngx_chat_ws_headers_next(&it)) != NULL) {

        p = h->value.data;
        end = p + h->value.len;

        while (ngx_chat_ws_next_token(&p, end, &token)) {

            for (n = 0; protocols && protocols[n].name; n++) {
                if (protocols[n].value > best
                    && token.len == ngx_strlen(protocols[n].name)
                    && ngx_strncasecmp(token.data,
                                       (u_char *) protocols[n].name,
                                       token.len)
                       == 0)
                {
                    /* echoed as the client spelt it */
                    best = protocols[n].value;
                    *protocol = token;
                }
            }
        }
    }

    *version = best;

    return NGX_OK;
}


ngx_int_t
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
    size_t      len;
    ngx_buf_t  *b;

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

    r->headers_out.status_line.data = (u_char *) line;
    r->headers_out.status_line.len = len;

    return ngx_chat_send_response(r, status, "text/plain", b->pos, len + 1);
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
