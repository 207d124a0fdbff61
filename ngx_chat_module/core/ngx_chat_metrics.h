/* ngx_chat_metrics.h: counters in shared memory, summed over the workers,
 * and the "chat_metrics" handler that serves them to Prometheus. */

#ifndef _NGX_CHAT_METRICS_H_INCLUDED_
#define _NGX_CHAT_METRICS_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* monotonic counters, one per server, atomic adds from every worker */
typedef enum {
    NGX_CHAT_M_FRAMES_IN = 0,      /* STOMP frames parsed (not heart-beats) */
    NGX_CHAT_M_FRAMES_OUT,         /* STOMP frames written (not heart-beats) */
    NGX_CHAT_M_MESSAGES_IN,        /* accepted SENDs to /app/chat.send */
    NGX_CHAT_M_MESSAGES_OUT,       /* MESSAGE frames on /user/queue/messages */
    NGX_CHAT_M_CONNECTIONS,        /* WebSocket connections accepted */
    NGX_CHAT_M_SESSIONS,           /* STOMP sessions CONNECTed */
    NGX_CHAT_M_TCP_CONNECTIONS,    /* STOMP over TCP/TLS connections
                                      accepted (chat_stomp) */

    /* errors_total{code=...}: keep in the order of ngx_chat_metrics_codes */
    NGX_CHAT_M_ERR_BAD_REQUEST,
    NGX_CHAT_M_ERR_NOT_MEMBER,
    NGX_CHAT_M_ERR_NOT_FOUND,
    NGX_CHAT_M_ERR_TOO_LARGE,
    NGX_CHAT_M_ERR_RATE_LIMITED,
    NGX_CHAT_M_ERR_UNAVAILABLE,
    NGX_CHAT_M_ERR_OTHER,
    NGX_CHAT_M_ERR_PROTOCOL,       /* STOMP ERROR frames (session closed) */

    /* limited_total{limit=...}: keep in the order of ngx_chat_metrics_limits */
    NGX_CHAT_M_LIMIT_SESSIONS,     /* CONNECTs over
                                      chat_max_sessions_per_user */
    NGX_CHAT_M_LIMIT_IN_FLIGHT,    /* SENDs over chat_max_requests_in_flight */
    NGX_CHAT_M_LIMIT_RATE,         /* SENDs over chat_send_rate */
    NGX_CHAT_M_LIMIT_TX_BYTES,     /* frames over chat_max_transaction_size */
    NGX_CHAT_M_LIMIT_METADATA,     /* SENDs over chat_max_metadata_size */
    NGX_CHAT_M_LIMIT_SUB_ID,       /* SUBSCRIBEs over
                                      chat_max_subscription_id */
    NGX_CHAT_M_LIMIT_GROUP,        /* adds over chat_max_group_members */
    NGX_CHAT_M_LIMIT_CONV_RATE,    /* creations over chat_conversation_rate */
    NGX_CHAT_M_LIMIT_IDLE,         /* sessions closed by chat_idle_timeout */
    NGX_CHAT_M_LIMIT_JWT_CLAIMS,   /* tokens refused by nbf, iat, aud, iss */
    NGX_CHAT_M_LIMIT_DEVICE_MOVED, /* push tokens taken from another user */

    NGX_CHAT_M_MAX
} ngx_chat_metric_e;

#define NGX_CHAT_M_ERR_FIRST  NGX_CHAT_M_ERR_BAD_REQUEST
#define NGX_CHAT_M_LIMIT_FIRST  NGX_CHAT_M_LIMIT_SESSIONS


/* gauges of one worker, kept in its own slot; the handler sums them */
typedef enum {
    NGX_CHAT_G_CONNECTIONS = 0,    /* WebSocket connections open */
    NGX_CHAT_G_SESSIONS,           /* STOMP sessions CONNECTed */
    NGX_CHAT_G_SUBSCRIPTIONS,
    NGX_CHAT_G_REDIS_UP,           /* 1: the command link is connected */
    NGX_CHAT_G_KAFKA_UP,           /* 1: the producer reaches a broker */
    NGX_CHAT_G_PG_CONNS,           /* pool connections up */
    NGX_CHAT_G_KAFKA_QUEUE,        /* rd_kafka_outq_len(), every 100 ms */
    NGX_CHAT_G_REDIS_RTT,          /* last measured, microseconds */
    NGX_CHAT_G_PG_RTT,
    NGX_CHAT_G_KAFKA_RTT,
    NGX_CHAT_G_TCP_CONNECTIONS,    /* STOMP over TCP/TLS connections open */

    NGX_CHAT_G_MAX
} ngx_chat_gauge_e;


/* histograms in microseconds, rendered in seconds */
typedef enum {
    NGX_CHAT_H_SEND = 0,           /* SEND parsed -> the store script's
                                      reply (the publish) */
    NGX_CHAT_H_REDIS,              /* a Redis command, queued -> reply */
    NGX_CHAT_H_PG,                 /* a query, sent -> its last result */
    NGX_CHAT_H_KAFKA,              /* produce -> delivery report */

    NGX_CHAT_H_MAX
} ngx_chat_histogram_e;

#define NGX_CHAT_H_BUCKETS   15     /* and +Inf */
#define NGX_CHAT_M_SLOTS     64     /* workers, old and new during a reload */


typedef struct {
    ngx_atomic_t               pid;        /* 0: free */
    ngx_atomic_t               g[NGX_CHAT_G_MAX];
} ngx_chat_metrics_slot_t;


typedef struct {
    ngx_atomic_t               bucket[NGX_CHAT_H_BUCKETS + 1];
    ngx_atomic_t               sum;        /* microseconds */
} ngx_chat_metrics_hist_t;


typedef struct {
    ngx_atomic_t               m[NGX_CHAT_M_MAX];
    ngx_chat_metrics_hist_t    h[NGX_CHAT_H_MAX];
    ngx_chat_metrics_slot_t    slot[NGX_CHAT_M_SLOTS];
} ngx_chat_metrics_sh_t;


/* NULL when there is no zone; this worker's slot, NULL outside a worker */
extern ngx_chat_metrics_sh_t    *ngx_chat_metrics_sh;
extern ngx_chat_metrics_slot_t  *ngx_chat_metrics_slot;


static ngx_inline void
ngx_chat_metric_inc(ngx_chat_metric_e m, ngx_atomic_int_t n)
{
    if (ngx_chat_metrics_sh) {
        (void) ngx_atomic_fetch_add(&ngx_chat_metrics_sh->m[m], n);
    }
}


/* a worker gauge: add (n may be negative) or set */
static ngx_inline void
ngx_chat_metric_gauge_add(ngx_chat_gauge_e g, ngx_atomic_int_t n)
{
    if (ngx_chat_metrics_slot) {
        (void) ngx_atomic_fetch_add(&ngx_chat_metrics_slot->g[g], n);
    }
}


static ngx_inline void
ngx_chat_metric_gauge_set(ngx_chat_gauge_e g, ngx_atomic_uint_t v)
{
    if (ngx_chat_metrics_slot) {
        ngx_chat_metrics_slot->g[g] = v;
    }
}


/* a monotonic clock in microseconds (clock_gettime, vDSO: no syscall) */
uint64_t ngx_chat_metric_now_us(void);

/* records us in a histogram; gauge (or NGX_CHAT_G_MAX) keeps the last */
void ngx_chat_metric_observe(ngx_chat_histogram_e h, ngx_chat_gauge_e gauge,
    uint64_t us);

/* counts a rejection (PROTOCOL.md section 5) by its code */
void ngx_chat_metric_error(const char *code);

/* counts a refusal by a limit by its label ("group_members"); an unknown
 * label is not counted */
void ngx_chat_metric_limit(const char *name);

/* configuration: the zone (from init_main_conf when a chat location
 * exists, and from the directive) */
ngx_int_t ngx_chat_metrics_zone(ngx_conf_t *cf);

/* "chat_metrics" (location, no arguments) */
char *ngx_chat_metrics_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);

/* init_process / exit_process: claim and free this worker's slot */
void ngx_chat_metrics_init_process(ngx_cycle_t *cycle);
void ngx_chat_metrics_exit_process(void);

#endif /* _NGX_CHAT_METRICS_H_INCLUDED_ */
