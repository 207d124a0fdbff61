/* ngx_chat.h: what the files of ngx_chat_module share: configuration,
 * per-worker state, shared buffers and the entry points between files. */

#ifndef _NGX_CHAT_H_INCLUDED_
#define _NGX_CHAT_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_chat_jwt.h"
#include "ngx_chat_kafka.h"


#define NGX_CHAT_VERSION  "0.1.0"
#define NGX_CHAT_SERVER   "ngx_chat/" NGX_CHAT_VERSION


/* http{}-level settings: the stores every worker talks to */
typedef struct {
    ngx_addr_t                *redis;          /* chat_redis */
    ngx_msec_t                 redis_timeout;  /* chat_redis_timeout */
    ngx_str_t                  pg_conninfo;    /* chat_postgres */
    ngx_uint_t                 pg_pool_size;   /* chat_postgres_pool */
    ngx_msec_t                 pg_timeout;     /* chat_postgres_timeout */
    ngx_uint_t                 node_id;        /* chat_node_id (0-127) */
    ngx_chat_kafka_conf_t      kafka;          /* chat_kafka,
                                                  chat_kafka_timeout,
                                                  chat_kafka_option */
    ngx_str_t                  kafka_topic;    /* chat_kafka_topic */
    ngx_str_t                  kafka_receipts_topic;
                                               /* chat_kafka_receipts_topic */
    ngx_msec_t                 presence_ttl;   /* chat_presence_ttl */
    ngx_flag_t                 enabled;        /* a chat location exists */
    ngx_shm_zone_t            *metrics_zone;   /* ngx_chat_metrics.c */
} ngx_chat_main_conf_t;


/* location settings */
typedef struct {
    ngx_uint_t                 handler;        /* NGX_CHAT_HANDLER_* */
    ngx_str_t                  jwt_secret;     /* chat_jwt_secret */
    ngx_http_complex_value_t  *identity;       /* chat_identity */
    ngx_array_t               *origins;        /* chat_allowed_origins */
    size_t                     max_message;    /* chat_max_message_size */
    size_t                     max_frame;      /* chat_max_frame_size */
    ngx_uint_t                 max_headers;    /* chat_max_headers */
    size_t                     max_header_len; /* chat_max_header_length */
    size_t                     max_content;    /* chat_max_content_size */
    ngx_msec_t                 heartbeat;      /* chat_heartbeat (server) */
    ngx_msec_t                 heartbeat_grace;/* chat_heartbeat_grace */
    ngx_msec_t                 connect_timeout;/* chat_connect_timeout */
    size_t                     send_limit;     /* chat_send_buffer_limit */
    ngx_uint_t                 max_subscriptions;
    ngx_msec_t                 typing_interval;/* chat_typing_interval */
} ngx_chat_loc_conf_t;

#define NGX_CHAT_HANDLER_NONE       0
#define NGX_CHAT_HANDLER_WEBSOCKET  1
#define NGX_CHAT_HANDLER_API        2
#define NGX_CHAT_HANDLER_DEVTOKEN   3


/*
 * A reference-counted byte string shared by every session a published
 * message goes to: encoded once, written to many sockets. A message's
 * conversationId and seq are read from it once (conv points into data).
 */
typedef struct {
    ngx_uint_t                 refs;
    size_t                     len;
    uint64_t                   seq;            /* 0: none */
    ngx_str_t                  conv;
    unsigned                   parsed:1;
    u_char                     data[1];
} ngx_chat_blob_t;

ngx_chat_blob_t *ngx_chat_blob_create(size_t len);
void ngx_chat_blob_release(ngx_chat_blob_t *b);


/* who a request or session is */
typedef struct {
    ngx_str_t                  user;           /* userId */
    ngx_str_t                  name;           /* display name, may be "" */
} ngx_chat_identity_t;

/*
 * ngx_chat_identity.c: establishes the caller of a request (REST API and
 * WebSocket handshake). With chat_identity set, the variable's value is the
 * userId. Otherwise a bearer token from "Authorization: Bearer" or (only
 * when allow_query is set) the access_token query argument is verified.
 * NGX_OK: id filled (strings in r->pool). NGX_DECLINED: no credentials.
 * NGX_ERROR: credentials present but invalid (*err says why).
 */
ngx_int_t ngx_chat_identity_from_request(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_uint_t allow_query,
    ngx_chat_identity_t *id, const char **err);

/* verifies a raw JWT with the location's secret; strings in pool */
ngx_int_t ngx_chat_identity_from_token(ngx_pool_t *pool,
    ngx_chat_loc_conf_t *lcf, u_char *token, size_t len,
    ngx_chat_identity_t *id, const char **err);

/*
 * Makes sure the user row exists ("unknown users are created on first
 * sight"); cached per worker so it costs one query per user per worker.
 * Fire and forget: failures are logged and retried on the next sight.
 */
void ngx_chat_identity_ensure_user(ngx_chat_identity_t *id, ngx_log_t *log);


/* ngx_chat_module.c */
extern ngx_module_t  ngx_chat_module;

/* the per-worker state */
typedef struct {
    ngx_cycle_t               *cycle;
    ngx_chat_main_conf_t      *mcf;
    ngx_uint_t                 worker;         /* ngx_worker */
} ngx_chat_worker_t;

extern ngx_chat_worker_t  ngx_chat_worker;


/* ngx_chat_ws.c: content handler of "chat_websocket" locations */
ngx_int_t ngx_chat_ws_handler(ngx_http_request_t *r);

/* ngx_chat_devtoken.c: content handler of "chat_dev_token" (development) */
ngx_int_t ngx_chat_devtoken_handler(ngx_http_request_t *r);

/* ngx_chat_api.c: content handler of "chat_api" locations */
ngx_int_t ngx_chat_api_handler(ngx_http_request_t *r);

/* ngx_chat_api.c: per-worker setup (in init_process) */
ngx_int_t ngx_chat_api_init_process(ngx_cycle_t *cycle);

/* ngx_chat_messaging.c: per-worker setup and teardown */
ngx_int_t ngx_chat_messaging_init_process(ngx_cycle_t *cycle);
void ngx_chat_messaging_exit_process(ngx_cycle_t *cycle);

/*
 * ngx_chat_fanout.c: deliver an event to every session of a user on
 * every worker of every server (one Redis PUBLISH per worker the user is
 * on).
 * destination: e.g. "/user/queue/events"; json: the body.
 */
ngx_int_t ngx_chat_publish_to_user(ngx_str_t *user, const char *destination,
    u_char *json, size_t len);

/*
 * ngx_chat_messaging.c: the membership of a conversation changed in
 * PostgreSQL (committed): invalidate the Redis membership cache.
 */
void ngx_chat_membership_changed(ngx_str_t *conversation_id);

#endif /* _NGX_CHAT_H_INCLUDED_ */
