/* wk_proc.h: process plumbing of the workers: signals, sleeping, files. */

#ifndef WK_PROC_H
#define WK_PROC_H


#include <signal.h>
#include <stdint.h>


/*
 * Number of SIGTERM/SIGINT received. The handler only counts: the main
 * loop drains and exits when it sees 1; a second signal ends the process
 * at once (with _exit, which is async-signal-safe).
 */
extern volatile sig_atomic_t  wk_quit;


int wk_signals_init(void);

/* sleeps ms milliseconds or until a signal asks to quit */
void wk_sleep_ms(long ms);

/* sleeps ms milliseconds, even when a signal asks to quit (draining) */
void wk_nap_ms(long ms);

int64_t wk_now_ms(void);

/* writes data to path through a temporary file and rename() */
int wk_write_file(const char *path, const char *data);

/* reads the first line of a file into buf, without its newline */
int wk_read_line(const char *path, char *buf, size_t size);

int wk_pidfile_write(const char *path);


#endif /* WK_PROC_H */
