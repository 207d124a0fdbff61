/* ngx_chat_api.c: the conversation REST API (PROTOCOL.md section 7), one
 * PostgreSQL function call per request over the async pool (merged with
 * what Redis knows in ngx_chat_history.c; users, devices and presence in
 * ngx_chat_api_users.c). */

#include <jansson.h>

#include "ngx_chat_api.h"
#include "ngx_chat_api_request.h"
#include "ngx_chat_api_users.h"
#include "ngx_chat_history.h"
#include "ngx_chat_search.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_api_body.h"
#include "ngx_chat_api_rate.h"


#define NGX_CHAT_API_CONV_ID_MAX       36
#define NGX_CHAT_API_MAX_PARAMS        6


static ngx_int_t ngx_chat_api_route(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);
static ngx_int_t ngx_chat_api_id_valid(ngx_str_t *s);
static ngx_uint_t ngx_chat_api_allowed(ngx_http_request_t *r,
    ngx_uint_t route, ngx_str_t *allow);
static void ngx_chat_api_cleanup(void *data);
static void ngx_chat_api_body_handler(ngx_http_request_t *r);
static u_char *ngx_chat_api_read_body(ngx_http_request_t *r, size_t *len,
    ngx_int_t *status);
static ngx_int_t ngx_chat_api_request(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, json_t *body);
static ngx_int_t ngx_chat_api_create(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, json_t *body);
static ngx_int_t ngx_chat_api_add(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, json_t *body);
static ngx_int_t ngx_chat_api_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value);
static const char *ngx_chat_api_max_members(ngx_http_request_t *r);


static const char  ngx_chat_api_sql_create[] =
    "SELECT * FROM chat_api_create_conversation($1, $2, $3, $4, $5, $6)";
static const char  ngx_chat_api_sql_list[] =
    "SELECT * FROM chat_api_list_conversations($1, $2)";
static const char  ngx_chat_api_sql_get[] =
    "SELECT * FROM chat_api_get_conversation($1, $2, $3)";
static const char  ngx_chat_api_sql_add[] =
    "SELECT * FROM chat_api_add_member($1, $2, $3, $4, $5)";
static const char  ngx_chat_api_sql_remove[] =
    "SELECT * FROM chat_api_remove_member($1, $2, $3, $4)";
static const char  ngx_chat_api_sql_accept[] =
    "SELECT * FROM chat_api_accept($1, $2, $3)";
static const char  ngx_chat_api_sql_decline[] =
    "SELECT * FROM chat_api_decline($1, $2, $3)";


ngx_int_t
ngx_chat_api_init_process(ngx_cycle_t *cycle)
{
    return ngx_chat_history_init_process(cycle);
}


ngx_int_t
ngx_chat_api_handler(ngx_http_request_t *r)
{
    ngx_int_t             rc;
    ngx_str_t             allow;
    const char           *err;
    ngx_pool_cleanup_t   *cln;
    ngx_chat_api_ctx_t   *ctx;
    ngx_chat_loc_conf_t  *lcf;
    ngx_chat_identity_t   id;

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    if (r != r->main) {
        return NGX_HTTP_NOT_FOUND;
    }

    err = "no credentials";

    rc = ngx_chat_identity_from_request(r, lcf, 0, &id, &err);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "chat api: unauthorized: %s", err);

        if (lcf->identity == NULL) {
            ngx_str_set(&allow, "Bearer");

            if (ngx_chat_api_header(r, "WWW-Authenticate", &allow)
                != NGX_OK)
            {
                return NGX_HTTP_INTERNAL_SERVER_ERROR;
            }
        }

        return ngx_chat_api_error(r, NGX_HTTP_UNAUTHORIZED, "unauthorized",
                                  err);
    }

    ctx = ngx_alloc(sizeof(ngx_chat_api_ctx_t), r->connection->log);
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memzero(ctx, sizeof(ngx_chat_api_ctx_t));

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        ngx_free(ctx);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_chat_api_cleanup;
    cln->data = ctx;

    ctx->r = r;
    ctx->id = id;

    ngx_http_set_ctx(r, ctx, ngx_chat_module);

    if (ngx_chat_api_route(r, ctx) != NGX_OK) {
        return ngx_chat_api_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                  "no such resource");
    }

    if (!ngx_chat_api_allowed(r, ctx->route, &allow)) {
        if (ngx_chat_api_header(r, "Allow", &allow) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_chat_api_error(r, NGX_HTTP_NOT_ALLOWED,
                                  "method_not_allowed",
                                  "method not allowed here");
    }

    /* accept, decline and block take no body: one sent is ignored */

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT))
        || ctx->route == NGX_CHAT_API_ACCEPT
        || ctx->route == NGX_CHAT_API_DECLINE
        || ctx->route == NGX_CHAT_API_BLOCK)
    {

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        rc = ngx_chat_api_request(r, ctx, NULL);

        if (rc == NGX_DONE) {
            r->main->count++;
        }

        return rc;
    }

    if (r->headers_in.content_length_n > (off_t) lcf->max_frame) {
        return ngx_chat_api_error(r, NGX_HTTP_REQUEST_ENTITY_TOO_LARGE,
                                  "too_large", "the body is too large");
    }

    r->request_body_in_single_buf = 1;

    rc = ngx_http_read_client_request_body(r, ngx_chat_api_body_handler);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


/*
 * The route is the URI after the location's name: "location /chat/api/"
 * and "location /chat/api" both serve "/chat/api/conversations".
 */
static ngx_int_t
ngx_chat_api_route(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx)
{
    u_char                    *p, *last, *start;
    ngx_str_t                  seg[5];
    ngx_uint_t                 n;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    p = r->uri.data;
    last = p + r->uri.len;

    if (clcf->name.len > 0
        && r->uri.len >= clcf->name.len
        && ngx_strncmp(p, clcf->name.data, clcf->name.len) == 0)
    {
        p += clcf->name.len;

        if (clcf->name.data[clcf->name.len - 1] == '/') {
            p--;
        }
    }

    /* "/conversations/" is "/conversations" */

    if (last - p > 1 && last[-1] == '/') {
        last--;
    }

    n = 0;

    while (p < last) {
        if (*p != '/' || n == 5) {
            return NGX_DECLINED;
        }

        start = ++p;

        while (p < last && *p != '/') {
            p++;
        }

        if (p == start) {
            return NGX_DECLINED;
        }

        seg[n].data = start;
        seg[n].len = p - start;
        n++;
    }

    if (n == 0) {
        return NGX_DECLINED;
    }

    if (seg[0].len == sizeof("users") - 1
        && ngx_strncmp(seg[0].data, "users", seg[0].len) == 0)
    {
        if (n != 2) {
            return NGX_DECLINED;
        }

        if (seg[1].len == 2 && ngx_strncmp(seg[1].data, "me", 2) == 0) {
            ctx->route = NGX_CHAT_API_ME;
            ctx->arg = ctx->id.user;
            return NGX_OK;
        }

        if (!ngx_chat_user_id_valid(seg[1].data, seg[1].len)) {
            return NGX_DECLINED;
        }

        ctx->route = NGX_CHAT_API_USER;
        ctx->arg = seg[1];
        return NGX_OK;
    }

    if (n == 1 && seg[0].len == sizeof("search") - 1
        && ngx_strncmp(seg[0].data, "search", seg[0].len) == 0)
    {
        ctx->route = NGX_CHAT_API_SEARCH;
        return NGX_OK;
    }

    if (seg[0].len == sizeof("presence") - 1
        && ngx_strncmp(seg[0].data, "presence", seg[0].len) == 0)
    {
        if (n != 1) {
            return NGX_DECLINED;
        }

        ctx->route = NGX_CHAT_API_PRESENCE;
        return NGX_OK;
    }

    if (seg[0].len == sizeof("blocks") - 1
        && ngx_strncmp(seg[0].data, "blocks", seg[0].len) == 0)
    {
        if (n == 1) {
            ctx->route = NGX_CHAT_API_BLOCKS;
            return NGX_OK;
        }

        if (n != 2 || !ngx_chat_user_id_valid(seg[1].data, seg[1].len)) {
            return NGX_DECLINED;
        }

        ctx->route = NGX_CHAT_API_BLOCK;
        ctx->arg = seg[1];
        return NGX_OK;
    }

    if (seg[0].len == sizeof("devices") - 1
        && ngx_strncmp(seg[0].data, "devices", seg[0].len) == 0)
    {
        if (n == 1) {
            ctx->route = NGX_CHAT_API_DEVICES;
            return NGX_OK;
        }

        if (n != 2
            || !ngx_chat_api_token_valid(seg[1].data, seg[1].len))
        {
            return NGX_DECLINED;
        }

        ctx->route = NGX_CHAT_API_DEVICE;
        ctx->arg = seg[1];
        return NGX_OK;
    }

    if (seg[0].len != sizeof("conversations") - 1
        || ngx_strncmp(seg[0].data, "conversations", seg[0].len) != 0)
    {
        return NGX_DECLINED;
    }

    if (n == 1) {
        ctx->route = NGX_CHAT_API_CONVERSATIONS;
        return NGX_OK;
    }

    if (ngx_chat_api_id_valid(&seg[1]) != NGX_OK) {
        return NGX_DECLINED;
    }

    ctx->arg = seg[1];

    if (n == 2) {
        ctx->route = NGX_CHAT_API_CONVERSATION;
        return NGX_OK;
    }

    if (n == 3
        && seg[2].len == sizeof("messages") - 1
        && ngx_strncmp(seg[2].data, "messages", seg[2].len) == 0)
    {
        ctx->route = NGX_CHAT_API_MESSAGES;
        return NGX_OK;
    }

    if (n == 3
        && seg[2].len == sizeof("accept") - 1
        && ngx_strncmp(seg[2].data, "accept", seg[2].len) == 0)
    {
        ctx->route = NGX_CHAT_API_ACCEPT;
        return NGX_OK;
    }

    if (n == 3
        && seg[2].len == sizeof("decline") - 1
        && ngx_strncmp(seg[2].data, "decline", seg[2].len) == 0)
    {
        ctx->route = NGX_CHAT_API_DECLINE;
        return NGX_OK;
    }

    if (seg[2].len != sizeof("members") - 1
        || ngx_strncmp(seg[2].data, "members", seg[2].len) != 0)
    {
        return NGX_DECLINED;
    }

    if (n == 3) {
        ctx->route = NGX_CHAT_API_MEMBERS;
        return NGX_OK;
    }

    if (n != 4 || !ngx_chat_user_id_valid(seg[3].data, seg[3].len)) {
        return NGX_DECLINED;
    }

    ctx->route = NGX_CHAT_API_MEMBER;
    ctx->member = seg[3];

    return NGX_OK;
}


/* conversation ids are made by the server: c_ and hex digits */
static ngx_int_t
ngx_chat_api_id_valid(ngx_str_t *s)
{
    if (s->len > NGX_CHAT_API_CONV_ID_MAX
        || !ngx_chat_user_id_valid(s->data, s->len))
    {
        return NGX_DECLINED;
    }

    return NGX_OK;
}


/* 1 if the method suits the route; *allow lists the methods that do */
static ngx_uint_t
ngx_chat_api_allowed(ngx_http_request_t *r, ngx_uint_t route,
    ngx_str_t *allow)
{
    ngx_uint_t  mask;

    switch (route) {

    case NGX_CHAT_API_CONVERSATIONS:
        ngx_str_set(allow, "GET, POST");
        mask = NGX_HTTP_GET|NGX_HTTP_POST;
        break;

    case NGX_CHAT_API_MEMBERS:
    case NGX_CHAT_API_ACCEPT:
    case NGX_CHAT_API_DECLINE:
        ngx_str_set(allow, "POST");
        mask = NGX_HTTP_POST;
        break;

    case NGX_CHAT_API_BLOCK:
        ngx_str_set(allow, "POST, DELETE");
        mask = NGX_HTTP_POST|NGX_HTTP_DELETE;
        break;

    case NGX_CHAT_API_MEMBER:
    case NGX_CHAT_API_DEVICE:
        ngx_str_set(allow, "DELETE");
        mask = NGX_HTTP_DELETE;
        break;

    case NGX_CHAT_API_DEVICES:
        ngx_str_set(allow, "POST");
        mask = NGX_HTTP_POST;
        break;

    case NGX_CHAT_API_ME:
        ngx_str_set(allow, "GET, PUT");
        mask = NGX_HTTP_GET|NGX_HTTP_PUT;
        break;

    default: /* NGX_CHAT_API_CONVERSATION, _USER, _MESSAGES, _BLOCKS */
        ngx_str_set(allow, "GET");
        mask = NGX_HTTP_GET;
        break;
    }

    return (r->method & mask) ? 1 : 0;
}


/*
 * The request is being freed. A pending read is cancelled; a pending
 * membership change runs on, so its events are published after COMMIT.
 */
static void
ngx_chat_api_cleanup(void *data)
{
    ngx_chat_api_ctx_t  *ctx = data;

    if (ctx->pg != NULL && ctx->mutation) {
        ctx->r = NULL;
        return;
    }

    if (ctx->pg != NULL) {
        ngx_chat_pg_cancel(ctx->pg);
    }

    if (ctx->redis != NULL) {
        ngx_chat_redis_cancel(ctx->redis);
    }

    if (ctx->pg_json != NULL) {
        json_decref(ctx->pg_json);
    }

    if (ctx->recent != NULL) {
        json_decref(ctx->recent);
    }

    if (ctx->changes != NULL) {
        json_decref(ctx->changes);
    }

    if (ctx->marks != NULL) {
        json_decref(ctx->marks);
    }

    ngx_free(ctx);
}


static void
ngx_chat_api_body_handler(ngx_http_request_t *r)
{
    u_char              *buf;
    size_t               len;
    json_t              *body;
    ngx_int_t            rc, status;
    const char          *err;
    json_error_t         jerr;
    ngx_chat_api_ctx_t  *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_chat_module);

    if (ctx == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    buf = ngx_chat_api_read_body(r, &len, &status);

    if (buf == NULL) {
        if (status == NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
            rc = ngx_chat_api_error(r, status, "too_large",
                                    "the body is too large");
        } else {
            rc = status;
        }

        ngx_http_finalize_request(r, rc);
        return;
    }

    body = ngx_chat_api_body_load((const char *) buf, len, &jerr, &err);

    if (body == NULL) {
        ngx_http_finalize_request(r,
            ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request", err));
        return;
    }

    rc = ngx_chat_api_request(r, ctx, body);

    json_decref(body);

    if (rc != NGX_DONE) {
        ngx_http_finalize_request(r, rc);
    }
}


/* the whole body in one piece (in memory or in a temporary file) */
static u_char *
ngx_chat_api_read_body(ngx_http_request_t *r, size_t *len,
    ngx_int_t *status)
{
    u_char               *buf, *p;
    off_t                 size;
    ssize_t               n;
    ngx_buf_t            *b;
    ngx_chain_t          *cl;
    ngx_chat_loc_conf_t  *lcf;

    *status = NGX_HTTP_INTERNAL_SERVER_ERROR;
    *len = 0;

    if (r->request_body == NULL) {
        return (u_char *) "";
    }

    size = 0;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        size += ngx_buf_size(cl->buf);
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    if (size > (off_t) lcf->max_frame) {
        *status = NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
        return NULL;
    }

    buf = ngx_pnalloc(r->pool, (size_t) size + 1);
    if (buf == NULL) {
        return NULL;
    }

    p = buf;

    for (cl = r->request_body->bufs; cl; cl = cl->next) {
        b = cl->buf;

        if (!b->in_file) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }

        n = ngx_read_file(b->file, p, (size_t) (b->file_last - b->file_pos),
                          b->file_pos);

        if (n != b->file_last - b->file_pos) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "chat api: cannot read the request body file");
            return NULL;
        }

        p += n;
    }

    *p = '\0';
    *len = p - buf;

    return buf;
}


static ngx_int_t
ngx_chat_api_request(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    json_t *body)
{
    const char  *values[NGX_CHAT_API_MAX_PARAMS];

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = ngx_chat_api_cstr(r->pool, &ctx->arg);
    values[3] = ngx_chat_api_cstr(r->pool, &ctx->member);

    if (values[0] == NULL || values[1] == NULL || values[2] == NULL
        || values[3] == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (ctx->route) {

    case NGX_CHAT_API_CONVERSATIONS:
        if (r->method == NGX_HTTP_POST) {
            return ngx_chat_api_create(r, ctx, body);
        }

        ctx->enrich = ngx_chat_history_enrich;
        return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_list, 2, values);

    case NGX_CHAT_API_CONVERSATION:
        ctx->enrich = ngx_chat_history_enrich;
        return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_get, 3, values);

    case NGX_CHAT_API_MESSAGES:
        return ngx_chat_history_messages(r, ctx, values);

    case NGX_CHAT_API_MEMBERS:
        return ngx_chat_api_add(r, ctx, body);

    case NGX_CHAT_API_MEMBER:
        ctx->mutation = 1;
        return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_remove, 4,
                                  values);

    case NGX_CHAT_API_DEVICES:
        return ngx_chat_api_device_add(r, ctx, body);

    case NGX_CHAT_API_PRESENCE:
        return ngx_chat_api_presence_ask(r, ctx, values);

    case NGX_CHAT_API_SEARCH:
        return ngx_chat_search(r, ctx);

    case NGX_CHAT_API_DEVICE:
        return ngx_chat_api_device_delete(r, ctx, values);

    case NGX_CHAT_API_ACCEPT:
        ctx->mutation = 1;
        return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_accept, 3,
                                  values);

    case NGX_CHAT_API_DECLINE:
        ctx->mutation = 1;
        return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_decline, 3,
                                  values);

    case NGX_CHAT_API_BLOCKS:
    case NGX_CHAT_API_BLOCK:
        return ngx_chat_api_blocks(r, ctx, values);

    case NGX_CHAT_API_ME:
        if (r->method == NGX_HTTP_PUT) {
            return ngx_chat_api_put_user(r, ctx, body);
        }

        /* fall through */

    default: /* NGX_CHAT_API_USER */
        return ngx_chat_api_get_user(r, ctx, values);
    }
}


/* POST /conversations {"type", "name"?, "members"} */
static ngx_int_t
ngx_chat_api_create(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    json_t *body)
{
    u_char               *p;
    size_t                size;
    json_t               *type, *name, *members;
    ngx_str_t             retry;
    ngx_msec_t            wait;
    const char           *t, *why, *values[6];
    ngx_chat_loc_conf_t  *lcf;

    type = json_object_get(body, "type");

    if (!json_is_string(type)) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "type must be \"direct\" or \"group\"");
    }

    t = json_string_value(type);

    if (ngx_strcmp(t, "direct") != 0 && ngx_strcmp(t, "group") != 0) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "type must be \"direct\" or \"group\"");
    }

    name = json_object_get(body, "name");

    if (name != NULL && !json_is_null(name) && !json_is_string(name)) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "name must be a string");
    }

    if (json_is_string(name)
        && ngx_chat_api_utf8_chars(json_string_value(name))
           > NGX_CHAT_NAME_MAX)
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "name is longer than 128 characters");
    }

    members = json_object_get(body, "members");

    /* a group may start with no members but its creator */
    if (members == NULL && t[0] != 'g') {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "members must be an array of userIds");
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    /* the exact count (without the caller, without repeats) is the
     * database's; more names than a group may have are refused here */

    if (json_is_array(members) && t[0] == 'g'
        && json_array_size(members) > lcf->max_group_members)
    {
        ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_GROUP, 1);

        p = ngx_pnalloc(r->pool, 128);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        *ngx_snprintf(p, 127, "too many members: a group has at most %ui "
                      "(chat_max_group_members)", lcf->max_group_members)
            = '\0';

        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  (const char *) p);
    }

    why = ngx_chat_api_members_size(members, &size);

    if (why != NULL) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  why);
    }

    /* chat_conversation_rate: a valid request that would reach the
     * database */

    if (ngx_chat_api_rate_take(&ctx->id.user, lcf->conv_rate,
                               lcf->conv_burst, &wait)
        != NGX_OK)
    {
        ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_CONV_RATE, 1);

        p = ngx_pnalloc(r->pool, NGX_TIME_T_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        retry.data = p;
        retry.len = ngx_sprintf(p, "%M", (wait + 999) / 1000) - p;

        if (ngx_chat_api_header(r, "Retry-After", &retry) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_chat_api_error(r, NGX_HTTP_TOO_MANY_REQUESTS,
                                  "rate_limited",
                                  "too many conversations created, try "
                                  "again later (chat_conversation_rate)");
    }

    p = ngx_pnalloc(r->pool, size);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values[4] = ngx_chat_api_members_write(members, (char *) p);

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = t;
    values[3] = json_is_string(name) ? json_string_value(name) : NULL;
    values[5] = ngx_chat_api_max_members(r);

    if (values[0] == NULL || values[1] == NULL || values[5] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->mutation = 1;

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_create, 6, values);
}


/* POST /conversations/{id}/members {"userId"} */
static ngx_int_t
ngx_chat_api_add(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    json_t *body)
{
    json_t      *user;
    const char  *values[5];

    user = json_object_get(body, "userId");

    if (!json_is_string(user)
        || !ngx_chat_user_id_valid((u_char *) json_string_value(user),
                                   json_string_length(user)))
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "userId must be a valid userId");
    }

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = ngx_chat_api_cstr(r->pool, &ctx->arg);
    values[3] = json_string_value(user);
    values[4] = ngx_chat_api_max_members(r);

    if (values[0] == NULL || values[1] == NULL || values[2] == NULL
        || values[4] == NULL)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->mutation = 1;

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_add, 5, values);
}


/* chat_max_group_members as a query parameter */
static const char *
ngx_chat_api_max_members(ngx_http_request_t *r)
{
    u_char               *p;
    ngx_chat_loc_conf_t  *lcf;

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    p = ngx_pnalloc(r->pool, NGX_INT_T_LEN + 1);
    if (p == NULL) {
        return NULL;
    }

    *ngx_sprintf(p, "%ui", lcf->max_group_members) = '\0';

    return (const char *) p;
}


static ngx_int_t
ngx_chat_api_header(ngx_http_request_t *r, char *name, ngx_str_t *value)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key.data = (u_char *) name;
    h->key.len = ngx_strlen(name);
    h->value = *value;

    return NGX_OK;
}
