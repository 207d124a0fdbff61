/*
 * floor.c: the machine's limit for fan-out: the same deliveries as the
 * fan-out scenario with no protocol at all. N receiving sockets on
 * loopback are connected to it; per "message" one pre-built WebSocket
 * frame (as big as a MESSAGE frame of the fan-out scenario) is written to
 * each socket of a group of G, one write() per delivery, non-blocking
 * sockets and epoll; the receivers (processes of floor itself) read and
 * count. What it measures is deliveries/s received: no gateway moves more
 * bytes to as many sockets on this machine (docs/BENCHMARKS.md, "The
 * floor").
 *
 * --batch K writes K frames (K messages of the group) per write() to each
 * socket: what a server that coalesces a socket's frames does; 1, the
 * default, is the floor as defined.
 *
 * usage: floor [--clients N] [--group G] [--frame B] [--duration S]
 *              [--warmup S] [--senders S] [--receivers R] [--sources K]
 *              [--batch K] [--label L] [--json FILE]
 */

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
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>


#define FL_MAX_PROCS   16
#define FL_COPIES      64           /* frames in one backlog write */
#define FL_RBUF        (256 * 1024)


/* what the processes share: counters, CPU marks */
typedef struct {
    volatile uint64_t  rx_bytes[FL_MAX_PROCS];    /* per receiver */
    volatile uint64_t  tx_frames[FL_MAX_PROCS];   /* per sender */
    volatile double    cpu0[2 * FL_MAX_PROCS];    /* at the window's start */
    volatile double    cpu1[2 * FL_MAX_PROCS];    /* at its end */
    volatile int       connected[FL_MAX_PROCS];   /* per receiver */
    volatile int       stop;
    volatile int64_t   t_measure;                 /* the measured window */
    volatile int64_t   t_end;
    uint64_t           rx[2];       /* bytes received at the marks */
    uint64_t           tx[2];       /* frames written at the marks */
    int64_t            t[2];        /* when the marks were taken */
} fl_shared_t;


typedef struct {
    int        fd;
    uint32_t   owed;                /* frames not written yet */
    uint32_t   off;                 /* bytes of the first one written */
} fl_sock_t;


static uint32_t      clients = 1000;
static uint32_t      group = 100;
static uint32_t      frame_len = 420;
static uint32_t      batch = 1;     /* frames per write() per socket */
static uint32_t      senders = 1;
static uint32_t      receivers = 1;
static uint32_t      sources = 8;
static double        duration = 5;
static double        warmup = 1;
static const char   *label = "";
static const char   *json;

static fl_shared_t  *sh;
static char         *frame;         /* FL_COPIES frames back to back */
static fl_sock_t    *socks;


static void fl_die(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
fl_die(const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    fprintf(stderr, "floor: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}


static int64_t
fl_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


static double
fl_cpu(void)
{
    struct rusage  ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }

    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6
           + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}


/* the counters, all processes' sums, at mark i (sender 0 takes them) */
static void
fl_count_mark(int i, int64_t now)
{
    uint32_t  k;
    uint64_t  rx, tx;

    rx = tx = 0;

    for (k = 0; k < receivers; k++) {
        rx += __atomic_load_n(&sh->rx_bytes[k], __ATOMIC_RELAXED);
    }

    for (k = 0; k < senders; k++) {
        tx += __atomic_load_n(&sh->tx_frames[k], __ATOMIC_RELAXED);
    }

    sh->rx[i] = rx;
    sh->tx[i] = tx;
    sh->t[i] = now;
}


/* the CPU marks of process slot k, taken once each when their time came;
 * slot 0 (the first sender) takes the counters' marks too */
static void
fl_cpu_marks(uint32_t k, int64_t now, int *m0, int *m1)
{
    if (!*m0 && now >= sh->t_measure) {
        sh->cpu0[k] = fl_cpu();
        *m0 = 1;
        if (k == 0) {
            fl_count_mark(0, now);
        }
    }

    if (!*m1 && now >= sh->t_end) {
        sh->cpu1[k] = fl_cpu();
        *m1 = 1;
        if (k == 0) {
            fl_count_mark(1, now);
        }
    }
}


/* one server->client text frame of frame_len bytes, FL_COPIES times */
static void
fl_build_frame(void)
{
    size_t    hdr, i;
    uint32_t  payload;
    char     *p;

    if (frame_len < 130 || frame_len > 65000) {
        fl_die("--frame: 130..65000 bytes");
    }

    hdr = 4;
    payload = frame_len - (uint32_t) hdr;

    frame = malloc((size_t) frame_len * FL_COPIES);
    if (frame == NULL) {
        fl_die("out of memory");
    }

    p = frame;
    p[0] = (char) 0x81;                 /* FIN, text */
    p[1] = 126;                         /* 16-bit length follows */
    p[2] = (char) (payload >> 8);
    p[3] = (char) (payload & 0xff);
    memset(p + hdr, 'x', payload);

    for (i = 1; i < FL_COPIES; i++) {
        memcpy(frame + i * frame_len, frame, frame_len);
    }
}


/* --- a receiver: connects its share, reads and counts until told --- */

static void
fl_receiver(uint32_t k, uint16_t port)
{
    int                  ep, fd, one, n, i, m0, m1;
    char                *buf;
    ssize_t              r;
    int64_t              now;
    uint32_t             u, lo, hi, open_fds;
    struct sockaddr_in   sa, src;
    struct epoll_event   ev, evs[256];

    lo = (uint32_t) ((uint64_t) clients * k / receivers);
    hi = (uint32_t) ((uint64_t) clients * (k + 1) / receivers);

    buf = malloc(FL_RBUF);
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (buf == NULL || ep == -1) {
        fl_die("receiver: out of memory or epoll");
    }

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    for (u = lo; u < hi; u++) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd == -1) {
            fl_die("socket(): %s", strerror(errno));
        }

        one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
#ifdef IP_BIND_ADDRESS_NO_PORT
        (void) setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
                          sizeof(one));
#endif
        memset(&src, 0, sizeof(src));
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl(0x7f000002 + u % sources);

        if (bind(fd, (struct sockaddr *) &src, sizeof(src)) == -1) {
            fl_die("bind(): %s", strerror(errno));
        }

        /* blocking: the sender accepts as we go */
        if (connect(fd, (struct sockaddr *) &sa, sizeof(sa)) == -1) {
            fl_die("connect(): %s", strerror(errno));
        }

        if (fcntl(fd, F_SETFL, O_NONBLOCK) == -1) {
            fl_die("fcntl(): %s", strerror(errno));
        }

        ev.events = EPOLLIN | EPOLLRDHUP;
        ev.data.fd = fd;

        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == -1) {
            fl_die("epoll_ctl(): %s", strerror(errno));
        }
    }

    sh->connected[k] = 1;
    open_fds = hi - lo;
    m0 = m1 = 0;

    while (open_fds && !sh->stop) {
        n = epoll_wait(ep, evs, 256, 5);
        now = fl_now();
        fl_cpu_marks(senders + k, now, &m0, &m1);

        for (i = 0; i < n; i++) {
            fd = evs[i].data.fd;

            for ( ;; ) {
                r = read(fd, buf, FL_RBUF);

                if (r > 0) {
                    __atomic_add_fetch(&sh->rx_bytes[k], (uint64_t) r,
                                       __ATOMIC_RELAXED);
                    continue;
                }

                if (r == -1 && errno == EINTR) {
                    continue;
                }

                if (r == 0 || errno != EAGAIN) {
                    (void) epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                    open_fds--;
                }

                break;
            }
        }
    }

    _exit(0);
}


/* --- a sender: one write() per delivery, backlogs kept in order --- */

/* the socket's backlog, as much of it as the kernel takes */
static void
fl_flush(fl_sock_t *s, uint64_t *owed_total)
{
    size_t    len;
    ssize_t   n;
    uint32_t  done;

    while (s->owed) {
        len = (size_t) s->owed * frame_len - s->off;
        if (len > (size_t) FL_COPIES * frame_len - s->off) {
            len = (size_t) FL_COPIES * frame_len - s->off;
        }

        n = write(s->fd, frame + s->off, len);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            if (n == -1 && errno != EAGAIN) {
                fl_die("write(): %s", strerror(errno));
            }
            return;
        }

        s->off += (uint32_t) n;
        done = s->off / frame_len;
        s->off %= frame_len;
        s->owed -= done;
        *owed_total -= done;
    }
}


/* batch frames (batch messages of the group) to one socket, one write() */
static void
fl_deliver(fl_sock_t *s, uint64_t *owed_total)
{
    size_t   len;
    ssize_t  n;

    if (s->owed) {
        s->owed += batch;
        *owed_total += batch;
        return;
    }

    len = (size_t) frame_len * batch;

    do {
        n = write(s->fd, frame, len);
    } while (n == -1 && errno == EINTR);

    if (n == (ssize_t) len) {
        return;
    }

    if (n == -1) {
        if (errno != EAGAIN) {
            fl_die("write(): %s", strerror(errno));
        }
        n = 0;
    }

    s->owed = batch - (uint32_t) n / frame_len;
    s->off = (uint32_t) n % frame_len;
    *owed_total += s->owed;
}


static void
fl_sender(uint32_t k)
{
    int                  ep, n, i, m0, m1, timeout;
    int64_t              now;
    uint32_t             g, n_groups, u, first;
    uint64_t             owed, limit, msgs;
    struct epoll_event   ev, evs[256];

    n_groups = clients / group;

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep == -1) {
        fl_die("epoll_create1(): %s", strerror(errno));
    }

    /* this sender's groups: k, k + senders, ... */
    for (g = k; g < n_groups; g += senders) {
        for (u = g * group; u < (g + 1) * group; u++) {
            ev.events = EPOLLOUT | EPOLLET;
            ev.data.ptr = &socks[u];

            if (epoll_ctl(ep, EPOLL_CTL_ADD, socks[u].fd, &ev) == -1) {
                fl_die("epoll_ctl(): %s", strerror(errno));
            }
        }
    }

    /* at most a few frames owed per socket before waiting for them */
    limit = (uint64_t) clients / senders * 4;
    owed = 0;
    msgs = 0;
    m0 = m1 = 0;
    g = k;
    first = 1;

    for ( ;; ) {
        now = fl_now();
        fl_cpu_marks(k, now, &m0, &m1);

        if (now >= sh->t_end || sh->stop) {
            break;
        }

        if (!first) {
            for (u = g * group; u < (g + 1) * group; u++) {
                fl_deliver(&socks[u], &owed);
            }

            __atomic_add_fetch(&sh->tx_frames[k], (uint64_t) group * batch,
                               __ATOMIC_RELAXED);
            msgs++;

            g += senders;
            if (g >= n_groups) {
                g = k;
            }
        }

        first = 0;

        /* the backlogs: every few messages, and until under the limit */
        if (owed == 0 && msgs % 16) {
            continue;
        }

        timeout = owed > limit ? 5 : 0;

        do {
            n = epoll_wait(ep, evs, 256, timeout);

            for (i = 0; i < n; i++) {
                fl_flush(evs[i].data.ptr, &owed);
            }
        } while (n == 256 || (owed > limit / 2 && timeout
                              && fl_now() < sh->t_end
                              && (n > 0 || owed > limit)));
    }
}


/* --- the run --- */

static void
fl_options(int argc, char **argv)
{
    int                  o, idx;
    static struct option  opts[] = {
        { "clients", 1, NULL, 'n' },    { "group", 1, NULL, 'g' },
        { "frame", 1, NULL, 'f' },      { "duration", 1, NULL, 'd' },
        { "warmup", 1, NULL, 'W' },     { "senders", 1, NULL, 's' },
        { "receivers", 1, NULL, 'r' },  { "sources", 1, NULL, 'o' },
        { "label", 1, NULL, 'l' },      { "json", 1, NULL, 'j' },
        { "batch", 1, NULL, 'b' },
        { "help", 0, NULL, 'h' },       { NULL, 0, NULL, 0 }
    };

    while ((o = getopt_long(argc, argv, "", opts, &idx)) != -1) {
        switch (o) {
        case 'n': clients = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'g': group = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'f': frame_len = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'd': duration = strtod(optarg, NULL); break;
        case 'W': warmup = strtod(optarg, NULL); break;
        case 's': senders = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'r': receivers = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'o': sources = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'b': batch = (uint32_t) strtoul(optarg, NULL, 10); break;
        case 'l': label = optarg; break;
        case 'j': json = optarg; break;
        default:
            printf("usage: floor [--clients N] [--group G] [--frame B] "
                   "[--duration S] [--warmup S]\n"
                   "             [--senders S] [--receivers R] "
                   "[--sources K] [--batch K] [--label L]\n"
                   "             [--json FILE]\n");
            exit(o == 'h' ? 0 : 2);
        }
    }

    if (group == 0 || clients < group || duration <= 0 || warmup < 0
        || senders == 0 || senders > FL_MAX_PROCS || receivers == 0
        || receivers > FL_MAX_PROCS || sources == 0 || sources > 250
        || batch == 0 || batch > FL_COPIES)
    {
        fl_die("bad options: --group >= 1, --clients >= --group, "
               "--duration > 0, 1..%d senders and receivers, 1..250 "
               "sources, --batch 1..%d", FL_MAX_PROCS, FL_COPIES);
    }

    clients -= clients % group;

    if (clients / group < senders) {
        fl_die("fewer groups than --senders");
    }
}


static void
fl_raise_nofile(uint32_t want)
{
    struct rlimit  rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
        fl_die("getrlimit(): %s", strerror(errno));
    }

    if (rl.rlim_cur >= want) {
        return;
    }

    rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;

    if (setrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur < want) {
        fl_die("RLIMIT_NOFILE %lu: fewer than the %u descriptors needed",
               (unsigned long) rl.rlim_cur, want);
    }
}


int
main(int argc, char **argv)
{
    int                  lfd, fd, one, status;
    FILE                *f;
    double               secs, dlv, written, cpu_tx, cpu_rx;
    pid_t                rpid[FL_MAX_PROCS], spid[FL_MAX_PROCS];
    int64_t              t0;
    uint32_t             k, u;
    socklen_t            slen;
    struct sockaddr_in   sa;
    struct sigaction     sig;

    fl_options(argc, argv);
    fl_build_frame();
    fl_raise_nofile(clients + 64);

    memset(&sig, 0, sizeof(sig));
    sig.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sig, NULL);

    sh = mmap(NULL, sizeof(fl_shared_t), PROT_READ | PROT_WRITE,
              MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    socks = calloc(clients, sizeof(fl_sock_t));

    if (sh == MAP_FAILED || socks == NULL) {
        fl_die("out of memory");
    }

    memset((void *) sh, 0, sizeof(fl_shared_t));

    lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd == -1) {
        fl_die("socket(): %s", strerror(errno));
    }

    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    slen = sizeof(sa);

    if (bind(lfd, (struct sockaddr *) &sa, sizeof(sa)) == -1
        || listen(lfd, 4096) == -1
        || getsockname(lfd, (struct sockaddr *) &sa, &slen) == -1)
    {
        fl_die("listen: %s", strerror(errno));
    }

    /* the window is set once every socket is up: until then, never */
    sh->t_measure = INT64_MAX;
    sh->t_end = INT64_MAX;

    t0 = fl_now();

    for (k = 0; k < receivers; k++) {
        rpid[k] = fork();
        if (rpid[k] == -1) {
            fl_die("fork(): %s", strerror(errno));
        }
        if (rpid[k] == 0) {
            close(lfd);
            fl_receiver(k, ntohs(sa.sin_port));
        }
    }

    for (u = 0; u < clients; u++) {
        do {
            fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        } while (fd == -1 && errno == EINTR);

        if (fd == -1) {
            fl_die("accept(): %s", strerror(errno));
        }

        one = 1;
        (void) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        socks[u].fd = fd;
    }

    close(lfd);

    for (k = 0; k < receivers; k++) {
        while (!sh->connected[k]) {
            usleep(1000);
        }
    }

    fprintf(stderr, "floor: %u sockets up in %.2f s\n", clients,
            (double) (fl_now() - t0) / 1e9);

    sh->t_end = fl_now() + (int64_t) ((warmup + duration) * 1e9);
    sh->t_measure = sh->t_end - (int64_t) (duration * 1e9);

    for (k = 1; k < senders; k++) {
        spid[k] = fork();
        if (spid[k] == -1) {
            fl_die("fork(): %s", strerror(errno));
        }
        if (spid[k] == 0) {
            fl_sender(k);
            _exit(0);
        }
    }

    fl_sender(0);

    for (k = 1; k < senders; k++) {
        while (waitpid(spid[k], &status, 0) == -1 && errno == EINTR) {
            /* void */
        }
    }

    /* the receivers take their last CPU mark at t_end: let them see it */
    usleep(20000);
    sh->stop = 1;

    for (u = 0; u < clients; u++) {
        close(socks[u].fd);
    }

    for (k = 0; k < receivers; k++) {
        while (waitpid(rpid[k], &status, 0) == -1 && errno == EINTR) {
            /* void */
        }
    }

    secs = (double) (sh->t[1] - sh->t[0]) / 1e9;
    if (secs <= 0) {
        fl_die("no measured window");
    }

    dlv = (double) (sh->rx[1] - sh->rx[0]) / frame_len / secs;
    written = (double) (sh->tx[1] - sh->tx[0]) / secs;
    cpu_tx = cpu_rx = 0;

    for (k = 0; k < senders; k++) {
        cpu_tx += sh->cpu1[k] - sh->cpu0[k];
    }
    for (k = 0; k < receivers; k++) {
        cpu_rx += sh->cpu1[senders + k] - sh->cpu0[senders + k];
    }

    printf("== floor %s: %u sockets, group %u, %u-byte frames, %u per write,"
           " %u sender(s), %u receiver(s) ==\n", label, clients, group,
           frame_len, batch, senders, receivers);
    printf("  %-22s %.0f deliveries/s received (%.0f written), %.1f MB/s\n",
           "deliveries", dlv, written, dlv * frame_len / 1e6);
    printf("  %-22s senders %.2f, receivers %.2f (over %.1f s)\n",
           "CPU cores busy", cpu_tx / secs, cpu_rx / secs, secs);

    if (json == NULL) {
        return 0;
    }

    f = fopen(json, "w");
    if (f == NULL) {
        fl_die("%s: %s", json, strerror(errno));
    }

    fprintf(f, "{\n  \"tool\": \"floor\",\n  \"system\": \"floor\",\n"
            "  \"scenario\": \"floor\",\n  \"label\": \"%s\",\n"
            "  \"params\": {\"clients\": %u, \"group\": %u, \"frame\": %u, "
            "\"batch\": %u, \"duration\": %.1f, \"senders\": %u, "
            "\"receivers\": %u},\n"
            "  \"throughput\": {\"deliveries_per_s\": %.1f, "
            "\"written_per_s\": %.1f, \"bytes_per_s\": %.0f},\n"
            "  \"cpu\": {\"senders\": %.3f, \"receivers\": %.3f}\n}\n",
            label, clients, group, frame_len, batch, duration, senders,
            receivers,
            dlv, written, dlv * frame_len, cpu_tx / secs, cpu_rx / secs);

    if (fclose(f) != 0) {
        fl_die("%s: %s", json, strerror(errno));
    }

    return 0;
}
