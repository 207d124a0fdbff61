/* ngx_chat_history.h: what the REST API (ngx_chat_api.c), its history
 * and read-your-writes half (ngx_chat_history.c) and its per-user calls
 * (ngx_chat_api_users.c) share. */

#ifndef _NGX_CHAT_HISTORY_H_INCLUDED_
#define _NGX_CHAT_HISTORY_H_INCLUDED_


#include <jansson.h>

#include "ngx_chat.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_redis.h"


#define NGX_CHAT_API_CONVERSATIONS     1   /* /conversations */
#define NGX_CHAT_API_CONVERSATION      2   /* /conversations/{id} */
#define NGX_CHAT_API_MEMBERS           3   /* /conversations/{id}/members */
#define NGX_CHAT_API_MEMBER            4   /* .../members/{userId} */
#define NGX_CHAT_API_USER              5   /* /users/{id} */
#define NGX_CHAT_API_ME                6   /* /users/me */
#define NGX_CHAT_API_MESSAGES          7   /* /conversations/{id}/messages */
#define NGX_CHAT_API_DEVICES           8   /* /devices */
#define NGX_CHAT_API_DEVICE            9   /* /devices/{token} */
#define NGX_CHAT_API_PRESENCE          10  /* /presence?users=a,b */


/*
 * Lives on the heap, not in the request pool: a query that changes a
 * membership must publish its events even when the client has gone.
 */
typedef struct {
    ngx_http_request_t        *r;          /* NULL once the request is gone */
    ngx_chat_pg_req_t         *pg;         /* the pending query */
    ngx_chat_identity_t        id;
    ngx_uint_t                 route;
    ngx_str_t                  arg;        /* conversation or user id */
    ngx_str_t                  member;     /* userId of .../members/{id} */
    ngx_int_t                  rc;         /* of a synchronous answer */
    ngx_chat_redis_req_t      *redis;      /* the pending Redis command */
    json_t                    *pg_json;    /* the parsed 200 body */
    json_t                    *recent;     /* messages from Redis */
    json_t                    *marks;      /* Redis watermarks: [dl, r] */
    int64_t                    before;     /* history: 0 if not given */
    int64_t                    after;
    ngx_uint_t                 limit;
    ngx_str_t                 *users;      /* presence: the users asked */
    ngx_uint_t                 nusers;
    unsigned                   mutation:1;
    unsigned                   starting:1;
    unsigned                   answered:1;
    unsigned                   pg_back:1;
    unsigned                   enrich:1;   /* merge with Redis */
    unsigned                   redis_back:1;
} ngx_chat_api_ctx_t;


/* ngx_chat_api.c */
ngx_int_t ngx_chat_api_query(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    const char *sql, int nparams, const char **values);
ngx_int_t ngx_chat_api_result(ngx_http_request_t *r, PGresult *res);
ngx_int_t ngx_chat_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message);
ngx_int_t ngx_chat_api_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len);
size_t ngx_chat_api_utf8_chars(const char *s);
const char *ngx_chat_api_cstr(ngx_pool_t *pool, ngx_str_t *s);

/* ngx_chat_api_users.c; values: userId, name, the id of the route */
ngx_int_t ngx_chat_api_get_user(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);
ngx_int_t ngx_chat_api_put_user(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, json_t *body);
ngx_int_t ngx_chat_api_token_valid(u_char *p, size_t len);
ngx_int_t ngx_chat_api_device_add(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, json_t *body);
ngx_int_t ngx_chat_api_device_delete(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);
ngx_int_t ngx_chat_api_presence_ask(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);

/* GET /presence, once PostgreSQL named the users it may see (pg_json) */
ngx_int_t ngx_chat_api_presence(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);

/* ngx_chat_history.c */
ngx_int_t ngx_chat_history_init_process(ngx_cycle_t *cycle);

/* GET /conversations/{id}/messages; values: the query's 6 parameters */
ngx_int_t ngx_chat_history_messages(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, const char **values);

/*
 * PostgreSQL answered a request with ctx->enrich: NGX_DONE while Redis is
 * awaited, else the request's status.
 */
ngx_int_t ngx_chat_history_pg_body(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, PGresult *res);

/* a Redis handler answers the request that waited for it */
void ngx_chat_history_finish(ngx_chat_api_ctx_t *ctx, ngx_int_t rc);

/* the JSON as a 200 answer */
ngx_int_t ngx_chat_history_send_json(ngx_http_request_t *r, json_t *json);


#endif /* _NGX_CHAT_HISTORY_H_INCLUDED_ */
