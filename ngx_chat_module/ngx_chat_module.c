/* ngx_chat_module.c: directives, configuration and the worker lifecycle. */

#include "ngx_chat.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_ws.h"
#include "ngx_chat_sockjs.h"
#include "ngx_chat_session.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_kafka.h"
#include "ngx_chat_messaging.h"
#include "ngx_chat_presence.h"
#include "ngx_chat_receipts.h"
#include "ngx_chat_api.h"
#include "ngx_chat_attachments.h"
#include "ngx_chat_devtoken.h"
#include "ngx_chat_health.h"


static void *ngx_chat_create_main_conf(ngx_conf_t *cf);
static char *ngx_chat_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_chat_create_loc_conf(ngx_conf_t *cf);
static char *ngx_chat_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_chat_set_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_postgres(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_kafka(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_kafka_option(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_topic(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_send_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_conversation_rate(ngx_conf_t *cf,
    ngx_command_t *cmd, void *conf);
static char *ngx_chat_parse_rate(ngx_conf_t *cf, ngx_uint_t *rate,
    ngx_uint_t *burst);
static char *ngx_chat_check_origin(ngx_str_t *origin);
static char *ngx_chat_check_range(ngx_conf_t *cf, void *post, void *data);
static ngx_int_t ngx_chat_init_process(ngx_cycle_t *cycle);
static void ngx_chat_exit_process(ngx_cycle_t *cycle);


/*
 * The values a directive may take, checked as its line is read (so that
 * nginx names the line): "\"chat_postgres_pool\" must be between 1 and
 * 64, not \"0\" in /etc/nginx/nginx.conf:12".
 */
typedef struct {
    ngx_conf_post_handler_pt   post_handler;
    ngx_uint_t                 type;       /* NGX_CHAT_RANGE_* */
    ngx_uint_t                 low;
    ngx_uint_t                 high;       /* 0: no upper bound */
    char                      *text;       /* the range, as the docs say it */
} ngx_chat_range_t;

#define NGX_CHAT_RANGE_NUM   0             /* ngx_uint_t */
#define NGX_CHAT_RANGE_SIZE  1             /* size_t */
#define NGX_CHAT_RANGE_MSEC  2             /* ngx_msec_t */
#define NGX_CHAT_RANGE_SEC   3             /* time_t, seconds */


/* ids carry 7 bits of node id */
static ngx_chat_range_t  ngx_chat_node_id_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_NUM, 0, 127, "between 0 and 127"
};

static ngx_chat_range_t  ngx_chat_pg_pool_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_NUM, 1, 64, "between 1 and 64"
};

/* renewed every third of it: shorter would flood Redis */
static ngx_chat_range_t  ngx_chat_presence_ttl_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_MSEC, 3000, 0, "at least 3s"
};

/* 0 would be librdkafka's "forever" */
static ngx_chat_range_t  ngx_chat_kafka_timeout_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_MSEC, 1, 0, "at least 1ms"
};

/* a CONNECT with its token must fit (0 would cut every session) */
static ngx_chat_range_t  ngx_chat_max_frame_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_SIZE, 1024, 0, "at least 1k"
};

static ngx_chat_range_t  ngx_chat_max_message_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_SIZE, 1024, 0, "at least 1k"
};

/* a header line that carries a token */
static ngx_chat_range_t  ngx_chat_max_header_len_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_SIZE, 256, 0, "at least 256"
};

/* CONNECT: accept-version, host, heart-beat, a credential; the parser
 * holds 64 */
static ngx_chat_range_t  ngx_chat_max_headers_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_NUM, 4, 64, "between 4 and 64"
};

static ngx_chat_range_t  ngx_chat_max_content_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_SIZE, 1, 0, "at least 1"
};

/* less than a frame cuts every client at its first MESSAGE */
static ngx_chat_range_t  ngx_chat_send_limit_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_SIZE, 4096, 0, "at least 4k"
};

static ngx_chat_range_t  ngx_chat_max_subscriptions_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_NUM, 1, NGX_CHAT_SUBS_MAX,
    "between 1 and 65535"
};

/* the longest id a MESSAGE header carries whole */
static ngx_chat_range_t  ngx_chat_max_group_members_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_NUM, 2, 100000,
    "between 2 and 100000"
};

static ngx_chat_range_t  ngx_chat_jwt_leeway_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_SEC, 0, 3600,
    "between 0 and 3600 seconds"
};

static ngx_chat_range_t  ngx_chat_max_sub_id_range = {
    ngx_chat_check_range, NGX_CHAT_RANGE_SIZE, 1, 256, "between 1 and 256"
};


static ngx_command_t  ngx_chat_commands[] = {

    /* Redis */

    { ngx_string("chat_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_chat_set_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, redis_timeout),
      NULL },

    /* PostgreSQL */

    { ngx_string("chat_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_chat_set_postgres,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, pg_conninfo),
      NULL },

    { ngx_string("chat_postgres_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, pg_pool_size),
      &ngx_chat_pg_pool_range },

    { ngx_string("chat_postgres_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, pg_timeout),
      NULL },

    /* Kafka */

    { ngx_string("chat_kafka"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_chat_set_kafka,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka.brokers),
      NULL },

    { ngx_string("chat_kafka_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka.timeout),
      &ngx_chat_kafka_timeout_range },

    { ngx_string("chat_kafka_option"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_chat_set_kafka_option,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka.options),
      NULL },

    { ngx_string("chat_kafka_topic"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_chat_set_topic,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka_topic),
      NULL },

    { ngx_string("chat_kafka_receipts_topic"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_chat_set_topic,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka_receipts_topic),
      NULL },

    /* this server among the others */

    { ngx_string("chat_node_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, node_id),
      &ngx_chat_node_id_range },

    { ngx_string("chat_presence_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, presence_ttl),
      &ngx_chat_presence_ttl_range },

    /* the locations */

    { ngx_string("chat_websocket"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_api"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_attachments"),
      NGX_HTTP_LOC_CONF|NGX_CONF_TAKE2,
      ngx_chat_attachments_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_attachment_types"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_chat_attachment_types_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_metrics_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_health"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_health_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_dev_token"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    /* who the client is */

    { ngx_string("chat_jwt_secret"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, jwt_secret),
      NULL },

    { ngx_string("chat_identity"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, identity),
      NULL },

    { ngx_string("chat_allowed_origins"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_1MORE,
      ngx_chat_set_origins,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, origins),
      NULL },

    /* limits of a session or a request */

    { ngx_string("chat_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_message),
      &ngx_chat_max_message_range },

    { ngx_string("chat_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_frame),
      &ngx_chat_max_frame_range },

    { ngx_string("chat_max_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_headers),
      &ngx_chat_max_headers_range },

    { ngx_string("chat_max_header_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_header_len),
      &ngx_chat_max_header_len_range },

    { ngx_string("chat_max_content_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_content),
      &ngx_chat_max_content_range },

    { ngx_string("chat_send_buffer_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, send_limit),
      &ngx_chat_send_limit_range },

    { ngx_string("chat_max_subscriptions"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_subscriptions),
      &ngx_chat_max_subscriptions_range },

    /* timers of a session */

    { ngx_string("chat_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, connect_timeout),
      NULL },

    { ngx_string("chat_sockjs_disconnect_delay"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, sockjs_disconnect),
      NULL },

    { ngx_string("chat_heartbeat"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, heartbeat),
      NULL },

    { ngx_string("chat_heartbeat_grace"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, heartbeat_grace),
      NULL },

    { ngx_string("chat_typing_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, typing_interval),
      NULL },

    /* resource limits against a hostile client (README.md, "Limits") */

    { ngx_string("chat_max_sessions_per_user"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_sessions_per_user),
      NULL },

    { ngx_string("chat_max_requests_in_flight"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_in_flight),
      NULL },

    { ngx_string("chat_max_transaction_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_tx_bytes),
      NULL },

    { ngx_string("chat_max_metadata_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_metadata),
      NULL },

    { ngx_string("chat_max_subscription_id"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_sub_id),
      &ngx_chat_max_sub_id_range },

    { ngx_string("chat_send_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_chat_set_send_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_max_group_members"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_group_members),
      &ngx_chat_max_group_members_range },

    { ngx_string("chat_conversation_rate"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE12,
      ngx_chat_set_conversation_rate,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_idle_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, idle_timeout),
      NULL },

    /* JWT claims besides the signature and exp */

    { ngx_string("chat_jwt_leeway"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_sec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, jwt_leeway),
      &ngx_chat_jwt_leeway_range },

    { ngx_string("chat_jwt_audience"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, jwt_audience),
      NULL },

    { ngx_string("chat_jwt_issuer"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, jwt_issuer),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_chat_module_ctx = {
    NULL,                                  /* preconfiguration */
    ngx_chat_api_errors_init,              /* postconfiguration */

    ngx_chat_create_main_conf,             /* create main configuration */
    ngx_chat_init_main_conf,               /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_chat_create_loc_conf,              /* create location configuration */
    ngx_chat_merge_loc_conf                /* merge location configuration */
};


ngx_module_t  ngx_chat_module = {
    NGX_MODULE_V1,
    &ngx_chat_module_ctx,                  /* module context */
    ngx_chat_commands,                     /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_chat_init_process,                 /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_chat_exit_process,                 /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_chat_create_main_conf(ngx_conf_t *cf)
{
    ngx_chat_main_conf_t  *mcf;

    mcf = ngx_pcalloc(cf->pool, sizeof(ngx_chat_main_conf_t));
    if (mcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     mcf->redis = NULL;
     *     mcf->pg_conninfo = { 0, NULL };
     *     mcf->enabled = 0;
     */

    mcf->redis_timeout = NGX_CONF_UNSET_MSEC;
    mcf->pg_pool_size = NGX_CONF_UNSET_UINT;
    mcf->pg_timeout = NGX_CONF_UNSET_MSEC;
    mcf->node_id = NGX_CONF_UNSET_UINT;
    mcf->kafka.timeout = NGX_CONF_UNSET_MSEC;
    mcf->presence_ttl = NGX_CONF_UNSET_MSEC;
    mcf->kafka.options = NGX_CONF_UNSET_PTR;

    return mcf;
}


static char *
ngx_chat_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_chat_main_conf_t  *mcf = conf;

    ngx_url_t  u;

    if (mcf->redis == NULL) {
        ngx_memzero(&u, sizeof(ngx_url_t));
        ngx_str_set(&u.url, "127.0.0.1:6379");
        u.default_port = 6379;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "cannot parse the default \"chat_redis\" "
                               "address \"%V\"", &u.url);
            return NGX_CONF_ERROR;
        }

        mcf->redis = &u.addrs[0];
    }

    ngx_conf_init_msec_value(mcf->redis_timeout, 5000);
    ngx_conf_init_uint_value(mcf->pg_pool_size, 4);
    ngx_conf_init_msec_value(mcf->pg_timeout, 5000);
    ngx_conf_init_uint_value(mcf->node_id, 0);

    if (mcf->pg_conninfo.len == 0) {
        ngx_str_set(&mcf->pg_conninfo, "host=127.0.0.1 dbname=chat");
    }

    ngx_conf_init_msec_value(mcf->kafka.timeout, 5000);
    ngx_conf_init_msec_value(mcf->presence_ttl, 30000);

    if (mcf->kafka.options == NGX_CONF_UNSET_PTR) {
        mcf->kafka.options = NULL;
    }

    if (mcf->kafka_topic.len == 0) {
        ngx_str_set(&mcf->kafka_topic, "chat.messages");
    }

    if (mcf->kafka_receipts_topic.len == 0) {
        ngx_str_set(&mcf->kafka_receipts_topic, "chat.receipts");
    }

    if (ngx_chat_kafka_check_conf(cf, &mcf->kafka, &mcf->kafka_where)
        != NGX_CONF_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (mcf->enabled && ngx_chat_metrics_zone(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_chat_set_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_main_conf_t  *mcf = conf;

    ngx_str_t   *value;
    ngx_url_t    u;
    ngx_uint_t   i, first;
    ngx_addr_t  *seed;

    if (mcf->redis != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    /* "chat_redis address;" or "chat_redis cluster address ...;" */

    first = 1;

    if (value[1].len == 7 && ngx_strncmp(value[1].data, "cluster", 7) == 0) {
        if (cf->args->nelts < 3) {
            return "needs at least one seed node after \"cluster\"";
        }

        mcf->redis_seeds = ngx_array_create(cf->pool, cf->args->nelts - 2,
                                            sizeof(ngx_addr_t));
        if (mcf->redis_seeds == NULL) {
            return NGX_CONF_ERROR;
        }

        first = 2;

    } else if (cf->args->nelts > 2) {
        return "takes one address (or \"cluster\" and seed nodes)";
    }

    for (i = first; i < cf->args->nelts; i++) {
        ngx_memzero(&u, sizeof(ngx_url_t));
        u.url = value[i];
        u.default_port = 6379;

        if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
            if (u.err) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%s in chat_redis \"%V\"", u.err, &u.url);
            }

            return NGX_CONF_ERROR;
        }

        if (u.naddrs == 0) {
            return "has no address";
        }

        mcf->redis = &u.addrs[0];

        if (mcf->redis_seeds) {
            seed = ngx_array_push(mcf->redis_seeds);
            if (seed == NULL) {
                return NGX_CONF_ERROR;
            }

            *seed = u.addrs[0];
        }
    }

    return NGX_CONF_OK;
}


/* chat_allowed_origins origin ...: every argument, over any number of lines */

static char *
ngx_chat_set_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t  *lcf = conf;

    char        *err;
    ngx_str_t   *value, *o;
    ngx_uint_t   i;

    if (lcf->origins == NGX_CONF_UNSET_PTR) {
        lcf->origins = ngx_array_create(cf->pool, 4, sizeof(ngx_str_t));
        if (lcf->origins == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        err = ngx_chat_check_origin(&value[i]);

        if (err != NULL) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"chat_allowed_origins\" \"%V\" is not "
                               "an origin: %s (scheme://host[:port], or *)",
                               &value[i], err);
            return NGX_CONF_ERROR;
        }

        o = ngx_array_push(lcf->origins);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }

        *o = value[i];
    }

    return NGX_CONF_OK;
}


/*
 * An origin as browsers send it (RFC 6454): scheme "://" host [":" port],
 * nothing after. NULL, or what is wrong.
 */
static char *
ngx_chat_check_origin(ngx_str_t *origin)
{
    u_char      *p, *last, *host;
    ngx_uint_t   port, digits;

    p = origin->data;
    last = p + origin->len;

    if (origin->len == 1 && *p == '*') {
        return NULL;
    }

    /* scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */

    if (p == last || !((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')) {
        return "no scheme";
    }

    while (p < last
           && (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')
               || (*p >= '0' && *p <= '9')
               || *p == '+' || *p == '-' || *p == '.'))
    {
        p++;
    }

    if (last - p < 3 || ngx_strncmp(p, "://", 3) != 0) {
        return "no \"://\" after the scheme";
    }

    p += 3;
    host = p;

    if (p < last && *p == '[') {
        while (p < last && *p != ']') {
            if (!((*p | 0x20) >= 'a' && (*p | 0x20) <= 'f')
                && !(*p >= '0' && *p <= '9') && *p != ':' && *p != '.'
                && *p != '[')
            {
                return "a bad IPv6 address";
            }

            p++;
        }

        if (p == last) {
            return "no \"]\" after the IPv6 address";
        }

        p++;

    } else {
        while (p < last
               && (((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z')
                   || (*p >= '0' && *p <= '9')
                   || *p == '-' || *p == '.' || *p == '_' || *p == '~'))
        {
            p++;
        }
    }

    if (p == host) {
        return "no host";
    }

    if (p < last && *p == ':') {
        p++;
        port = 0;
        digits = 0;

        while (p < last && *p >= '0' && *p <= '9' && digits < 6) {
            port = port * 10 + (*p++ - '0');
            digits++;
        }

        if (digits == 0 || port == 0 || port > 65535) {
            return "a bad port";
        }
    }

    if (p == last) {
        return NULL;
    }

    if (*p == '/') {
        return "it has a path (no \"/\" after the host or port)";
    }

    return "a character an origin cannot have after the scheme";
}


static char *
ngx_chat_check_range(ngx_conf_t *cf, void *post, void *data)
{
    ngx_chat_range_t  *range = post;

    ngx_str_t   *value;
    ngx_uint_t   v;

    switch (range->type) {

    case NGX_CHAT_RANGE_SIZE:
        v = *(size_t *) data;
        break;

    case NGX_CHAT_RANGE_MSEC:
        v = *(ngx_msec_t *) data;
        break;

    case NGX_CHAT_RANGE_SEC:
        v = (ngx_uint_t) *(time_t *) data;
        break;

    default: /* NGX_CHAT_RANGE_NUM */
        v = *(ngx_uint_t *) data;
        break;
    }

    if (v >= range->low && (range->high == 0 || v <= range->high)) {
        return NGX_CONF_OK;
    }

    value = cf->args->elts;

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" must be %s, not \"%V\"",
                       &value[0], range->text, &value[1]);

    return NGX_CONF_ERROR;
}


static char *
ngx_chat_set_postgres(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_main_conf_t  *mcf = conf;

    char  *rv;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    return ngx_chat_pg_check_conninfo(cf, &mcf->pg_conninfo);
}


static char *
ngx_chat_set_kafka(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_main_conf_t  *mcf = conf;

    char  *rv;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    mcf->kafka_where.file = cf->conf_file->file.name;
    mcf->kafka_where.line = cf->conf_file->line;

    return NGX_CONF_OK;
}


static char *
ngx_chat_set_kafka_option(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_main_conf_t  *mcf = conf;

    char       *rv;
    ngx_str_t  *opt;

    rv = ngx_conf_set_str_array_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    opt = mcf->kafka.options->elts;

    return ngx_chat_kafka_check_option(cf,
                                       &opt[mcf->kafka.options->nelts - 1]);
}


/* a Kafka topic name: [a-zA-Z0-9._-]{1,249} */

static char *
ngx_chat_set_topic(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char       *rv;
    u_char      c;
    ngx_str_t  *value;
    ngx_uint_t  i;

    rv = ngx_conf_set_str_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;

    for (i = 0; i < value[1].len; i++) {
        c = value[1].data[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
        {
            break;
        }
    }

    if (value[1].len == 0 || value[1].len > 249 || i < value[1].len
        || ngx_strcmp(value[1].data, ".") == 0
        || ngx_strcmp(value[1].data, "..") == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" \"%V\" is not a Kafka topic name "
                           "(1 to 249 letters, digits, \".\", \"_\", "
                           "\"-\")", &value[0], &value[1]);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static void *
ngx_chat_create_loc_conf(ngx_conf_t *cf)
{
    ngx_chat_loc_conf_t  *lcf;

    lcf = ngx_pcalloc(cf->pool, sizeof(ngx_chat_loc_conf_t));
    if (lcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     lcf->handler = NGX_CHAT_HANDLER_NONE;
     *     lcf->jwt_secret = { 0, NULL };
     */

    lcf->identity = NGX_CONF_UNSET_PTR;
    lcf->origins = NGX_CONF_UNSET_PTR;
    lcf->max_message = NGX_CONF_UNSET_SIZE;
    lcf->max_frame = NGX_CONF_UNSET_SIZE;
    lcf->max_headers = NGX_CONF_UNSET_UINT;
    lcf->max_header_len = NGX_CONF_UNSET_SIZE;
    lcf->max_content = NGX_CONF_UNSET_SIZE;
    lcf->heartbeat = NGX_CONF_UNSET_MSEC;
    lcf->heartbeat_grace = NGX_CONF_UNSET_MSEC;
    lcf->connect_timeout = NGX_CONF_UNSET_MSEC;
    lcf->send_limit = NGX_CONF_UNSET_SIZE;
    lcf->max_subscriptions = NGX_CONF_UNSET_UINT;
    lcf->typing_interval = NGX_CONF_UNSET_MSEC;
    lcf->max_sessions_per_user = NGX_CONF_UNSET_UINT;
    lcf->max_in_flight = NGX_CONF_UNSET_UINT;
    lcf->send_rate = NGX_CONF_UNSET_UINT;
    lcf->send_burst = NGX_CONF_UNSET_UINT;
    lcf->max_tx_bytes = NGX_CONF_UNSET_SIZE;
    lcf->max_metadata = NGX_CONF_UNSET_SIZE;
    lcf->max_sub_id = NGX_CONF_UNSET_SIZE;
    lcf->max_group_members = NGX_CONF_UNSET_UINT;
    lcf->conv_rate = NGX_CONF_UNSET_UINT;
    lcf->conv_burst = NGX_CONF_UNSET_UINT;
    lcf->idle_timeout = NGX_CONF_UNSET_MSEC;
    lcf->jwt_leeway = NGX_CONF_UNSET;
    lcf->sockjs_disconnect = NGX_CONF_UNSET_MSEC;
    lcf->attach_types = NGX_CONF_UNSET_PTR;

    return lcf;
}


static char *
ngx_chat_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_chat_loc_conf_t  *prev = parent;
    ngx_chat_loc_conf_t  *conf = child;

    ngx_conf_merge_str_value(conf->jwt_secret, prev->jwt_secret, "");
    ngx_conf_merge_ptr_value(conf->identity, prev->identity, NULL);
    ngx_conf_merge_ptr_value(conf->origins, prev->origins, NULL);
    ngx_conf_merge_size_value(conf->max_message, prev->max_message,
                              64 * 1024);
    ngx_conf_merge_size_value(conf->max_frame, prev->max_frame, 64 * 1024);
    ngx_conf_merge_uint_value(conf->max_headers, prev->max_headers, 32);
    ngx_conf_merge_size_value(conf->max_header_len, prev->max_header_len,
                              4096);
    ngx_conf_merge_size_value(conf->max_content, prev->max_content,
                              16 * 1024);
    ngx_conf_merge_msec_value(conf->heartbeat, prev->heartbeat, 10000);
    ngx_conf_merge_msec_value(conf->heartbeat_grace, prev->heartbeat_grace,
                              5000);
    ngx_conf_merge_msec_value(conf->connect_timeout, prev->connect_timeout,
                              10000);
    ngx_conf_merge_size_value(conf->send_limit, prev->send_limit,
                              1024 * 1024);
    ngx_conf_merge_uint_value(conf->max_subscriptions,
                              prev->max_subscriptions, 32);
    ngx_conf_merge_msec_value(conf->typing_interval, prev->typing_interval,
                              2000);

    /* resource limits */
    ngx_conf_merge_uint_value(conf->max_sessions_per_user,
                              prev->max_sessions_per_user, 16);
    ngx_conf_merge_uint_value(conf->max_in_flight, prev->max_in_flight,
                              128);
    ngx_conf_merge_size_value(conf->max_tx_bytes, prev->max_tx_bytes,
                              256 * 1024);
    ngx_conf_merge_size_value(conf->max_metadata, prev->max_metadata, 4096);
    ngx_conf_merge_size_value(conf->max_sub_id, prev->max_sub_id, 128);
    ngx_conf_merge_msec_value(conf->sockjs_disconnect,
                              prev->sockjs_disconnect, 30000);
    ngx_conf_merge_ptr_value(conf->attach_types, prev->attach_types, NULL);

    if (conf->send_rate == NGX_CONF_UNSET_UINT) {
        conf->send_rate = prev->send_rate;
        conf->send_burst = prev->send_burst;
    }

    if (conf->send_rate == NGX_CONF_UNSET_UINT) {
        conf->send_rate = 20 * 1000;
        conf->send_burst = 100 * 1000;
    }

    ngx_conf_merge_uint_value(conf->max_group_members,
                              prev->max_group_members, 1000);
    ngx_conf_merge_msec_value(conf->idle_timeout, prev->idle_timeout,
                              300000);

    if (conf->conv_rate == NGX_CONF_UNSET_UINT) {
        conf->conv_rate = prev->conv_rate;
        conf->conv_burst = prev->conv_burst;
    }

    if (conf->conv_rate == NGX_CONF_UNSET_UINT) {
        conf->conv_rate = 30 * 1000 / 60;
        conf->conv_burst = 30 * 1000;
    }

    ngx_conf_merge_sec_value(conf->jwt_leeway, prev->jwt_leeway, 60);
    ngx_conf_merge_str_value(conf->jwt_audience, prev->jwt_audience, "");
    ngx_conf_merge_str_value(conf->jwt_issuer, prev->jwt_issuer, "");

    /* read after the location's last line: name the handler's own */

    if (conf->handler == NGX_CHAT_HANDLER_DEVTOKEN
        && conf->jwt_secret.len == 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"chat_dev_token\" needs \"chat_jwt_secret\" "
                      "(in the location or above it) in %V:%ui",
                      &conf->handler_where.file, conf->handler_where.line);
        return NGX_CONF_ERROR;
    }

    if (conf->handler != NGX_CHAT_HANDLER_NONE
        && conf->identity == NULL && conf->jwt_secret.len == 0)
    {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"%s\" needs \"chat_jwt_secret\" or "
                      "\"chat_identity\" (in the location or above it) "
                      "in %V:%ui",
                      conf->handler == NGX_CHAT_HANDLER_API
                      ? "chat_api"
                      : conf->handler == NGX_CHAT_HANDLER_ATTACH
                      ? "chat_attachments" : "chat_websocket",
                      &conf->handler_where.file, conf->handler_where.line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_chat_set_handler(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t  *lcf = conf;

    ngx_chat_main_conf_t      *mcf;
    ngx_chat_ws_location_t    *wl;
    ngx_http_core_loc_conf_t  *clcf;

    if (lcf->handler != NGX_CHAT_HANDLER_NONE) {
        return "is duplicate";
    }

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_chat_module);

    if (ngx_strcmp(cmd->name.data, "chat_api") == 0) {
        lcf->handler = NGX_CHAT_HANDLER_API;
        clcf->handler = ngx_chat_api_handler;

    } else if (ngx_strcmp(cmd->name.data, "chat_dev_token") == 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "\"chat_dev_token\" hands out a token for any "
                           "user to loopback clients: for development "
                           "only");
        lcf->handler = NGX_CHAT_HANDLER_DEVTOKEN;
        clcf->handler = ngx_chat_devtoken_handler;

    } else {
        lcf->handler = NGX_CHAT_HANDLER_WEBSOCKET;
        clcf->handler = ngx_chat_sockjs_handler;    /* and WebSocket */

        /* chat_stomp (stream{}) finds its settings here */

        if (mcf->ws_locations == NULL) {
            mcf->ws_locations = ngx_array_create(cf->pool, 2,
                                               sizeof(ngx_chat_ws_location_t));
            if (mcf->ws_locations == NULL) {
                return NGX_CONF_ERROR;
            }
        }

        wl = ngx_array_push(mcf->ws_locations);
        if (wl == NULL) {
            return NGX_CONF_ERROR;
        }

        wl->name = clcf->name;
        wl->lcf = lcf;
    }

    lcf->handler_where.file = cf->conf_file->file.name;
    lcf->handler_where.line = cf->conf_file->line;

    mcf->enabled = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_chat_init_process(ngx_cycle_t *cycle)
{
    ngx_chat_main_conf_t  *mcf;

    if (ngx_process != NGX_PROCESS_WORKER
        && ngx_process != NGX_PROCESS_SINGLE)
    {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_chat_module);
    if (mcf == NULL || !mcf->enabled) {
        return NGX_OK;
    }

    ngx_chat_worker.cycle = cycle;
    ngx_chat_worker.mcf = mcf;
    ngx_chat_worker.worker = ngx_worker;

    ngx_chat_metrics_init_process(cycle);

    /* the stores first: they connect from the event loop */

    if (ngx_chat_redis_init(cycle, mcf->redis, mcf->redis_seeds,
                            mcf->redis_timeout)
        != NGX_OK
        || ngx_chat_pg_init(cycle, &mcf->pg_conninfo, mcf->pg_pool_size,
                            mcf->pg_timeout)
           != NGX_OK
        || ngx_chat_kafka_init(cycle, &mcf->kafka) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* the session on the transport, then the features, which register
     * destinations and session hooks */

    ngx_chat_transport_open = ngx_chat_session_start;
    ngx_chat_ws_protocols = ngx_chat_session_protocols;


    if (ngx_chat_messaging_init_process(cycle) != NGX_OK
        || ngx_chat_presence_init_process(cycle) != NGX_OK
        || ngx_chat_receipts_init_process(cycle) != NGX_OK
        || ngx_chat_api_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_chat_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_chat_worker.mcf == NULL) {
        return;
    }

    /* deliveries may still complete while sessions exist */
    ngx_chat_kafka_exit(cycle);

    /* the features, then the stores they used */
    ngx_chat_receipts_exit_process(cycle);
    ngx_chat_presence_exit_process(cycle);
    ngx_chat_redis_exit();
    ngx_chat_pg_exit();
    ngx_chat_metrics_exit_process();

    ngx_chat_worker.mcf = NULL;
}


/*
 * chat_send_rate rate [burst=number], as limit_req_zone's rate and
 * limit_req's burst: "20r/s", "600r/m"; "off" (or 0) for none
 */

static char *
ngx_chat_set_send_rate(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t  *lcf = conf;

    if (lcf->send_rate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    return ngx_chat_parse_rate(cf, &lcf->send_rate, &lcf->send_burst);
}


/* chat_conversation_rate rate [burst=number] | off, as chat_send_rate */

static char *
ngx_chat_set_conversation_rate(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_chat_loc_conf_t  *lcf = conf;

    if (lcf->conv_rate != NGX_CONF_UNSET_UINT) {
        return "is duplicate";
    }

    return ngx_chat_parse_rate(cf, &lcf->conv_rate, &lcf->conv_burst);
}


/* the directive's "rate [burst=number]" or "off": per 1000 s, times 1000 */

static char *
ngx_chat_parse_rate(ngx_conf_t *cf, ngx_uint_t *out_rate,
    ngx_uint_t *out_burst)
{
    u_char     *p;
    size_t      len;
    ngx_int_t   rate, scale, burst;
    ngx_str_t  *value;

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        if (cf->args->nelts > 2) {
            return "takes no burst when \"off\"";
        }

        *out_rate = 0;
        *out_burst = 0;
        return NGX_CONF_OK;
    }

    len = value[1].len;
    p = value[1].data + len - 3;
    scale = 1;

    if (len > 3 && ngx_strncmp(p, "r/s", 3) == 0) {
        len -= 3;

    } else if (len > 3 && ngx_strncmp(p, "r/m", 3) == 0) {
        scale = 60;
        len -= 3;

    } else {
        return "wants a rate such as \"20r/s\" or \"600r/m\"";
    }

    rate = ngx_atoi(value[1].data, len);
    if (rate == NGX_ERROR || rate > 1000000) {
        return "has an invalid rate";
    }

    burst = 0;

    if (cf->args->nelts == 3) {
        if (ngx_strncmp(value[2].data, "burst=", 6) != 0) {
            return "wants \"burst=number\" after the rate";
        }

        burst = ngx_atoi(value[2].data + 6, value[2].len - 6);
        if (burst == NGX_ERROR || burst > 1000000) {
            return "has an invalid burst";
        }
    }

    /* per 1000 s, as limit_req keeps it (rate 0: off) */
    *out_rate = rate * 1000 / scale;
    *out_burst = burst * 1000;

    if (rate && *out_rate == 0) {
        *out_rate = 1;
    }

    return NGX_CONF_OK;
}
