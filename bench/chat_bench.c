/* chat_bench.c: a load generator for STOMP-over-WebSocket gateways
 * (ngx_chat, RabbitMQ Web-STOMP) and raw WebSocket pub/sub (nchan). */

#include "cb_hist.h"
#include "cb_setup.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>


#define CB_SYS_CHAT      0
#define CB_SYS_RABBIT    1
#define CB_SYS_NCHAN     2

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

#define CB_PH_CONNECT    0
#define CB_PH_HOLD       1
#define CB_PH_RUN        2
#define CB_PH_DRAIN      3
#define CB_PH_DONE       4
#define CB_PH_PRIME      5

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
    int64_t     *ring;         /* publisher: send times of POSTs */
} cb_conn_t;


typedef struct {
    int          system;
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


static cb_conf_t     cf;
static cb_stats_t    st;
static cb_conn_t    *conns;
static cb_conn_t    *pubs;
static char        **jwts;
static char        **convs;
static uint32_t      n_groups;
static int           ep;
static char         *scratch;
static char         *wscratch;
static uint64_t      rnd_state = 0x9e3779b97f4a7c15ULL;
static volatile sig_atomic_t  stop_flag;
static int           phase;
static const char   *stop_reason = "";


static void
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


static int64_t
cb_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static uint32_t
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

static void cb_close(cb_conn_t *c);


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


static void
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


/* a masked client frame, text opcode */
static void
cb_ws_send(cb_conn_t *c, const char *payload, size_t len)
{
    char      *p;
    size_t     i, hl;
    uint32_t   m;
    uint8_t    mask[4];

    p = wscratch;
    p[0] = (char) 0x81;

    if (len < 126) {
        p[1] = (char) (0x80 | len);
        hl = 2;

    } else if (len < 65536) {
        p[1] = (char) (0x80 | 126);
        p[2] = (char) (len >> 8);
        p[3] = (char) len;
        hl = 4;

    } else {
        cb_die("frame too large");
        return;
    }

    m = cb_rand();
    memcpy(mask, &m, 4);
    memcpy(p + hl, mask, 4);
    hl += 4;

    for (i = 0; i < len; i++) {
        p[hl + i] = payload[i] ^ (char) mask[i & 3];
    }

    cb_write(c, p, hl + len);
}


static void
cb_ws_pong(cb_conn_t *c, const char *payload, size_t len)
{
    char     f[6 + 125];
    size_t   i;

    if (len > 125) {
        len = 125;
    }

    f[0] = (char) 0x8a;
    f[1] = (char) (0x80 | len);
    f[2] = 1;
    f[3] = 2;
    f[4] = 3;
    f[5] = 4;

    for (i = 0; i < len; i++) {
        f[6 + i] = payload[i] ^ (char) (1 + (i & 3));
    }

    cb_write(c, f, 6 + len);
}


/* --- connections --- */

static void
cb_close(cb_conn_t *c)
{
    if (c->state == CB_CLOSED) {
        return;
    }

    if (c->kind == CB_CLIENT) {
        if (c->state == CB_READY) {
            if (phase >= CB_PH_HOLD && phase < CB_PH_DONE) {
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
cb_send_handshake(cb_conn_t *c)
{
    int   n;
    char  req[512], path[256];

    if (cf.system == CB_SYS_NCHAN) {
        snprintf(path, sizeof(path), "%sc%u", cf.sub_path, c->id / cf.group);

    } else {
        snprintf(path, sizeof(path), "%s", cf.ws_path);
    }

    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: localhost\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n",
                 path,
                 cf.system == CB_SYS_NCHAN
                     ? "" : "Sec-WebSocket-Protocol: v12.stomp\r\n");

    c->state = CB_HANDSHAKE;
    cb_write(c, req, (size_t) n);
}


static void
cb_send_connect(cb_conn_t *c)
{
    int   n;
    char  f[1024];

    if (cf.system == CB_SYS_CHAT) {
        n = snprintf(f, sizeof(f),
                     "CONNECT\naccept-version:1.2\nhost:localhost\n"
                     "heart-beat:%u,%u\npasscode:%s\n\n",
                     cf.hb_ms, cf.hb_ms, jwts[c->id]);

    } else {
        n = snprintf(f, sizeof(f),
                     "CONNECT\naccept-version:1.2\nhost:/\n"
                     "heart-beat:%u,%u\nlogin:guest\npasscode:guest\n\n",
                     cf.hb_ms, cf.hb_ms);
    }

    c->state = CB_STOMP;
    cb_ws_send(c, f, (size_t) n + 1);           /* with the NUL */
}


static void
cb_send_subscribe(cb_conn_t *c)
{
    int         n;
    char        f[512];
    uint32_t    g;
    int         quiet;

    g = c->id / cf.group;
    quiet = cf.scenario == CB_SC_DENSITY || cf.scenario == CB_SC_STORM;

    /* two subscriptions, the second one with a receipt: the session is
     * ready when it arrives */
    if (cf.system == CB_SYS_CHAT) {
        n = snprintf(f, sizeof(f),
                     "SUBSCRIBE\nid:0\ndestination:/user/queue/messages\n\n");
        n += 1 + snprintf(f + n + 1, sizeof(f) - (size_t) n - 1,
                          "SUBSCRIBE\nid:1\ndestination:%s\nreceipt:s\n\n",
                          quiet ? "/user/queue/receipts"
                                : "/user/queue/errors");

    } else if (quiet) {
        n = snprintf(f, sizeof(f),
                     "SUBSCRIBE\nid:0\ndestination:/exchange/amq.topic/"
                     "%s.u%u\n\n", cf.prefix, c->id);
        n += 1 + snprintf(f + n + 1, sizeof(f) - (size_t) n - 1,
                          "SUBSCRIBE\nid:1\ndestination:/exchange/amq.topic/"
                          "%s.r%u\nreceipt:s\n\n", cf.prefix, c->id);

    } else {
        n = snprintf(f, sizeof(f),
                     "SUBSCRIBE\nid:0\ndestination:/exchange/amq.topic/"
                     "%s.c%u\n\n", cf.prefix, g);
        n += 1 + snprintf(f + n + 1, sizeof(f) - (size_t) n - 1,
                          "SUBSCRIBE\nid:1\ndestination:/exchange/amq.topic/"
                          "%s.e%u\nreceipt:s\n\n", cf.prefix, c->id);
    }

    /* one frame per WebSocket message: RabbitMQ reads only the first */
    c->state = CB_SUBSCRIBING;
    n = (int) strlen(f);
    cb_ws_send(c, f, (size_t) n + 1);
    cb_ws_send(c, f + n + 1, strlen(f + n + 1) + 1);
}


static void
cb_ready(cb_conn_t *c)
{
    int64_t  now;

    now = cb_now();
    c->state = CB_READY;
    st.ready++;

    if (st.t_first_ready == 0) {
        st.t_first_ready = now;
    }

    cb_hist_add(&st.setup, now - c->t_start);
}


/* --- what arrives --- */

static int
cb_in_window(int64_t t)
{
    return st.t_measure && t >= st.t_measure
           && (st.t_end == 0 || t < st.t_end);
}


/* a message that carries "bt:<ns>:<sender>" */
static void
cb_delivery(cb_conn_t *c, const char *body, size_t len)
{
    char       *p, *end;
    int64_t     now, t;
    uint64_t    sender;

    now = cb_now();
    st.deliveries++;
    st.t_last_delivery = now;

    if (cb_in_window(now)) {
        st.deliveries_window++;
    }

    p = memmem(body, len, "bt:", 3);
    if (p == NULL) {
        return;
    }

    t = strtoll(p + 3, &end, 10);
    sender = *end == ':' ? strtoull(end + 1, NULL, 10) : UINT64_MAX;

    if (!cb_in_window(t)) {
        return;
    }

    st.delivered_of_window++;

    if (c->kind == CB_CLIENT && sender == c->id
        && cf.system != CB_SYS_NCHAN)
    {
        return;                         /* the sender's own copy */
    }

    cb_hist_add(&st.msg, now - t);
}


static int
cb_header(const char *f, const char *end, const char *name, const char **v,
    size_t *vlen)
{
    size_t       nl;
    const char  *p, *eol;

    nl = strlen(name);
    p = memchr(f, '\n', (size_t) (end - f));

    while (p != NULL && p + 1 < end && p[1] != '\n'
           && !(p[1] == '\r' && p + 2 < end && p[2] == '\n'))
    {
        p++;
        eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL) {
            eol = end;
        }

        if ((size_t) (eol - p) > nl && p[nl] == ':'
            && memcmp(p, name, nl) == 0)
        {
            *v = p + nl + 1;
            *vlen = (size_t) (eol - *v);
            if (*vlen && (*v)[*vlen - 1] == '\r') {
                (*vlen)--;
            }
            return 1;
        }

        p = eol < end ? eol : NULL;
    }

    return 0;
}


static void
cb_stomp_frame(cb_conn_t *c, const char *f, size_t len)
{
    size_t       vlen;
    int64_t      t;
    uint32_t     sx, sy;
    const char  *end, *v, *body;
    static int   errors_shown;

    end = f + len;

    if (len >= 7 && memcmp(f, "MESSAGE", 7) == 0) {
        body = memmem(f, len, "\n\n", 2);
        if (body != NULL) {
            cb_delivery(c, body + 2, (size_t) (end - body - 2));
        }
        return;
    }

    if (len >= 7 && memcmp(f, "RECEIPT", 7) == 0) {
        if (!cb_header(f, end, "receipt-id", &v, &vlen) || vlen == 0) {
            return;
        }

        if (v[0] == 's') {
            if (c->state == CB_SUBSCRIBING) {
                cb_ready(c);
            }
            return;
        }

        if (v[0] == 'r') {
            t = strtoll(v + 1, NULL, 10);
            st.receipts++;
            if (c->inflight) {
                c->inflight--;
                st.outstanding--;
            }
            if (cb_in_window(t)) {
                cb_hist_add(&st.rcpt, cb_now() - t);
            }
        }
        return;
    }

    if (len >= 9 && memcmp(f, "CONNECTED", 9) == 0) {
        sx = sy = 0;
        if (cb_header(f, end, "heart-beat", &v, &vlen)) {
            (void) sscanf(v, "%u,%u", &sx, &sy);
        }

        c->hb_ms = (cf.hb_ms && sy) ? (cf.hb_ms > sy ? cf.hb_ms : sy) : 0;
        cb_send_subscribe(c);
        return;
    }

    if (len >= 5 && memcmp(f, "ERROR", 5) == 0) {
        st.errors++;
        if (errors_shown++ < 5) {
            if (!cb_header(f, end, "message", &v, &vlen)) {
                v = "?";
                vlen = 1;
            }
            fprintf(stderr, "chat_bench: ERROR frame: %.*s\n", (int) vlen, v);
        }
    }
}


/* STOMP bytes of one WebSocket data frame: frames end with a NUL, lone
 * end-of-lines are heart-beats */
static void
cb_stomp_bytes(cb_conn_t *c, const char *p, size_t len)
{
    char        *nb;
    const char  *end, *nul;

    if (c->st != NULL) {
        nb = realloc(c->st, c->st_len + len);
        if (nb == NULL) {
            cb_die("out of memory");
        }
        memcpy(nb + c->st_len, p, len);
        c->st = nb;
        c->st_len += (uint32_t) len;
        p = c->st;
        len = c->st_len;
    }

    end = p + len;

    while (p < end) {
        if (*p == '\n' || *p == '\r') {
            p++;
            continue;
        }

        nul = memchr(p, '\0', (size_t) (end - p));
        if (nul == NULL) {
            break;
        }

        cb_stomp_frame(c, p, (size_t) (nul - p));

        if (c->state == CB_CLOSED) {
            return;
        }

        p = nul + 1;
    }

    if (p == end) {
        free(c->st);
        c->st = NULL;
        c->st_len = 0;
        return;
    }

    if (c->st == NULL) {
        c->st = malloc((size_t) (end - p));
        if (c->st == NULL) {
            cb_die("out of memory");
        }
        memcpy(c->st, p, (size_t) (end - p));

    } else {
        memmove(c->st, p, (size_t) (end - p));
    }

    c->st_len = (uint32_t) (end - p);
}


/* WebSocket frames from the server; returns the bytes consumed */
static size_t
cb_ws_frames(cb_conn_t *c, char *buf, size_t len)
{
    char      *p, *end, *pl;
    size_t     hl, i;
    uint64_t   plen;
    unsigned   op, masked;

    p = buf;
    end = buf + len;

    while (end - p >= 2 && c->state != CB_CLOSED) {
        op = (unsigned char) p[0] & 0x0f;
        masked = (unsigned char) p[1] & 0x80;
        plen = (unsigned char) p[1] & 0x7f;
        hl = 2;

        if (plen == 126) {
            if (end - p < 4) {
                break;
            }
            plen = (uint64_t) (unsigned char) p[2] << 8 | (unsigned char) p[3];
            hl = 4;

        } else if (plen == 127) {
            if (end - p < 10) {
                break;
            }
            plen = 0;
            for (i = 2; i < 10; i++) {
                plen = plen << 8 | (unsigned char) p[i];
            }
            hl = 10;
        }

        if (masked) {
            hl += 4;
        }

        if ((uint64_t) (end - p) < hl + plen) {
            break;
        }

        pl = p + hl;

        if (masked) {
            for (i = 0; i < plen; i++) {
                pl[i] ^= p[hl - 4 + (i & 3)];
            }
        }

        switch (op) {
        case 0x0:
        case 0x1:
        case 0x2:
            if (cf.system == CB_SYS_NCHAN) {
                cb_delivery(c, pl, (size_t) plen);
            } else {
                cb_stomp_bytes(c, pl, (size_t) plen);
            }
            break;

        case 0x8:
            cb_close(c);
            return len;

        case 0x9:
            cb_ws_pong(c, pl, (size_t) plen);
            break;

        default:
            break;
        }

        p = pl + plen;
    }

    return (size_t) (p - buf);
}


/* HTTP answers on a publisher connection (nchan) */
static size_t
cb_pub_answers(cb_conn_t *c, char *buf, size_t len)
{
    int       status;
    char     *p, *end, *hend, *h;
    long      clen;
    int64_t   t;

    p = buf;
    end = buf + len;

    for ( ;; ) {
        hend = memmem(p, (size_t) (end - p), "\r\n\r\n", 4);
        if (hend == NULL) {
            break;
        }

        clen = 0;

        for (h = p; h < hend; h++) {
            if (*h == '\n' && strncasecmp(h + 1, "content-length:", 15) == 0)
            {
                clen = strtol(h + 16, NULL, 10);
            }
        }

        if (end - (hend + 4) < clen) {
            break;
        }

        status = (int) strtol(p + 9, NULL, 10);

        if (status < 200 || status > 299) {
            st.errors++;
        }

        if (c->inflight) {
            t = c->ring[(c->ring_head + CB_PUB_RING - c->inflight)
                        % CB_PUB_RING];
            c->inflight--;
            st.outstanding--;
            st.receipts++;

            if (cb_in_window(t)) {
                cb_hist_add(&st.rcpt, cb_now() - t);
            }
        }

        p = hend + 4 + clen;
    }

    return (size_t) (p - buf);
}


static size_t
cb_consume(cb_conn_t *c, char *buf, size_t len)
{
    char    *hend;
    size_t   used;

    used = 0;

    if (c->kind == CB_PUB) {
        return cb_pub_answers(c, buf, len);
    }

    if (c->state == CB_HANDSHAKE) {
        hend = memmem(buf, len, "\r\n\r\n", 4);
        if (hend == NULL) {
            return 0;
        }

        if (len < 12 || memcmp(buf + 9, "101", 3) != 0) {
            fprintf(stderr, "chat_bench: handshake refused: %.*s\n",
                    (int) (memchr(buf, '\r', len) - (void *) buf), buf);
            cb_close(c);
            return len;
        }

        used = (size_t) (hend + 4 - buf);

        if (cf.system == CB_SYS_NCHAN) {
            cb_ready(c);
        } else {
            cb_send_connect(c);
        }
    }

    return used + cb_ws_frames(c, buf + used, len - used);
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
cb_send_message(cb_conn_t *c)
{
    int       n, m, jl;
    char      body[4096], json[4400], f[4800];
    int64_t   t;
    uint32_t  g;

    t = cb_now();
    g = c->id / cf.group;

    n = snprintf(body, sizeof(body), "bt:%" PRId64 ":%u ", t, c->id);
    while ((uint32_t) n < cf.size && (size_t) n < sizeof(body) - 1) {
        body[n++] = 'x';
    }
    body[n] = '\0';

    if (cf.system == CB_SYS_CHAT) {
        jl = snprintf(json, sizeof(json),
                      "{\"conversationId\":\"%s\",\"content\":\"%s\","
                      "\"clientMsgId\":\"%u-%" PRIu64 "\"}",
                      convs[g], body, c->id, st.sent);
        m = snprintf(f, sizeof(f),
                     "SEND\ndestination:/app/chat.send\n"
                     "content-type:application/json\n"
                     "content-length:%d\nreceipt:r%" PRId64 "\n\n%s",
                     jl, t, json);

    } else {
        m = snprintf(f, sizeof(f),
                     "SEND\ndestination:/exchange/amq.topic/%s.c%u\n"
                     "content-type:text/plain\n"
                     "content-length:%d\nreceipt:r%" PRId64 "\n\n%s",
                     cf.prefix, g, n, t, body);
    }

    c->inflight++;
    st.outstanding++;
    st.sent++;

    if (cb_in_window(t)) {
        st.sent_window++;
    }

    cb_ws_send(c, f, (size_t) m + 1);
}


static void
cb_publish(uint32_t g)
{
    int         n, m;
    char        body[8192], req[9000];
    int64_t     t;
    uint32_t    i, best;
    cb_conn_t  *c;

    best = UINT32_MAX;

    for (i = 0; i < cf.pubs; i++) {
        c = &pubs[i];
        if (c->state == CB_READY && c->inflight < CB_PUB_RING
            && (best == UINT32_MAX || c->inflight < pubs[best].inflight))
        {
            best = i;
        }
    }

    if (best == UINT32_MAX) {
        st.skipped++;
        return;
    }

    c = &pubs[best];
    t = cb_now();

    n = snprintf(body, sizeof(body), "bt:%" PRId64 ":p ", t);
    while ((uint32_t) n < cf.size && (size_t) n < sizeof(body) - 1) {
        body[n++] = 'x';
    }
    body[n] = '\0';

    m = snprintf(req, sizeof(req),
                 "POST %sc%u HTTP/1.1\r\nHost: localhost\r\n"
                 "Content-Type: text/plain\r\n"
                 "Content-Length: %d\r\n\r\n%s", cf.pub_path, g, n, body);

    c->ring[c->ring_head] = t;
    c->ring_head = (c->ring_head + 1) % CB_PUB_RING;
    c->inflight++;
    st.outstanding++;
    st.sent++;

    if (cb_in_window(t)) {
        st.sent_window++;
    }

    cb_write(c, req, (size_t) m);
}


static void
cb_send_due(int64_t now)
{
    uint64_t    due, n;
    uint32_t    g, member, u;
    cb_conn_t  *c;

    due = (uint64_t) ((double) (now - st.t_run) / 1e9 * cf.rate);

    if (due <= st.offered) {
        return;
    }

    n = due - st.offered;
    if (n > 5000) {
        st.skipped += n - 5000;         /* we fell behind: not made up */
        st.offered += n - 5000;
        n = 5000;
    }

    while (n--) {
        g = (uint32_t) (st.offered % n_groups);
        member = (uint32_t) ((st.offered / n_groups) % cf.group);
        st.offered++;

        if (cf.window && st.outstanding >= cf.window) {
            st.skipped++;
            continue;
        }

        if (cf.system == CB_SYS_NCHAN) {
            cb_publish(g);
            continue;
        }

        u = g * cf.group + member;
        c = &conns[u];

        if (c->state != CB_READY) {
            st.skipped++;
            continue;
        }

        cb_send_message(c);
    }
}


/*
 * One message per conversation, answered before the warm-up starts: the
 * gateway fills its membership cache (Redis, from PostgreSQL) on a
 * conversation's first message, and the figures are about the steady
 * state, not about the cache of conversations made a second ago.
 */
static void
cb_prime(void)
{
    uint32_t    g;
    cb_conn_t  *c;

    for (g = 0; g < n_groups; g++) {
        c = &conns[g * cf.group];

        if (c->state == CB_READY) {
            cb_send_message(c);
        }
    }
}


static void
cb_heartbeats(int64_t now)
{
    uint32_t    i;
    cb_conn_t  *c;

    for (i = 0; i < cf.clients; i++) {
        c = &conns[i];

        if (c->state == CB_READY && c->hb_ms
            && now - c->last_tx >= (int64_t) c->hb_ms * 1000000 - 500000000)
        {
            cb_ws_send(c, "\n", 1);
        }
    }
}


/* --- memory and CPU of the systems under test --- */

static uint64_t
cb_proc_rss_kb(int pid)
{
    char      path[64], line[256];
    FILE     *f;
    uint64_t  kb;

    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }

    kb = 0;
    while (fgets(line, sizeof(line), f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtoull(line + 6, NULL, 10);
            break;
        }
    }

    fclose(f);
    return kb;
}


/* utime + stime in seconds */
static double
cb_proc_cpu(int pid)
{
    char                path[64], buf[1024], *p;
    FILE               *f;
    unsigned long long  ut, stm;

    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }

    if (fgets(buf, sizeof(buf), f) == NULL) {
        fclose(f);
        return 0;
    }
    fclose(f);

    p = strrchr(buf, ')');
    if (p == NULL
        || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                  "%llu %llu", &ut, &stm) != 2)
    {
        return 0;
    }

    return (double) (ut + stm) / (double) sysconf(_SC_CLK_TCK);
}


/* the children of ppid (nginx's workers) */
static int
cb_children(int ppid, int *out, int max)
{
    int             n, pid, pp;
    char            path[64], buf[512], *p;
    DIR            *d;
    FILE           *f;
    struct dirent  *de;

    d = opendir("/proc");
    if (d == NULL) {
        return 0;
    }

    n = 0;

    while ((de = readdir(d)) != NULL && n < max) {
        pid = atoi(de->d_name);
        if (pid <= 0) {
            continue;
        }

        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        f = fopen(path, "r");
        if (f == NULL) {
            continue;
        }

        p = fgets(buf, sizeof(buf), f);
        fclose(f);

        if (p == NULL || (p = strrchr(buf, ')')) == NULL) {
            continue;
        }

        if (sscanf(p + 2, "%*c %d", &pp) == 1 && pp == ppid) {
            out[n++] = pid;
        }
    }

    closedir(d);
    return n;
}


static void
cb_sample(cb_sample_t *s)
{
    int            i, j, n, kids[64];
    char           line[256], *p;
    FILE          *f;
    struct rusage  ru;

    memset(s, 0, sizeof(*s));

    for (i = 0; i < cf.n_master; i++) {
        n = cb_children(cf.rss_master[i], kids, 64);
        for (j = 0; j < n; j++) {
            s->rss_kb += cb_proc_rss_kb(kids[j]);
            s->cpu_server += cb_proc_cpu(kids[j]);
        }
    }

    for (i = 0; i < cf.n_rss; i++) {
        s->rss_kb += cb_proc_rss_kb(cf.rss_pid[i]);
        s->cpu_server += cb_proc_cpu(cf.rss_pid[i]);
        n = cb_children(cf.rss_pid[i], kids, 64);
        for (j = 0; j < n; j++) {
            s->cpu_server += cb_proc_cpu(kids[j]);
        }
    }

    for (i = 0; i < cf.n_cpu; i++) {
        s->cpu_aux += cb_proc_cpu(cf.cpu_pid[i]);
        n = cb_children(cf.cpu_pid[i], kids, 64);
        for (j = 0; j < n; j++) {
            s->cpu_aux += cb_proc_cpu(kids[j]);
        }
    }

    if (getrusage(RUSAGE_SELF, &ru) == 0) {
        s->cpu_self = (double) ru.ru_utime.tv_sec
                      + (double) ru.ru_utime.tv_usec / 1e6
                      + (double) ru.ru_stime.tv_sec
                      + (double) ru.ru_stime.tv_usec / 1e6;
    }

    f = fopen("/proc/net/sockstat", "r");
    if (f != NULL) {
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "TCP:", 4) == 0) {
                p = strstr(line, " inuse ");
                if (p) {
                    s->tcp_inuse = strtoull(p + 7, NULL, 10);
                }
                p = strstr(line, " mem ");
                if (p) {
                    s->sock_pages = strtoull(p + 5, NULL, 10);
                }
                break;
            }
        }
        fclose(f);
    }

    f = fopen("/proc/meminfo", "r");
    if (f != NULL) {
        while (fgets(line, sizeof(line), f)) {
            if (strncmp(line, "Slab:", 5) == 0) {
                s->slab_kb = strtoull(line + 5, NULL, 10);
                break;
            }
        }
        fclose(f);
    }
}


/* --- setup --- */

static void
cb_raise_nofile(uint32_t want)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        cb_die("getrlimit(): %s", strerror(errno));
    }

    if (rl.rlim_cur >= want) {
        return;
    }

    rl.rlim_cur = want;
    if (rl.rlim_max < want) {
        rl.rlim_max = want;         /* needs CAP_SYS_RESOURCE */
    }

    if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
        (void) getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        (void) setrlimit(RLIMIT_NOFILE, &rl);
        fprintf(stderr, "chat_bench: RLIMIT_NOFILE is %lu, fewer than the "
                "%u descriptors wanted\n", (unsigned long) rl.rlim_cur, want);
    }
}


/* the conversations of direct (pairs) and fan-out (groups) on ngx_chat:
 * POST {api}/conversations as the first member of each group */
static void
cb_create_conversations(void)
{
    int         status;
    char       *body, *resp, *p, *q, user[128], path[256];
    size_t      cap, len;
    uint32_t    g, i;
    cb_http_t   h;
    int64_t     t0;

    memset(&h, 0, sizeof(h));
    h.fd = -1;
    h.addr.sin_family = AF_INET;
    h.addr.sin_port = htons((uint16_t) cf.port);
    (void) inet_pton(AF_INET, cf.host, &h.addr.sin_addr);

    cap = 64 + (size_t) cf.group * 80;
    body = malloc(cap);
    if (body == NULL) {
        cb_die("out of memory");
    }

    snprintf(path, sizeof(path), "%s/conversations", cf.api_path);

    t0 = cb_now();

    for (g = 0; g < n_groups; g++) {
        len = (size_t) snprintf(body, cap, "{\"type\":\"%s\",\"members\":[",
                                cf.group == 2 ? "direct" : "group");

        for (i = 1; i < cf.group; i++) {
            snprintf(user, sizeof(user), "%s-u%u", cf.prefix,
                     g * cf.group + i);
            len += (size_t) snprintf(body + len, cap - len, "%s\"%s\"",
                                     i > 1 ? "," : "", user);
        }
        snprintf(body + len, cap - len, "]}");

        resp = NULL;
        status = cb_http_post(&h, path, jwts[g * cf.group], body, &resp);

        if (status != 200 && status != 201) {
            cb_die("POST %s: status %d: %s", path, status,
                   resp ? resp : "(no answer)");
        }

        p = strstr(resp, "\"conversationId\"");
        if (p == NULL) {
            cb_die("POST %s: no conversationId in %s", path, resp);
        }
        p += 16;
        p += strspn(p, " \t:");
        p += *p == '"';
        q = strchr(p, '"');
        if (q == NULL) {
            cb_die("POST %s: bad answer %s", path, resp);
        }

        convs[g] = strndup(p, (size_t) (q - p));
        if (convs[g] == NULL) {
            cb_die("out of memory");
        }

        free(resp);
    }

    cb_http_close(&h);
    free(body);

    fprintf(stderr, "chat_bench: %u conversations created in %.1f s\n",
            n_groups, (double) (cb_now() - t0) / 1e9);
}


/* --- report --- */

static const char *cb_system_names[] = { "ngx_chat", "rabbitmq", "nchan" };
static const char *cb_scenario_names[] = { "density", "direct", "fanout",
                                           "storm" };


static void
cb_hist_json(FILE *f, const char *name, const cb_hist_t *h, int comma)
{
    fprintf(f, "    \"%s\": {\"count\": %" PRIu64 ", \"p50\": %.3f, "
            "\"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}%s\n",
            name, h->count, cb_hist_quantile(h, 0.5) / 1e6,
            cb_hist_quantile(h, 0.99) / 1e6,
            cb_hist_quantile(h, 0.999) / 1e6, h->max_ns / 1e6,
            comma ? "," : "");
}


static void
cb_hist_line(const char *name, const cb_hist_t *h)
{
    if (h->count == 0) {
        printf("  %-22s (none)\n", name);
        return;
    }

    printf("  %-22s p50 %8.3f  p99 %8.3f  p99.9 %8.3f  max %8.3f ms"
           "  (n=%" PRIu64 ")\n",
           name, cb_hist_quantile(h, 0.5) / 1e6,
           cb_hist_quantile(h, 0.99) / 1e6,
           cb_hist_quantile(h, 0.999) / 1e6, h->max_ns / 1e6, h->count);
}


static void
cb_report(const cb_sample_t *s0, const cb_sample_t *s1, double wall,
    const cb_sample_t *c0, const cb_sample_t *c1)
{
    FILE     *f;
    double    secs, per_session, rss_per, sock_per, slab_per, msg_rate,
              dlv_rate, sess_rate, setup_secs, cpu_srv, cpu_aux, cpu_self;
    int64_t   rss_delta, sock_delta, slab_delta;

    secs = st.t_end && st.t_measure
           ? (double) (st.t_end - st.t_measure) / 1e9 : 0;
    setup_secs = st.t_all_ready && st.t_begin
                 ? (double) (st.t_all_ready - st.t_begin) / 1e9 : 0;

    msg_rate = secs > 0 ? (double) st.sent_window / secs : 0;
    dlv_rate = secs > 0 ? (double) st.deliveries_window / secs : 0;
    sess_rate = setup_secs > 0 ? (double) st.ready / setup_secs : 0;

    rss_delta = (int64_t) s1->rss_kb - (int64_t) s0->rss_kb;
    sock_delta = (int64_t) s1->sock_pages - (int64_t) s0->sock_pages;
    slab_delta = (int64_t) s1->slab_kb - (int64_t) s0->slab_kb;
    rss_per = st.ready ? (double) rss_delta * 1024 / (double) st.ready : 0;
    sock_per = st.ready
               ? (double) sock_delta * 4096 / (double) st.ready : 0;
    slab_per = st.ready ? (double) slab_delta * 1024 / (double) st.ready : 0;
    per_session = rss_per + sock_per;

    /* CPU: over the measured window (direct, fan-out), else the run */
    cpu_srv = wall > 0 ? (c1->cpu_server - c0->cpu_server) / wall : 0;
    cpu_aux = wall > 0 ? (c1->cpu_aux - c0->cpu_aux) / wall : 0;
    cpu_self = wall > 0 ? (c1->cpu_self - c0->cpu_self) / wall : 0;

    printf("== chat_bench %s %s%s%s: %u clients, group %u ==\n",
           cb_system_names[cf.system], cb_scenario_names[cf.scenario],
           cf.label ? " " : "", cf.label ? cf.label : "", cf.clients,
           cf.group);
    printf("  %-22s %" PRIu64 " ready, %" PRIu64 " failed, %" PRIu64
           " dropped, %" PRIu64 " ERROR frames%s%s\n", "sessions",
           st.ready, st.failed, st.dropped, st.errors,
           *stop_reason ? ", stopped: " : "", stop_reason);
    printf("  %-22s %.2f s (%.0f sessions/s)\n", "setup", setup_secs,
           sess_rate);
    cb_hist_line("setup latency", &st.setup);

    if (cf.scenario == CB_SC_DENSITY) {
        printf("  %-22s %+.1f MiB gateway RSS, %+.1f MiB socket memory, "
               "%+.1f MiB slab\n", "memory",
               rss_delta / 1024.0, sock_delta * 4096 / 1048576.0,
               slab_delta / 1024.0);
        printf("  %-22s %.0f B (RSS %.0f + sockets %.0f; slab %.0f not "
               "counted)\n", "per session", per_session, rss_per, sock_per,
               slab_per);
    }

    if (cf.scenario == CB_SC_DIRECT || cf.scenario == CB_SC_FANOUT) {
        printf("  %-22s %.1f s measured, %.0f msg/s sent (offered %.0f), "
               "%" PRIu64 " skipped\n", "load", secs, msg_rate, cf.rate,
               st.skipped);
        printf("  %-22s %.0f deliveries/s, %" PRIu64 " of the window's "
               "messages delivered\n", "deliveries", dlv_rate,
               st.delivered_of_window);
        cb_hist_line("SEND->MESSAGE", &st.msg);
        cb_hist_line(cf.system == CB_SYS_NCHAN ? "POST->answer"
                                               : "SEND->RECEIPT", &st.rcpt);
    }

    printf("  %-22s server %.2f, aux %.2f, load generator %.2f "
           "(over %.1f s)\n", "CPU cores busy", cpu_srv, cpu_aux, cpu_self,
           wall);

    if (cf.json == NULL) {
        return;
    }

    f = fopen(cf.json, "w");
    if (f == NULL) {
        cb_die("%s: %s", cf.json, strerror(errno));
    }

    fprintf(f, "{\n  \"tool\": \"chat_bench\",\n"
            "  \"system\": \"%s\",\n  \"scenario\": \"%s\",\n"
            "  \"label\": \"%s\",\n",
            cb_system_names[cf.system], cb_scenario_names[cf.scenario],
            cf.label ? cf.label : "");
    fprintf(f, "  \"params\": {\"clients\": %u, \"group\": %u, "
            "\"rate\": %.0f, \"duration\": %.1f, \"size\": %u, "
            "\"heartbeat_ms\": %u, \"sources\": %u, \"window\": %u},\n",
            cf.clients, cf.group, cf.rate, cf.duration, cf.size, cf.hb_ms,
            cf.sources, cf.window);
    fprintf(f, "  \"sessions\": {\"ready\": %" PRIu64 ", \"failed\": %"
            PRIu64 ", \"dropped\": %" PRIu64 ", \"error_frames\": %" PRIu64
            ", \"setup_s\": %.3f, \"per_s\": %.1f},\n",
            st.ready, st.failed, st.dropped, st.errors, setup_secs,
            sess_rate);
    fprintf(f, "  \"throughput\": {\"measured_s\": %.3f, \"sent\": %"
            PRIu64 ", \"skipped\": %" PRIu64 ", \"msg_per_s\": %.1f, "
            "\"deliveries_per_s\": %.1f, \"delivered_of_window\": %"
            PRIu64 ", \"receipts\": %" PRIu64 "},\n",
            secs, st.sent_window, st.skipped, msg_rate, dlv_rate,
            st.delivered_of_window, st.receipts);
    fprintf(f, "  \"memory\": {\"sessions\": %" PRIu64 ", \"rss_kb\": %"
            PRId64 ", \"sock_pages\": %" PRId64 ", \"slab_kb\": %" PRId64
            ", \"tcp_inuse\": %" PRIu64 ", \"bytes_per_session\": %.0f, "
            "\"rss_per_session\": %.0f, \"sock_per_session\": %.0f, "
            "\"slab_per_session\": %.0f},\n",
            st.ready, rss_delta, sock_delta, slab_delta, s1->tcp_inuse,
            cf.scenario == CB_SC_DENSITY ? per_session : 0,
            rss_per, sock_per, slab_per);
    fprintf(f, "  \"cpu\": {\"wall_s\": %.3f, \"server\": %.3f, "
            "\"aux\": %.3f, \"self\": %.3f},\n",
            wall, cpu_srv, cpu_aux, cpu_self);
    fprintf(f, "  \"latency_ms\": {\n");
    cb_hist_json(f, "message", &st.msg, 1);
    cb_hist_json(f, "receipt", &st.rcpt, 1);
    cb_hist_json(f, "setup", &st.setup, 0);
    fprintf(f, "  },\n  \"stopped\": \"%s\"\n}\n", stop_reason);

    if (fclose(f) != 0) {
        cb_die("%s: %s", cf.json, strerror(errno));
    }
}


/* --- options --- */

static void
cb_usage(int rc)
{
    fprintf(rc ? stderr : stdout,
"usage: chat_bench [options]\n"
"  --system chat|rabbitmq|nchan   what is measured (chat)\n"
"  --scenario density|direct|fanout|storm\n"
"  --host A --port N              the server (127.0.0.1)\n"
"  --ws-path P                    WebSocket path (/ws/chat; rabbitmq /ws)\n"
"  --api-path P                   REST prefix (/chat/api)\n"
"  --sub-path P --pub-path P      nchan locations (/sub/ /pub/)\n"
"  --secret S                     JWT HS256 secret (env CHAT_JWT_SECRET)\n"
"  --clients N                    sessions (1000)\n"
"  --group N                      members per conversation (direct: 2)\n"
"  --rate R                       messages/s offered in total (1000)\n"
"  --duration S --warmup S        measured and unmeasured seconds (5, 1)\n"
"  --hold S                       density: seconds idle before measuring\n"
"  --size B                       message content bytes (64)\n"
"  --heartbeat MS                 STOMP heart-beat asked for (10000)\n"
"  --sources N                    source addresses 127.0.0.2.. (8)\n"
"  --inflight N                   connection setups at once (1000)\n"
"  --window N                     unanswered sends at most (0: no limit)\n"
"  --publishers N                 nchan HTTP publisher connections (4)\n"
"  --prefix S                     user/topic name prefix (b<pid>)\n"
"  --rss-master PID               count RSS/CPU of PID's children\n"
"  --rss-pid PID                  count RSS/CPU of PID (and CPU of its "
"children)\n"
"  --cpu-pid PID                  count CPU of PID as auxiliary\n"
"  --connect-timeout S            give up on setup after S (120)\n"
"  --max-time S                   hard stop (600)\n"
"  --no-prime                     ngx_chat direct/fanout: no first message\n"
"                                 per conversation before the warm-up\n"
"  --label S --json FILE          the results' label and JSON file\n");
    exit(rc);
}


static void
cb_options(int argc, char **argv)
{
    int                  o, idx;
    static char          prefix[32];
    static struct option  opts[] = {
        { "system", 1, NULL, 'S' },      { "scenario", 1, NULL, 's' },
        { "host", 1, NULL, 'h' },        { "port", 1, NULL, 'p' },
        { "ws-path", 1, NULL, 'w' },     { "api-path", 1, NULL, 'a' },
        { "sub-path", 1, NULL, 'u' },    { "pub-path", 1, NULL, 'P' },
        { "secret", 1, NULL, 'k' },      { "clients", 1, NULL, 'n' },
        { "group", 1, NULL, 'g' },       { "rate", 1, NULL, 'r' },
        { "duration", 1, NULL, 'd' },    { "warmup", 1, NULL, 'W' },
        { "hold", 1, NULL, 'H' },        { "size", 1, NULL, 'z' },
        { "heartbeat", 1, NULL, 'b' },   { "sources", 1, NULL, 'o' },
        { "inflight", 1, NULL, 'i' },    { "window", 1, NULL, 'x' },
        { "publishers", 1, NULL, 'B' },  { "prefix", 1, NULL, 'f' },
        { "rss-master", 1, NULL, 'M' },  { "rss-pid", 1, NULL, 'R' },
        { "cpu-pid", 1, NULL, 'C' },     { "connect-timeout", 1, NULL, 'T' },
        { "max-time", 1, NULL, 'm' },    { "label", 1, NULL, 'l' },
        { "json", 1, NULL, 'j' },        { "help", 0, NULL, '?' },
        { "no-prime", 0, NULL, 'N' },
        { NULL, 0, NULL, 0 }
    };

    cf.system = CB_SYS_CHAT;
    cf.scenario = CB_SC_DIRECT;
    cf.host = "127.0.0.1";
    cf.port = 8080;
    cf.ws_path = NULL;
    cf.api_path = "/chat/api";
    cf.sub_path = "/sub/";
    cf.pub_path = "/pub/";
    cf.secret = getenv("CHAT_JWT_SECRET");
    cf.clients = 1000;
    cf.group = 0;
    cf.rate = 1000;
    cf.duration = 5;
    cf.warmup = 1;
    cf.hold = 3;
    cf.size = 64;
    cf.hb_ms = 10000;
    cf.sources = 8;
    cf.inflight = 1000;
    cf.window = 0;
    cf.pubs = 4;
    cf.connect_timeout = 120;
    cf.max_time = 600;
    cf.prime = 1;

    snprintf(prefix, sizeof(prefix), "b%ld", (long) getpid());
    cf.prefix = prefix;

    while ((o = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        switch (o) {
        case 'S':
            if (strcmp(optarg, "chat") == 0
                || strcmp(optarg, "ngx_chat") == 0)
            {
                cf.system = CB_SYS_CHAT;
            } else if (strncmp(optarg, "rabbit", 6) == 0) {
                cf.system = CB_SYS_RABBIT;
            } else if (strcmp(optarg, "nchan") == 0) {
                cf.system = CB_SYS_NCHAN;
            } else {
                cb_usage(2);
            }
            break;
        case 's':
            if (strcmp(optarg, "density") == 0) {
                cf.scenario = CB_SC_DENSITY;
            } else if (strcmp(optarg, "direct") == 0) {
                cf.scenario = CB_SC_DIRECT;
            } else if (strcmp(optarg, "fanout") == 0) {
                cf.scenario = CB_SC_FANOUT;
            } else if (strcmp(optarg, "storm") == 0) {
                cf.scenario = CB_SC_STORM;
            } else {
                cb_usage(2);
            }
            break;
        case 'h': cf.host = optarg; break;
        case 'p': cf.port = atoi(optarg); break;
        case 'w': cf.ws_path = optarg; break;
        case 'a': cf.api_path = optarg; break;
        case 'u': cf.sub_path = optarg; break;
        case 'P': cf.pub_path = optarg; break;
        case 'k': cf.secret = optarg; break;
        case 'n': cf.clients = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'g': cf.group = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'r': cf.rate = strtod(optarg, NULL); break;
        case 'd': cf.duration = strtod(optarg, NULL); break;
        case 'W': cf.warmup = strtod(optarg, NULL); break;
        case 'H': cf.hold = strtod(optarg, NULL); break;
        case 'z': cf.size = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'b': cf.hb_ms = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'o': cf.sources = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'i': cf.inflight = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'x': cf.window = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'B': cf.pubs = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'f': cf.prefix = optarg; break;
        case 'N': cf.prime = 0; break;
        case 'M':
            if (cf.n_master < CB_MAX_PIDS) {
                cf.rss_master[cf.n_master++] = atoi(optarg);
            }
            break;
        case 'R':
            if (cf.n_rss < CB_MAX_PIDS) {
                cf.rss_pid[cf.n_rss++] = atoi(optarg);
            }
            break;
        case 'C':
            if (cf.n_cpu < CB_MAX_PIDS) {
                cf.cpu_pid[cf.n_cpu++] = atoi(optarg);
            }
            break;
        case 'T': cf.connect_timeout = strtod(optarg, NULL); break;
        case 'm': cf.max_time = atoi(optarg); break;
        case 'l': cf.label = optarg; break;
        case 'j': cf.json = optarg; break;
        case '?':
        default:
            cb_usage(o == '?' && optind > 0
                     && strcmp(argv[optind - 1], "--help") == 0 ? 0 : 2);
        }
    }

    if (cf.ws_path == NULL) {
        cf.ws_path = cf.system == CB_SYS_RABBIT ? "/ws" : "/ws/chat";
    }

    if (cf.system == CB_SYS_CHAT && (cf.secret == NULL || *cf.secret == 0)) {
        cb_die("--secret or CHAT_JWT_SECRET is needed for ngx_chat");
    }

    if (cf.clients == 0 || cf.size > 4000 || cf.size < 24) {
        cb_die("bad --clients or --size (24..4000)");
    }

    if (cf.scenario == CB_SC_DIRECT) {
        cf.group = 2;

    } else if (cf.scenario != CB_SC_FANOUT) {
        cf.group = 1;

    } else if (cf.group == 0) {
        cf.group = 10;
    }

    if (cf.system == CB_SYS_NCHAN && cf.scenario != CB_SC_FANOUT) {
        cb_die("nchan: only the fanout scenario (raw WebSocket pub/sub)");
    }

    if (cf.clients % cf.group) {
        cf.clients -= cf.clients % cf.group;
        if (cf.clients == 0) {
            cb_die("fewer clients than one group");
        }
    }

    if (cf.group > 1001) {
        cb_die("--group: at most 1001 (the API's limit)");
    }
}


/* --- the run --- */

int
main(int argc, char **argv)
{
    int                  n, i, timeout;
    char                 user[128];
    double               wall;
    int64_t              now, deadline, last_hb, quiet_since, t_wall0;
    uint32_t             u, next, pending;
    int64_t              t_c0, t_c1;
    cb_sample_t          s0, s1, c0, c1;
    struct sigaction     sa;
    struct epoll_event   evs[1024];

    cb_options(argc, argv);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = cb_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);

    cb_raise_nofile(cf.clients + cf.pubs + 1024);

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

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1) {
        cb_die("epoll_create1(): %s", strerror(errno));
    }

    alarm((unsigned) cf.max_time);

    for (u = 0; u < cf.clients; u++) {
        conns[u].id = u;
        conns[u].fd = -1;
        conns[u].kind = CB_CLIENT;
        conns[u].state = CB_CLOSED;
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

    cb_sample(&s0);
    c0 = s0;
    t_wall0 = cb_now();
    t_c0 = t_wall0;
    t_c1 = 0;

    st.t_begin = cb_now();
    phase = CB_PH_CONNECT;
    next = 0;
    last_hb = st.t_begin;
    deadline = st.t_begin + (int64_t) (cf.connect_timeout * 1e9);
    quiet_since = 0;

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

            while (next < cf.clients && pending < cf.inflight) {
                cb_open(&conns[next], next);
                next++;
                st.opened++;
                pending++;
            }

            if (st.ready + st.failed >= cf.clients || now > deadline) {
                if (now > deadline) {
                    stop_reason = "connect-timeout";
                }

                st.t_all_ready = now;
                fprintf(stderr, "chat_bench: %" PRIu64 " sessions ready, %"
                        PRIu64 " failed in %.2f s\n", st.ready, st.failed,
                        (double) (now - st.t_begin) / 1e9);

                if (cf.scenario == CB_SC_STORM) {
                    phase = CB_PH_DONE;
                    break;
                }

                if (cf.scenario == CB_SC_DENSITY) {
                    phase = CB_PH_HOLD;
                    deadline = now + (int64_t) (cf.hold * 1e9);
                    break;
                }

                if (cf.prime && cf.system == CB_SYS_CHAT
                    && cf.scenario != CB_SC_STORM)
                {
                    phase = CB_PH_PRIME;
                    deadline = now + CB_PRIME_MAX_NS;
                    cb_prime();
                    break;
                }

                phase = CB_PH_RUN;
                st.t_run = now;
                st.t_measure = now + (int64_t) (cf.warmup * 1e9);
                deadline = st.t_measure + (int64_t) (cf.duration * 1e9);
            }
            break;

        case CB_PH_PRIME:
            if (st.outstanding == 0 || now > deadline) {
                fprintf(stderr, "chat_bench: %u conversations primed, %"
                        PRIu64 " unanswered, in %.2f s\n", n_groups,
                        st.outstanding,
                        (double) (now - st.t_all_ready) / 1e9);

                phase = CB_PH_RUN;
                st.t_run = now;
                st.t_measure = now + (int64_t) (cf.warmup * 1e9);
                deadline = st.t_measure + (int64_t) (cf.duration * 1e9);
            }
            break;

        case CB_PH_HOLD:
            if (now >= deadline) {
                phase = CB_PH_DONE;
            }
            break;

        case CB_PH_RUN:
            if (t_c0 < st.t_measure && now >= st.t_measure) {
                cb_sample(&c0);
                t_c0 = now;
            }

            if (now >= deadline) {
                st.t_end = now;
                cb_sample(&c1);
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
            cb_on_event(evs[i].data.ptr, evs[i].events);
        }
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
    (void) t_wall0;

    phase = CB_PH_DONE;
    cb_report(&s0, &s1, wall, &c0, &c1);

    for (u = 0; u < cf.clients; u++) {
        cb_close(&conns[u]);
    }

    if (cf.system == CB_SYS_NCHAN) {
        for (u = 0; u < cf.pubs; u++) {
            cb_close(&pubs[u]);
        }
    }

    return st.ready == 0 ? 1 : 0;
}
