/* ngx_chat_search.c: GET /search: the arguments checked, the search done by
 * PostgreSQL's full-text index (chat_api_search, sql/010_search.sql). */

#include "ngx_chat_search.h"


#define NGX_CHAT_SEARCH_Q_MAX          256     /* bytes, decoded */
#define NGX_CHAT_SEARCH_LIMIT_DEFAULT  20
#define NGX_CHAT_SEARCH_LIMIT_MAX      50
#define NGX_CHAT_SEARCH_OFFSET_MAX     1000
#define NGX_CHAT_SEARCH_CONV_MAX       36


static const char  ngx_chat_search_sql[] =
    "SELECT * FROM chat_api_search($1, $2, $3, $4, $5::int, $6::int)";


static ngx_int_t ngx_chat_search_arg(ngx_http_request_t *r, char *name,
    size_t max, ngx_str_t *value);
static ngx_int_t ngx_chat_search_int(ngx_http_request_t *r, char *name,
    ngx_int_t dflt, ngx_int_t min, ngx_int_t max, ngx_int_t *value);


ngx_int_t
ngx_chat_search(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx)
{
    u_char      *p;
    ngx_int_t    rc, limit, offset;
    ngx_str_t    q, conv;
    ngx_uint_t   i;
    const char  *values[6];

    rc = ngx_chat_search_arg(r, "q", NGX_CHAT_SEARCH_Q_MAX, &q);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; rc == NGX_OK && i < q.len; i++) {
        if (q.data[i] == '\0') {
            rc = NGX_DECLINED;
        }
    }

    if (rc != NGX_OK || q.len == 0) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "q must be 1 to 256 bytes of words to "
                                  "search for");
    }

    rc = ngx_chat_search_arg(r, "conversationId", NGX_CHAT_SEARCH_CONV_MAX,
                             &conv);

    if (rc == NGX_ERROR) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (rc == NGX_DECLINED) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "conversationId must be a string of 1 to "
                                  "36 characters");
    }

    if (ngx_chat_search_int(r, "limit", NGX_CHAT_SEARCH_LIMIT_DEFAULT, 1,
                            NGX_CHAT_SEARCH_LIMIT_MAX, &limit)
        != NGX_OK)
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "limit must be an integer from 1 to 50");
    }

    if (ngx_chat_search_int(r, "offset", 0, 0, NGX_CHAT_SEARCH_OFFSET_MAX,
                            &offset)
        != NGX_OK)
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "offset must be an integer from 0 to "
                                  "1000");
    }

    p = ngx_pnalloc(r->pool, 2 * (NGX_INT_T_LEN + 1));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = ngx_chat_api_cstr(r->pool, &q);
    values[3] = conv.len ? ngx_chat_api_cstr(r->pool, &conv) : NULL;

    if (values[0] == NULL || values[1] == NULL || values[2] == NULL
        || (conv.len && values[3] == NULL))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values[4] = (char *) p;
    p = ngx_sprintf(p, "%i%Z", limit);
    values[5] = (char *) p;
    (void) ngx_sprintf(p, "%i%Z", offset);

    return ngx_chat_api_query(r, ctx, ngx_chat_search_sql, 6, values);
}


/*
 * A query argument, URL-decoded, in value: NGX_OK (absent: empty),
 * NGX_DECLINED (empty or longer than max once decoded), NGX_ERROR.
 */
static ngx_int_t
ngx_chat_search_arg(ngx_http_request_t *r, char *name, size_t max,
    ngx_str_t *value)
{
    u_char      *dst, *src;
    ngx_str_t    arg;
    ngx_uint_t   i;

    ngx_str_null(value);

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &arg) != NGX_OK) {
        return NGX_OK;
    }

    if (arg.len == 0 || arg.len > 3 * max) {
        return NGX_DECLINED;
    }

    dst = ngx_pnalloc(r->pool, 2 * arg.len);
    if (dst == NULL) {
        return NGX_ERROR;
    }

    /* '+' is a space in a query string: a copy changed, then decoded */

    src = dst + arg.len;
    ngx_memcpy(src, arg.data, arg.len);

    for (i = 0; i < arg.len; i++) {
        if (src[i] == '+') {
            src[i] = ' ';
        }
    }

    value->data = dst;
    ngx_unescape_uri(&dst, &src, arg.len, 0);
    value->len = dst - value->data;

    return (value->len == 0 || value->len > max) ? NGX_DECLINED : NGX_OK;
}


static ngx_int_t
ngx_chat_search_int(ngx_http_request_t *r, char *name, ngx_int_t dflt,
    ngx_int_t min, ngx_int_t max, ngx_int_t *value)
{
    ngx_str_t  arg;

    *value = dflt;

    if (ngx_http_arg(r, (u_char *) name, ngx_strlen(name), &arg) != NGX_OK) {
        return NGX_OK;
    }

    *value = (arg.len > 0 && arg.len <= 4) ? ngx_atoi(arg.data, arg.len)
                                            : NGX_ERROR;

    return (*value >= min && *value <= max) ? NGX_OK : NGX_ERROR;
}
