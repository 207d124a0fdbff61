/* chat_kafka_consume.c: test tool: a consumer-group member that prints
 * messages and commits each one's offset after printing it. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "common/wk_conf.h"
#include "common/wk_consumer.h"
#include "common/wk_kafka.h"
#include "common/wk_log.h"
#include "common/wk_proc.h"


static wk_consumer_conf_t  csm_cf;

static long long   csm_count;
static long long   csm_idle;
static int         csm_commit;
static int         csm_full;
static char       *csm_log_level;

static int64_t     csm_last;
static int         csm_assigned;


static wk_conf_t  csm_conf[] = {
    WK_CONSUMER_CONF(csm_cf, "chat-kafka-consume"),
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
    WK_LOG_CONF(csm_log_level, "warn"),
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


/* the idle time counts from the first assignment on */
static void
csm_assign(const rd_kafka_topic_partition_list_t *parts)
{
    (void) parts;

    csm_assigned = 1;
    csm_last = wk_now_ms();
}


static void
csm_revoke(const rd_kafka_topic_partition_list_t *parts, int failed)
{
    (void) parts;
    (void) failed;

    csm_last = wk_now_ms();
}


int
main(int argc, char **argv)
{
    int                                rc;
    long long                          n;
    rd_kafka_message_t                *m;
    rd_kafka_topic_partition_list_t   *offsets;

    rc = wk_start(&csm_spec, argc, argv, &csm_log_level, 1);
    if (rc >= 0) {
        return rc;
    }

    /* no session-timeout setting: kafka.session.timeout.ms applies */
    csm_cf.client_id = csm_spec.prog;
    csm_cf.bootstrap_wait = 10000;
    csm_cf.fatal_quit = 2;
    csm_cf.wake_fd = -1;
    csm_cf.revoke = csm_revoke;
    csm_cf.assign = csm_assign;

    if (wk_consumer_open(&csm_cf) == NULL) {
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

        m = wk_consumer_poll(100);
        if (m == NULL) {
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
            offsets = NULL;

            if (wk_offsets_add(&offsets, rd_kafka_topic_name(m->rkt),
                               m->partition, m->offset + 1)
                != 0)
            {
                wk_error("out of memory: offset not committed");
                rc = 1;

            } else if (wk_consumer_commit(offsets, 1) != 0) {
                rc = 1;
            }
        }

        rd_kafka_message_destroy(m);
        n++;
        csm_last = wk_now_ms();
    }

    wk_consumer_close();

    wk_info("consumed %lld message(s)", n);

    return rc;
}
