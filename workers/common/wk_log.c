/* wk_log.c: timestamped logging to stderr for the standalone workers. */

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "wk_log.h"


static const char      *wk_log_prog = "worker";
static wk_log_level_e   wk_log_level = WK_LOG_INFO;

static const char *wk_log_names[] = { "error", "warn", "info", "debug" };


void
wk_log_init(const char *prog, const char *level)
{
    size_t  i;

    wk_log_prog = prog;

    if (level == NULL) {
        return;
    }

    for (i = 0; i < sizeof(wk_log_names) / sizeof(wk_log_names[0]); i++) {
        if (strcasecmp(level, wk_log_names[i]) == 0) {
            wk_log_level = (wk_log_level_e) i;
            return;
        }
    }

    wk_log(WK_LOG_WARN, "unknown log level \"%s\", using info", level);
}


int
wk_log_enabled(wk_log_level_e level)
{
    return level <= wk_log_level;
}


void
wk_log(wk_log_level_e level, const char *fmt, ...)
{
    char             line[2048], ts[32];
    size_t           n;
    va_list          ap;
    struct tm        tm;
    struct timespec  now;

    if (level > wk_log_level) {
        return;
    }

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);

    n = (size_t) snprintf(line, sizeof(line), "%s.%03ldZ %s[%ld] %s: ",
                          ts, now.tv_nsec / 1000000, wk_log_prog,
                          (long) getpid(), wk_log_names[level]);
    if (n >= sizeof(line)) {
        n = sizeof(line) - 1;
    }

    va_start(ap, fmt);
    vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);

    /* one fputs per line: lines of several threads do not interleave */
    n = strlen(line);
    if (n == sizeof(line) - 1) {
        line[n - 1] = '\n';
    } else {
        line[n] = '\n';
        line[n + 1] = '\0';
    }

    fputs(line, stderr);
    fflush(stderr);
}


wk_log_level_e
wk_log_from_syslog(int level)
{
    if (level <= 3) {
        return WK_LOG_ERROR;
    }

    if (level == 4) {
        return WK_LOG_WARN;
    }

    if (level <= 6) {
        return WK_LOG_INFO;
    }

    return WK_LOG_DEBUG;
}
