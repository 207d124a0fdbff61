/* ngx_chat.c: what every layer shares: the worker's state, and a whole
 * HTTP response sent in one call. */

#include "ngx_chat.h"


ngx_chat_worker_t  ngx_chat_worker;


ngx_int_t
ngx_chat_send_response(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, u_char *body, size_t len)
{
    u_char       *semi;
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    if (type) {
        r->headers_out.content_type.data = (u_char *) type;
        r->headers_out.content_type.len = ngx_strlen(type);

        /* the type alone, without its parameters (charset) */
        semi = ngx_strlchr(r->headers_out.content_type.data,
                           r->headers_out.content_type.data
                           + r->headers_out.content_type.len, ';');
        r->headers_out.content_type_len =
            semi ? (size_t) (semi - r->headers_out.content_type.data)
                 : r->headers_out.content_type.len;
        r->headers_out.content_type_lowcase = NULL;
    }

    if (len == 0) {
        r->header_only = 1;
    }

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->pos = body;
    b->last = body + len;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
