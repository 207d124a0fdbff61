/* ngx_chat_api_request.h: a REST API request: its route and context, and
 * what every route's handler uses to query and to answer. */

#ifndef _NGX_CHAT_API_REQUEST_H_INCLUDED_
#define _NGX_CHAT_API_REQUEST_H_INCLUDED_

#include <jansson.h>

#include "ngx_chat.h"
#include "ngx_chat_identity.h"
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
#define NGX_CHAT_API_ACCEPT            11  /* /conversations/{id}/accept */
#define NGX_CHAT_API_DECLINE           12  /* /conversations/{id}/decline */
#define NGX_CHAT_API_BLOCKS            13  /* /blocks */
#define NGX_CHAT_API_BLOCK             14  /* /blocks/{userId} */
#define NGX_CHAT_API_SEARCH            20  /* /search?q= (issue 20) */


typedef struct ngx_chat_api_ctx_s  ngx_chat_api_ctx_t;

/*
 * PostgreSQL answered 200 and its body is in ctx->pg_json: merges it with
 * what Redis knows. NGX_DONE while Redis is awaited (ngx_chat_api_finish()
 * ends the request then), else the request's status.
 */
typedef ngx_int_t (*ngx_chat_api_enrich_pt)(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);

/*
 * Lives on the heap, not in the request pool: a query that changes a
 * membership must publish its events even when the client has gone.
 */
struct ngx_chat_api_ctx_s {
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
    ngx_uint_t                 recent_more;/* Redis has more than those */
    json_t                    *changes;    /* changes buffered in Redis */
    json_t                    *marks;      /* Redis watermarks: [dl, r] */
    int64_t                    before;     /* history: -1 if not given */
    int64_t                    after;
    ngx_uint_t                 limit;
    ngx_str_t                 *users;      /* presence: the users asked */
    ngx_uint_t                 nusers;
    ngx_uint_t                 redis_next; /* a Redis Cluster: the next
                                              conversation to ask about */
    ngx_chat_api_enrich_pt     enrich;     /* NULL: PostgreSQL's answer is
                                              the response */
    unsigned                   mutation:1;
    unsigned                   starting:1;
    unsigned                   answered:1;
    unsigned                   pg_back:1;
    unsigned                   redis_back:1;
};


/*
 * Sends the query. NGX_DONE: the answer comes from the PostgreSQL handler;
 * anything else is the request's final status.
 */
ngx_int_t ngx_chat_api_query(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    const char *sql, int nparams, const char **values);

/* the answer from a chat_api_* row: status, body */
ngx_int_t ngx_chat_api_result(ngx_http_request_t *r, PGresult *res);

/* {"error":{"code","message"}} */
ngx_int_t ngx_chat_api_error(ngx_http_request_t *r, ngx_uint_t status,
    const char *code, const char *message);
ngx_int_t ngx_chat_api_send(ngx_http_request_t *r, ngx_uint_t status,
    u_char *body, size_t len);

/* the JSON as a 200 answer */
ngx_int_t ngx_chat_api_send_json(ngx_http_request_t *r, json_t *json);

/* a Redis handler answers the request that waited for it */
void ngx_chat_api_finish(ngx_chat_api_ctx_t *ctx, ngx_int_t rc);

/* a NUL-terminated copy */
const char *ngx_chat_api_cstr(ngx_pool_t *pool, ngx_str_t *s);

#endif /* _NGX_CHAT_API_REQUEST_H_INCLUDED_ */
