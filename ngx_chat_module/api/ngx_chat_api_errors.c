/* ngx_chat_api_errors.c: a header filter that turns the error pages nginx
 * itself makes for a chat_api location (413 of client_max_body_size, 500,
 * 403, the 405 of TRACE, ...) into the API's JSON error shape (PROTOCOL.md
 * section 7). */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_chat_api.h"


typedef struct {
    ngx_uint_t   status;
    const char  *code;
    const char  *message;
} ngx_chat_api_errors_t;


static ngx_chat_api_errors_t  ngx_chat_api_errors[] = {
    { NGX_HTTP_BAD_REQUEST, "bad_request", "bad request" },
    { NGX_HTTP_UNAUTHORIZED, "unauthorized", "unauthorized" },
    { NGX_HTTP_FORBIDDEN, "forbidden", "forbidden" },
    { NGX_HTTP_NOT_FOUND, "not_found", "no such resource" },
    { NGX_HTTP_NOT_ALLOWED, "method_not_allowed", "method not allowed here" },
    { NGX_HTTP_REQUEST_TIME_OUT, "timeout", "the request took too long" },
    { NGX_HTTP_LENGTH_REQUIRED, "bad_request", "a Content-Length is needed" },
    { NGX_HTTP_REQUEST_ENTITY_TOO_LARGE, "too_large",
      "the body is too large" },
    { NGX_HTTP_REQUEST_URI_TOO_LARGE, "too_large", "the URI is too long" },
    { NGX_HTTP_TOO_MANY_REQUESTS, "rate_limited", "too many requests" },
    { NGX_HTTP_SERVICE_UNAVAILABLE, "unavailable",
      "the service is unavailable" },
    { 0, NULL, NULL }
};


static ngx_int_t ngx_chat_api_errors_header_filter(ngx_http_request_t *r);
static ngx_chat_loc_conf_t *ngx_chat_api_errors_conf(ngx_http_request_t *r);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_chat_api_errors_init(ngx_conf_t *cf)
{
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_chat_api_errors_header_filter;

    return NGX_OK;
}


/*
 * An error answer of a chat_api location that is not JSON was made by
 * nginx (ngx_http_special_response_handler): its headers are rewritten and
 * the JSON body is sent here, and the HTML body that follows is dropped by
 * marking the request header-only.
 */
static ngx_int_t
ngx_chat_api_errors_header_filter(ngx_http_request_t *r)
{
    u_char                 *body, *p;
    size_t                  len;
    ngx_int_t               rc;
    ngx_buf_t              *b;
    ngx_uint_t              status, header_only;
    ngx_chain_t             out;
    const char             *code, *message;
    ngx_chat_loc_conf_t    *lcf;
    ngx_chat_api_errors_t  *e;

    status = r->headers_out.status;
    lcf = (status >= NGX_HTTP_BAD_REQUEST) ? ngx_chat_api_errors_conf(r)
                                           : NULL;

    if (r != r->main
        || lcf == NULL
        || (lcf->handler != NGX_CHAT_HANDLER_API
            && lcf->handler != NGX_CHAT_HANDLER_ATTACH)
        || status < NGX_HTTP_BAD_REQUEST
        || (r->headers_out.content_type.len
                == sizeof("application/json") - 1
            && ngx_strncasecmp(r->headers_out.content_type.data,
                               (u_char *) "application/json",
                               sizeof("application/json") - 1) == 0))
    {
        return ngx_http_next_header_filter(r);
    }

    code = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? "internal"
                                                      : "bad_request";
    message = (status >= NGX_HTTP_INTERNAL_SERVER_ERROR) ? "internal error"
                                                         : "bad request";

    for (e = ngx_chat_api_errors; e->code; e++) {
        if (e->status == status) {
            code = e->code;
            message = e->message;
            break;
        }
    }

    len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\"}}") - 1
          + ngx_strlen(code) + ngx_strlen(message);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}",
                    code, message);

    ngx_str_set(&r->headers_out.content_type, "application/json");
    r->headers_out.content_type_len = r->headers_out.content_type.len;
    r->headers_out.content_type_lowcase = NULL;
    r->headers_out.charset.len = 0;

    if (r->headers_out.content_length) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = NULL;
    }

    r->headers_out.content_length_n = p - body;

    header_only = r->header_only;

    rc = ngx_http_next_header_filter(r);

    if (rc == NGX_ERROR || rc > NGX_OK || header_only) {
        return rc;
    }

    b = ngx_calloc_buf(r->pool);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->pos = body;
    b->last = p;
    b->memory = 1;
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    rc = ngx_http_output_filter(r, &out);

    r->header_only = 1;

    return rc;
}


/*
 * The location's settings; for an error raised before nginx chose the
 * location (a TRACE request, a bad header), those of the prefix location
 * the URI would have gone to.
 */
static ngx_chat_loc_conf_t *
ngx_chat_api_errors_conf(ngx_http_request_t *r)
{
    size_t                          len, n;
    u_char                         *uri;
    ngx_int_t                       rc;
    ngx_http_core_srv_conf_t       *cscf;
    ngx_http_core_loc_conf_t       *clcf, *found;
    ngx_http_location_tree_node_t  *node;

    cscf = ngx_http_get_module_srv_conf(r, ngx_http_core_module);

    if (cscf == NULL || r->loc_conf != cscf->ctx->loc_conf
        || r->uri.len == 0)
    {
        return ngx_http_get_module_loc_conf(r, ngx_chat_module);
    }

    /* the longest prefix or the exact match, as nginx looks them up */

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    node = clcf->static_locations;
    uri = r->uri.data;
    len = r->uri.len;
    found = NULL;

    while (node) {
        n = ngx_min(len, (size_t) node->len);
        rc = ngx_filename_cmp(uri, node->name, n);

        if (rc != 0) {
            node = (rc < 0) ? node->left : node->right;
            continue;
        }

        if (len > (size_t) node->len) {
            if (node->inclusive == NULL) {
                node = node->right;
                continue;
            }

            found = node->inclusive;
            uri += node->len;
            len -= node->len;
            node = node->tree;
            continue;
        }

        if (len == (size_t) node->len) {
            found = node->exact ? node->exact : node->inclusive;
            break;
        }

        node = node->left;
    }

    if (found == NULL) {
        return ngx_http_get_module_loc_conf(r, ngx_chat_module);
    }

    return found->loc_conf[ngx_chat_module.ctx_index];
}
