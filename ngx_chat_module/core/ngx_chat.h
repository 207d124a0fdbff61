/* ngx_chat.h: what every layer of ngx_chat_module shares: the
 * configuration and the per-worker state. */

#ifndef _NGX_CHAT_H_INCLUDED_
#define _NGX_CHAT_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_chat_jwt.h"


#define NGX_CHAT_VERSION  "0.1.0"
#define NGX_CHAT_SERVER   "ngx_chat/" NGX_CHAT_VERSION


/*
 * Where a directive was read, for the checks made once the block is read
 * (init_main_conf, merge_loc_conf): their messages name that line, the way
 * nginx says "in /etc/nginx/nginx.conf:12". line 0: not set.
 */
typedef struct {
    ngx_str_t                  file;
    ngx_uint_t                 line;
} ngx_chat_conf_where_t;


/* the Kafka producer's settings (ngx_chat_kafka.c) */
typedef struct {
    ngx_str_t                  brokers;   /* "" : Kafka disabled */
    ngx_msec_t                 timeout;   /* message.timeout.ms */
    ngx_array_t               *options;   /* ngx_str_t "key=value", or NULL */
} ngx_chat_kafka_conf_t;


/* http{}-level settings: the stores every worker talks to */
typedef struct {
    ngx_addr_t                *redis;          /* chat_redis */
    ngx_array_t               *redis_seeds;    /* chat_redis cluster, or
                                                  NULL (ngx_addr_t) */
    ngx_msec_t                 redis_timeout;  /* chat_redis_timeout */
    ngx_str_t                  pg_conninfo;    /* chat_postgres */
    ngx_uint_t                 pg_pool_size;   /* chat_postgres_pool */
    ngx_msec_t                 pg_timeout;     /* chat_postgres_timeout */
    ngx_uint_t                 node_id;        /* chat_node_id (0-127) */
    ngx_chat_conf_where_t      kafka_where;    /* chat_kafka's line */
    ngx_chat_kafka_conf_t      kafka;          /* chat_kafka,
                                                  chat_kafka_timeout,
                                                  chat_kafka_option */
    ngx_str_t                  kafka_topic;    /* chat_kafka_topic */
    ngx_str_t                  kafka_receipts_topic;
                                               /* chat_kafka_receipts_topic */
    ngx_msec_t                 presence_ttl;   /* chat_presence_ttl */
    ngx_flag_t                 enabled;        /* a chat location exists */
    ngx_array_t               *ws_locations;   /* ngx_chat_ws_location_t:
                                                  the chat_websocket ones,
                                                  whose settings chat_stomp
                                                  takes */
    ngx_shm_zone_t            *metrics_zone;   /* ngx_chat_metrics.c */
} ngx_chat_main_conf_t;


/* location settings */
typedef struct ngx_chat_loc_conf_s  ngx_chat_loc_conf_t;

/* a chat_websocket location (ngx_chat_main_conf_t's ws_locations) */
typedef struct {
    ngx_str_t                  name;           /* its URI */
    ngx_chat_loc_conf_t       *lcf;
} ngx_chat_ws_location_t;


struct ngx_chat_loc_conf_s {
    ngx_uint_t                 handler;        /* NGX_CHAT_HANDLER_* */
    ngx_chat_conf_where_t      handler_where;  /* its directive's line */
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

    /* resource limits (README.md, "Limits"); 0: none */
    ngx_uint_t                 max_sessions_per_user;
                                       /* chat_max_sessions_per_user */
    ngx_uint_t                 max_in_flight;
                                       /* chat_max_requests_in_flight */
    ngx_uint_t                 send_rate;      /* chat_send_rate: SENDs
                                                  per 1000 s */
    ngx_uint_t                 send_burst;     /* burst=, times 1000 */
    size_t                     max_tx_bytes;   /* chat_max_transaction_size */
    size_t                     max_metadata;   /* chat_max_metadata_size */
    size_t                     max_sub_id;     /* chat_max_subscription_id */
    ngx_uint_t                 max_group_members;
                                       /* chat_max_group_members */
    ngx_uint_t                 conv_rate;      /* chat_conversation_rate:
                                                  creations per 1000 s */
    ngx_uint_t                 conv_burst;     /* burst=, times 1000 */
    ngx_msec_t                 idle_timeout;   /* chat_idle_timeout */

    /* JWT claims (PROTOCOL.md section 2) */
    time_t                     jwt_leeway;     /* chat_jwt_leeway */
    ngx_str_t                  jwt_audience;   /* chat_jwt_audience */
    ngx_str_t                  jwt_issuer;     /* chat_jwt_issuer */
    ngx_msec_t                 sockjs_disconnect;
                                       /* chat_sockjs_disconnect_delay */

    /* attachments (PROTOCOL.md section 11) */
    ngx_str_t                  attach_dir;     /* chat_attachments dir */
    ngx_str_t                  attach_uri;     /* and internal location */
    ngx_array_t               *attach_types;   /* chat_attachment_types */
};

#define NGX_CHAT_HANDLER_NONE       0
#define NGX_CHAT_HANDLER_WEBSOCKET  1
#define NGX_CHAT_HANDLER_API        2
#define NGX_CHAT_HANDLER_DEVTOKEN   3
#define NGX_CHAT_HANDLER_ATTACH     4


/* ngx_chat_module.c */
extern ngx_module_t  ngx_chat_module;

/* the per-worker state (ngx_chat.c), set by the module's init_process */
typedef struct {
    ngx_cycle_t               *cycle;
    ngx_chat_main_conf_t      *mcf;
    ngx_uint_t                 worker;         /* ngx_worker */
} ngx_chat_worker_t;

extern ngx_chat_worker_t  ngx_chat_worker;


/*
 * Sends a whole response: status, type (NULL: none; parameters after ';'
 * allowed), body[0..len) (not copied: it must live as long as r; len 0:
 * the header only). Returns what a content handler returns.
 */
ngx_int_t ngx_chat_send_response(ngx_http_request_t *r, ngx_uint_t status,
    const char *type, u_char *body, size_t len);


#endif /* _NGX_CHAT_H_INCLUDED_ */
