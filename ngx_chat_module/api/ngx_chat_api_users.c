/* ngx_chat_api_users.c: the REST API's per-user calls: profiles
 * (/users), push devices (/devices), presence (/presence) and blocks
 * (/blocks). */

#include <jansson.h>

#include "ngx_chat_api_users.h"
#include "ngx_chat_presence.h"
#include "ngx_chat_api_body.h"


#define NGX_CHAT_API_PRESENCE_MAX      100


static ngx_int_t ngx_chat_api_presence(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);
static void ngx_chat_api_presence_handler(redisReply *reply, void *data);
static ngx_int_t ngx_chat_api_presence_cluster(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);
static void ngx_chat_api_presence_part_handler(redisReply *reply,
    void *data);
static void ngx_chat_api_presence_gather_cleanup(void *data);
static ngx_int_t ngx_chat_api_presence_body(ngx_http_request_t *r,
    ngx_str_t *answers, ngx_uint_t n);


/*
 * GET /presence of several users in a Redis Cluster: the users grouped by
 * the slot of their keys, one script call per slot, all sent at once (the
 * calls for one primary go down its one link together, so the answer
 * takes one round trip per node, the nodes in parallel); each call follows
 * MOVED and ASK on its own. The answers are put back in the order asked.
 */
typedef struct ngx_chat_api_presence_gather_s
    ngx_chat_api_presence_gather_t;

typedef struct {
    ngx_chat_api_presence_gather_t  *gather;
    ngx_chat_redis_req_t            *req;      /* NULL once answered */
    ngx_uint_t                       slot;
    ngx_uint_t                      *at;       /* the users' places */
    ngx_str_t                       *users;
    ngx_uint_t                       n;
} ngx_chat_api_presence_part_t;

struct ngx_chat_api_presence_gather_s {
    ngx_chat_api_ctx_t              *ctx;
    ngx_chat_api_presence_part_t    *parts;
    ngx_uint_t                       nparts;
    ngx_uint_t                       pending;
    ngx_str_t                       *answers;  /* one per user asked */
};


static const char  ngx_chat_api_sql_get_user[] =
    "SELECT * FROM chat_api_get_user($1, $2, $3)";
static const char  ngx_chat_api_sql_put_user[] =
    "SELECT * FROM chat_api_put_user($1, $2, $3, $4, $5, $6)";
static const char  ngx_chat_api_sql_device_add[] =
    "SELECT * FROM chat_api_claim_device($1, $2, $3, $4)";
static const char  ngx_chat_api_sql_device_del[] =
    "SELECT * FROM chat_api_delete_device($1, $2, $3)";
static const char  ngx_chat_api_sql_block[] =
    "SELECT * FROM chat_api_block($1, $2, $3)";
static const char  ngx_chat_api_sql_unblock[] =
    "SELECT * FROM chat_api_unblock($1, $2, $3)";
static const char  ngx_chat_api_sql_blocks[] =
    "SELECT * FROM chat_api_list_blocks($1, $2)";

/* of the users asked ($2: "a,b,c"), those whose presence the caller may
 * see (chat_presence_allowed, sql/007_consent.sql), in order, as a
 * chat_api_* row */
static const char  ngx_chat_api_sql_presence[] =
    "SELECT 200, coalesce(json_agg(u.u ORDER BY u.i), '[]')::text"
    " FROM unnest(string_to_array($2, ',')) WITH ORDINALITY AS u(u, i)"
    " WHERE EXISTS (SELECT 1 FROM chat_presence_allowed($1, u.u))";


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
        || !ngx_chat_api_token_valid((u_char *) json_string_value(token),
                                     json_string_length(token)))
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
 * GET /blocks; POST /blocks/{userId} (its presence subscriptions end, see
 * ngx_chat_api_request.c), DELETE /blocks/{userId}
 */
ngx_int_t
ngx_chat_api_blocks(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    const char **values)
{
    if (ctx->route == NGX_CHAT_API_BLOCKS) {
        return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_blocks, 2,
                                  values);
    }

    ctx->mutation = 1;

    if (r->method == NGX_HTTP_POST) {
        return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_block, 3, values);
    }

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_unblock, 3, values);
}


/*
 * GET /presence?users=a,b,c: 1 to 100 userIds. As for the STOMP topic,
 * only the caller and the users whose presence it may see are answered:
 * the others are left out of the list (one query for all), a blocked
 * user as any stranger.
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
    ctx->enrich = ngx_chat_api_presence;

    values[1] = (const char *) dst;

    return ngx_chat_api_query(r, ctx, ngx_chat_api_sql_presence, 2, values);
}


/* PostgreSQL named the users that may be answered: ask Redis */

static ngx_int_t
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

    if (n > 1 && ngx_chat_redis_is_cluster()) {
        return ngx_chat_api_presence_cluster(r, ctx);
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

    size_t               i;
    ngx_str_t           *answers;
    redisReply          *e;
    ngx_http_request_t  *r;

    ctx->redis = NULL;
    r = ctx->r;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != ctx->nusers)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat api: Redis failed, no presence");

        ngx_chat_api_finish(ctx,
            ngx_chat_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "unavailable", "presence is unavailable"));
        return;
    }

    answers = ngx_palloc(r->pool, reply->elements * sizeof(ngx_str_t));
    if (answers == NULL) {
        ngx_chat_api_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    for (i = 0; i < reply->elements; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_STRING) {
            ngx_chat_api_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        answers[i].data = (u_char *) e->str;
        answers[i].len = e->len;
    }

    ngx_chat_api_finish(ctx, ngx_chat_api_presence_body(r, answers,
                                                        reply->elements));
}


/* {"presence":[...]}: the users' JSON objects, in order */

static ngx_int_t
ngx_chat_api_presence_body(ngx_http_request_t *r, ngx_str_t *answers,
    ngx_uint_t n)
{
    u_char      *body, *p;
    size_t       len;
    ngx_uint_t   i;

    len = sizeof("{\"presence\":[]}") - 1;

    for (i = 0; i < n; i++) {
        len += answers[i].len + 1;
    }

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_cpymem(body, "{\"presence\":[", sizeof("{\"presence\":[") - 1);

    for (i = 0; i < n; i++) {
        if (i > 0) {
            *p++ = ',';
        }

        p = ngx_cpymem(p, answers[i].data, answers[i].len);
    }

    p = ngx_cpymem(p, "]}", 2);

    return ngx_chat_api_send(r, NGX_HTTP_OK, body, p - body);
}


/* a cluster: the users grouped per slot, one script call per slot */

static ngx_int_t
ngx_chat_api_presence_cluster(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx)
{
    ngx_uint_t                       i, j, n, slot, *slots;
    ngx_pool_cleanup_t              *cln;
    ngx_chat_api_presence_part_t    *part;
    ngx_chat_api_presence_gather_t  *g;

    n = ctx->nusers;

    g = ngx_pcalloc(r->pool, sizeof(ngx_chat_api_presence_gather_t));
    slots = ngx_palloc(r->pool, n * sizeof(ngx_uint_t));

    if (g == NULL || slots == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    g->ctx = ctx;
    g->parts = ngx_pcalloc(r->pool, n * sizeof(ngx_chat_api_presence_part_t));
    g->answers = ngx_pcalloc(r->pool, n * sizeof(ngx_str_t));

    if (g->parts == NULL || g->answers == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* the slots, and how many users each part gets */

    for (i = 0; i < n; i++) {
        slot = ngx_chat_presence_slot(&ctx->users[i]);
        slots[i] = slot;

        for (j = 0; j < g->nparts; j++) {
            if (g->parts[j].slot == slot) {
                break;
            }
        }

        if (j == g->nparts) {
            g->parts[j].gather = g;
            g->parts[j].slot = slot;
            g->nparts++;
        }

        g->parts[j].n++;
    }

    for (j = 0; j < g->nparts; j++) {
        part = &g->parts[j];

        part->at = ngx_palloc(r->pool, part->n * sizeof(ngx_uint_t));
        part->users = ngx_palloc(r->pool, part->n * sizeof(ngx_str_t));

        if (part->at == NULL || part->users == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        part->n = 0;
    }

    for (i = 0; i < n; i++) {
        for (j = 0; g->parts[j].slot != slots[i]; j++) {
            /* void */
        }

        part = &g->parts[j];
        part->at[part->n] = i;
        part->users[part->n] = ctx->users[i];
        part->n++;
    }

    /* pending calls are cancelled with the request */

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_chat_api_presence_gather_cleanup;
    cln->data = g;

    for (j = 0; j < g->nparts; j++) {
        part = &g->parts[j];

        part->req = ngx_chat_presence_query(part->users, part->n,
                                            ngx_chat_api_presence_part_handler,
                                            part);
        if (part->req == NULL) {
            ngx_chat_api_presence_gather_cleanup(g);

            return ngx_chat_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                      "unavailable",
                                      "presence is unavailable");
        }

        g->pending++;
    }

    return NGX_DONE;
}


static void
ngx_chat_api_presence_gather_cleanup(void *data)
{
    ngx_chat_api_presence_gather_t  *g = data;

    ngx_uint_t  j;

    for (j = 0; j < g->nparts; j++) {
        if (g->parts[j].req != NULL) {
            ngx_chat_redis_cancel(g->parts[j].req);
            g->parts[j].req = NULL;
        }
    }

    g->pending = 0;
}


/* one slot's answer; the response once every slot answered */

static void
ngx_chat_api_presence_part_handler(redisReply *reply, void *data)
{
    ngx_chat_api_presence_part_t  *part = data;

    u_char                          *p;
    ngx_uint_t                       i;
    redisReply                      *e;
    ngx_http_request_t              *r;
    ngx_chat_api_ctx_t              *ctx;
    ngx_chat_api_presence_gather_t  *g;

    g = part->gather;
    ctx = g->ctx;
    r = ctx->r;

    part->req = NULL;
    g->pending--;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != part->n)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat api: Redis failed, no presence (slot %ui)",
                      part->slot);

        ngx_chat_api_presence_gather_cleanup(g);

        ngx_chat_api_finish(ctx,
            ngx_chat_api_error(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                               "unavailable", "presence is unavailable"));
        return;
    }

    for (i = 0; i < part->n; i++) {
        e = reply->element[i];

        if (e->type != REDIS_REPLY_STRING) {
            ngx_chat_api_presence_gather_cleanup(g);
            ngx_chat_api_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        p = ngx_pnalloc(r->pool, e->len);
        if (p == NULL) {
            ngx_chat_api_presence_gather_cleanup(g);
            ngx_chat_api_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        ngx_memcpy(p, e->str, e->len);
        g->answers[part->at[i]].data = p;
        g->answers[part->at[i]].len = e->len;
    }

    if (g->pending > 0) {
        return;
    }

    ngx_chat_api_finish(ctx, ngx_chat_api_presence_body(r, g->answers,
                                                        ctx->nusers));
}
