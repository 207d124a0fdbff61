/* ngx_chat_api_users.c: the REST API's per-user calls: profiles
 * (/users), push devices (/devices) and presence (/presence). */

#include <jansson.h>

#include "ngx_chat.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_presence.h"
#include "ngx_chat_history.h"


#define NGX_CHAT_API_AVATAR_MAX        2048
#define NGX_CHAT_API_TOKEN_MAX         512
#define NGX_CHAT_API_PRESENCE_MAX      100


static void ngx_chat_api_presence_handler(redisReply *reply, void *data);


static const char  ngx_chat_api_sql_get_user[] =
    "SELECT * FROM chat_api_get_user($1, $2, $3)";
static const char  ngx_chat_api_sql_put_user[] =
    "SELECT * FROM chat_api_put_user($1, $2, $3, $4, $5, $6)";
static const char  ngx_chat_api_sql_device_add[] =
    "SELECT * FROM chat_api_register_device($1, $2, $3, $4)";
static const char  ngx_chat_api_sql_device_del[] =
    "SELECT * FROM chat_api_delete_device($1, $2, $3)";

/* of the users asked ($2: "a,b,c"), the caller and those it shares a
 * conversation with, in order, as a chat_api_* row */
static const char  ngx_chat_api_sql_presence[] =
    "SELECT 200, coalesce(json_agg(u.u ORDER BY u.i), '[]')::text"
    " FROM unnest(string_to_array($2, ',')) WITH ORDINALITY AS u(u, i)"
    " WHERE u.u = $1 OR EXISTS (SELECT 1 FROM conversation_members a"
    "  JOIN conversation_members b USING (conversation_id)"
    "  WHERE a.user_id = $1 AND b.user_id = u.u)";


/* GET /users/{id}, GET /users/me; values: userId, name, the id asked */
ngx_int_t
ngx_chat_api_get_user(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    const char **values)
{
    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_get_user, 3,
                              values);
}


/* PUT /users/me {"displayName"?, "avatarUrl"?}; null clears a field */
ngx_int_t
ngx_chat_api_put_user(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    json_t *body)
{
    json_t      *name, *avatar;
    const char  *values[6];

    name = json_object_get(body, "displayName");
    avatar = json_object_get(body, "avatarUrl");

    if (name != NULL && !json_is_null(name)
        && (!json_is_string(name)
            || ngx_chat_api_utf8_chars(json_string_value(name))
               > NGX_CHAT_NAME_MAX))
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "displayName must be a string of at "
                                  "most 128 characters");
    }

    if (avatar != NULL && !json_is_null(avatar)
        && (!json_is_string(avatar)
            || json_string_length(avatar) > NGX_CHAT_API_AVATAR_MAX))
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "avatarUrl must be a string of at "
                                  "most 2048 bytes");
    }

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = name ? "t" : "f";
    values[3] = json_is_string(name) ? json_string_value(name) : NULL;
    values[4] = avatar ? "t" : "f";
    values[5] = json_is_string(avatar) ? json_string_value(avatar) : NULL;

    if (values[0] == NULL || values[1] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_put_user, 6, values);
}


/* push tokens (FCM's are letters, digits, ":", "-", "_") */
ngx_int_t
ngx_chat_api_token_valid(u_char *p, size_t len)
{
    u_char  *last;

    if (len == 0 || len > NGX_CHAT_API_TOKEN_MAX) {
        return NGX_DECLINED;
    }

    for (last = p + len; p < last; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || *p == ':' || *p == '-' || *p == '_' || *p == '.'))
        {
            return NGX_DECLINED;
        }
    }

    return NGX_OK;
}


/* POST /devices {"platform": "android"|"ios"|"web", "token"} */
ngx_int_t
ngx_chat_api_device_add(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    json_t *body)
{
    json_t      *platform, *token;
    const char  *p, *values[4];

    platform = json_object_get(body, "platform");

    p = json_is_string(platform) ? json_string_value(platform) : "";

    if (ngx_strcmp(p, "android") != 0 && ngx_strcmp(p, "ios") != 0
        && ngx_strcmp(p, "web") != 0)
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "platform must be \"android\", \"ios\" "
                                  "or \"web\"");
    }

    token = json_object_get(body, "token");

    if (!json_is_string(token)
        || ngx_chat_api_token_valid((u_char *) json_string_value(token),
                                    json_string_length(token))
           != NGX_OK)
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "token must be a push token (at most "
                                  "512 letters, digits, \":\", \"-\", "
                                  "\"_\" or \".\")");
    }

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = p;
    values[3] = json_string_value(token);

    if (values[0] == NULL || values[1] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->mutation = 1;

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_device_add, 4,
                              values);
}


/* DELETE /devices/{token}; values: userId, name, the token */
ngx_int_t
ngx_chat_api_device_delete(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    const char **values)
{
    ctx->mutation = 1;

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_device_del, 3,
                              values);
}


/*
 * GET /presence?users=a,b,c: 1 to 100 userIds. As for the STOMP topic,
 * only the caller and the users it shares a conversation with are
 * answered: the others are left out of the list (one query for all).
 */
ngx_int_t
ngx_chat_api_presence_ask(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    const char **values)
{
    u_char      *p, *last, *start, *dst;
    ngx_str_t    arg;
    ngx_uint_t   n;

    if (ngx_http_arg(r, (u_char *) "users", sizeof("users") - 1, &arg)
        != NGX_OK || arg.len == 0)
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "users is required");
    }

    dst = ngx_pnalloc(r->pool, arg.len + 1);
    if (dst == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = arg.data;
    last = dst;
    ngx_unescape_uri(&last, &p, arg.len, 0);
    *last = '\0';

    ctx->users = ngx_palloc(r->pool,
                            NGX_CHAT_API_PRESENCE_MAX * sizeof(ngx_str_t));
    if (ctx->users == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    n = 0;

    for (p = dst; p <= last; p++) {
        start = p;

        while (p < last && *p != ',') {
            p++;
        }

        if (n == NGX_CHAT_API_PRESENCE_MAX
            || !ngx_chat_user_id_valid(start, p - start))
        {
            return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST,
                                      "bad_request",
                                      "users must be 1 to 100 userIds "
                                      "separated by commas");
        }

        ctx->users[n].data = start;
        ctx->users[n].len = p - start;
        n++;
    }

    ctx->nusers = n;
    ctx->enrich = 1;

    values[1] = (const char *) dst;

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_presence, 2, values);
}


/* PostgreSQL named the users that may be answered: ask Redis */
ngx_int_t
ngx_chat_api_presence(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx)
{
    size_t   i, n;
    json_t  *u;

    n = 0;

    json_array_foreach(ctx->pg_json, i, u) {
        if (n < ctx->nusers && json_is_string(u)) {
            ctx->users[n].data = (u_char *) json_string_value(u);
            ctx->users[n].len = json_string_length(u);
            n++;
        }
    }

    ctx->nusers = n;

    if (n == 0) {
        return ngx_chat_api_send(r, NGX_HTTP_OK,
                                 (u_char *) "{\"presence\":[]}",
                                 sizeof("{\"presence\":[]}") - 1);
    }

    ctx->redis = ngx_chat_presence_query(ctx->users, n,
                                         ngx_chat_api_presence_handler, ctx);

    if (ctx->redis == NULL) {
        return ngx_chat_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                  "unavailable",
                                  "presence is unavailable");
    }

    return NGX_DONE;
}


/* one JSON object per user: {"presence":[...]} */
static void
ngx_chat_api_presence_handler(redisReply *reply, void *data)
{
    ngx_chat_api_ctx_t  *ctx = data;

    u_char              *body, *p;
    size_t               i, len;
    ngx_int_t            rc;
    redisReply          *e;
    ngx_http_request_t  *r;

    ctx->redis = NULL;
    r = ctx->r;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != ctx->nusers)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat api: Redis failed, no presence");

        ngx_chat_history_finish(ctx,
            ngx_chat_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "unavailable", "presence is unavailable"));
        return;
    }

    len = sizeof("{\"presence\":[]}") - 1;

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_STRING) {
            ngx_chat_history_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        len += e->len + 1;
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        ngx_chat_history_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(body, "{\"presence\":[", sizeof("{\"presence\":[") - 1);

    for (i = 0; i < reply->elements; i++) {
        if (i > 0) {
            *p++ = ',';
        }

        e = reply->element[i];
        p = ngx_cpymem(p, e->str, e->len);
    }

    p = ngx_cpymem(p, "]}", 2);

    rc = ngx_chat_api_send(r, NGX_HTTP_OK, body, p - body);

    ngx_chat_history_finish(ctx, rc);
}
