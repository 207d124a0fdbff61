/* ngx_chat_api_request.c: the life of a REST API request: its PostgreSQL
 * query, the events a committed change publishes, the wait for Redis, and
 * the JSON answer. */

#include "ngx_chat_api_request.h"
#include "ngx_chat_fanout.h"
#include "ngx_chat_messaging.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_presence.h"


static void ngx_chat_api_pg_handler(PGresult *res, void *data);
static void ngx_chat_api_notify(PGresult *res);
static ngx_int_t ngx_chat_api_pg_json(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, PGresult *res);


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

    int                  f;
    ngx_int_t            rc;
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    ctx->pg = NULL;
    ctx->pg_back = 1;

    if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK
        && PQntuples(res) == 1 && PQnfields(res) >= 5)
    {
        ngx_chat_api_notify(res);

        /* the name of the limit that refused the call (008_*.sql) */

        f = PQfnumber(res, "limited");

        if (f >= 0 && !PQgetisnull(res, 0, f)) {
            ngx_chat_metric_limit(PQgetvalue(res, 0, f));
        }
    }

    r = ctx->r;

    if (r == NULL) {
        /* the client went away: the events went out all the same */
        ngx_free(ctx);
        return;
    }

    c = r->connection;

    if (ctx->enrich) {
        rc = ngx_chat_api_pg_json(r, ctx, res);

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


/*
 * After COMMIT: invalidate the membership cache of the conversation (if
 * any) and publish the event (if any) to the users in "notify"; a
 * column "cut" (of a block) names two users whose presence subscriptions
 * to each other end.
 */
static void
ngx_chat_api_notify(PGresult *res)
{
    int         f;
    u_char     *p, *last, *start;
    ngx_str_t   cid, user;

    f = PQfnumber(res, "cut");

    if (f >= 0 && !PQgetisnull(res, 0, f)
        && ngx_chat_presence_cut((u_char *) PQgetvalue(res, 0, f),
                                 PQgetlength(res, 0, f))
           != NGX_OK)
    {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat api: cannot end the presence subscriptions "
                      "of a block");
    }

    if (!PQgetisnull(res, 0, 2)) {
        cid.data = (u_char *) PQgetvalue(res, 0, 2);
        cid.len = PQgetlength(res, 0, 2);

        ngx_chat_messaging_membership_changed(&cid);
    }

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
            && ngx_chat_fanout_to_user(&user, "/user/queue/events",
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


/*
 * PostgreSQL answered a request to merge with Redis: an error is answered
 * as it is; a 200 body is kept (ctx->pg_json) for ctx->enrich.
 */

static ngx_int_t
ngx_chat_api_pg_json(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    PGresult *res)
{
    json_error_t  jerr;

    if (res == NULL
        || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1
        || PQnfields(res) < 2
        || PQgetisnull(res, 0, 0)
        || PQgetisnull(res, 0, 1)
        || PQgetlength(res, 0, 0) != 3
        || ngx_strncmp(PQgetvalue(res, 0, 0), "200", 3) != 0)
    {
        if (ctx->redis != NULL) {
            ngx_chat_redis_cancel(ctx->redis);
            ctx->redis = NULL;
        }

        return ngx_chat_api_result(r, res);
    }

    ctx->pg_json = json_loadb(PQgetvalue(res, 0, 1), PQgetlength(res, 0, 1),
                              0, &jerr);

    if (ctx->pg_json == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "chat api: bad JSON from PostgreSQL: %s", jerr.text);

        if (ctx->redis != NULL) {
            ngx_chat_redis_cancel(ctx->redis);
            ctx->redis = NULL;
        }

        return ngx_chat_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                  "internal", "internal error");
    }

    return ctx->enrich(r, ctx);
}


/* a Redis handler answers the request that waited for it */
void
ngx_chat_api_finish(ngx_chat_api_ctx_t *ctx, ngx_int_t rc)
{
    ngx_connection_t    *c;
    ngx_http_request_t  *r;

    r = ctx->r;
    c = r->connection;

    r->read_event_handler = ngx_http_block_reading;

    ngx_http_finalize_request(r, rc);
    ngx_http_run_posted_requests(c);
}


ngx_int_t
ngx_chat_api_send_json(ngx_http_request_t *r, json_t *json)
{
    char    *s;
    u_char  *body;
    size_t   len;

    s = json_dumps(json, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    len = ngx_strlen(s);

    body = ngx_pnalloc(r->pool, len);
    if (body == NULL) {
        free(s);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ngx_memcpy(body, s, len);
    free(s);

    return ngx_chat_api_send(r, NGX_HTTP_OK, body, len);
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
    return ngx_chat_send_response(r, status, len ? "application/json" : NULL,
                                  body, len);
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
