/* wk_log.h: timestamped logging to stderr for the standalone workers. */

#ifndef WK_LOG_H
#define WK_LOG_H


typedef enum {
    WK_LOG_ERROR = 0,
    WK_LOG_WARN,
    WK_LOG_INFO,
    WK_LOG_DEBUG
} wk_log_level_e;


void wk_log_init(const char *prog, const char *level);
int wk_log_enabled(wk_log_level_e level);
void wk_log(wk_log_level_e level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* the wk_conf_t line of the log level (a char * variable) */
#define WK_LOG_CONF(level, dflt)                                            \
    { "log-level", WK_CONF_STR, dflt, "error, warn, info or debug",         \
      &(level), 0, 0, 0 }

/* maps a syslog level (as librdkafka reports them) to ours */
wk_log_level_e wk_log_from_syslog(int level);

#define wk_error(...)  wk_log(WK_LOG_ERROR, __VA_ARGS__)
#define wk_warn(...)   wk_log(WK_LOG_WARN, __VA_ARGS__)
#define wk_info(...)   wk_log(WK_LOG_INFO, __VA_ARGS__)
#define wk_debug(...)                                                       \
    do {                                                                    \
        if (wk_log_enabled(WK_LOG_DEBUG)) {                                 \
            wk_log(WK_LOG_DEBUG, __VA_ARGS__);                              \
        }                                                                   \
    } while (0)


#endif /* WK_LOG_H */
