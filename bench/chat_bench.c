/* chat_bench.c: a load generator for STOMP-over-WebSocket gateways
 * (ngx_chat, RabbitMQ Web-STOMP), MQTT over WebSocket (Mosquitto),
 * Socket.IO and raw WebSocket pub/sub (nchan). */

#include "cb_bench.h"
#include "cb_setup.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>


cb_conf_t                cf;
cb_stats_t               st;
cb_conn_t               *conns;
cb_conn_t               *pubs;
char                   **jwts;
char                   **convs;
uint32_t                 n_groups;
char                    *scratch;
char                    *wscratch;
volatile sig_atomic_t    stop_flag;
int                      phase;
const char              *stop_reason = "";

static int               ep;
static uint64_t          rnd_state = 0x9e3779b97f4a7c15ULL;
static int64_t           deadline;
static int64_t           quiet_since;
static int64_t           t_c0;
static int64_t           t_c1;
static cb_sample_t       c0;
static cb_sample_t       c1;
static char              ctl_tag;      /* epoll: the parent's pipe */


void
cb_die(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "chat_bench: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}


int64_t
cb_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


uint32_t
cb_rand(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return (uint32_t) (rnd_state >> 16);
}


static void
cb_on_signal(int sig)
{
    stop_flag = sig;
}


/* --- output --- */

static void
cb_flush(cb_conn_t *c)
{
    ssize_t  n;

    while (c->out_len > c->out_off) {
        n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);

        if (n > 0) {
            c->out_off += (uint32_t) n;
            continue;
        }

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n == -1 && errno == EAGAIN) {
            return;
        }

        cb_close(c);
        return;
    }

    free(c->out);
    c->out = NULL;
    c->out_len = 0;
    c->out_off = 0;
}


void
cb_write(cb_conn_t *c, const char *p, size_t len)
{
    char     *nb;
    ssize_t   n;

    if (c->state == CB_CLOSED) {
        return;
    }

    c->last_tx = cb_now();

    if (c->out == NULL) {
        for ( ;; ) {
            n = write(c->fd, p, len);

            if (n == -1 && errno == EINTR) {
                continue;
            }

            if (n == -1 && errno == EAGAIN) {
                n = 0;

            } else if (n == -1) {
                cb_close(c);
                return;
            }

            break;
        }

        if ((size_t) n == len) {
            return;
        }

        p += n;
        len -= (size_t) n;

        c->out = malloc(len);
        if (c->out == NULL) {
            cb_die("out of memory");
        }

        memcpy(c->out, p, len);
        c->out_len = (uint32_t) len;
        c->out_off = 0;
        return;
    }

    nb = realloc(c->out, c->out_len + len);
    if (nb == NULL) {
        cb_die("out of memory");
    }

    c->out = nb;
    memcpy(c->out + c->out_len, p, len);
    c->out_len += (uint32_t) len;
}


/* --- connections --- */

void
cb_close(cb_conn_t *c)
{
    if (c->state == CB_CLOSED) {
        return;
    }

    if (c->kind == CB_CLIENT) {
        if (c->state == CB_READY) {
            if (phase >= CB_PH_PRIME && phase < CB_PH_DONE) {
                st.dropped++;
            }

        } else {
            st.failed++;
        }
    }

    if (c->kind == CB_PUB && phase < CB_PH_DONE) {
        st.pub_errors++;
    }

    st.outstanding -= c->inflight;
    c->inflight = 0;
    c->state = CB_CLOSED;
    close(c->fd);
    c->fd = -1;
    free(c->in);
    free(c->out);
    free(c->st);
    c->in = c->out = c->st = NULL;
    c->in_len = c->in_cap = c->out_len = c->out_off = c->st_len = 0;

    /* a session's PUBLISH times (MQTT); a publisher's ring stays */
    if (c->kind == CB_CLIENT) {
        free(c->ring);
        c->ring = NULL;
        c->ring_head = 0;
    }
}


static void
cb_open(cb_conn_t *c, uint32_t src)
{
    int                 fd, one;
    struct sockaddr_in  sa;
    struct epoll_event  ev;

    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        cb_die("socket(): %s", strerror(errno));
    }

    one = 1;
    (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    c->fd = fd;
    c->state = CB_CONNECTING;
    c->t_start = cb_now();
    c->last_tx = c->t_start;

    /* spread over 127.0.0.2, .3, ...: every source address has its own
     * ephemeral port range towards the server */
    if (cf.sources > 0) {
#ifdef IP_BIND_ADDRESS_NO_PORT
        (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                          sizeof(one));
#endif
        memset(&sa, 0, sizeof(sa));
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(0x7f000002 + src % cf.sources);

        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) == -1) {
            cb_die("bind(127.0.0.%u): %s", 2 + src % cf.sources,
                   strerror(errno));
        }
    }

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t) cf.port);

    if (inet_pton(AF_INET, cf.host, &sa.sin_addr) != 1) {
        cb_die("bad host \"%s\" (an IPv4 address)", cf.host);
    }

    ev.events = EPOLLIN | EPOLLOUT | EPOLLET | EPOLLRDHUP;
    ev.data.ptr = c;

    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
        cb_die("epoll_ctl(): %s", strerror(errno));
    }

    if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == -1
        && errno != EINPROGRESS)
    {
        if (errno == EADDRNOTAVAIL) {
            fprintf(stderr, "chat_bench: connect(): %s (more --sources?)\n",
                    strerror(errno));
        }

        cb_close(c);
    }
}


static void
cb_on_read(cb_conn_t *c)
{
    char     *buf, *nb;
    size_t    len, used, left;
    ssize_t   n;

    for ( ;; ) {
        if (c->in != NULL) {
            if (c->in_cap - c->in_len < 16384) {
                nb = realloc(c->in, c->in_cap * 2);
                if (nb == NULL) {
                    cb_die("out of memory");
                }
                c->in = nb;
                c->in_cap *= 2;
            }

            n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
            buf = c->in;

        } else {
            n = read(c->fd, scratch, CB_SCRATCH);
            buf = scratch;
        }

        if (n == 0) {
            cb_close(c);
            return;
        }

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }
            if (errno != EAGAIN) {
                cb_close(c);
            }
            return;
        }

        len = (size_t) n + (buf == c->in ? c->in_len : 0);
        used = cb_consume(c, buf, len);

        if (c->state == CB_CLOSED) {
            return;
        }

        left = len - used;

        if (left == 0) {
            free(c->in);
            c->in = NULL;
            c->in_len = c->in_cap = 0;

        } else if (buf == scratch) {
            c->in_cap = (uint32_t) (left < 16384 ? 32768 : left * 2);
            c->in = malloc(c->in_cap);
            if (c->in == NULL) {
                cb_die("out of memory");
            }
            memcpy(c->in, buf + used, left);
            c->in_len = (uint32_t) left;

        } else {
            memmove(c->in, c->in + used, left);
            c->in_len = (uint32_t) left;
        }
    }
}


static void
cb_on_event(cb_conn_t *c, uint32_t events)
{
    int        err;
    socklen_t  elen;

    if (c->state == CB_CLOSED) {
        return;
    }

    if (c->state == CB_CONNECTING) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
            return;
        }

        err = 0;
        elen = sizeof(err);
        (void) getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);

        if (err != 0) {
            cb_close(c);
            return;
        }

        if (c->kind == CB_PUB) {
            c->state = CB_READY;
        } else {
            cb_send_handshake(c);
        }
    }

    if (events & EPOLLOUT) {
        cb_flush(c);
    }

    if (c->state != CB_CLOSED && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP
                                            | EPOLLERR)))
    {
        cb_on_read(c);
    }
}


/* --- sending --- */

static void
cb_send_due(int64_t now)
{
    uint64_t    due, n, idx, late;
    uint32_t    g, member, u;
    cb_conn_t  *c;

    if (now <= st.t_run) {
        return;                         /* --sweep: the step starts at t0 */
    }

    due = (uint64_t) ((double) (now - st.t_run) / 1e9 * cf.rate);

    if (due <= st.offered) {
        return;
    }

    n = due - st.offered;
    if (n > 5000) {
        /* we fell behind: not made up (our share of it counted) */
        late = n - 5000;
        st.skipped += late / cf.procs;
        st.late += late / cf.procs;
        st.offered += late;
        n = 5000;
    }

    while (n--) {
        idx = st.offered++;
        g = (uint32_t) (idx % n_groups);
        member = (uint32_t) ((idx / n_groups) % cf.group);
        u = g * cf.group + member;

        /* --procs: every process walks the same schedule and sends what
         * its own users send (nchan: every procs-th publish) */
        if (cf.procs > 1) {
            if (cf.system == CB_SYS_NCHAN
                ? idx % cf.procs != (uint64_t) cf.child
                : u < cf.lo || u >= cf.hi)
            {
                continue;
            }
        }

        if (cf.window && st.outstanding >= cf.window) {
            st.skipped++;
            continue;
        }

        if (cf.system == CB_SYS_NCHAN) {
            cb_publish(g);
            continue;
        }

        c = &conns[u];

        if (c->state != CB_READY) {
            st.skipped++;
            continue;
        }

        cb_send_message(c);
    }
}


static void
cb_heartbeats(int64_t now)
{
    uint32_t    i;
    cb_conn_t  *c;

    for (i = cf.lo; i < cf.hi; i++) {
        c = &conns[i];

        /* from CONNECTED on (hb_ms), subscribed or not yet */
        if ((c->state == CB_READY || c->state == CB_SUBSCRIBING) && c->hb_ms
            && now - c->last_tx >= (int64_t) c->hb_ms * 1000000 - 500000000)
        {
            if (cf.proto == CB_PROTO_MQTT) {
                cb_mqtt_ping(c);
            } else {
                cb_ws_send(c, "\n", 1);
            }
        }
    }
}


/* --- the run --- */

/* CPU marks: the only process samples the systems under test, a child
 * (--procs) only its own CPU time */
static void
cb_mark(cb_sample_t *s)
{
    if (cf.child < 0) {
        cb_sample(s);
        return;
    }

    memset(s, 0, sizeof(*s));
    s->cpu_self = cb_self_cpu();
}


/* this process's epoll loop, its sessions and (nchan) its publishers */
void
cb_start(void)
{
    uint32_t            u;
    struct epoll_event  ev;

    if (cf.child >= 0) {
        rnd_state ^= (uint64_t) (cf.child + 1) * 0xbf58476d1ce4e5b9ULL;
    }

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1) {
        cb_die("epoll_create1(): %s", strerror(errno));
    }

    alarm((unsigned) cf.max_time);

    for (u = cf.lo; u < cf.hi; u++) {
        conns[u].id = u;
        conns[u].fd = -1;
        conns[u].kind = CB_CLIENT;
        conns[u].state = CB_CLOSED;
    }

    if (cf.child >= 0) {
        ev.events = EPOLLIN;
        ev.data.ptr = &ctl_tag;

        if (epoll_ctl(ep, EPOLL_CTL_ADD, cf.ctl_in, &ev) == -1) {
            cb_die("epoll_ctl(): %s", strerror(errno));
        }
    }

    if (cf.system == CB_SYS_NCHAN) {
        for (u = 0; u < cf.pubs; u++) {
            pubs[u].id = u;
            pubs[u].kind = CB_PUB;
            pubs[u].ring = calloc(CB_PUB_RING, sizeof(int64_t));
            if (pubs[u].ring == NULL) {
                cb_die("out of memory");
            }
            cb_open(&pubs[u], u);
        }
    }

    cb_mark(&c0);
    t_c0 = cb_now();
    t_c1 = 0;
}


/* every session is up (or the time is over) at t0: what comes next */
void
cb_after_connect(int64_t t0)
{
    if (cf.scenario == CB_SC_STORM) {
        phase = CB_PH_DONE;
        return;
    }

    if (cf.scenario == CB_SC_DENSITY) {
        phase = CB_PH_HOLD;
        deadline = t0 + (int64_t) (cf.hold * 1e9);
        return;
    }

    phase = CB_PH_RUN;
    st.t_run = t0;
    st.t_measure = t0 + (int64_t) (cf.warmup * 1e9);
    deadline = st.t_measure + (int64_t) (cf.duration * 1e9);
}


/*
 * One message per conversation of this process (its first member is
 * ours), answered before the warm-up starts: the gateway fills its
 * membership cache (Redis, from PostgreSQL) on a conversation's first
 * message, and the figures are about the steady state, not about the
 * cache of conversations made a second ago.
 */
static void
cb_prime(void)
{
    uint32_t    g, first;
    cb_conn_t  *c;

    for (g = 0; g < n_groups; g++) {
        first = g * cf.group;

        if (first < cf.lo || first >= cf.hi) {
            continue;
        }

        c = &conns[first];

        if (c->state == CB_READY) {
            cb_send_message(c);
        }
    }
}


/* this process's sessions are up (and primed): report, or go on */
static void
cb_connected(int64_t now)
{
    if (cf.child >= 0) {
        cb_child_connected();
        phase = CB_PH_WAIT;
        return;
    }

    fprintf(stderr, "chat_bench: %" PRIu64 " sessions ready, %" PRIu64
            " failed in %.2f s\n", st.ready, st.failed,
            (double) (now - st.t_begin) / 1e9);

    cb_after_connect(now);
}


/*
 * The connection phase is over and some sessions are not up: they failed
 * (counted so), and they go, so that what is measured next (the density's
 * memory per ready session, the run's load) does not carry handshakes
 * still in flight.
 */
static void
cb_close_unready(void)
{
    uint32_t  u;

    for (u = cf.lo; u < cf.hi; u++) {
        if (conns[u].state != CB_READY) {
            cb_close(&conns[u]);
        }
    }
}


void
cb_loop(void)
{
    int                  n, i, timeout;
    int64_t              now, last_hb;
    uint32_t             next, pending, mine;
    struct epoll_event   evs[1024];

    next = cf.lo;
    mine = cf.hi - cf.lo;
    last_hb = st.t_begin;
    quiet_since = 0;

    if (phase == CB_PH_RUN) {
        /* --sweep: the next step over the sessions already up */
        last_hb = cb_now();

    } else {
        phase = CB_PH_CONNECT;
        deadline = st.t_begin + (int64_t) (cf.connect_timeout * 1e9);
    }

    while (phase != CB_PH_DONE) {
        now = cb_now();

        if (stop_flag) {
            stop_reason = stop_flag == SIGALRM ? "max-time" : "signal";
            if (st.t_measure && st.t_end == 0) {
                st.t_end = now;
            }
            break;
        }

        switch (phase) {

        case CB_PH_CONNECT:
            pending = (uint32_t) (st.opened - st.ready - st.failed);

            while (next < cf.hi && pending < cf.inflight) {
                cb_open(&conns[next], next);
                next++;
                st.opened++;
                pending++;
            }

            if (st.ready + st.failed >= mine || now > deadline) {
                if (now > deadline) {
                    stop_reason = "connect-timeout";
                    cb_close_unready();
                }

                st.t_all_ready = now;

                if (cf.prime && cf.system == CB_SYS_CHAT
                    && cf.scenario != CB_SC_STORM
                    && cf.scenario != CB_SC_DENSITY)
                {
                    phase = CB_PH_PRIME;
                    deadline = now + CB_PRIME_MAX_NS;
                    cb_prime();
                    break;
                }

                cb_connected(now);
            }
            break;

        case CB_PH_PRIME:
            if (st.outstanding == 0 || now > deadline) {
                fprintf(stderr, "chat_bench: conversations primed, %"
                        PRIu64 " unanswered, in %.2f s\n", st.outstanding,
                        (double) (now - st.t_all_ready) / 1e9);
                cb_connected(now);
            }
            break;

        case CB_PH_WAIT:
            /* a child: the parent's go comes through cb_child_ctl() */
            break;

        case CB_PH_HOLD:
            if (now >= deadline) {
                phase = CB_PH_DONE;
            }
            break;

        case CB_PH_RUN:
            if (t_c0 < st.t_measure && now >= st.t_measure) {
                cb_mark(&c0);
                t_c0 = now;
            }

            if (now >= deadline) {
                /* the window's end is the same in every process */
                st.t_end = deadline;
                cb_mark(&c1);
                t_c1 = now;
                phase = CB_PH_DRAIN;
                deadline = now + 5000000000LL;
                quiet_since = now;
                break;
            }

            cb_send_due(now);
            break;

        case CB_PH_DRAIN:
            if (st.t_last_delivery > quiet_since) {
                quiet_since = st.t_last_delivery;
            }

            if (now >= deadline
                || (st.outstanding == 0 && now - quiet_since > 300000000))
            {
                phase = CB_PH_DONE;
            }
            break;
        }

        if (phase == CB_PH_DONE) {
            break;
        }

        if (now - last_hb > 500000000) {
            cb_heartbeats(now);
            last_hb = now;
        }

        timeout = (phase == CB_PH_RUN || phase == CB_PH_PRIME) ? 1 : 10;
        n = epoll_wait(ep, evs, 1024, timeout);

        for (i = 0; i < n; i++) {
            if (evs[i].data.ptr == &ctl_tag) {
                cb_child_ctl();
                continue;
            }

            cb_on_event(evs[i].data.ptr, evs[i].events);
        }
    }
}


/* a child: its CPU time over the measured window (or the whole run) */
double
cb_own_cpu(void)
{
    if (t_c1 == 0) {
        cb_mark(&c1);
        t_c1 = cb_now();
    }

    return c1.cpu_self - c0.cpu_self;
}


/*
 * --sweep: the step figures start again from zero, the sessions and their
 * counts stay; the step runs at rate from t0 (its warm-up first)
 */
void
cb_step_begin(double rate, int64_t t0)
{
    /* st.sent goes on: it numbers the clientMsgIds, and a repeated one
     * is a retry to ngx_chat (answered, not delivered again) */
    st.offered = 0;
    st.skipped = 0;
    st.late = 0;
    st.errors = 0;
    st.sent_window = 0;
    st.receipts = 0;
    st.deliveries_window = 0;
    st.delivered_of_window = 0;
    st.t_end = 0;
    memset(&st.msg, 0, sizeof(cb_hist_t));
    memset(&st.rcpt, 0, sizeof(cb_hist_t));

    cf.rate = rate;
    t_c1 = 0;
    cb_after_connect(t0);
}


/* the CPU marks of the last step's measured window */
void
cb_step_marks(cb_sample_t *a, cb_sample_t *b, double *wall)
{
    *a = c0;
    *b = c1;
    *wall = t_c1 > t_c0 ? (double) (t_c1 - t_c0) / 1e9 : 0;
}


/* --sweep in one process: the first step ran, the others follow until
 * one fails */
int
cb_sweep_single(void)
{
    double       wall;
    uint32_t     i;
    cb_sample_t  a, b;

    for (i = 0; i < cf.n_sweep; i++) {
        if (i > 0) {
            cb_step_begin(cf.sweep[i], cb_now());
            cb_loop();
        }

        cb_step_marks(&a, &b, &wall);

        if (!cb_sweep_step(i, &a, &b, wall) || stop_flag) {
            break;
        }
    }

    cb_sweep_report();
    cb_close_all();

    return st.ready == 0 ? 1 : 0;
}


void
cb_close_all(void)
{
    uint32_t  u;

    phase = CB_PH_DONE;

    for (u = cf.lo; u < cf.hi; u++) {
        cb_close(&conns[u]);
    }

    if (cf.system == CB_SYS_NCHAN) {
        for (u = 0; u < cf.pubs; u++) {
            cb_close(&pubs[u]);
        }
    }
}


int
main(int argc, char **argv)
{
    char              user[128];
    double            wall;
    int64_t           now;
    uint32_t          u, per;
    cb_sample_t       s0, s1;
    struct sigaction  sa;

    cb_options(argc, argv);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = cb_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);

    /* --procs N: every process holds its slice of the sessions */
    per = (cf.clients + cf.procs - 1) / cf.procs;
    cb_raise_nofile(per + cf.pubs + 1024);

    n_groups = cf.clients / cf.group;

    conns = calloc(cf.clients, sizeof(cb_conn_t));
    pubs = calloc(cf.pubs ? cf.pubs : 1, sizeof(cb_conn_t));
    convs = calloc(n_groups, sizeof(char *));
    scratch = malloc(CB_SCRATCH);
    wscratch = malloc(CB_SCRATCH);

    if (conns == NULL || pubs == NULL || convs == NULL || scratch == NULL
        || wscratch == NULL)
    {
        cb_die("out of memory");
    }

    if (cf.system == CB_SYS_CHAT) {
        jwts = calloc(cf.clients, sizeof(char *));
        if (jwts == NULL) {
            cb_die("out of memory");
        }

        for (u = 0; u < cf.clients; u++) {
            snprintf(user, sizeof(user), "%s-u%u", cf.prefix, u);
            jwts[u] = cb_jwt(cf.secret, user, 86400);
            if (jwts[u] == NULL) {
                cb_die("cannot make a JWT");
            }
        }

        if (cf.group > 1) {
            cb_create_conversations();
        }
    }

    if (cf.procs > 1) {
        return cb_procs_run();
    }

    cf.child = -1;
    cf.lo = 0;
    cf.hi = cf.clients;

    cb_start();
    s0 = c0;

    st.t_begin = cb_now();
    cb_loop();

    if (cf.n_sweep) {
        return cb_sweep_single();
    }

    if (cf.scenario == CB_SC_DENSITY) {
        /* let the kernel and the allocators settle */
        usleep(200000);
    }

    now = cb_now();
    cb_sample(&s1);

    if (t_c1 == 0) {
        c1 = s1;
        t_c1 = now;
    }

    wall = (double) (t_c1 - t_c0) / 1e9;

    phase = CB_PH_DONE;
    cb_report(&s0, &s1, wall, &c0, &c1);
    cb_close_all();

    return st.ready == 0 ? 1 : 0;
}
