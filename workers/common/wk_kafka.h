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

/* the wk_conf_t lines of the bootstrap servers (char * variables) */
#define WK_KAFKA_CONF(brokers, bootstrap_file)                              \
    { "brokers", WK_CONF_STR, "",                                           \
      "Kafka bootstrap servers (host:port,...)", &(brokers), 0, 0, 0 },     \
    { "bootstrap-file", WK_CONF_STR, "",                                    \
      "read the bootstrap servers from this file (chat-kafka-broker's)",    \
      &(bootstrap_file), 0, 0, 0 }

/* the wk_conf_extra_pt that collects the "kafka." settings */
int wk_kafka_extra(const char *name, const char *value, void *data);


#endif /* WK_KAFKA_H */
