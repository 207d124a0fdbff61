/* wk_kafka.h: librdkafka setup shared by the workers and test tools. */

#ifndef WK_KAFKA_H
#define WK_KAFKA_H


#include <librdkafka/rdkafka.h>


/*
 * A configuration with the bootstrap servers (brokers, or else the first
 * line of bootstrap_file, waiting up to wait_ms for it to appear), the
 * client id, logging through wk_log, and every "kafka.NAME = value"
 * setting collected by wk_kafka_extra(). NULL on error (logged).
 */
rd_kafka_conf_t *wk_kafka_conf(const char *brokers,
    const char *bootstrap_file, long wait_ms, const char *client_id);

/* rd_kafka_conf_set() that logs the error */
int wk_kafka_set(rd_kafka_conf_t *conf, const char *name,
    const char *value);

/*
 * A consumer-group member as the daemons run it: offsets stored and
 * committed by hand, from the earliest offset when the group has none, the
 * given session timeout and rebalance callback; its main queue forwarded to
 * the consumer queue. Errors are logged as warnings; a fatal one sets
 * wk_quit to fatal_quit (1: drain and exit, 2: exit at once). NULL on
 * error (logged).
 */
rd_kafka_t *wk_kafka_consumer(const char *brokers,
    const char *bootstrap_file, const char *client_id, const char *group,
    long long session_timeout,
    void (*rebalance_cb)(rd_kafka_t *rk, rd_kafka_resp_err_t err,
        rd_kafka_topic_partition_list_t *parts, void *opaque),
    int fatal_quit);

/* the wk_conf_extra_pt that collects the "kafka." settings */
int wk_kafka_extra(const char *name, const char *value, void *data);


#endif /* WK_KAFKA_H */
