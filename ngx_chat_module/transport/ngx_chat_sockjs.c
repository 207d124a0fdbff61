/* ngx_chat_sockjs.c: SockJS 0.3 under a WebSocket location: the URLs,
 * /info, CORS and the Origin check, the client's frames to the session. */

#include "ngx_chat.h"
#include "ngx_chat_sockjs_int.h"
#include "ngx_chat_ws.h"
#include "ngx_chat_ws_int.h"


static ngx_int_t ngx_chat_sockjs_info(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf);
static ngx_int_t ngx_chat_sockjs_add_header(ngx_http_request_t *r,
    const char *name, u_char *value, size_t len);


/* the location's URL, then what is below it */

ngx_int_t
ngx_chat_sockjs_handler(ngx_http_request_t *r)
{
    u_char                    *p, *end, *seg[3], *segend[3];
    ngx_str_t                  base, id, name;
    ngx_uint_t                 n;
    ngx_chat_loc_conf_t       *lcf;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    base = clcf->name;

    while (base.len && base.data[base.len - 1] == '/') {
        base.len--;
    }

    if (r->uri.len <= base.len + 1
#if (NGX_PCRE)
        || clcf->regex
#endif
        || ngx_strncmp(r->uri.data, base.data, base.len) != 0
        || r->uri.data[base.len] != '/')
    {
        return ngx_chat_ws_handler(r);
    }

    if (r != r->main) {
        return NGX_HTTP_NOT_FOUND;
    }

    /* one or three segments */

    p = r->uri.data + base.len + 1;
    end = r->uri.data + r->uri.len;
    n = 0;

    while (p < end) {
        if (n == 3) {
            return NGX_HTTP_NOT_FOUND;
        }

        seg[n] = p;

        while (p < end && *p != '/') {
            p++;
        }

        segend[n] = p;

        if (segend[n] == seg[n]) {
            return NGX_HTTP_NOT_FOUND;
        }

        n++;

        if (p < end) {
            p++;

            if (p == end) {
                return NGX_HTTP_NOT_FOUND;
            }
        }
    }

    name.data = seg[n - 1];
    name.len = segend[n - 1] - seg[n - 1];

    if (n == 1) {
        if (name.len == 4 && ngx_strncmp(name.data, "info", 4) == 0) {
            return ngx_chat_sockjs_info(r, lcf);
        }

        if (name.len == 9 && ngx_strncmp(name.data, "websocket", 9) == 0) {
            return ngx_chat_ws_handler(r);
        }

        return NGX_HTTP_NOT_FOUND;
    }

    if (n != 3) {
        return NGX_HTTP_NOT_FOUND;
    }

    /* <server>/<session>/<transport>: no dots in the first two */

    if (ngx_strlchr(seg[0], segend[0], '.') != NULL
        || ngx_strlchr(seg[1], segend[1], '.') != NULL
        || segend[1] - seg[1] > NGX_CHAT_SOCKJS_ID_MAX)
    {
        return NGX_HTTP_NOT_FOUND;
    }

    id.data = seg[1];
    id.len = segend[1] - seg[1];

    if (name.len == 9 && ngx_strncmp(name.data, "websocket", 9) == 0) {
        return ngx_chat_ws_upgrade(r, ngx_chat_sockjs_ws_open);
    }

    if (name.len == 3 && ngx_strncmp(name.data, "xhr", 3) == 0) {
        return ngx_chat_sockjs_receive(r, lcf, &id, NGX_CHAT_SOCKJS_XHR);
    }

    if (name.len == 13 && ngx_strncmp(name.data, "xhr_streaming", 13) == 0) {
        return ngx_chat_sockjs_receive(r, lcf, &id,
                                       NGX_CHAT_SOCKJS_XHR_STREAMING);
    }

    if (name.len == 11 && ngx_strncmp(name.data, "eventsource", 11) == 0) {
        return ngx_chat_sockjs_receive(r, lcf, &id,
                                       NGX_CHAT_SOCKJS_EVENTSOURCE);
    }

    if (name.len == 8 && ngx_strncmp(name.data, "xhr_send", 8) == 0) {
        return ngx_chat_sockjs_xhr_send(r, lcf, &id);
    }

    return NGX_HTTP_NOT_FOUND;
}


/* /info: what the client chooses its transport by */

static ngx_int_t
ngx_chat_sockjs_info(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf)
{
    u_char     *p;
    ngx_int_t   rc;

    if (r->method == NGX_HTTP_OPTIONS) {
        rc = ngx_chat_sockjs_cors(r, lcf, "OPTIONS, GET");
        if (rc != NGX_OK) {
            return rc;
        }

        return ngx_chat_send_response(r, NGX_HTTP_NO_CONTENT, NULL, NULL, 0);
    }

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
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

    p = ngx_pnalloc(r->pool, 128);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* origins: the check is ours, by chat_allowed_origins */

    rc = ngx_sprintf(p, "{\"websocket\":true,\"origins\":[\"*:*\"],"
                     "\"cookie_needed\":false,\"entropy\":%uD}",
                     (uint32_t) ngx_random())
         - p;

    return ngx_chat_send_response(r, NGX_HTTP_OK,
                                  "application/json; charset=UTF-8", p, rc);
}


/*
 * The Origin check (chat_allowed_origins, as for the WebSocket handshake)
 * and the CORS headers; methods: a preflight's. NGX_OK, or a status.
 */

ngx_int_t
ngx_chat_sockjs_cors(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf,
    const char *methods)
{
    ngx_str_t         origin;
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *acrh;
    static u_char     no_cache[] = "no-store, no-cache, no-transform, "
                                   "must-revalidate, max-age=0";

    if (ngx_chat_ws_check_origin(r, lcf) != NGX_OK) {
        return NGX_HTTP_FORBIDDEN;
    }

    ngx_str_null(&origin);
    acrh = NULL;
    part = &r->headers_in.headers.part;
    h = part->elts;

    for (i = 0; /* void */; i++) {

        if (i >= part->nelts) {
            if (part->next == NULL) {
                break;
            }

            part = part->next;
            h = part->elts;
            i = 0;
        }

        if (h[i].key.len == 6
            && ngx_strncasecmp(h[i].key.data, (u_char *) "Origin", 6) == 0)
        {
            origin = h[i].value;

        } else if (h[i].key.len == 30
                   && ngx_strncasecmp(h[i].key.data, (u_char *)
                                      "Access-Control-Request-Headers", 30)
                      == 0)
        {
            acrh = &h[i];
        }
    }

    if (origin.len == 0 || (origin.len == 4
                            && ngx_strncmp(origin.data, "null", 4) == 0))
    {
        ngx_str_set(&origin, "*");

    } else if (ngx_chat_sockjs_add_header(r,
                   "Access-Control-Allow-Credentials",
                   (u_char *) "true", 4) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_chat_sockjs_add_header(r, "Access-Control-Allow-Origin",
                                   origin.data, origin.len) != NGX_OK
        || ngx_chat_sockjs_add_header(r, "Cache-Control", no_cache,
                                      sizeof(no_cache) - 1) != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (methods == NULL) {
        return NGX_OK;
    }

    if (ngx_chat_sockjs_add_header(r, "Access-Control-Allow-Methods",
                                   (u_char *) methods, ngx_strlen(methods))
        != NGX_OK
        || ngx_chat_sockjs_add_header(r, "Access-Control-Max-Age",
                                      (u_char *) "31536000", 8) != NGX_OK
        || (acrh && ngx_chat_sockjs_add_header(r,
                        "Access-Control-Allow-Headers", acrh->value.data,
                        acrh->value.len) != NGX_OK))
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return NGX_OK;
}


static ngx_int_t
ngx_chat_sockjs_add_header(ngx_http_request_t *r, const char *name,
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


/* xhr, xhr_streaming, eventsource: a receiving request */

ngx_int_t
ngx_chat_sockjs_deliver(ngx_chat_transport_t *t, u_char *p, size_t len,
    const char **err)
{
    size_t   i;
    json_t  *a, *s;

    a = ngx_chat_sockjs_decode(p, len, err);
    if (a == NULL) {
        return NGX_DECLINED;
    }

    t->last_read = ngx_current_msec;

    for (i = 0; i < json_array_size(a); i++) {
        s = json_array_get(a, i);

        if (t->on_data == NULL) {
            break;
        }

        t->on_data(t, (u_char *) json_string_value(s), json_string_length(s));

        if (t->on_message_end == NULL) {
            break;
        }

        t->on_message_end(t);
    }

    json_decref(a);

    return NGX_OK;
}


/* the sessions of this worker */
