/* cb_procs.c: --procs N: N processes, each with its own epoll loop over a
 * slice of the users; the parent starts their phases together, samples the
 * systems under test and merges the figures into one report. */

#include "cb_bench.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/wait.h>


#define CB_MSG_CONNECTED  1     /* the child's sessions are up (or not) */
#define CB_MSG_DONE       2     /* its run is over, its figures follow */
#define CB_CH_GONE        3     /* it exited (or was killed) */


/* child -> parent: the whole state of its figures, each time */
typedef struct {
    uint32_t     type;
    uint32_t     pad;
    double       cpu_self;      /* over the measured window, or the run */
    char         stop_reason[32];
    cb_stats_t   st;
} cb_msg_t;


/* parent -> child: every child's sessions are up at t0 */
typedef struct {
    int64_t      t0;
    double       rate;          /* --sweep: this step's offered rate */
} cb_go_t;


typedef struct {
    pid_t        pid;
    int          to;            /* the go; closed: close the sessions */
    int          from;          /* its messages */
    int          state;         /* the last message's type, or CB_CH_GONE */
    int          have;          /* last is valid */
    uint32_t     lo;
    uint32_t     hi;
    size_t       got;
    cb_msg_t     in;            /* being read */
    cb_msg_t     last;          /* the last one read whole */
} cb_child_t;


static cb_msg_t     out_msg;
static cb_child_t  *kids;
static uint32_t     n_kids;
static int          signalled;
static int64_t      kill_at;


/* --- a child --- */

static void
cb_child_send(uint32_t type)
{
    char     *p;
    size_t    left;
    ssize_t   n;

    memset(&out_msg, 0, sizeof(out_msg));
    out_msg.type = type;
    out_msg.st = st;
    out_msg.cpu_self = type == CB_MSG_DONE ? cb_own_cpu() : 0;
    snprintf(out_msg.stop_reason, sizeof(out_msg.stop_reason), "%s",
             stop_reason);

    p = (char *) &out_msg;
    left = sizeof(out_msg);

    while (left) {
        n = write(cf.ctl_out, p, left);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            _exit(3);                   /* the parent is gone */
        }

        p += n;
        left -= (size_t) n;
    }
}


void
cb_child_connected(void)
{
    cb_child_send(CB_MSG_CONNECTED);
}


/* the parent's pipe is readable: the go, or its end */
void
cb_child_ctl(void)
{
    ssize_t  n;
    cb_go_t  go;

    n = read(cf.ctl_in, &go, sizeof(go));

    if (n == -1 && (errno == EINTR || errno == EAGAIN)) {
        return;
    }

    if (n != (ssize_t) sizeof(go)) {
        stop_flag = SIGTERM;            /* the parent is gone */
        return;
    }

    if (phase == CB_PH_WAIT) {
        cb_after_connect(go.t0);
    }
}


/* --sweep: the next step at the parent's go, until it closes our pipe */
static void
cb_child_steps(void)
{
    char     *p;
    size_t    got;
    ssize_t   n;
    cb_go_t   go;

    for ( ;; ) {
        p = (char *) &go;
        got = 0;

        while (got < sizeof(go)) {
            n = read(cf.ctl_in, p + got, sizeof(go) - got);
            if (n == -1 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                return;
            }
            got += (size_t) n;
        }

        cb_step_begin(go.rate, go.t0);
        cb_loop();
        cb_child_send(CB_MSG_DONE);
    }
}


static void
cb_child_main(uint32_t k, int to_parent, int from_parent)
{
    char     c;
    ssize_t  n;

    cf.child = (int) k;
    cf.ctl_out = to_parent;
    cf.ctl_in = from_parent;
    cf.lo = kids[k].lo;
    cf.hi = kids[k].hi;

    /* the limits are the whole tool's: each process takes its share */
    cf.inflight = (cf.inflight + cf.procs - 1) / cf.procs;
    cf.window = (cf.window + cf.procs - 1) / cf.procs;
    if (cf.pubs > 1) {
        cf.pubs = (cf.pubs + cf.procs - 1) / cf.procs;
    }

    kids = NULL;                        /* the parent's, not ours */

    cb_start();
    cb_loop();
    cb_child_send(CB_MSG_DONE);

    if (cf.n_sweep) {
        cb_child_steps();
    }

    /* the sessions stay up while the parent measures: until it closes
     * our pipe */
    for ( ;; ) {
        n = read(cf.ctl_in, &c, 1);
        if (n == -1 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
    }

    cb_close_all();
    _exit(0);
}


/* --- the parent --- */

static void
cb_merge(const cb_stats_t *s)
{
    st.opened += s->opened;
    st.ready += s->ready;
    st.failed += s->failed;
    st.dropped += s->dropped;
    st.sent += s->sent;
    st.skipped += s->skipped;
    st.sent_window += s->sent_window;
    st.receipts += s->receipts;
    st.deliveries += s->deliveries;
    st.deliveries_window += s->deliveries_window;
    st.delivered_of_window += s->delivered_of_window;
    st.errors += s->errors;
    st.pub_errors += s->pub_errors;
    st.outstanding += s->outstanding;

    /* every process walks the same schedule */
    if (s->offered > st.offered) {
        st.offered = s->offered;
    }

    if (s->t_first_ready
        && (st.t_first_ready == 0 || s->t_first_ready < st.t_first_ready))
    {
        st.t_first_ready = s->t_first_ready;
    }

#define cb_max_of(f)  if (s->f > st.f) { st.f = s->f; }
    cb_max_of(t_all_ready);
    cb_max_of(t_run);
    cb_max_of(t_measure);
    cb_max_of(t_end);
    cb_max_of(t_last_delivery);
#undef cb_max_of

    cb_hist_merge(&st.msg, &s->msg);
    cb_hist_merge(&st.rcpt, &s->rcpt);
    cb_hist_merge(&st.setup, &s->setup);
}


static void
cb_kids_signal(int sig)
{
    uint32_t  k;

    for (k = 0; k < n_kids; k++) {
        if (kids[k].state != CB_CH_GONE) {
            (void) kill(kids[k].pid, sig);
        }
    }
}


static void
cb_kid_gone(cb_child_t *ch)
{
    if (ch->state == CB_CH_GONE) {
        return;
    }

    if (ch->state != CB_MSG_DONE) {
        fprintf(stderr, "chat_bench: process %u (users %u..%u) ended "
                "before its figures\n", (unsigned) (ch - kids), ch->lo,
                ch->hi - 1);
        if (*stop_reason == '\0') {
            stop_reason = "a load-generator process ended";
        }
    }

    ch->state = CB_CH_GONE;
    close(ch->from);
    ch->from = -1;
}


static void
cb_kid_read(cb_child_t *ch)
{
    ssize_t  n;

    for ( ;; ) {
        n = read(ch->from, (char *) &ch->in + ch->got,
                 sizeof(cb_msg_t) - ch->got);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n == -1 && errno == EAGAIN) {
            return;
        }

        if (n <= 0) {
            cb_kid_gone(ch);
            return;
        }

        ch->got += (size_t) n;

        if (ch->got == sizeof(cb_msg_t)) {
            ch->last = ch->in;
            ch->have = 1;
            ch->state = (int) ch->in.type;
            ch->got = 0;
        }
    }
}


/* reads the children's messages until each of them has reached want (or
 * is gone), or until the time until (0: no time limit) */
static void
cb_kids_wait(int want, int64_t until)
{
    int            timeout;
    int64_t        now;
    uint32_t       k, n, idx[64];
    struct pollfd  pfd[64];

    for ( ;; ) {
        now = cb_now();

        if (stop_flag && !signalled) {
            /* a signal or our own max-time: the children stop and send
             * what they have */
            signalled = 1;
            stop_reason = stop_flag == SIGALRM ? "max-time" : "signal";
            cb_kids_signal(SIGTERM);
            kill_at = now + 10000000000LL;
        }

        if (kill_at && now >= kill_at) {
            cb_kids_signal(SIGKILL);
            kill_at = 0;
        }

        n = 0;

        for (k = 0; k < n_kids; k++) {
            if (kids[k].state < want) {
                pfd[n].fd = kids[k].from;
                pfd[n].events = POLLIN;
                idx[n++] = k;
            }
        }

        if (n == 0 || (until && now >= until)) {
            return;
        }

        timeout = 100;
        if (until && (until - now) / 1000000 < timeout) {
            timeout = (int) ((until - now) / 1000000) + 1;
        }

        if (poll(pfd, n, timeout) <= 0) {
            continue;
        }

        for (k = 0; k < n; k++) {
            if (pfd[k].revents) {
                cb_kid_read(&kids[idx[k]]);
            }
        }
    }
}


static void
cb_kids_fork(void)
{
    int       a[2], b[2];
    pid_t     pid;
    uint32_t  k, j;

    for (k = 0; k < n_kids; k++) {
        kids[k].lo = (uint32_t) ((uint64_t) cf.clients * k / n_kids);
        kids[k].hi = (uint32_t) ((uint64_t) cf.clients * (k + 1) / n_kids);
        kids[k].from = -1;
        kids[k].to = -1;
    }

    fflush(stdout);
    fflush(stderr);

    for (k = 0; k < n_kids; k++) {
        if (pipe2(a, O_CLOEXEC) == -1 || pipe2(b, O_CLOEXEC) == -1) {
            cb_kids_signal(SIGKILL);
            cb_die("pipe2(): %s", strerror(errno));
        }

        pid = fork();

        if (pid == -1) {
            cb_kids_signal(SIGKILL);
            cb_die("fork(): %s", strerror(errno));
        }

        if (pid == 0) {
            for (j = 0; j < k; j++) {
                close(kids[j].from);
                close(kids[j].to);
            }
            close(a[0]);
            close(b[1]);
            cb_child_main(k, a[1], b[0]);
        }

        close(a[1]);
        close(b[0]);

        if (fcntl(a[0], F_SETFL, O_NONBLOCK) == -1) {
            cb_kids_signal(SIGKILL);
            cb_die("fcntl(): %s", strerror(errno));
        }

        kids[k].pid = pid;
        kids[k].from = a[0];
        kids[k].to = b[1];
    }
}


static void
cb_kids_go(int64_t t0)
{
    ssize_t   n;
    uint32_t  k;
    cb_go_t   go;

    go.t0 = t0;
    go.rate = cf.rate;

    for (k = 0; k < n_kids; k++) {
        if (kids[k].state != CB_MSG_CONNECTED) {
            continue;
        }

        do {
            n = write(kids[k].to, &go, sizeof(go));
        } while (n == -1 && errno == EINTR);
    }
}


/* --sweep: the children that ran the last step run the next one from t0 */
static void
cb_kids_next(int64_t t0)
{
    ssize_t   n;
    uint32_t  k;
    cb_go_t   go;

    go.t0 = t0;
    go.rate = cf.rate;

    for (k = 0; k < n_kids; k++) {
        if (kids[k].state != CB_MSG_DONE) {
            continue;
        }

        kids[k].state = CB_MSG_CONNECTED;

        do {
            n = write(kids[k].to, &go, sizeof(go));
        } while (n == -1 && errno == EINTR);

        if (n != (ssize_t) sizeof(go)) {
            cb_kid_gone(&kids[k]);
        }
    }
}


/* --sweep over the children: the parent times each step as in one run,
 * merges its figures, judges it and starts the next */
static int
cb_procs_sweep(int64_t t0)
{
    int           gone;
    double        wall, cpu;
    int64_t       t_c0, t_c1, t_measure, t_end, t_begin;
    uint32_t      i, k;
    cb_sample_t   c0, c1;

    for (i = 0; i < cf.n_sweep; i++) {
        if (i > 0) {
            cf.rate = cf.sweep[i];
            t0 = cb_now() + 20000000;
            cb_kids_next(t0);
        }

        t_measure = t0 + (int64_t) (cf.warmup * 1e9);
        t_end = t_measure + (int64_t) (cf.duration * 1e9);

        cb_kids_wait(CB_MSG_DONE, t_measure);
        cb_sample(&c0);
        t_c0 = cb_now();

        cb_kids_wait(CB_MSG_DONE, t_end);
        cb_sample(&c1);
        t_c1 = cb_now();

        cb_kids_wait(CB_MSG_DONE, 0);

        /* the step's figures: the children's, merged afresh */
        t_begin = st.t_begin;
        memset(&st, 0, sizeof(st));
        st.t_begin = t_begin;
        cpu = c1.cpu_self - c0.cpu_self;
        gone = 0;

        for (k = 0; k < n_kids; k++) {
            if (!kids[k].have || kids[k].state != CB_MSG_DONE) {
                gone = 1;
                continue;
            }

            cb_merge(&kids[k].last.st);
            cpu += kids[k].last.cpu_self;
        }

        c0.cpu_self = 0;
        c1.cpu_self = cpu;
        wall = (double) (t_c1 - t_c0) / 1e9;

        if (!cb_sweep_step(i, &c0, &c1, wall) || gone || stop_flag) {
            break;
        }
    }

    for (k = 0; k < n_kids; k++) {
        if (kids[k].to != -1) {
            close(kids[k].to);
            kids[k].to = -1;
        }
    }

    phase = CB_PH_DONE;
    cb_sweep_report();

    for (k = 0; k < n_kids; k++) {
        while (waitpid(kids[k].pid, NULL, 0) == -1 && errno == EINTR) {
            /* void */
        }
    }

    return st.ready == 0 ? 1 : 0;
}


int
cb_procs_run(void)
{
    double        wall, cpu;
    int64_t       t0, t_c0, t_c1, t_measure, t_end;
    uint32_t      k;
    uint64_t      ready, failed;
    cb_sample_t   s0, s1, c0, c1;

    n_kids = cf.procs;
    kids = calloc(n_kids, sizeof(cb_child_t));
    if (kids == NULL) {
        cb_die("out of memory");
    }

    cb_sample(&s0);
    c0 = s0;
    t_c0 = cb_now();
    t_c1 = 0;

    st.t_begin = cb_now();
    cb_kids_fork();

    /* a last resort: the children stop at --max-time themselves */
    alarm((unsigned) cf.max_time + 30);

    cb_kids_wait(CB_MSG_CONNECTED, 0);

    t0 = cb_now();
    ready = failed = 0;

    for (k = 0; k < n_kids; k++) {
        if (kids[k].have) {
            ready += kids[k].last.st.ready;
            failed += kids[k].last.st.failed;
        }
    }

    fprintf(stderr, "chat_bench: %" PRIu64 " sessions ready, %" PRIu64
            " failed in %.2f s (%u processes)\n", ready, failed,
            (double) (t0 - st.t_begin) / 1e9, n_kids);

    cb_kids_go(t0);

    if (cf.n_sweep) {
        return cb_procs_sweep(t0);
    }

    if (cf.scenario == CB_SC_DIRECT || cf.scenario == CB_SC_FANOUT) {
        /* the same window as the children's (cb_after_connect) */
        t_measure = t0 + (int64_t) (cf.warmup * 1e9);
        t_end = t_measure + (int64_t) (cf.duration * 1e9);

        cb_kids_wait(CB_MSG_DONE, t_measure);
        cb_sample(&c0);
        t_c0 = cb_now();

        cb_kids_wait(CB_MSG_DONE, t_end);
        cb_sample(&c1);
        t_c1 = cb_now();
    }

    cb_kids_wait(CB_MSG_DONE, 0);

    if (cf.scenario == CB_SC_DENSITY) {
        /* let the kernel and the allocators settle */
        usleep(200000);
    }

    cb_sample(&s1);

    if (t_c1 == 0) {
        c1 = s1;
        t_c1 = cb_now();
    }

    /* the sessions go now: the children close them and exit */
    for (k = 0; k < n_kids; k++) {
        close(kids[k].to);
        kids[k].to = -1;
    }

    /* the figures: counts summed, histograms merged, CPU of every load
     * generator process added up */
    cpu = c1.cpu_self - c0.cpu_self;

    for (k = 0; k < n_kids; k++) {
        if (!kids[k].have) {
            st.failed += kids[k].hi - kids[k].lo;
            continue;
        }

        cb_merge(&kids[k].last.st);
        cpu += kids[k].last.cpu_self;

        if (*stop_reason == '\0' && kids[k].last.stop_reason[0]) {
            stop_reason = kids[k].last.stop_reason;
        }
    }

    c0.cpu_self = 0;
    c1.cpu_self = cpu;
    wall = (double) (t_c1 - t_c0) / 1e9;

    phase = CB_PH_DONE;
    cb_report(&s0, &s1, wall, &c0, &c1);

    for (k = 0; k < n_kids; k++) {
        while (waitpid(kids[k].pid, NULL, 0) == -1 && errno == EINTR) {
            /* void */
        }
    }

    return st.ready == 0 ? 1 : 0;
}
