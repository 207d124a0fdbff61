/* cb_bench.h: the load generator's shared types, state and functions. */

#ifndef _CB_BENCH_H_INCLUDED_
#define _CB_BENCH_H_INCLUDED_

#include "cb_hist.h"

#include <signal.h>
#include <stddef.h>
#include <stdint.h>


#define CB_SYS_CHAT      0
#define CB_SYS_RABBIT    1
#define CB_SYS_NCHAN     2
#define CB_SYS_MOSQ      3          /* Mosquitto: MQTT over WebSocket */
#define CB_SYS_SIO       4          /* Socket.IO with its Redis adapter */

#define CB_PROTO_STOMP   0
#define CB_PROTO_MQTT    1
#define CB_PROTO_SIO     2          /* Socket.IO 5 over Engine.IO 4 */

#define CB_SC_DENSITY    0
#define CB_SC_DIRECT     1
#define CB_SC_FANOUT     2
#define CB_SC_STORM      3

#define CB_CONNECTING    0
#define CB_HANDSHAKE     1
#define CB_STOMP         2
#define CB_SUBSCRIBING   3
#define CB_READY         4
#define CB_CLOSED        5

#define CB_CLIENT        0
#define CB_PUB           1

#define CB_SCRATCH       (256 * 1024)
#define CB_PUB_RING      256
#define CB_MAX_PIDS      16
#define CB_MAX_STEPS     32         /* --sweep: offered rates at most */

#define CB_PH_CONNECT    0
#define CB_PH_PRIME      1          /* one message per conversation */
#define CB_PH_WAIT       2          /* a child: connected, awaits the go */
#define CB_PH_HOLD       3
#define CB_PH_RUN        4
#define CB_PH_DRAIN      5
#define CB_PH_DONE       6

#define CB_PRIME_MAX_NS  30000000000LL  /* priming gives up after 30 s */


typedef struct {
    int          fd;
    uint8_t      state;
    uint8_t      kind;
    uint32_t     id;           /* user index, or publisher index */
    uint32_t     hb_ms;        /* our heart-beat interval, 0: none */
    uint32_t     out_len;
    uint32_t     out_off;
    uint32_t     in_len;
    uint32_t     in_cap;
    uint32_t     st_len;
    uint32_t     inflight;     /* unanswered sends or POSTs */
    uint32_t     ring_head;
    int64_t      t_start;
    int64_t      last_tx;
    char        *in;           /* raw bytes not parsed yet */
    char        *out;          /* bytes not written yet */
    char        *st;           /* a STOMP frame split over messages */
    int64_t     *ring;         /* send times of POSTs (nchan publisher)
                                  or of PUBLISHes (MQTT) */
} cb_conn_t;


typedef struct {
    int          system;
    int          proto;        /* CB_PROTO_STOMP, CB_PROTO_MQTT */
    int          qos;          /* MQTT: the subscriptions' QoS */
    int          scenario;
    const char  *label;
    const char  *host;
    int          port;
    const char  *ws_path;
    const char  *api_path;
    const char  *sub_path;     /* nchan */
    const char  *pub_path;     /* nchan */
    const char  *secret;
    const char  *prefix;
    const char  *json;
    uint32_t     clients;
    uint32_t     group;
    uint32_t     sources;
    uint32_t     inflight;
    uint32_t     window;
    uint32_t     pubs;
    uint32_t     hb_ms;
    uint32_t     size;
    double       rate;
    double       duration;
    double       warmup;
    double       hold;
    double       connect_timeout;
    int          max_time;
    int          prime;
    int          rss_master[CB_MAX_PIDS];
    int          rss_pid[CB_MAX_PIDS];
    int          cpu_pid[CB_MAX_PIDS];
    int          n_master;
    int          n_rss;
    int          n_cpu;
    uint32_t     procs;        /* load-generator processes */
    int          child;        /* this process's index, -1: the only one */
    int          ctl_in;       /* a child: the go from the parent */
    int          ctl_out;      /* a child: its figures to the parent */
    uint32_t     lo;           /* the users this process drives: lo..hi-1 */
    uint32_t     hi;
    double       sweep[CB_MAX_STEPS];  /* --sweep: msg/s, one step each */
    uint32_t     n_sweep;
    double       limit_ms;     /* --sweep: a step passes below this p99 */
} cb_conf_t;


typedef struct {
    uint64_t     opened;
    uint64_t     ready;
    uint64_t     failed;
    uint64_t     dropped;
    uint64_t     offered;
    uint64_t     sent;
    uint64_t     skipped;
    uint64_t     sent_window;
    uint64_t     receipts;
    uint64_t     deliveries;
    uint64_t     deliveries_window;
    uint64_t     delivered_of_window;
    uint64_t     errors;
    uint64_t     pub_errors;
    uint64_t     outstanding;
    uint64_t     late;         /* not sent: the tool fell behind */
    int64_t      t_begin;
    int64_t      t_first_ready;
    int64_t      t_all_ready;
    int64_t      t_run;
    int64_t      t_measure;
    int64_t      t_end;
    int64_t      t_last_delivery;
    cb_hist_t    msg;
    cb_hist_t    rcpt;
    cb_hist_t    setup;
} cb_stats_t;


typedef struct {
    uint64_t     rss_kb;
    uint64_t     sock_pages;
    uint64_t     slab_kb;
    uint64_t     tcp_inuse;
    double       cpu_server;
    double       cpu_aux;
    double       cpu_self;
} cb_sample_t;



extern cb_conf_t      cf;
extern cb_stats_t     st;
extern cb_conn_t     *conns;
extern cb_conn_t     *pubs;
extern char         **jwts;
extern char         **convs;
extern uint32_t       n_groups;
extern char          *scratch;
extern char          *wscratch;
extern volatile sig_atomic_t  stop_flag;
extern int            phase;
extern const char    *stop_reason;


/* chat_bench.c: the process, its connections and its event loop */
void cb_die(const char *fmt, ...) __attribute__((format(printf, 1, 2),
    noreturn));
int64_t cb_now(void);
uint32_t cb_rand(void);
void cb_write(cb_conn_t *c, const char *p, size_t len);
void cb_close(cb_conn_t *c);
void cb_start(void);
void cb_loop(void);
void cb_after_connect(int64_t t0);
void cb_close_all(void);
double cb_own_cpu(void);

/* cb_stomp.c: the WebSocket and STOMP client side */
void cb_ws_send(cb_conn_t *c, const char *payload, size_t len);
void cb_ws_send_op(cb_conn_t *c, unsigned op, const char *payload,
    size_t len);
void cb_ready(cb_conn_t *c);
int cb_in_window(int64_t t);
void cb_delivery(cb_conn_t *c, const char *body, size_t len);
void cb_send_handshake(cb_conn_t *c);
size_t cb_consume(cb_conn_t *c, char *buf, size_t len);
void cb_send_message(cb_conn_t *c);
void cb_publish(uint32_t g);

/* cb_mqtt.c: the MQTT 3.1.1 client side (--proto mqtt) */
void cb_mqtt_connect(cb_conn_t *c);
void cb_mqtt_bytes(cb_conn_t *c, const char *data, size_t len);
void cb_mqtt_publish(cb_conn_t *c);
void cb_mqtt_ping(cb_conn_t *c);

/* cb_sio.c: the Socket.IO client side (--system socketio) */
void cb_sio_packet(cb_conn_t *c, const char *p, size_t len);
void cb_sio_send(cb_conn_t *c);

/* cb_proc.c: memory and CPU of the systems under test, our own limits */
void cb_sample(cb_sample_t *s);
double cb_self_cpu(void);
void cb_raise_nofile(uint32_t want);

/* cb_setup.c */
void cb_create_conversations(void);

/* cb_report.c: the table and the JSON; cb_options.c: the command line */
void cb_report(const cb_sample_t *s0, const cb_sample_t *s1, double wall,
    const cb_sample_t *c0, const cb_sample_t *c1);
void cb_options(int argc, char **argv);
/* the names of cf.system and cf.scenario, as the table and JSON say them */
const char *cb_system_name(void);
const char *cb_scenario_name(void);

/* cb_procs.c: --procs N, N processes over slices of the users */
int cb_procs_run(void);
void cb_child_connected(void);
void cb_child_ctl(void);

/* --sweep: one offered rate after the other over the same sessions;
 * chat_bench.c runs a step, cb_sweep.c judges it and writes the JSON */
void cb_step_begin(double rate, int64_t t0);
void cb_step_marks(cb_sample_t *c0, cb_sample_t *c1, double *wall);
int cb_sweep_single(void);
int cb_sweep_step(uint32_t i, const cb_sample_t *c0, const cb_sample_t *c1,
    double wall);
void cb_sweep_report(void);

#endif /* _CB_BENCH_H_INCLUDED_ */
