/* ngx_chat_metrics.c: the metrics zone, per-worker slots and the
 * "chat_metrics" handler (Prometheus text exposition format 0.0.4). */

#include <time.h>
#include <signal.h>

#include "ngx_chat.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_METRICS_ZONE_SIZE  (64 * 1024)
#define NGX_CHAT_METRICS_BUF        (32 * 1024)


static ngx_int_t ngx_chat_metrics_init_zone(ngx_shm_zone_t *zone,
    void *data);
static ngx_int_t ngx_chat_metrics_handler(ngx_http_request_t *r);
static ngx_uint_t ngx_chat_metrics_alive(ngx_pid_t pid);
static u_char *ngx_chat_metrics_render(ngx_chat_metrics_sh_t *sh, u_char *p,
    u_char *end);
static u_char *ngx_chat_metrics_seconds(u_char *p, u_char *end,
    uint64_t us);
static u_char *ngx_chat_metrics_le(u_char *p, u_char *end, uint64_t us);
static u_char *ngx_chat_metrics_hist(u_char *p, u_char *end,
    ngx_chat_metrics_hist_t *h, const char *name, const char *label);


ngx_chat_metrics_sh_t    *ngx_chat_metrics_sh;
ngx_chat_metrics_slot_t  *ngx_chat_metrics_slot;


static ngx_str_t  ngx_chat_metrics_name = ngx_string("ngx_chat_metrics");


/* upper bounds in microseconds (served in seconds): 0.1 ms .. 5 s */
static uint64_t  ngx_chat_metrics_bounds[NGX_CHAT_H_BUCKETS] = {
    100, 250, 500, 1000, 2000, 5000, 10000, 25000, 50000, 100000,
    250000, 500000, 1000000, 2500000, 5000000
};


/* the codes of ngx_chat_metric_e's error counters, in their order */
static const char  *ngx_chat_metrics_codes[] = {
    "bad_request", "not_member", "not_found", "too_large", "rate_limited",
    "unavailable", "other", "protocol", NULL
};


/* the limits of ngx_chat_metric_e's limited_total counters, in their order */
static const char  *ngx_chat_metrics_limits[] = {
    "sessions_per_user", "requests_in_flight", "send_rate",
    "transaction_size", "metadata_size", "subscription_id",
    "group_members", "conversation_rate", "idle_timeout", "jwt_claims",
    "device_moved", NULL
};


uint64_t
ngx_chat_metric_now_us(void)
{
    struct timespec  ts;

    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return (uint64_t) ngx_current_msec * 1000;
    }

    return (uint64_t) ts.tv_sec * 1000000 + (uint64_t) ts.tv_nsec / 1000;
}


void
ngx_chat_metric_observe(ngx_chat_histogram_e h, ngx_chat_gauge_e gauge,
    uint64_t us)
{
    ngx_uint_t                i;
    ngx_chat_metrics_hist_t  *hist;

    if (ngx_chat_metrics_sh == NULL) {
        return;
    }

    hist = &ngx_chat_metrics_sh->h[h];

    for (i = 0; i < NGX_CHAT_H_BUCKETS; i++) {
        if (us <= ngx_chat_metrics_bounds[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&hist->bucket[i], 1);
    (void) ngx_atomic_fetch_add(&hist->sum, (ngx_atomic_int_t) us);

    if (gauge != NGX_CHAT_G_MAX) {
        ngx_chat_metric_gauge_set(gauge, (ngx_atomic_uint_t) us);
    }
}


void
ngx_chat_metric_error(const char *code)
{
    ngx_uint_t  i;

    for (i = 0; ngx_chat_metrics_codes[i]; i++) {
        if (ngx_strcmp(code, ngx_chat_metrics_codes[i]) == 0) {
            ngx_chat_metric_inc(NGX_CHAT_M_ERR_FIRST + i, 1);
            return;
        }
    }

    ngx_chat_metric_inc(NGX_CHAT_M_ERR_OTHER, 1);
}


void
ngx_chat_metric_limit(const char *name)
{
    ngx_uint_t  i;

    for (i = 0; ngx_chat_metrics_limits[i]; i++) {
        if (ngx_strcmp(name, ngx_chat_metrics_limits[i]) == 0) {
            ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_FIRST + i, 1);
            return;
        }
    }
}


ngx_int_t
ngx_chat_metrics_zone(ngx_conf_t *cf)
{
    ngx_shm_zone_t        *zone;
    ngx_chat_main_conf_t  *mcf;

    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_chat_module);

    if (mcf->metrics_zone) {
        return NGX_OK;
    }

    zone = ngx_shared_memory_add(cf, &ngx_chat_metrics_name,
                                 NGX_CHAT_METRICS_ZONE_SIZE,
                                 &ngx_chat_module);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_chat_metrics_init_zone;
    mcf->metrics_zone = zone;

    return NGX_OK;
}


/* counters survive a reload: the zone of the same size is reused */

static ngx_int_t
ngx_chat_metrics_init_zone(ngx_shm_zone_t *zone, void *data)
{
    ngx_slab_pool_t        *shpool;
    ngx_chat_metrics_sh_t  *sh;

    if (data) {
        zone->data = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) zone->shm.addr;

    if (zone->shm.exists) {
        zone->data = shpool->data;
        return NGX_OK;
    }

    sh = ngx_slab_calloc(shpool, sizeof(ngx_chat_metrics_sh_t));
    if (sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = sh;
    zone->data = sh;

    return NGX_OK;
}


char *
ngx_chat_metrics_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_chat_metrics_handler) {
        return "is duplicate";
    }

    if (ngx_chat_metrics_zone(cf) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    clcf->handler = ngx_chat_metrics_handler;

    return NGX_CONF_OK;
}


/*
 * A slot per worker process, claimed by pid: a slot whose process is gone
 * (a crashed worker, an old one after a reload) is free again.
 */

void
ngx_chat_metrics_init_process(ngx_cycle_t *cycle)
{
    ngx_pid_t                 pid;
    ngx_uint_t                i, k;
    ngx_chat_main_conf_t     *mcf;
    ngx_chat_metrics_slot_t  *slot;

    ngx_chat_metrics_sh = NULL;
    ngx_chat_metrics_slot = NULL;

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_chat_module);
    if (mcf == NULL || mcf->metrics_zone == NULL) {
        return;
    }

    ngx_chat_metrics_sh = mcf->metrics_zone->data;

    for (i = 0; i < NGX_CHAT_M_SLOTS; i++) {
        slot = &ngx_chat_metrics_sh->slot[i];
        pid = (ngx_pid_t) slot->pid;

        if (pid != 0 && ngx_chat_metrics_alive(pid)) {
            continue;
        }

        if (ngx_atomic_cmp_set(&slot->pid, (ngx_atomic_uint_t) pid,
                               (ngx_atomic_uint_t) ngx_pid))
        {
            for (k = 0; k < NGX_CHAT_G_MAX; k++) {
                slot->g[k] = 0;
            }

            ngx_chat_metrics_slot = slot;
            return;
        }
    }

    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "chat: no free metrics slot, this worker's gauges "
                  "are not counted");
}


void
ngx_chat_metrics_exit_process(void)
{
    ngx_chat_metrics_slot_t  *slot;

    slot = ngx_chat_metrics_slot;

    if (slot == NULL) {
        return;
    }

    ngx_chat_metrics_slot = NULL;
    (void) ngx_atomic_cmp_set(&slot->pid, (ngx_atomic_uint_t) ngx_pid, 0);
}


static ngx_uint_t
ngx_chat_metrics_alive(ngx_pid_t pid)
{
    if (pid == ngx_pid) {
        return 1;
    }

    return kill(pid, 0) == 0 || ngx_errno == NGX_EPERM;
}


static ngx_int_t
ngx_chat_metrics_handler(ngx_http_request_t *r)
{
    ngx_int_t              rc;
    ngx_buf_t             *b;
    ngx_chat_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_chat_module);

    if (mcf->metrics_zone == NULL || mcf->metrics_zone->data == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b = ngx_create_temp_buf(r->pool, NGX_CHAT_METRICS_BUF);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_chat_metrics_render(mcf->metrics_zone->data, b->pos,
                                      b->end);

    if (b->last == b->end) {
        ngx_log_error(NGX_LOG_ALERT, r->connection->log, 0,
                      "chat: the metrics do not fit in %d bytes",
                      NGX_CHAT_METRICS_BUF);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    return ngx_chat_send_response(r, NGX_HTTP_OK,
                                  "text/plain; version=0.0.4; charset=utf-8",
                                  b->pos, b->last - b->pos);
}


#define ngx_chat_metrics_head(p, end, name, type, help)                     \
    ngx_slprintf(p, end, "# HELP " name " " help "\n# TYPE " name " "      \
                 type "\n")


static u_char *
ngx_chat_metrics_render(ngx_chat_metrics_sh_t *sh, u_char *p, u_char *end)
{
    uint64_t                  max[NGX_CHAT_G_MAX];
    ngx_pid_t                 pid;
    ngx_uint_t                i, k, workers, up[3];
    ngx_atomic_int_t          sum[NGX_CHAT_G_MAX];
    ngx_chat_metrics_slot_t  *slot;

    static const char  *links[3] = { "redis", "postgresql", "kafka" };
    static const ngx_chat_gauge_e  rtt[3] = {
        NGX_CHAT_G_REDIS_RTT, NGX_CHAT_G_PG_RTT, NGX_CHAT_G_KAFKA_RTT
    };
    static const ngx_chat_histogram_e  hist[3] = {
        NGX_CHAT_H_REDIS, NGX_CHAT_H_PG, NGX_CHAT_H_KAFKA
    };

    ngx_memzero(sum, sizeof(sum));
    ngx_memzero(max, sizeof(max));
    ngx_memzero(up, sizeof(up));
    workers = 0;

    for (i = 0; i < NGX_CHAT_M_SLOTS; i++) {
        slot = &sh->slot[i];
        pid = (ngx_pid_t) slot->pid;

        if (pid == 0 || !ngx_chat_metrics_alive(pid)) {
            continue;
        }

        workers++;

        for (k = 0; k < NGX_CHAT_G_MAX; k++) {
            sum[k] += (ngx_atomic_int_t) slot->g[k];

            if (slot->g[k] > max[k]) {
                max[k] = slot->g[k];
            }
        }

        up[0] += (slot->g[NGX_CHAT_G_REDIS_UP] != 0);
        up[1] += (slot->g[NGX_CHAT_G_PG_CONNS] != 0);
        up[2] += (slot->g[NGX_CHAT_G_KAFKA_UP] != 0);
    }

    p = ngx_chat_metrics_head(p, end, "ngx_chat_workers", "gauge",
                              "Worker processes with chat enabled.");
    p = ngx_slprintf(p, end, "ngx_chat_workers %ui\n", workers);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_connections", "gauge",
                              "WebSocket connections open.");
    p = ngx_slprintf(p, end, "ngx_chat_connections %A\n",
                     sum[NGX_CHAT_G_CONNECTIONS]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_connections_total",
                              "counter", "WebSocket connections accepted.");
    p = ngx_slprintf(p, end, "ngx_chat_connections_total %uA\n",
                     sh->m[NGX_CHAT_M_CONNECTIONS]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_stomp_tcp_connections",
                              "gauge",
                              "STOMP over TCP/TLS connections open.");
    p = ngx_slprintf(p, end, "ngx_chat_stomp_tcp_connections %A\n",
                     sum[NGX_CHAT_G_TCP_CONNECTIONS]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_stomp_tcp_connections_total",
                              "counter",
                              "STOMP over TCP/TLS connections accepted.");
    p = ngx_slprintf(p, end, "ngx_chat_stomp_tcp_connections_total %uA\n",
                     sh->m[NGX_CHAT_M_TCP_CONNECTIONS]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_sessions", "gauge",
                              "STOMP sessions connected.");
    p = ngx_slprintf(p, end, "ngx_chat_sessions %A\n",
                     sum[NGX_CHAT_G_SESSIONS]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_sessions_total", "counter",
                              "STOMP sessions established.");
    p = ngx_slprintf(p, end, "ngx_chat_sessions_total %uA\n",
                     sh->m[NGX_CHAT_M_SESSIONS]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_subscriptions", "gauge",
                              "STOMP subscriptions active.");
    p = ngx_slprintf(p, end, "ngx_chat_subscriptions %A\n",
                     sum[NGX_CHAT_G_SUBSCRIPTIONS]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_frames_in_total", "counter",
                              "STOMP frames received (heart-beats aside).");
    p = ngx_slprintf(p, end, "ngx_chat_frames_in_total %uA\n",
                     sh->m[NGX_CHAT_M_FRAMES_IN]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_frames_out_total", "counter",
                              "STOMP frames sent (heart-beats aside).");
    p = ngx_slprintf(p, end, "ngx_chat_frames_out_total %uA\n",
                     sh->m[NGX_CHAT_M_FRAMES_OUT]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_messages_in_total",
                              "counter", "Chat messages accepted (SEND).");
    p = ngx_slprintf(p, end, "ngx_chat_messages_in_total %uA\n",
                     sh->m[NGX_CHAT_M_MESSAGES_IN]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_messages_out_total",
                              "counter",
                              "Chat MESSAGE frames delivered to sessions.");
    p = ngx_slprintf(p, end, "ngx_chat_messages_out_total %uA\n",
                     sh->m[NGX_CHAT_M_MESSAGES_OUT]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_errors_total", "counter",
                              "Rejected requests by code; protocol: STOMP "
                              "ERROR frames.");

    for (i = 0; ngx_chat_metrics_codes[i]; i++) {
        p = ngx_slprintf(p, end, "ngx_chat_errors_total{code=\"%s\"} %uA\n",
                         ngx_chat_metrics_codes[i],
                         sh->m[NGX_CHAT_M_ERR_FIRST + i]);
    }

    p = ngx_chat_metrics_head(p, end, "ngx_chat_limited_total", "counter",
                              "Requests refused by a resource limit.");

    for (i = 0; ngx_chat_metrics_limits[i]; i++) {
        p = ngx_slprintf(p, end,
                         "ngx_chat_limited_total{limit=\"%s\"} %uA\n",
                         ngx_chat_metrics_limits[i],
                         sh->m[NGX_CHAT_M_LIMIT_FIRST + i]);
    }

    p = ngx_chat_metrics_head(p, end, "ngx_chat_link_up", "gauge",
                              "Workers whose link to the store is up.");

    for (i = 0; i < 3; i++) {
        p = ngx_slprintf(p, end, "ngx_chat_link_up{link=\"%s\"} %ui\n",
                         links[i], up[i]);
    }

    p = ngx_chat_metrics_head(p, end, "ngx_chat_pg_connections", "gauge",
                              "PostgreSQL pool connections up.");
    p = ngx_slprintf(p, end, "ngx_chat_pg_connections %A\n",
                     sum[NGX_CHAT_G_PG_CONNS]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_kafka_queue_depth", "gauge",
                              "Kafka messages not yet acknowledged.");
    p = ngx_slprintf(p, end, "ngx_chat_kafka_queue_depth %A\n",
                     sum[NGX_CHAT_G_KAFKA_QUEUE]);

    p = ngx_chat_metrics_head(p, end, "ngx_chat_link_last_rtt_seconds",
                              "gauge",
                              "Last round-trip time measured (the largest "
                              "of the workers').");

    for (i = 0; i < 3; i++) {
        p = ngx_slprintf(p, end,
                         "ngx_chat_link_last_rtt_seconds{link=\"%s\"} ",
                         links[i]);
        p = ngx_chat_metrics_seconds(p, end, max[rtt[i]]);
        p = ngx_slprintf(p, end, "\n");
    }

    p = ngx_chat_metrics_head(p, end, "ngx_chat_link_rtt_seconds",
                              "histogram",
                              "Round-trip times: a Redis command, a "
                              "PostgreSQL query, a Kafka delivery.");

    for (i = 0; i < 3; i++) {
        p = ngx_chat_metrics_hist(p, end, &sh->h[hist[i]],
                                  "ngx_chat_link_rtt_seconds", links[i]);
    }

    p = ngx_chat_metrics_head(p, end, "ngx_chat_send_publish_seconds",
                              "histogram",
                              "From a SEND frame to the store's reply "
                              "(sequenced and published).");
    p = ngx_chat_metrics_hist(p, end, &sh->h[NGX_CHAT_H_SEND],
                              "ngx_chat_send_publish_seconds", NULL);

    return p;
}


/* Prometheus' base unit: microseconds as seconds, 0.001234 */

static u_char *
ngx_chat_metrics_seconds(u_char *p, u_char *end, uint64_t us)
{
    return ngx_slprintf(p, end, "%uL.%06uL", us / 1000000, us % 1000000);
}


/* a bucket bound in seconds without trailing zeros: 0.0001, 0.025, 2.5 */

static u_char *
ngx_chat_metrics_le(u_char *p, u_char *end, uint64_t us)
{
    u_char  *last;

    last = ngx_chat_metrics_seconds(p, end, us);

    while (last > p && last[-1] == '0') {
        last--;
    }

    if (last > p && last[-1] == '.') {
        last--;
    }

    return last;
}


static u_char *
ngx_chat_metrics_hist(u_char *p, u_char *end, ngx_chat_metrics_hist_t *h,
    const char *name, const char *label)
{
    uint64_t    cum, count;
    ngx_uint_t  i;

    cum = 0;

    for (i = 0; i <= NGX_CHAT_H_BUCKETS; i++) {
        cum += h->bucket[i];

        if (label) {
            p = ngx_slprintf(p, end, "%s_bucket{link=\"%s\",le=\"", name,
                             label);

        } else {
            p = ngx_slprintf(p, end, "%s_bucket{le=\"", name);
        }

        if (i == NGX_CHAT_H_BUCKETS) {
            p = ngx_slprintf(p, end, "+Inf");

        } else {
            p = ngx_chat_metrics_le(p, end, ngx_chat_metrics_bounds[i]);
        }

        p = ngx_slprintf(p, end, "\"} %uL\n", cum);
    }

    /* the count is the +Inf bucket, so that they always agree */
    count = cum;

    if (label) {
        p = ngx_slprintf(p, end, "%s_sum{link=\"%s\"} ", name, label);
        p = ngx_chat_metrics_seconds(p, end, h->sum);
        p = ngx_slprintf(p, end, "\n%s_count{link=\"%s\"} %uL\n", name,
                         label, count);

    } else {
        p = ngx_slprintf(p, end, "%s_sum ", name);
        p = ngx_chat_metrics_seconds(p, end, h->sum);
        p = ngx_slprintf(p, end, "\n%s_count %uL\n", name, count);
    }

    return p;
}
