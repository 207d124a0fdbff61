/* ngx_chat_module.c: directives, configuration and the worker lifecycle. */

#include "ngx_chat.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_presence.h"
#include "ngx_chat_receipts.h"
#include "ngx_chat_metrics.h"


static void *ngx_chat_create_main_conf(ngx_conf_t *cf);
static char *ngx_chat_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_chat_create_loc_conf(ngx_conf_t *cf);
static char *ngx_chat_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_chat_set_handler(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_chat_set_redis(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_chat_init_process(ngx_cycle_t *cycle);
static void ngx_chat_exit_process(ngx_cycle_t *cycle);


ngx_chat_worker_t  ngx_chat_worker;


static ngx_conf_num_bounds_t  ngx_chat_node_id_bounds = {
    ngx_conf_check_num_bounds, 0, 127
};


static char *ngx_chat_set_origins(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


static ngx_command_t  ngx_chat_commands[] = {

    { ngx_string("chat_kafka"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka.brokers),
      NULL },

    { ngx_string("chat_kafka_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka.timeout),
      NULL },

    { ngx_string("chat_kafka_option"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_array_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka.options),
      NULL },

    { ngx_string("chat_kafka_topic"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka_topic),
      NULL },

    { ngx_string("chat_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
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

    { ngx_string("chat_postgres"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, pg_conninfo),
      NULL },

    { ngx_string("chat_postgres_pool"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, pg_pool_size),
      NULL },

    { ngx_string("chat_postgres_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, pg_timeout),
      NULL },

    { ngx_string("chat_node_id"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, node_id),
      &ngx_chat_node_id_bounds },

    { ngx_string("chat_kafka_receipts_topic"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, kafka_receipts_topic),
      NULL },

    { ngx_string("chat_presence_ttl"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_chat_main_conf_t, presence_ttl),
      NULL },

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

    { ngx_string("chat_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_metrics_set,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_dev_token"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_chat_set_handler,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

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

    { ngx_string("chat_max_message_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_message),
      NULL },

    { ngx_string("chat_max_frame_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_frame),
      NULL },

    { ngx_string("chat_max_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_headers),
      NULL },

    { ngx_string("chat_max_header_length"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_header_len),
      NULL },

    { ngx_string("chat_max_content_size"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_content),
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

    { ngx_string("chat_connect_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, connect_timeout),
      NULL },

    { ngx_string("chat_send_buffer_limit"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_size_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, send_limit),
      NULL },

    { ngx_string("chat_max_subscriptions"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_num_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, max_subscriptions),
      NULL },

    { ngx_string("chat_typing_interval"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_chat_loc_conf_t, typing_interval),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_chat_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

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


ngx_chat_blob_t *
ngx_chat_blob_create(size_t len)
{
    ngx_chat_blob_t  *b;

    b = ngx_alloc(offsetof(ngx_chat_blob_t, data) + len + 1, ngx_cycle->log);
    if (b == NULL) {
        return NULL;
    }

    b->refs = 1;
    b->len = len;
    b->seq = 0;
    ngx_str_null(&b->conv);
    b->parsed = 0;

    return b;
}


void
ngx_chat_blob_release(ngx_chat_blob_t *b)
{
    if (b != NULL && --b->refs == 0) {
        ngx_free(b);
    }
}


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
            return "cannot parse the default chat_redis address";
        }

        mcf->redis = &u.addrs[0];
    }

    ngx_conf_init_msec_value(mcf->redis_timeout, 5000);
    ngx_conf_init_uint_value(mcf->pg_pool_size, 4);
    ngx_conf_init_msec_value(mcf->pg_timeout, 5000);
    ngx_conf_init_uint_value(mcf->node_id, 0);

    if (mcf->pg_pool_size == 0 || mcf->pg_pool_size > 64) {
        return "chat_postgres_pool must be between 1 and 64";
    }

    if (mcf->pg_conninfo.len == 0) {
        ngx_str_set(&mcf->pg_conninfo, "host=127.0.0.1 dbname=chat");
    }

    ngx_conf_init_msec_value(mcf->kafka.timeout, 5000);
    ngx_conf_init_msec_value(mcf->presence_ttl, 30000);

    if (mcf->presence_ttl < 3000) {
        return "chat_presence_ttl must be at least 3s";
    }

    if (mcf->kafka.options == NGX_CONF_UNSET_PTR) {
        mcf->kafka.options = NULL;
    }

    if (mcf->kafka_topic.len == 0) {
        ngx_str_set(&mcf->kafka_topic, "chat.messages");
    }

    if (mcf->kafka_receipts_topic.len == 0) {
        ngx_str_set(&mcf->kafka_receipts_topic, "chat.receipts");
    }

    if (ngx_chat_kafka_check_conf(cf, &mcf->kafka) != NGX_CONF_OK) {
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

    ngx_str_t  *value;
    ngx_url_t   u;

    if (mcf->redis != NULL) {
        return "is duplicate";
    }

    value = cf->args->elts;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = value[1];
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

    return NGX_CONF_OK;
}


/* chat_allowed_origins origin ...: every argument, over any number of lines */

static char *
ngx_chat_set_origins(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t  *lcf = conf;

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
        o = ngx_array_push(lcf->origins);
        if (o == NULL) {
            return NGX_CONF_ERROR;
        }

        *o = value[i];
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

    if (conf->max_headers > 64) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "chat_max_headers must be at most 64");
        return NGX_CONF_ERROR;
    }

    if (conf->handler == NGX_CHAT_HANDLER_DEVTOKEN
        && conf->jwt_secret.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_dev_token\" needs \"chat_jwt_secret\"");
        return NGX_CONF_ERROR;
    }

    if (conf->handler != NGX_CHAT_HANDLER_NONE
        && conf->identity == NULL && conf->jwt_secret.len == 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "a chat location needs \"chat_jwt_secret\" "
                           "or \"chat_identity\"");
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static char *
ngx_chat_set_handler(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t  *lcf = conf;

    ngx_chat_main_conf_t      *mcf;
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
        clcf->handler = ngx_chat_ws_handler;
    }

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

    if (ngx_chat_messaging_init_process(cycle) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_chat_presence_init_process(cycle) != NGX_OK
        || ngx_chat_receipts_init_process(cycle) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_chat_kafka_init(cycle, &mcf->kafka) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_chat_pg_init(cycle, &mcf->pg_conninfo, mcf->pg_pool_size,
                         mcf->pg_timeout)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ngx_chat_api_init_process(cycle) != NGX_OK) {
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
    ngx_chat_receipts_exit_process(cycle);
    ngx_chat_presence_exit_process(cycle);
    ngx_chat_messaging_exit_process(cycle);
    ngx_chat_pg_exit();
    ngx_chat_metrics_exit_process();

    ngx_chat_worker.mcf = NULL;
}
