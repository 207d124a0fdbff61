/* chat_kafka_consume.c: test tool: a consumer-group member that prints
 * messages and commits each one's offset after printing it. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "common/wk_conf.h"
#include "common/wk_kafka.h"
#include "common/wk_log.h"
#include "common/wk_proc.h"


static char       *csm_brokers;
static char       *csm_bootstrap_file;
static char       *csm_topic;
static char       *csm_group_id;
static long long   csm_count;
static long long   csm_idle;
static int         csm_commit;
static int         csm_full;
static char       *csm_log_level;

static int64_t     csm_last;
static int         csm_assigned;


static wk_conf_t  csm_conf[] = {
    { "brokers", WK_CONF_STR, "",
      "bootstrap servers (host:port,...)", &csm_brokers, 0, 0, 0 },
    { "bootstrap-file", WK_CONF_STR, "",
      "read the bootstrap servers from this file", &csm_bootstrap_file,
      0, 0, 0 },
    { "topic", WK_CONF_STR, "chat.messages",
      "topic to consume", &csm_topic, 0, 0, 0 },
    { "group-id", WK_CONF_STR, "chat-kafka-consume",
      "consumer group", &csm_group_id, 0, 0, 0 },
    { "count", WK_CONF_INT, "0",
      "exit after this many messages (0: no limit)", &csm_count, 0,
      1000000000, 0 },
    { "idle", WK_CONF_INT, "5000",
      "exit after this many ms without a message", &csm_idle, 1,
      3600000, 0 },
    { "commit", WK_CONF_BOOL, "true",
      "commit each message's offset (synchronously) after printing it",
      &csm_commit, 0, 0, 0 },
    { "full", WK_CONF_BOOL, "false",
      "print \"partition offset key value\" instead of the value",
      &csm_full, 0, 0, 0 },
    { "log-level", WK_CONF_STR, "warn",
      "error, warn, info or debug", &csm_log_level, 0, 0, 0 },
    { NULL, 0, NULL, NULL, NULL, 0, 0, 0 }
};


static wk_conf_spec_t  csm_spec = {
    "chat-kafka-consume",
    "Test tool: joins a consumer group (from the earliest offset when the\n"
    "group has none), prints each message's value on its own line and\n"
    "commits its offset, until --count messages or --idle ms of silence.",
    csm_conf,
    "kafka.", "any librdkafka property, e.g. --kafka.session.timeout.ms=6000",
    wk_kafka_extra, NULL
};


static void
csm_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    (void) opaque;

    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        wk_info("assigned %d partition(s)", parts->cnt);
        csm_assigned = 1;
        rd_kafka_assign(rk, parts);

    } else {
        wk_info("revoked %d partition(s)", parts->cnt);
        rd_kafka_assign(rk, NULL);
    }

    /* the idle time counts from the first assignment on */
    csm_last = wk_now_ms();
}


int
main(int argc, char **argv)
{
    int                                rc;
    char                               errstr[512];
    long long                          n;
    rd_kafka_t                        *rk;
    rd_kafka_conf_t                   *conf;
    rd_kafka_message_t                *m;
    rd_kafka_resp_err_t                err;
    rd_kafka_topic_partition_list_t   *topics;

    rc = wk_conf_load(&csm_spec, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }

    wk_log_init(csm_spec.prog, csm_log_level);

    if (wk_signals_init() != 0) {
        return 1;
    }

    conf = wk_kafka_conf(csm_brokers, csm_bootstrap_file, 10000,
                         "chat-kafka-consume");
    if (conf == NULL) {
        return 1;
    }

    rd_kafka_conf_set_rebalance_cb(conf, csm_rebalance_cb);

    if (wk_kafka_set(conf, "group.id", csm_group_id) != 0
        || wk_kafka_set(conf, "enable.auto.commit", "false") != 0
        || wk_kafka_set(conf, "auto.offset.reset", "earliest") != 0)
    {
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        wk_error("rd_kafka_new() failed: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    rd_kafka_poll_set_consumer(rk);

    topics = rd_kafka_topic_partition_list_new(1);
    if (topics == NULL) {
        wk_error("out of memory");
        rd_kafka_destroy(rk);
        return 1;
    }

    rd_kafka_topic_partition_list_add(topics, csm_topic,
                                      RD_KAFKA_PARTITION_UA);

    err = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);

    if (err) {
        wk_error("subscribe failed: %s", rd_kafka_err2str(err));
        rd_kafka_destroy(rk);
        return 1;
    }

    n = 0;
    rc = 0;
    csm_last = wk_now_ms();

    while (!wk_quit && (csm_count == 0 || n < csm_count)) {
        if (wk_now_ms() - csm_last >= (csm_assigned ? csm_idle : 30000)) {
            if (!csm_assigned) {
                wk_error("no partition assigned within 30 s");
                rc = 1;
            }

            break;
        }

        m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL) {
            continue;
        }

        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                wk_warn("consumer: %s", rd_kafka_message_errstr(m));
            }

            rd_kafka_message_destroy(m);
            continue;
        }

        if (csm_full) {
            printf("%d %lld %.*s %.*s\n", (int) m->partition,
                   (long long) m->offset, (int) m->key_len,
                   m->key ? (char *) m->key : "", (int) m->len,
                   m->payload ? (char *) m->payload : "");
        } else {
            printf("%.*s\n", (int) m->len,
                   m->payload ? (char *) m->payload : "");
        }

        fflush(stdout);

        if (csm_commit) {
            err = rd_kafka_commit_message(rk, m, 0);
            if (err) {
                wk_error("commit failed: %s", rd_kafka_err2str(err));
                rc = 1;
            }
        }

        rd_kafka_message_destroy(m);
        n++;
        csm_last = wk_now_ms();
    }

    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);

    wk_info("consumed %lld message(s)", n);

    return rc;
}
