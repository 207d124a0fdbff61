/* cb_proc.c: memory and CPU of the systems under test from /proc, the
 * load generator's own CPU time and descriptor limit. */

#include "cb_bench.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>


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


void
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


/* --- our own limits --- */

void
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


/* this process's CPU time (user + system), seconds */
double
cb_self_cpu(void)
{
    struct rusage  ru;

    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }

    return (double) ru.ru_utime.tv_sec + (double) ru.ru_utime.tv_usec / 1e6
           + (double) ru.ru_stime.tv_sec + (double) ru.ru_stime.tv_usec / 1e6;
}
