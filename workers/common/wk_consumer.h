/* wk_consumer.h: the Kafka consumer-group member the workers share:
 * subscription, rebalancing, polling and offset commits. */

#ifndef WK_CONSUMER_H
#define WK_CONSUMER_H


#include <librdkafka/rdkafka.h>

#include "wk_kafka.h"


#define WK_CONSUMER_TOPICS  4


/*
 * Called before partitions go to another member (failed == 0), or after
 * a failed rebalance (failed == 1) before the assignment is dropped: the
 * last moment to commit what was done with their records.
 */
typedef void (*wk_revoke_pt)(const rd_kafka_topic_partition_list_t *parts,
    int failed);

/* called once partitions are assigned */
typedef void (*wk_assign_pt)(const rd_kafka_topic_partition_list_t *parts);


typedef struct {
    char          *brokers;             /* or else: */
    char          *bootstrap_file;
    char          *group;
    char          *topics[WK_CONSUMER_TOPICS];  /* NULL or "": none */
    long long      session_timeout;     /* ms; 0: librdkafka's */
    const char    *client_id;
    long           bootstrap_wait;      /* ms; 0: 30 s */
    int            fatal_quit;          /* wk_quit after a fatal error */
    int            wake_fd;             /* a byte when records come; -1 */
    wk_revoke_pt   revoke;              /* or NULL */
    wk_assign_pt   assign;              /* or NULL */
} wk_consumer_conf_t;


/*
 * The wk_conf_t lines that fill a wk_consumer_conf_t cf: the bootstrap
 * servers, the first topic, the group (its default named), and the
 * session timeout.
 */
#define WK_CONSUMER_CONF(cf, dflt)                                          \
    WK_KAFKA_CONF((cf).brokers, (cf).bootstrap_file),                       \
    { "topic", WK_CONF_STR, "chat.messages",                                \
      "topic of the messages", &(cf).topics[0], 0, 0, 0 },                  \
    { "group-id", WK_CONF_STR, dflt, "consumer group", &(cf).group,         \
      0, 0, 0 }

#define WK_CONSUMER_SESSION_CONF(cf)                                        \
    { "session-timeout", WK_CONF_INT, "10000",                              \
      "Kafka session.timeout.ms of the group member",                       \
      &(cf).session_timeout, 1000, 3600000, 0 }


/*
 * Joins the group and subscribes to the topics: offsets stored and
 * committed by hand (wk_consumer_commit), from the earliest offset when
 * the group has none; eager and cooperative rebalancing both work. Kafka
 * errors are logged as warnings; a fatal one sets wk_quit to fatal_quit
 * (1: drain and exit, 2: exit at once). NULL on error (logged).
 */
rd_kafka_t *wk_consumer_open(const wk_consumer_conf_t *conf);

/*
 * The next record within timeout_ms, or NULL; consumer errors are logged
 * and passed over. Also serves the rebalance and commit callbacks.
 */
rd_kafka_message_t *wk_consumer_poll(int timeout_ms);

/*
 * Adds "topic [partition] up to offset" (the next record to read) to
 * *offsets, which it creates when NULL; an offset lower than one already
 * there changes nothing. -1 when out of memory.
 */
int wk_offsets_add(rd_kafka_topic_partition_list_t **offsets,
    const char *topic, int32_t partition, int64_t offset);

/*
 * Commits the offsets and destroys the list: sync waits for the broker,
 * otherwise the answer comes with a later wk_consumer_poll(). A failure
 * is logged (those records are consumed again after a restart), and -1
 * returned when it is known at once.
 */
int wk_consumer_commit(rd_kafka_topic_partition_list_t *offsets, int sync);

/* leaves the group (the revoke handler runs) and frees the consumer */
void wk_consumer_close(void);


#endif /* WK_CONSUMER_H */
