/* ngx_chat_kafka.c: the worker's Kafka producer: one idempotent librdkafka
 * handle per worker, its main queue woken through a pipe in nginx's loop. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include <pthread.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "ngx_chat_kafka.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_KAFKA_POLL       100     /* ms, the safety poll */
#define NGX_CHAT_KAFKA_FLUSH      2000    /* ms, at worker exit */
/*
 * Batching against latency: every message produced with linger.ms 0 wakes
 * librdkafka's broker thread, then nginx through the pipe with its report,
 * and goes out in a request of its own. At 6,000 msg/s (two workers, the
 * embedded broker) the producers' threads, the workers' report handling
 * and the broker took 1.58 cores with linger.ms 0, 1.19 with 1 and 0.92
 * with 5, while RECEIPT p50 went 1.2, 2.7, 6.4 ms (p99 15-21 ms, the
 * target is 50): the CPU matters more where the MESSAGE target (p99 10 ms)
 * is bound by the two cores.
 */
#define NGX_CHAT_KAFKA_LINGER     "5"     /* ms */
/*
 * librdkafka's statistics say each broker's state: the only way to see the
 * link come back after "all brokers down" while nothing is produced (a
 * node out of a balancer's pool gets no traffic, and chat_health would
 * keep it out). About 2 KB of JSON per broker and topic, once a second.
 */
#define NGX_CHAT_KAFKA_STATS      "1000"  /* ms */


struct ngx_chat_kafka_req_s {
    ngx_chat_kafka_handler_pt   handler;    /* NULL once cancelled */
    void                       *data;
    ngx_queue_t                 queue;      /* in ngx_chat_kafka.pending */
};


typedef struct {
    char                       *name;
    rd_kafka_topic_t           *rkt;
} ngx_chat_kafka_topic_t;


typedef struct {
    rd_kafka_t                 *rk;
    rd_kafka_queue_t           *mainq;
    ngx_connection_t           *conn;       /* the pipe's read end */
    ngx_fd_t                    wfd;        /* its write end: librdkafka's */
    ngx_event_t                 timer;      /* the safety poll */
    ngx_log_t                  *log;
    ngx_pool_t                 *pool;       /* the cycle's */
    ngx_array_t                 topics;     /* ngx_chat_kafka_topic_t */
    ngx_queue_t                 pending;    /* every ngx_chat_kafka_req_t */
    ngx_uint_t                  waiting;    /* requests with a handler */
    ngx_uint_t                  failed;     /* reports in error, unlogged */
    ngx_uint_t                  possibly;   /* ... possibly persisted */
    rd_kafka_resp_err_t         last_err;
    pthread_t                   thread;     /* nginx's own thread */
    unsigned                    exiting:1;
    unsigned                    up:1;       /* NGX_CHAT_G_KAFKA_UP */
} ngx_chat_kafka_ctx_t;


static ngx_int_t ngx_chat_kafka_set(rd_kafka_conf_t *conf, const char *name,
    const char *value, ngx_log_t *log);
static ngx_int_t ngx_chat_kafka_options(rd_kafka_conf_t *conf,
    ngx_chat_kafka_conf_t *kcf, ngx_pool_t *pool, ngx_log_t *log);
static ngx_int_t ngx_chat_kafka_pipe(ngx_cycle_t *cycle);
static rd_kafka_topic_t *ngx_chat_kafka_topic(const char *name);
static void ngx_chat_kafka_read_handler(ngx_event_t *rev);
static void ngx_chat_kafka_timer_handler(ngx_event_t *ev);
static void ngx_chat_kafka_arm(void);
static void ngx_chat_kafka_dr_cb(rd_kafka_t *rk,
    const rd_kafka_message_t *msg, void *opaque);
static void ngx_chat_kafka_log_cb(const rd_kafka_t *rk, int level,
    const char *fac, const char *buf);
static int ngx_chat_kafka_stats_cb(rd_kafka_t *rk, char *json,
    size_t json_len, void *opaque);
static void ngx_chat_kafka_error_cb(rd_kafka_t *rk, int err,
    const char *reason, void *opaque);
static void ngx_chat_kafka_poll(void);
static void ngx_chat_kafka_log_failed(void);
static void ngx_chat_kafka_fail_pending(void);


static ngx_chat_kafka_ctx_t  ngx_chat_kafka;


/* properties this file owns: chat_kafka_option may not set them */
static const char  *ngx_chat_kafka_reserved[] = {
    "bootstrap.servers",
    "metadata.broker.list",
    "enable.idempotence",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "log.queue",
    NULL
};


char *
ngx_chat_kafka_check_option(ngx_conf_t *cf, ngx_str_t *option)
{
    u_char           *p, *eq;
    size_t            n;
    ngx_uint_t        k;
    rd_kafka_conf_t  *conf;
    char              errstr[512];

    p = ngx_pnalloc(cf->temp_pool, option->len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, option->data, option->len);
    p[option->len] = '\0';

    eq = (u_char *) ngx_strchr(p, '=');

    if (eq == NULL || eq == p) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_kafka_option\" \"%V\" is not "
                           "\"name=value\"", option);
        return NGX_CONF_ERROR;
    }

    *eq++ = '\0';

    for (k = 0; ngx_chat_kafka_reserved[k]; k++) {
        if (ngx_strcmp(p, ngx_chat_kafka_reserved[k]) == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"chat_kafka_option\" may not set \"%s\": "
                               "ngx_chat sets it (chat_kafka, "
                               "chat_kafka_timeout)", p);
            return NGX_CONF_ERROR;
        }
    }

    /* a configuration object only: no handle, no thread in the master */
    conf = rd_kafka_conf_new();
    if (conf == NULL) {
        return NGX_CONF_ERROR;
    }

    if (rd_kafka_conf_set(conf, (char *) p, (char *) eq, errstr,
                          sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        rd_kafka_conf_destroy(conf);

        n = ngx_strlen(errstr);

        while (n && (errstr[n - 1] == '\n' || errstr[n - 1] == '\r')) {
            errstr[--n] = '\0';
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"chat_kafka_option\" \"%V\": %s",
                           option, errstr);
        return NGX_CONF_ERROR;
    }

    rd_kafka_conf_destroy(conf);

    return NGX_CONF_OK;
}


char *
ngx_chat_kafka_check_conf(ngx_conf_t *cf, ngx_chat_kafka_conf_t *kcf,
    ngx_chat_conf_where_t *where)
{
    ngx_int_t         rc;
    rd_kafka_conf_t  *conf;

    if (kcf->brokers.len == 0) {
        return NGX_CONF_OK;
    }

    /* a configuration object only: no handle, no thread in the master */
    conf = rd_kafka_conf_new();
    if (conf == NULL) {
        return NGX_CONF_ERROR;
    }

    rc = ngx_chat_kafka_options(conf, kcf, cf->temp_pool, cf->log);

    rd_kafka_conf_destroy(conf);

    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid Kafka configuration (\"chat_kafka\", "
                      "\"chat_kafka_timeout\", \"chat_kafka_option\") "
                      "in %V:%ui", &where->file, where->line);
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


ngx_int_t
ngx_chat_kafka_init(ngx_cycle_t *cycle, ngx_chat_kafka_conf_t *kcf)
{
    char              errstr[512];
    rd_kafka_t       *rk;
    rd_kafka_conf_t  *conf;

    ngx_memzero(&ngx_chat_kafka, sizeof(ngx_chat_kafka_ctx_t));

    ngx_chat_kafka.log = cycle->log;
    ngx_chat_kafka.pool = cycle->pool;
    ngx_chat_kafka.wfd = NGX_INVALID_FILE;
    ngx_chat_kafka.thread = pthread_self();
    ngx_queue_init(&ngx_chat_kafka.pending);

    if (kcf->brokers.len == 0) {
        return NGX_OK;
    }

    if (ngx_array_init(&ngx_chat_kafka.topics, cycle->pool, 2,
                       sizeof(ngx_chat_kafka_topic_t))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    conf = rd_kafka_conf_new();
    if (conf == NULL) {
        return NGX_ERROR;
    }

    if (ngx_chat_kafka_options(conf, kcf, cycle->pool, cycle->log)
        != NGX_OK)
    {
        rd_kafka_conf_destroy(conf);
        return NGX_ERROR;
    }

    rd_kafka_conf_set_dr_msg_cb(conf, ngx_chat_kafka_dr_cb);
    rd_kafka_conf_set_log_cb(conf, ngx_chat_kafka_log_cb);
    rd_kafka_conf_set_error_cb(conf, ngx_chat_kafka_error_cb);
    rd_kafka_conf_set_stats_cb(conf, ngx_chat_kafka_stats_cb);

    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "kafka: rd_kafka_new() failed: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NGX_ERROR;
    }

    /* conf is rk's now */

    ngx_chat_kafka.rk = rk;

    /* logs are served by rd_kafka_poll(), on this thread */
    if (rd_kafka_set_log_queue(rk, NULL) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "kafka: rd_kafka_set_log_queue() failed");
        goto failed;
    }

    ngx_chat_kafka.mainq = rd_kafka_queue_get_main(rk);
    if (ngx_chat_kafka.mainq == NULL) {
        goto failed;
    }

    if (ngx_chat_kafka_pipe(cycle) != NGX_OK) {
        goto failed;
    }

    rd_kafka_queue_io_event_enable(ngx_chat_kafka.mainq,
                                   (int) ngx_chat_kafka.wfd, "1", 1);

    ngx_chat_kafka.timer.handler = ngx_chat_kafka_timer_handler;
    ngx_chat_kafka.timer.log = cycle->log;
    ngx_chat_kafka.timer.data = &ngx_chat_kafka;

    /* until all brokers are down or a delivery fails (set before the
     * first poll, which may report "all brokers down" already) */
    ngx_chat_kafka.up = 1;
    ngx_chat_metric_gauge_set(NGX_CHAT_G_KAFKA_UP, 1);

    /* what was queued before the pipe existed, e.g. logs of rd_kafka_new */
    ngx_chat_kafka_poll();

    ngx_chat_kafka_arm();

    ngx_log_error(NGX_LOG_INFO, cycle->log, 0,
                  "kafka: producer %s for \"%V\"", rd_kafka_name(rk),
                  &kcf->brokers);

    return NGX_OK;

failed:

    if (ngx_chat_kafka.conn) {
        ngx_close_connection(ngx_chat_kafka.conn);
        ngx_chat_kafka.conn = NULL;
    }

    if (ngx_chat_kafka.wfd != NGX_INVALID_FILE) {
        (void) close(ngx_chat_kafka.wfd);
        ngx_chat_kafka.wfd = NGX_INVALID_FILE;
    }

    if (ngx_chat_kafka.mainq) {
        rd_kafka_queue_destroy(ngx_chat_kafka.mainq);
        ngx_chat_kafka.mainq = NULL;
    }

    rd_kafka_destroy(rk);
    ngx_chat_kafka.rk = NULL;

    return NGX_ERROR;
}


static ngx_int_t
ngx_chat_kafka_set(rd_kafka_conf_t *conf, const char *name,
    const char *value, ngx_log_t *log)
{
    char    errstr[512];
    size_t  n;

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        n = ngx_strlen(errstr);

        while (n && (errstr[n - 1] == '\n' || errstr[n - 1] == '\r')) {
            errstr[--n] = '\0';
        }

        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "kafka: \"%s=%s\": %s", name, value, errstr);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* fills conf: our defaults, then the user's options, then what we need */
static ngx_int_t
ngx_chat_kafka_options(rd_kafka_conf_t *conf, ngx_chat_kafka_conf_t *kcf,
    ngx_pool_t *pool, ngx_log_t *log)
{
    u_char      *p, *eq, *brokers;
    size_t       size;
    ngx_int_t    linger;
    ngx_str_t   *opt;
    ngx_uint_t   i, k;
    u_char       timeout[NGX_INT_T_LEN + 1];
    char         value[NGX_INT_T_LEN + 1];

    /* 0 would be librdkafka's "forever" */
    if (kcf->timeout == 0 || kcf->timeout == NGX_CONF_UNSET_MSEC) {
        ngx_log_error(NGX_LOG_EMERG, log, 0,
                      "kafka: the message timeout must be at least 1ms");
        return NGX_ERROR;
    }

    if (ngx_chat_kafka_set(conf, "client.id", "ngx_chat", log) != NGX_OK
        || ngx_chat_kafka_set(conf, "linger.ms", NGX_CHAT_KAFKA_LINGER, log)
           != NGX_OK
        /* requests are whole when written: no wait for the broker's ACK */
        || ngx_chat_kafka_set(conf, "socket.nagle.disable", "true", log)
           != NGX_OK
        /* the Java clients' partitioner: same key, same partition */
        || ngx_chat_kafka_set(conf, "partitioner", "murmur2_random", log)
           != NGX_OK
        || ngx_chat_kafka_set(conf, "statistics.interval.ms",
                              NGX_CHAT_KAFKA_STATS, log)
           != NGX_OK)
    {
        return NGX_ERROR;
    }

    opt = kcf->options ? kcf->options->elts : NULL;

    for (i = 0; kcf->options && i < kcf->options->nelts; i++) {

        p = ngx_pnalloc(pool, opt[i].len + 1);
        if (p == NULL) {
            return NGX_ERROR;
        }

        ngx_memcpy(p, opt[i].data, opt[i].len);
        p[opt[i].len] = '\0';

        eq = (u_char *) ngx_strchr(p, '=');

        if (eq == NULL || eq == p) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "kafka: option \"%V\" is not \"key=value\"",
                          &opt[i]);
            return NGX_ERROR;
        }

        *eq++ = '\0';

        for (k = 0; ngx_chat_kafka_reserved[k]; k++) {
            if (ngx_strcmp(p, ngx_chat_kafka_reserved[k]) == 0) {
                ngx_log_error(NGX_LOG_EMERG, log, 0,
                              "kafka: option \"%s\" is set by ngx_chat "
                              "(chat_kafka, chat_kafka_timeout)", p);
                return NGX_ERROR;
            }
        }

        if (ngx_chat_kafka_set(conf, (char *) p, (char *) eq, log)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    brokers = ngx_pnalloc(pool, kcf->brokers.len + 1);
    if (brokers == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(brokers, kcf->brokers.data, kcf->brokers.len);
    brokers[kcf->brokers.len] = '\0';

    *ngx_sprintf(timeout, "%M", kcf->timeout) = '\0';

    if (ngx_chat_kafka_set(conf, "bootstrap.servers", (char *) brokers, log)
        != NGX_OK
        /* acks=all, no duplicates and no reordering on retry */
        || ngx_chat_kafka_set(conf, "enable.idempotence", "true", log)
           != NGX_OK
        || ngx_chat_kafka_set(conf, "message.timeout.ms", (char *) timeout,
                              log)
           != NGX_OK
        /* never call log_cb on librdkafka's threads */
        || ngx_chat_kafka_set(conf, "log.queue", "true", log) != NGX_OK)
    {
        return NGX_ERROR;
    }

    /* rd_kafka_new() would refuse it in the worker: refuse it here */
    size = sizeof(value);

    if (rd_kafka_conf_get(conf, "linger.ms", value, &size)
        == RD_KAFKA_CONF_OK)
    {
        linger = ngx_atoi((u_char *) value, ngx_strlen(value));

        if (linger != NGX_ERROR && (ngx_msec_t) linger >= kcf->timeout) {
            ngx_log_error(NGX_LOG_EMERG, log, 0,
                          "\"chat_kafka_timeout\" (%Mms) must be above "
                          "linger.ms (%s, our default or chat_kafka_option)",
                          kcf->timeout, value);
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_chat_kafka_pipe(ngx_cycle_t *cycle)
{
    int                fds[2];
    ngx_connection_t  *c;

    if (pipe(fds) == -1) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "kafka: pipe() failed");
        return NGX_ERROR;
    }

    if (ngx_nonblocking(fds[0]) == -1
        || ngx_nonblocking(fds[1]) == -1
        || fcntl(fds[0], F_SETFD, FD_CLOEXEC) == -1
        || fcntl(fds[1], F_SETFD, FD_CLOEXEC) == -1)
    {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, ngx_errno,
                      "kafka: cannot set up the wake-up pipe");
        (void) close(fds[0]);
        (void) close(fds[1]);
        return NGX_ERROR;
    }

    c = ngx_get_connection(fds[0], cycle->log);
    if (c == NULL) {
        (void) close(fds[0]);
        (void) close(fds[1]);
        return NGX_ERROR;
    }

    ngx_chat_kafka.wfd = fds[1];
    ngx_chat_kafka.conn = c;

    c->log = cycle->log;
    c->read->log = cycle->log;
    c->write->log = cycle->log;
    c->data = &ngx_chat_kafka;
    c->read->handler = ngx_chat_kafka_read_handler;

    /* not a client: a graceful shutdown does not wait for it */
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    if (ngx_handle_read_event(c->read, 0) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_chat_kafka_exit(ngx_cycle_t *cycle)
{
    ngx_uint_t               i, left;
    rd_kafka_resp_err_t      err;
    ngx_chat_kafka_topic_t  *t;

    if (ngx_chat_kafka.rk == NULL) {
        return;
    }

    ngx_chat_kafka.exiting = 1;

    if (ngx_chat_kafka.timer.timer_set) {
        ngx_del_timer(&ngx_chat_kafka.timer);
    }

    left = rd_kafka_outq_len(ngx_chat_kafka.rk);

    if (left) {
        ngx_log_error(NGX_LOG_NOTICE, cycle->log, 0,
                      "kafka: flushing %ui message(s)", left);
    }

    /* the one blocking call, bounded; it serves delivery reports */
    err = rd_kafka_flush(ngx_chat_kafka.rk, NGX_CHAT_KAFKA_FLUSH);

    ngx_time_update();

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                      "kafka: %d message(s) not acknowledged at exit",
                      rd_kafka_outq_len(ngx_chat_kafka.rk));

        (void) rd_kafka_purge(ngx_chat_kafka.rk,
                              RD_KAFKA_PURGE_F_QUEUE
                              |RD_KAFKA_PURGE_F_INFLIGHT);

        /* the purged messages' reports: their handlers get NGX_ERROR */
        rd_kafka_poll(ngx_chat_kafka.rk, 0);
    }

    ngx_chat_kafka_log_failed();

    rd_kafka_queue_io_event_enable(ngx_chat_kafka.mainq, -1, NULL, 0);
    rd_kafka_queue_destroy(ngx_chat_kafka.mainq);
    ngx_chat_kafka.mainq = NULL;

    t = ngx_chat_kafka.topics.elts;
    for (i = 0; i < ngx_chat_kafka.topics.nelts; i++) {
        rd_kafka_topic_destroy(t[i].rkt);
    }

    ngx_chat_kafka.topics.nelts = 0;

    rd_kafka_destroy(ngx_chat_kafka.rk);
    ngx_chat_kafka.rk = NULL;

    /* librdkafka no longer writes to the pipe: close both ends, once */
    ngx_close_connection(ngx_chat_kafka.conn);
    ngx_chat_kafka.conn = NULL;

    if (close(ngx_chat_kafka.wfd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, ngx_errno,
                      "kafka: close() of the pipe failed");
    }

    ngx_chat_kafka.wfd = NGX_INVALID_FILE;

    /* reports librdkafka dropped with the handle */
    ngx_chat_kafka_fail_pending();
}


static void
ngx_chat_kafka_fail_pending(void)
{
    void                       *data;
    ngx_queue_t                *q;
    ngx_chat_kafka_req_t       *req;
    ngx_chat_kafka_handler_pt   handler;

    while (!ngx_queue_empty(&ngx_chat_kafka.pending)) {
        q = ngx_queue_head(&ngx_chat_kafka.pending);
        req = ngx_queue_data(q, ngx_chat_kafka_req_t, queue);

        ngx_queue_remove(q);

        handler = req->handler;
        data = req->data;

        ngx_free(req);

        if (handler) {
            ngx_chat_kafka.waiting--;
            handler(NGX_ERROR, data);
        }
    }
}


ngx_uint_t
ngx_chat_kafka_enabled(void)
{
    return ngx_chat_kafka.rk != NULL;
}


ngx_uint_t
ngx_chat_kafka_up(void)
{
    return ngx_chat_kafka.rk != NULL && ngx_chat_kafka.up;
}


ngx_uint_t
ngx_chat_kafka_queue_depth(void)
{
    if (ngx_chat_kafka.rk == NULL) {
        return 0;
    }

    return (ngx_uint_t) rd_kafka_outq_len(ngx_chat_kafka.rk);
}


ngx_chat_kafka_req_t *
ngx_chat_kafka_produce(const char *topic, u_char *key, size_t key_len,
    u_char *value, size_t len, ngx_chat_kafka_handler_pt handler, void *data)
{
    ngx_uint_t             level;
    rd_kafka_topic_t      *rkt;
    rd_kafka_resp_err_t    err;
    ngx_chat_kafka_req_t  *req;

    if (ngx_chat_kafka.rk == NULL || ngx_chat_kafka.exiting) {
        return NULL;
    }

    rkt = ngx_chat_kafka_topic(topic);
    if (rkt == NULL) {
        return NULL;
    }

    req = ngx_alloc(sizeof(ngx_chat_kafka_req_t), ngx_chat_kafka.log);
    if (req == NULL) {
        return NULL;
    }

    req->handler = handler;
    req->data = data;

    /* RD_KAFKA_MSG_F_COPY, never RD_KAFKA_MSG_F_BLOCK */
    err = rd_kafka_producev(ngx_chat_kafka.rk,
                            RD_KAFKA_V_RKT(rkt),
                            RD_KAFKA_V_KEY(key, key_len),
                            RD_KAFKA_V_VALUE(value, len),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_OPAQUE(req),
                            RD_KAFKA_V_END);

    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        level = (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) ? NGX_LOG_WARN
                                                       : NGX_LOG_ERR;

        ngx_log_error(level, ngx_chat_kafka.log, 0,
                      "kafka: cannot produce to \"%s\": %s", topic,
                      rd_kafka_err2str(err));
        ngx_free(req);
        return NULL;
    }

    ngx_queue_insert_tail(&ngx_chat_kafka.pending, &req->queue);

    if (handler) {
        ngx_chat_kafka.waiting++;
    }

    ngx_chat_kafka_arm();

    return req;
}


void
ngx_chat_kafka_cancel(ngx_chat_kafka_req_t *req)
{
    if (req == NULL || req->handler == NULL) {
        return;
    }

    /* freed by its delivery report, or at exit */
    req->handler = NULL;
    req->data = NULL;
    ngx_chat_kafka.waiting--;

    ngx_chat_kafka_arm();
}


static rd_kafka_topic_t *
ngx_chat_kafka_topic(const char *name)
{
    size_t                   len;
    ngx_uint_t               i;
    rd_kafka_topic_t        *rkt;
    ngx_chat_kafka_topic_t  *t;

    t = ngx_chat_kafka.topics.elts;

    for (i = 0; i < ngx_chat_kafka.topics.nelts; i++) {
        if (ngx_strcmp(t[i].name, name) == 0) {
            return t[i].rkt;
        }
    }

    len = ngx_strlen(name);

    t = ngx_array_push(&ngx_chat_kafka.topics);
    if (t == NULL) {
        return NULL;
    }

    t->name = ngx_pnalloc(ngx_chat_kafka.pool, len + 1);
    if (t->name == NULL) {
        ngx_chat_kafka.topics.nelts--;
        return NULL;
    }

    ngx_memcpy(t->name, name, len + 1);

    rkt = rd_kafka_topic_new(ngx_chat_kafka.rk, name, NULL);
    if (rkt == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_chat_kafka.log, 0,
                      "kafka: topic \"%s\": %s", name,
                      rd_kafka_err2str(rd_kafka_last_error()));
        ngx_chat_kafka.topics.nelts--;
        return NULL;
    }

    t->rkt = rkt;

    return rkt;
}


/* the main queue went from empty to non-empty: drain the pipe, serve it */
static void
ngx_chat_kafka_read_handler(ngx_event_t *rev)
{
    ssize_t            n;
    u_char             buf[64];
    ngx_connection_t  *c;

    c = rev->data;

    for ( ;; ) {
        n = read(c->fd, buf, sizeof(buf));

        if (n > 0) {
            continue;
        }

        if (n == -1 && ngx_errno == NGX_EINTR) {
            continue;
        }

        if (n == -1 && ngx_errno != NGX_EAGAIN) {
            ngx_log_error(NGX_LOG_ALERT, c->log, ngx_errno,
                          "kafka: read() of the pipe failed");
        }

        break;
    }

    rev->ready = 0;

    if (ngx_chat_kafka.rk) {
        ngx_chat_kafka_poll();
        ngx_chat_kafka_arm();
    }

    if (ngx_chat_kafka.conn
        && ngx_handle_read_event(ngx_chat_kafka.conn->read, 0) != NGX_OK)
    {
        ngx_log_error(NGX_LOG_ALERT, c->log, 0,
                      "kafka: cannot watch the pipe");
    }
}


/* in case a wake-up was coalesced or lost */
static void
ngx_chat_kafka_timer_handler(ngx_event_t *ev)
{
    (void) ev;

    if (ngx_chat_kafka.rk == NULL) {
        return;
    }

    ngx_chat_kafka_poll();

    ngx_chat_kafka_arm();
}


/*
 * The safety poll runs every 100 ms. While handlers wait for reports it is
 * not cancelable, so a graceful shutdown waits for them (at most the
 * message timeout); otherwise it is, and it is not re-armed when exiting.
 */
static void
ngx_chat_kafka_arm(void)
{
    ngx_event_t  *ev;

    ev = &ngx_chat_kafka.timer;

    if (ngx_chat_kafka.rk == NULL || ngx_chat_kafka.exiting) {
        return;
    }

    ev->cancelable = (ngx_chat_kafka.waiting == 0);

    if (ev->timer_set) {
        return;
    }

    if ((ngx_exiting || ngx_terminate || ngx_quit)
        && ngx_chat_kafka.waiting == 0)
    {
        return;
    }

    ngx_add_timer(ev, NGX_CHAT_KAFKA_POLL);
}


/* serves the main queue: reports, logs and errors, on this thread */
static void
ngx_chat_kafka_poll(void)
{
    rd_kafka_poll(ngx_chat_kafka.rk, 0);

    ngx_chat_kafka_log_failed();

    ngx_chat_metric_gauge_set(NGX_CHAT_G_KAFKA_QUEUE,
                              rd_kafka_outq_len(ngx_chat_kafka.rk));
}


/* one line per poll, not one per message, while the brokers are away */
static void
ngx_chat_kafka_log_failed(void)
{
    if (ngx_chat_kafka.failed == 0) {
        return;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_chat_kafka.log, 0,
                  "kafka: %ui message(s) not acknowledged (%ui possibly "
                  "persisted): %s", ngx_chat_kafka.failed,
                  ngx_chat_kafka.possibly,
                  rd_kafka_err2str(ngx_chat_kafka.last_err));

    ngx_chat_kafka.failed = 0;
    ngx_chat_kafka.possibly = 0;
}


/* on nginx's thread, from rd_kafka_poll() or rd_kafka_flush() */
static void
ngx_chat_kafka_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *msg,
    void *opaque)
{
    void                       *data;
    ngx_chat_kafka_req_t       *req;
    ngx_chat_kafka_handler_pt   handler;

    (void) rk;
    (void) opaque;

    req = msg->_private;
    if (req == NULL) {
        return;
    }

    ngx_queue_remove(&req->queue);

    handler = req->handler;
    data = req->data;

    ngx_free(req);

    ngx_chat_kafka.up = (msg->err == 0);
    ngx_chat_metric_gauge_set(NGX_CHAT_G_KAFKA_UP, msg->err == 0);

    if (msg->err == 0 && rd_kafka_message_latency(msg) >= 0) {
        ngx_chat_metric_observe(NGX_CHAT_H_KAFKA, NGX_CHAT_G_KAFKA_RTT,
                                (uint64_t) rd_kafka_message_latency(msg));
    }

    if (msg->err) {
        ngx_chat_kafka.failed++;
        ngx_chat_kafka.last_err = msg->err;

        if (rd_kafka_message_status(msg)
            == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED)
        {
            ngx_chat_kafka.possibly++;
        }
    }

    if (handler == NULL) {
        return;
    }

    ngx_chat_kafka.waiting--;

    handler(msg->err ? NGX_ERROR : NGX_OK, data);
}


static void
ngx_chat_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
    const char *buf)
{
    ngx_uint_t  lvl;

    (void) rk;

    /* log.queue=true: only rd_kafka_poll() calls this; never log elsewhere */
    if (!pthread_equal(pthread_self(), ngx_chat_kafka.thread)
        || ngx_chat_kafka.log == NULL)
    {
        return;
    }

    /* syslog levels 0-7 are nginx's NGX_LOG_EMERG-NGX_LOG_DEBUG minus one */
    lvl = (level < 0) ? NGX_LOG_EMERG
                      : (level > 7) ? NGX_LOG_DEBUG : (ngx_uint_t) level + 1;

    ngx_log_error(lvl, ngx_chat_kafka.log, 0, "kafka: %s: %s", fac, buf);
}


/* a broker of the cluster (not a bootstrap address) in state UP: up */
static int
ngx_chat_kafka_stats_cb(rd_kafka_t *rk, char *json, size_t json_len,
    void *opaque)
{
    const char  *name, *state;
    json_t      *root, *brokers, *b, *id, *st;
    ngx_uint_t   up;

    (void) rk;
    (void) opaque;

    /* served by rd_kafka_poll() on nginx's thread, like the log */
    if (!pthread_equal(pthread_self(), ngx_chat_kafka.thread)
        || ngx_chat_kafka.up)
    {
        return 0;
    }

    root = json_loadb(json, json_len, 0, NULL);
    if (root == NULL) {
        return 0;
    }

    up = 0;
    brokers = json_object_get(root, "brokers");

    json_object_foreach(brokers, name, b) {
        id = json_object_get(b, "nodeid");
        st = json_object_get(b, "state");
        state = json_string_value(st);

        if (json_is_integer(id) && json_integer_value(id) >= 0
            && state != NULL && ngx_strcmp(state, "UP") == 0)
        {
            up = 1;
            break;
        }
    }

    json_decref(root);

    if (up) {
        ngx_chat_kafka.up = 1;
        ngx_chat_metric_gauge_set(NGX_CHAT_G_KAFKA_UP, 1);

        ngx_log_error(NGX_LOG_NOTICE, ngx_chat_kafka.log, 0,
                      "kafka: a broker is up again");
    }

    /* librdkafka frees json */
    return 0;
}


static void
ngx_chat_kafka_error_cb(rd_kafka_t *rk, int err, const char *reason,
    void *opaque)
{
    char        errstr[512];
    ngx_uint_t  level;

    (void) opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        (void) rd_kafka_fatal_error(rk, errstr, sizeof(errstr));
        ngx_log_error(NGX_LOG_ALERT, ngx_chat_kafka.log, 0,
                      "kafka: fatal error, every message fails until the "
                      "worker restarts (nginx -s reload): %s", errstr);
        return;
    }

    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        ngx_chat_kafka.up = 0;
        ngx_chat_metric_gauge_set(NGX_CHAT_G_KAFKA_UP, 0);
    }

    /* single brokers' failures are logged (suppressed) by log_cb already */
    level = (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) ? NGX_LOG_ERR
                                                         : NGX_LOG_INFO;

    ngx_log_error(level, ngx_chat_kafka.log, 0, "kafka: %s: %s",
                  rd_kafka_err2name((rd_kafka_resp_err_t) err), reason);
}
