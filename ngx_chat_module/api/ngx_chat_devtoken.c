/* ngx_chat_devtoken.c: "chat_dev_token", development sign-in: a token for
 * any user name, for loopback clients only. */

#include "ngx_chat_devtoken.h"


#define NGX_CHAT_DEV_TOKEN_TTL  86400


static ngx_int_t ngx_chat_devtoken_local(ngx_http_request_t *r);
static ngx_int_t ngx_chat_devtoken_error(ngx_http_request_t *r,
    ngx_uint_t status, const char *message);


ngx_int_t
ngx_chat_devtoken_handler(ngx_http_request_t *r)
{
    char                 *token;
    u_char               *p;
    size_t                len;
    ngx_buf_t            *b;
    ngx_int_t             rc;
    ngx_str_t             user;
    ngx_chat_loc_conf_t  *lcf;
    u_char                sub[NGX_CHAT_USER_ID_MAX + 1];

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return ngx_chat_devtoken_error(r, NGX_HTTP_NOT_ALLOWED,
                                       "GET /dev/token?user=NAME");
    }

    if (ngx_chat_devtoken_local(r) != NGX_OK) {
        return ngx_chat_devtoken_error(r, NGX_HTTP_FORBIDDEN,
                                       "development tokens are for "
                                       "loopback clients only");
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    if (ngx_http_arg(r, (u_char *) "user", 4, &user) != NGX_OK
        || !ngx_chat_user_id_valid(user.data, user.len))
    {
        return ngx_chat_devtoken_error(r, NGX_HTTP_BAD_REQUEST,
                                       "user must be 1 to 64 of "
                                       "[A-Za-z0-9._@-]");
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    ngx_memcpy(sub, user.data, user.len);
    sub[user.len] = '\0';

    token = ngx_chat_jwt_sign((char *) sub, NULL,
                              (int64_t) ngx_time() + NGX_CHAT_DEV_TOKEN_TTL,
                              lcf->jwt_secret.data, lcf->jwt_secret.len);
    if (token == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = sizeof("{\"token\":\"\"}\n") - 1 + ngx_strlen(token);

    b = ngx_create_temp_buf(r->pool, len);
    if (b == NULL) {
        free(token);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(b->last, "{\"token\":\"%s\"}\n", token);
    free(token);

    return ngx_chat_send_response(r, NGX_HTTP_OK, "application/json", b->pos,
                                  p - b->pos);
}


/* a loopback peer, and no proxy in between */

static ngx_int_t
ngx_chat_devtoken_local(ngx_http_request_t *r)
{
    ngx_uint_t            i;
    ngx_list_part_t      *part;
    ngx_table_elt_t      *h;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    switch (r->connection->sockaddr->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) r->connection->sockaddr;

        if ((ntohl(sin->sin_addr.s_addr) >> 24) != 127) {
            return NGX_DECLINED;
        }

        break;

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) r->connection->sockaddr;

        if (!IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr)) {
            return NGX_DECLINED;
        }

        break;
#endif

    default:
        return NGX_DECLINED;
    }

    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */ ; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if ((h[i].key.len == sizeof("X-Forwarded-For") - 1
             && ngx_strncasecmp(h[i].key.data, (u_char *) "X-Forwarded-For",
                                h[i].key.len) == 0)
            || (h[i].key.len == sizeof("Forwarded") - 1
                && ngx_strncasecmp(h[i].key.data, (u_char *) "Forwarded",
                                   h[i].key.len) == 0))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_chat_devtoken_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *message)
{
    ngx_buf_t  *b;

    (void) ngx_http_discard_request_body(r);

    b = ngx_create_temp_buf(r->pool, ngx_strlen(message) + 64);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_sprintf(b->last, "{\"error\":{\"code\":\"%s\","
                          "\"message\":\"%s\"}}\n",
                          status == NGX_HTTP_BAD_REQUEST ? "bad_request"
                                                         : "forbidden",
                          message);

    if (status == NGX_HTTP_NOT_ALLOWED) {
        /* a plain answer is enough for a wrong method */
        return NGX_HTTP_NOT_ALLOWED;
    }

    return ngx_chat_send_response(r, status, "application/json", b->pos,
                                  b->last - b->pos);
}
