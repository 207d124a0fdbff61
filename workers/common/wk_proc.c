/* wk_proc.c: process plumbing of the workers: signals, sleeping, files. */

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "wk_log.h"
#include "wk_proc.h"


volatile sig_atomic_t  wk_quit;


static void
wk_signal_handler(int signo)
{
    if (wk_quit) {
        _exit(128 + signo);
    }

    wk_quit = 1;
}


int
wk_signals_init(void)
{
    struct sigaction  sa;

    memset(&sa, 0, sizeof(sa));
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = wk_signal_handler;

    if (sigaction(SIGTERM, &sa, NULL) != 0
        || sigaction(SIGINT, &sa, NULL) != 0)
    {
        wk_error("sigaction() failed: %s", strerror(errno));
        return -1;
    }

    sa.sa_handler = SIG_IGN;

    if (sigaction(SIGPIPE, &sa, NULL) != 0
        || sigaction(SIGHUP, &sa, NULL) != 0)
    {
        wk_error("sigaction() failed: %s", strerror(errno));
        return -1;
    }

    return 0;
}


int
wk_start(wk_conf_spec_t *spec, int argc, char **argv, char **log_level,
    int signals)
{
    int  rc;

    rc = wk_conf_load(spec, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }

    wk_log_init(spec->prog, *log_level);
    wk_conf_log(spec);

    if (signals && wk_signals_init() != 0) {
        return 1;
    }

    return -1;
}


void
wk_sleep_ms(long ms)
{
    long             step;
    struct timespec  ts;

    while (ms > 0 && !wk_quit) {
        step = ms > 100 ? 100 : ms;
        ts.tv_sec = 0;
        ts.tv_nsec = step * 1000000L;
        nanosleep(&ts, NULL);
        ms -= step;
    }
}


void
wk_nap_ms(long ms)
{
    struct timespec  ts;

    ts.tv_sec = ms / 1000;
    ts.tv_nsec = (ms % 1000) * 1000000L;

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* a signal only sets a flag: sleep on */
    }
}


int64_t
wk_now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


int
wk_write_file(const char *path, const char *data)
{
    FILE    *f;
    char    *tmp;
    size_t   len;
    int      ok;

    len = strlen(path) + 32;
    tmp = malloc(len);
    if (tmp == NULL) {
        wk_error("out of memory");
        return -1;
    }

    snprintf(tmp, len, "%s.%ld.tmp", path, (long) getpid());

    f = fopen(tmp, "w");
    if (f == NULL) {
        wk_error("cannot create \"%s\": %s", tmp, strerror(errno));
        free(tmp);
        return -1;
    }

    ok = fputs(data, f) >= 0;
    ok = (fclose(f) == 0) && ok;

    if (!ok || rename(tmp, path) != 0) {
        wk_error("cannot write \"%s\": %s", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }

    free(tmp);

    return 0;
}


int
wk_read_line(const char *path, char *buf, size_t size)
{
    FILE  *f;

    f = fopen(path, "r");
    if (f == NULL) {
        return -1;
    }

    if (fgets(buf, (int) size, f) == NULL) {
        fclose(f);
        return -1;
    }

    fclose(f);

    buf[strcspn(buf, "\r\n")] = '\0';

    return buf[0] ? 0 : -1;
}


int
wk_pidfile_write(const char *path)
{
    char  buf[32];

    snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());

    return wk_write_file(path, buf);
}


/*
 * systemd's readiness protocol (sd_notify(3)) without libsystemd: one
 * datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or
 * "@name" in the abstract namespace). Unset: nothing to do.
 */

int
wk_notify(const char *state)
{
    int                 fd;
    size_t              n, len;
    ssize_t             sent;
    const char         *path;
    socklen_t           slen;
    struct sockaddr_un  sa;

    path = getenv("NOTIFY_SOCKET");
    if (path == NULL || path[0] == '\0') {
        return 0;
    }

    n = strlen(path);
    if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path)) {
        wk_warn("NOTIFY_SOCKET \"%s\": not a socket path", path);
        return -1;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, n);
    if (path[0] == '@') {
        sa.sun_path[0] = '\0';
    }
    slen = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + n
                        + (path[0] == '/'));

    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd == -1) {
        wk_warn("notify: socket() failed: %s", strerror(errno));
        return -1;
    }

    len = strlen(state);
    sent = sendto(fd, state, len, MSG_NOSIGNAL, (struct sockaddr *) &sa,
                  slen);
    if (sent != (ssize_t) len) {
        wk_warn("notify: sendto(%s) failed: %s", path,
                sent == -1 ? strerror(errno) : "short write");
        close(fd);
        return -1;
    }

    close(fd);

    return 0;
}
