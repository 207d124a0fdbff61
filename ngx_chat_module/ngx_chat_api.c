/* ngx_chat_api.c: the conversation REST API (PROTOCOL.md section 7), one
 * PostgreSQL function call per request over the async pool (merged with
 * what Redis knows in ngx_chat_history.c; users, devices and presence in
 * ngx_chat_api_users.c). */

#include <jansson.h>

#include "ngx_chat.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_history.h"


#define NGX_CHAT_API_CONV_ID_MAX       36
#define NGX_CHAT_API_MEMBERS_MAX       1000
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
static void ngx_chat_api_pg_handler(PGresult *res, void *data);
static void ngx_chat_api_notify(PGresult *res);
static ngx_int_t ngx_chat_api_header(ngx_http_request_t *r, char *name,
    ngx_str_t *value);


static const char  ngx_chat_api_sql_create[] =
    "SELECT * FROM chat_api_create_conversation($1, $2, $3, $4, $5)";
static const char  ngx_chat_api_sql_list[] =
    "SELECT * FROM chat_api_list_conversations($1, $2)";
static const char  ngx_chat_api_sql_get[] =
    "SELECT * FROM chat_api_get_conversation($1, $2, $3)";
static const char  ngx_chat_api_sql_add[] =
    "SELECT * FROM chat_api_add_member($1, $2, $3, $4)";
static const char  ngx_chat_api_sql_remove[] =
    "SELECT * FROM chat_api_remove_member($1, $2, $3, $4)";


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

    if (!(r->method & (NGX_HTTP_POST|NGX_HTTP_PUT))) {

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

    if (seg[0].len == sizeof("presence") - 1
        && ngx_strncmp(seg[0].data, "presence", seg[0].len) == 0)
    {
        if (n != 1) {
            return NGX_DECLINED;
        }

        ctx->route = NGX_CHAT_API_PRESENCE;
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
            || ngx_chat_api_token_valid(seg[1].data, seg[1].len) != NGX_OK)
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
        ngx_str_set(allow, "POST");
        mask = NGX_HTTP_POST;
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

    default: /* NGX_CHAT_API_CONVERSATION, _USER, _MESSAGES */
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

    body = json_loadb((const char *) buf, len, JSON_REJECT_DUPLICATES, &jerr);

    if (body == NULL) {
        ngx_http_finalize_request(r,
            ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                               len ? jerr.text : "a JSON body is required"));
        return;
    }

    if (!json_is_object(body)) {
        json_decref(body);
        ngx_http_finalize_request(r,
            ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                               "the body must be a JSON object"));
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

        ctx->enrich = 1;
        return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_list, 2, values);

    case NGX_CHAT_API_CONVERSATION:
        ctx->enrich = 1;
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

    case NGX_CHAT_API_DEVICE:
        return ngx_chat_api_device_delete(r, ctx, values);

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
    u_char       *p;
    size_t        i, n, size;
    json_t       *type, *name, *members, *m;
    const char   *t, *values[5];

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

    if (members == NULL && t[0] == 'g') {
        n = 0;

    } else if (!json_is_array(members)) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "members must be an array of userIds");

    } else {
        n = json_array_size(members);
    }

    if (n > NGX_CHAT_API_MEMBERS_MAX) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "too many members (at most 1000)");
    }

    /* a text[] literal: {"a","b"}; userIds need no escaping */

    size = 2;

    for (i = 0; i < n; i++) {
        m = json_array_get(members, i);

        if (!json_is_string(m)
            || !ngx_chat_user_id_valid((u_char *) json_string_value(m),
                                       json_string_length(m)))
        {
            return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                      "members must be an array of "
                                      "valid userIds");
        }

        size += json_string_length(m) + 3;
    }

    p = ngx_pnalloc(r->pool, size + 1);
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values[4] = (char *) p;
    *p++ = '{';

    for (i = 0; i < n; i++) {
        m = json_array_get(members, i);

        if (i > 0) {
            *p++ = ',';
        }

        *p++ = '"';
        p = ngx_cpymem(p, json_string_value(m), json_string_length(m));
        *p++ = '"';
    }

    *p++ = '}';
    *p = '\0';

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = t;
    values[3] = json_is_string(name) ? json_string_value(name) : NULL;

    if (values[0] == NULL || values[1] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->mutation = 1;

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_create, 5, values);
}


/* POST /conversations/{id}/members {"userId"} */
static ngx_int_t
ngx_chat_api_add(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    json_t *body)
{
    json_t      *user;
    const char  *values[4];

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

    if (values[0] == NULL || values[1] == NULL || values[2] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->mutation = 1;

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_add, 4, values);
}


/*
 * Sends the query. NGX_DONE: the answer comes from the PostgreSQL handler;
 * anything else is the request's final status.
 */
ngx_int_t
ngx_chat_api_query(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    const char *sql, int nparams, const char **values)
{
    ngx_chat_pg_req_t  *pg;

    ctx->starting = 1;

    pg = ngx_chat_pg_query(sql, nparams, values, NULL,
                           ngx_chat_api_pg_handler, ctx);

    ctx->starting = 0;

    if (ctx->answered) {
        return ctx->rc;
    }

    if (pg == NULL) {
        return ngx_chat_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "unavailable",
                                  "the database is unavailable");
    }

    if (!ctx->pg_back) {
        ctx->pg = pg;
    }

    /* notice a client that goes away while the query runs */

    r->read_event_handler = ngx_http_test_reading;

    return NGX_DONE;
}


static void
ngx_chat_api_pg_handler(PGresult *res, void *data)
{
    ngx_chat_api_ctx_t  *ctx = data;

    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    ctx->pg = NULL;
    ctx->pg_back = 1;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK
        && PQntuples(res) == 1 && PQnfields(res) >= 5)
    {
        ngx_chat_api_notify(res);
    }

    r = ctx->r;

    if (r == NULL) {
        /* the client went away: the events went out all the same */
        ngx_free(ctx);
        return;
    }

    c = r->connection;

    if (ctx->enrich) {
        rc = ngx_chat_history_pg_body(r, ctx, res);

        if (rc == NGX_DONE) {
            /* waiting for Redis */
            return;
        }

    } else {
        rc = ngx_chat_api_result(r, res);
    }

    r->read_event_handler = ngx_http_block_reading;

    if (ctx->starting) {
        ctx->answered = 1;
        ctx->rc = rc;
        return;
    }

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


/* after COMMIT: invalidate the membership cache and publish the event */
static void
ngx_chat_api_notify(PGresult *res)
{
    u_char     *p, *last, *start;
    ngx_str_t   cid, user;

    if (PQgetisnull(res, 0, 2)) {
        return;
    }

    cid.data = (u_char *) PQgetvalue(res, 0, 2);
    cid.len = PQgetlength(res, 0, 2);

    ngx_chat_membership_changed(&cid);

    if (PQgetisnull(res, 0, 3) || PQgetisnull(res, 0, 4)) {
        return;
    }

    p = (u_char *) PQgetvalue(res, 0, 4);
    last = p + PQgetlength(res, 0, 4);

    while (p < last) {
        start = p;

        while (p < last && *p != ' ') {
            p++;
        }

        user.data = start;
        user.len = p - start;

        if (user.len > 0
            && ngx_chat_publish_to_user(&user, "/user/queue/events",
                                        (u_char *) PQgetvalue(res, 0, 3),
                                        PQgetlength(res, 0, 3))
               != NGX_OK)
        {
            ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                          "chat api: cannot publish an event to \"%V\"",
                          &user);
        }

        p++;
    }
}


/* the answer from a chat_api_* row: status, body */
ngx_int_t
ngx_chat_api_result(ngx_http_request_t *r, PGresult *res)
{
    char        *state;
    u_char      *body;
    size_t       len;
    ngx_int_t    status;

    if (res == NULL) {
        return ngx_chat_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "unavailable",
                                  "the database is unavailable");
    }

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "chat api: query failed: %s",
                      PQresultErrorMessage(res));

        state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

        /* connection, resources, shutdown, serialization: try again */

        if (state != NULL
            && (ngx_strncmp(state, "08", 2) == 0
                || ngx_strncmp(state, "53", 2) == 0
                || ngx_strncmp(state, "57", 2) == 0
                || ngx_strncmp(state, "40", 2) == 0))
        {
            return ngx_chat_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "unavailable",
                                      "the database is unavailable");
        }

        return ngx_chat_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal", "internal error");
    }

    if (PQntuples(res) != 1 || PQnfields(res) < 2 || PQgetisnull(res, 0, 0))
    {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "chat api: unexpected result shape");
        return ngx_chat_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal", "internal error");
    }

    status = ngx_atoi((u_char *) PQgetvalue(res, 0, 0),
                      PQgetlength(res, 0, 0));

    if (status < 200 || status > 599) {
        return ngx_chat_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal", "internal error");
    }

    if (PQgetisnull(res, 0, 1)) {
        return ngx_chat_api_send(r, status, NULL, 0);
    }

    len = PQgetlength(res, 0, 1);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(body, PQgetvalue(res, 0, 1), len);

    return ngx_chat_api_send(r, status, body, len);
}


/* characters of a valid UTF-8 string */
size_t
ngx_chat_api_utf8_chars(const char *s)
{
    size_t  n;

    for (n = 0; *s; s++) {
        if ((*s & 0xc0) != 0x80) {
            n++;
        }
    }

    return n;
}


/* a NUL-terminated copy, for a query parameter */
const char *
ngx_chat_api_cstr(ngx_pool_t *pool, ngx_str_t *s)
{
    u_char  *p;

    p = ngx_pnalloc(pool, s->len + 1);
    if (p == NULL) {
        return NULL;
    }

    ngx_memcpy(p, s->data, s->len);
    p[s->len] = '\0';

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


/* {"error":{"code","message"}} */
ngx_int_t
ngx_chat_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message)
{
    u_char  *body, *p;
    size_t   len, mlen;

    if (r->request_body == NULL && !r->discard_body) {
        if (ngx_http_discard_request_body(r) != NGX_OK) {
            r->keepalive = 0;
        }
    }

    ngx_chat_metric_error(code);

    mlen = ngx_strlen(message);

    len = sizeof("{\"error\":{\"code\":\"\",\"message\":\"\"}}") - 1
          + ngx_strlen(code) + mlen
          + ngx_escape_json(NULL, (u_char *) message, mlen);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_sprintf(body, "{\"error\":{\"code\":\"%s\",\"message\":\"", code);
    p = (u_char *) ngx_escape_json(p, (u_char *) message, mlen);
    p = ngx_cpymem(p, "\"}}", 3);

    return ngx_chat_api_send(r, status, body, p - body);
}


ngx_int_t
ngx_chat_api_send(ngx_http_request_t *r, ngx_uint_t status, u_char *body,
    size_t len)
{
    ngx_int_t     rc;
    ngx_buf_t    *b;
    ngx_chain_t   out;

    r->headers_out.status = status;
    r->headers_out.content_length_n = len;

    if (len > 0) {
        ngx_str_set(&r->headers_out.content_type, "application/json");
        r->headers_out.content_type_len = r->headers_out.content_type.len;
    }

    if (len == 0 || r->method == NGX_HTTP_HEAD) {
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
    b->last_buf = 1;
    b->last_in_chain = 1;

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}
