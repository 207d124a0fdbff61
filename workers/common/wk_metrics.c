/* wk_metrics.c: the workers' metrics registry and its HTTP listener: one
 * thread, one non-blocking socket, poll(), GET /metrics only. */

#define _GNU_SOURCE     /* accept4() */

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "wk_log.h"
#include "wk_metrics.h"
#include "wk_proc.h"


#define WK_METRICS_MAX       256     /* series */
#define WK_METRICS_CLIENTS   8       /* connections at once */
#define WK_METRICS_REQ       4096    /* longest request head */
#define WK_METRICS_TIMEOUT   5000    /* ms for a whole exchange */


struct wk_metric_s {
    char               *name;
    char               *labels;
    char               *help;
    wk_metric_type_e    type;
    int64_t             value;
};


typedef struct {
    int                 fd;
    size_t              in_len;
    char               *out;
    size_t              out_len;
    size_t              out_pos;
    int64_t             deadline;
    char                in[WK_METRICS_REQ];
} wk_metrics_client_t;


typedef struct {
    char               *data;
    size_t              len;
    size_t              cap;
    int                 failed;
} wk_metrics_buf_t;


static pthread_mutex_t       wk_metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static wk_metric_t           wk_metrics[WK_METRICS_MAX];
static size_t                wk_metrics_n;

static pthread_t             wk_metrics_tid;
static int                   wk_metrics_running;
static int                   wk_metrics_fd = -1;
static int                   wk_metrics_stop_pipe[2] = { -1, -1 };
static wk_metrics_client_t  *wk_metrics_clients[WK_METRICS_CLIENTS];


static void *wk_metrics_thread(void *arg);
static void wk_metrics_accept(int64_t now);
static int wk_metrics_read(wk_metrics_client_t *c);
static int wk_metrics_write(wk_metrics_client_t *c);
static void wk_metrics_respond(wk_metrics_client_t *c);
static void wk_metrics_render(wk_metrics_buf_t *b);
static void wk_metrics_printf(wk_metrics_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void wk_metrics_close(size_t i);
static int wk_metrics_listen(const char *addr);


wk_metric_t *
wk_metric(wk_metric_type_e type, const char *name, const char *labels,
    const char *help)
{
    size_t        i;
    wk_metric_t  *m;

    if (labels == NULL) {
        labels = "";
    }

    pthread_mutex_lock(&wk_metrics_lock);

    for (i = 0; i < wk_metrics_n; i++) {
        m = &wk_metrics[i];

        if (strcmp(m->name, name) == 0 && strcmp(m->labels, labels) == 0) {
            pthread_mutex_unlock(&wk_metrics_lock);
            return m;
        }
    }

    m = NULL;

    if (wk_metrics_n == WK_METRICS_MAX) {
        wk_error("metrics: more than %d series, %s{%s} is not kept",
                 WK_METRICS_MAX, name, labels);
        goto done;
    }

    m = &wk_metrics[wk_metrics_n];
    m->name = strdup(name);
    m->labels = strdup(labels);
    m->help = strdup(help ? help : "");

    if (m->name == NULL || m->labels == NULL || m->help == NULL) {
        free(m->name);
        free(m->labels);
        free(m->help);
        memset(m, 0, sizeof(wk_metric_t));
        m = NULL;
        wk_error("metrics: out of memory");
        goto done;
    }

    m->type = type;
    __atomic_store_n(&m->value, 0, __ATOMIC_RELAXED);

    wk_metrics_n++;

done:

    pthread_mutex_unlock(&wk_metrics_lock);

    return m;
}


wk_metric_t *
wk_metric_label(wk_metric_type_e type, const char *name, const char *label,
    const char *value, const char *help)
{
    char        *p, labels[256];
    const char  *v;

    p = labels;
    p += snprintf(labels, sizeof(labels) - 8, "%s=\"", label);

    for (v = value; *v && p < labels + sizeof(labels) - 4; v++) {
        if (*v == '"' || *v == '\\') {
            *p++ = '\\';
            *p++ = *v;

        } else if (*v == '\n') {
            *p++ = '\\';
            *p++ = 'n';

        } else {
            *p++ = *v;
        }
    }

    *p++ = '"';
    *p = '\0';

    return wk_metric(type, name, labels, help);
}


void
wk_metric_add(wk_metric_t *m, int64_t n)
{
    if (m) {
        (void) __atomic_fetch_add(&m->value, n, __ATOMIC_RELAXED);
    }
}


void
wk_metric_set(wk_metric_t *m, int64_t v)
{
    if (m) {
        __atomic_store_n(&m->value, v, __ATOMIC_RELAXED);
    }
}


int64_t
wk_metric_get(wk_metric_t *m)
{
    return m ? __atomic_load_n(&m->value, __ATOMIC_RELAXED) : 0;
}


int
wk_metrics_start(const char *prog, const char *addr)
{
    int          rc;
    char         name[128], *p;
    sigset_t     set, old;

    if (addr == NULL || *addr == '\0') {
        return 0;
    }

    snprintf(name, sizeof(name), "%s_start_time_seconds", prog);

    for (p = name; *p; p++) {
        if (*p == '-' || *p == '.') {
            *p = '_';
        }
    }

    wk_metric_set(wk_metric(WK_METRIC_GAUGE, name, "",
                            "When the process started (Unix time)."),
                  (int64_t) time(NULL));

    if (wk_metrics_listen(addr) != 0) {
        return -1;
    }

    if (pipe(wk_metrics_stop_pipe) != 0) {
        wk_error("metrics: pipe() failed: %s", strerror(errno));
        close(wk_metrics_fd);
        wk_metrics_fd = -1;
        return -1;
    }

    /* signals go to the main thread, which drains */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, &old);

    rc = pthread_create(&wk_metrics_tid, NULL, wk_metrics_thread, NULL);

    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        wk_error("metrics: pthread_create() failed: %s", strerror(rc));
        close(wk_metrics_fd);
        close(wk_metrics_stop_pipe[0]);
        close(wk_metrics_stop_pipe[1]);
        wk_metrics_fd = -1;
        return -1;
    }

    wk_metrics_running = 1;

    wk_info("metrics: serving http://%s/metrics", addr);

    return 0;
}


void
wk_metrics_stop(void)
{
    size_t  i;

    if (!wk_metrics_running) {
        return;
    }

    if (write(wk_metrics_stop_pipe[1], "x", 1) != 1) {
        wk_warn("metrics: cannot wake the thread: %s", strerror(errno));
    }

    pthread_join(wk_metrics_tid, NULL);
    wk_metrics_running = 0;

    for (i = 0; i < WK_METRICS_CLIENTS; i++) {
        if (wk_metrics_clients[i]) {
            wk_metrics_close(i);
        }
    }

    close(wk_metrics_fd);
    close(wk_metrics_stop_pipe[0]);
    close(wk_metrics_stop_pipe[1]);
    wk_metrics_fd = -1;
}


static int
wk_metrics_listen(const char *addr)
{
    int               fd, rc, one;
    char              host[256], *port;
    struct addrinfo   hints, *res;

    if (strlen(addr) >= sizeof(host)) {
        wk_error("metrics: bad metrics-listen \"%s\"", addr);
        return -1;
    }

    strcpy(host, addr);

    port = strrchr(host, ':');
    if (port == NULL || port[1] == '\0') {
        wk_error("metrics: metrics-listen \"%s\" needs ADDR:PORT", addr);
        return -1;
    }

    *port++ = '\0';

    if (host[0] == '[' && host[strlen(host) - 1] == ']') {
        memmove(host, host + 1, strlen(host));
        host[strlen(host) - 1] = '\0';
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;

    rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
    if (rc != 0) {
        wk_error("metrics: metrics-listen \"%s\": %s", addr,
                 gai_strerror(rc));
        return -1;
    }

    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                0);
    if (fd == -1) {
        wk_error("metrics: socket() failed: %s", strerror(errno));
        freeaddrinfo(res);
        return -1;
    }

    one = 1;
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0
        || listen(fd, 16) != 0)
    {
        wk_error("metrics: cannot listen on %s: %s", addr,
                 strerror(errno));
        close(fd);
        freeaddrinfo(res);
        return -1;
    }

    freeaddrinfo(res);
    wk_metrics_fd = fd;

    return 0;
}


static void *
wk_metrics_thread(void *arg)
{
    int                   rc, ev;
    size_t                i, n, idx[WK_METRICS_CLIENTS];
    int64_t               now;
    struct pollfd         pfd[2 + WK_METRICS_CLIENTS];
    wk_metrics_client_t  *c;

    (void) arg;

    for ( ;; ) {
        pfd[0].fd = wk_metrics_stop_pipe[0];
        pfd[0].events = POLLIN;
        pfd[1].fd = wk_metrics_fd;
        pfd[1].events = POLLIN;
        n = 2;

        for (i = 0; i < WK_METRICS_CLIENTS; i++) {
            c = wk_metrics_clients[i];

            if (c == NULL) {
                continue;
            }

            pfd[n].fd = c->fd;
            pfd[n].events = c->out ? POLLOUT : POLLIN;
            idx[n - 2] = i;
            n++;
        }

        rc = poll(pfd, n, 1000);

        if (rc < 0 && errno != EINTR) {
            wk_error("metrics: poll() failed: %s", strerror(errno));
            wk_nap_ms(100);
            continue;
        }

        if (rc > 0 && pfd[0].revents) {
            break;
        }

        now = wk_now_ms();

        for (i = 2; rc > 0 && i < n; i++) {
            ev = pfd[i].revents;
            c = wk_metrics_clients[idx[i - 2]];

            if (ev == 0 || c == NULL) {
                continue;
            }

            if ((c->out ? wk_metrics_write(c) : wk_metrics_read(c)) != 0) {
                wk_metrics_close(idx[i - 2]);
            }
        }

        for (i = 0; i < WK_METRICS_CLIENTS; i++) {
            c = wk_metrics_clients[i];

            if (c && now >= c->deadline) {
                wk_metrics_close(i);
            }
        }

        if (rc > 0 && pfd[1].revents) {
            wk_metrics_accept(now);
        }
    }

    return NULL;
}


static void
wk_metrics_accept(int64_t now)
{
    int                   fd;
    size_t                i;
    wk_metrics_client_t  *c;

    for ( ;; ) {
        fd = accept4(wk_metrics_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

        if (fd == -1) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR
                && errno != ECONNABORTED)
            {
                wk_warn("metrics: accept() failed: %s", strerror(errno));
            }

            return;
        }

        for (i = 0; i < WK_METRICS_CLIENTS; i++) {
            if (wk_metrics_clients[i] == NULL) {
                break;
            }
        }

        c = (i < WK_METRICS_CLIENTS) ? calloc(1, sizeof(*c)) : NULL;

        if (c == NULL) {
            /* busy: the scraper tries again */
            close(fd);
            continue;
        }

        c->fd = fd;
        c->deadline = now + WK_METRICS_TIMEOUT;
        wk_metrics_clients[i] = c;
    }
}


/* 0: go on, -1: close */
static int
wk_metrics_read(wk_metrics_client_t *c)
{
    ssize_t  n;

    for ( ;; ) {
        if (c->in_len == sizeof(c->in) - 1) {
            return -1;
        }

        n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - 1 - c->in_len,
                 0);

        if (n == 0) {
            return -1;
        }

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }

            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }

        c->in_len += n;
        c->in[c->in_len] = '\0';

        if (strstr(c->in, "\r\n\r\n") || strstr(c->in, "\n\n")) {
            wk_metrics_respond(c);
            return c->out ? wk_metrics_write(c) : -1;
        }
    }
}


static int
wk_metrics_write(wk_metrics_client_t *c)
{
    ssize_t  n;

    while (c->out_pos < c->out_len) {
        n = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos,
                 MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }

            return (errno == EAGAIN || errno == EWOULDBLOCK) ? 0 : -1;
        }

        c->out_pos += n;
    }

    return -1;      /* all written: close (Connection: close) */
}


static void
wk_metrics_respond(wk_metrics_client_t *c)
{
    int                head;
    char              *path, *end;
    const char        *status;
    wk_metrics_buf_t   body, out;

    memset(&body, 0, sizeof(body));
    memset(&out, 0, sizeof(out));

    head = (strncmp(c->in, "HEAD ", 5) == 0);

    if (strncmp(c->in, "GET ", 4) != 0 && !head) {
        status = "405 Method Not Allowed";
        wk_metrics_printf(&body, "only GET and HEAD\n");

    } else {
        path = c->in + (head ? 5 : 4);
        end = path + strcspn(path, " ?\r\n");

        if ((size_t) (end - path) == sizeof("/metrics") - 1
            && strncmp(path, "/metrics", end - path) == 0)
        {
            status = "200 OK";
            wk_metrics_render(&body);

        } else {
            status = "404 Not Found";
            wk_metrics_printf(&body, "see /metrics\n");
        }
    }

    wk_metrics_printf(&out, "HTTP/1.1 %s\r\n"
                      "Content-Type: text/plain; version=0.0.4; "
                      "charset=utf-8\r\n"
                      "Content-Length: %zu\r\n"
                      "Connection: close\r\n\r\n", status, body.len);

    if (!head && body.len) {
        wk_metrics_printf(&out, "%.*s", (int) body.len, body.data);
    }

    free(body.data);

    if (out.failed || body.failed) {
        free(out.data);
        return;
    }

    c->out = out.data;
    c->out_len = out.len;
    c->out_pos = 0;
}


static void
wk_metrics_render(wk_metrics_buf_t *b)
{
    size_t        i, k;
    int64_t       v;
    wk_metric_t  *m, *f;

    pthread_mutex_lock(&wk_metrics_lock);

    for (i = 0; i < wk_metrics_n; i++) {
        m = &wk_metrics[i];

        /* a family is written whole where its first series is */
        for (k = 0; k < i; k++) {
            if (strcmp(wk_metrics[k].name, m->name) == 0) {
                break;
            }
        }

        if (k < i) {
            continue;
        }

        wk_metrics_printf(b, "# HELP %s %s\n# TYPE %s %s\n", m->name,
                          m->help, m->name,
                          m->type == WK_METRIC_COUNTER ? "counter"
                                                       : "gauge");

        for (k = i; k < wk_metrics_n; k++) {
            f = &wk_metrics[k];

            if (strcmp(f->name, m->name) != 0) {
                continue;
            }

            wk_metrics_printf(b, "%s%s%s%s ", f->name,
                              f->labels[0] ? "{" : "", f->labels,
                              f->labels[0] ? "}" : "");

            v = wk_metric_get(f);

            if (f->type == WK_METRIC_GAUGE_MS) {
                wk_metrics_printf(b, "%s%lld.%03lld\n", v < 0 ? "-" : "",
                                  (long long) (v < 0 ? -(v / 1000) : v / 1000),
                                  (long long) (v < 0 ? -(v % 1000)
                                                     : v % 1000));

            } else {
                wk_metrics_printf(b, "%lld\n", (long long) v);
            }
        }
    }

    pthread_mutex_unlock(&wk_metrics_lock);
}


static void
wk_metrics_printf(wk_metrics_buf_t *b, const char *fmt, ...)
{
    int       n;
    char     *p;
    size_t    cap;
    va_list   ap;

    if (b->failed) {
        return;
    }

    for ( ;; ) {
        va_start(ap, fmt);
        n = vsnprintf(b->data ? b->data + b->len : NULL,
                      b->data ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);

        if (n < 0) {
            b->failed = 1;
            return;
        }

        if (b->data && b->len + n < b->cap) {
            b->len += n;
            return;
        }

        cap = b->cap ? b->cap : 4096;

        while (cap <= b->len + n) {
            cap *= 2;
        }

        p = realloc(b->data, cap);
        if (p == NULL) {
            b->failed = 1;
            return;
        }

        b->data = p;
        b->cap = cap;
    }
}


static void
wk_metrics_close(size_t i)
{
    wk_metrics_client_t  *c;

    c = wk_metrics_clients[i];
    wk_metrics_clients[i] = NULL;

    close(c->fd);
    free(c->out);
    free(c);
}
