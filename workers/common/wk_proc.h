/* wk_proc.h: process plumbing of the workers: signals, sleeping, files. */

#ifndef WK_PROC_H
#define WK_PROC_H


#include <signal.h>
#include <stdint.h>

#include "wk_conf.h"


/*
 * Number of SIGTERM/SIGINT received. The handler only counts: the main
 * loop drains and exits when it sees 1; a second signal ends the process
 * at once (with _exit, which is async-signal-safe).
 */
extern volatile sig_atomic_t  wk_quit;


int wk_signals_init(void);

/*
 * A worker's start: its settings (wk_conf_load), logging at the level of
 * *log_level, the settings logged, and (signals) wk_signals_init().
 * Returns -1 to run on, or else the exit status (0 after --help).
 */
int wk_start(wk_conf_spec_t *spec, int argc, char **argv, char **log_level,
    int signals);

/* sleeps ms milliseconds or until a signal asks to quit */
void wk_sleep_ms(long ms);

/* sleeps ms milliseconds, even when a signal asks to quit (draining) */
void wk_nap_ms(long ms);

int64_t wk_now_ms(void);

/* writes data to path through a temporary file and rename() */
int wk_write_file(const char *path, const char *data);

/* reads the first line of a file into buf, without its newline */
int wk_read_line(const char *path, char *buf, size_t size);

/* the wk_conf_t line of the pid file (a char * variable) */
#define WK_PID_CONF(pid_file)                                               \
    { "pid-file", WK_CONF_STR, "",                                          \
      "write the process id to this file (removed on exit)",               \
      &(pid_file), 0, 0, 0 }

int wk_pidfile_write(const char *path);

/*
 * Tells systemd (Type=notify units) the state, e.g. "READY=1" once the
 * worker consumes, "STOPPING=1" when it drains: a datagram to
 * $NOTIFY_SOCKET, nothing when it is unset. 0, or -1 (logged).
 */
int wk_notify(const char *state);


#endif /* WK_PROC_H */
