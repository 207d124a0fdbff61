/* wk_metrics.h: the workers' counters and gauges, served in Prometheus
 * text format at http://<metrics-listen>/metrics by a small thread. */

#ifndef WK_METRICS_H
#define WK_METRICS_H


#include <stdint.h>


typedef enum {
    WK_METRIC_COUNTER,
    WK_METRIC_GAUGE,
    WK_METRIC_GAUGE_MS              /* set in milliseconds, served in
                                       seconds (name it *_seconds) */
} wk_metric_type_e;


typedef struct wk_metric_s  wk_metric_t;


/* the configuration table's entry: --metrics-listen (off by default) */
#define WK_METRICS_CONF(var)                                                \
    { "metrics-listen", WK_CONF_STR, "",                                    \
      "serve Prometheus metrics at http://ADDR:PORT/metrics "               \
      "(e.g. 127.0.0.1:9187; empty: off)", &(var), 0, 0, 0 }


/*
 * Finds or registers the series name{labels} (labels: "" or e.g.
 * "status=\"ok\"", already escaped); help and type describe the family
 * (the first registration of a name wins). Thread-safe; meant to be called
 * once per series at start, but calling it per event is correct, only
 * slower (a mutex and a scan of at most WK_METRICS_MAX series). NULL when
 * the table is full or memory ran out: wk_metric_add/set accept NULL.
 */
wk_metric_t *wk_metric(wk_metric_type_e type, const char *name,
    const char *labels, const char *help);

/* the same with one label whose value is escaped here */
wk_metric_t *wk_metric_label(wk_metric_type_e type, const char *name,
    const char *label, const char *value, const char *help);

/* lock-free (atomic), from any thread */
void wk_metric_add(wk_metric_t *m, int64_t n);
void wk_metric_set(wk_metric_t *m, int64_t v);
int64_t wk_metric_get(wk_metric_t *m);

/*
 * Starts the listener thread on listen ("127.0.0.1:9187", "[::1]:9187";
 * "" or NULL: off, returns 0). prog names the built-in series
 * <prog>_start_time_seconds ('-' becomes '_'). 0, or -1 (logged).
 */
int wk_metrics_start(const char *prog, const char *listen);

/* stops the thread and closes the socket (at exit) */
void wk_metrics_stop(void);


#endif /* WK_METRICS_H */
