/* chat_kafka_broker.c: an in-memory Kafka broker on loopback (librdkafka's
 * mock cluster) with the chat topics, for tests and the embedded default. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "common/wk_conf.h"
#include "common/wk_log.h"
#include "common/wk_proc.h"


static long long   bkr_brokers;
static long long   bkr_partitions;
static char       *bkr_topics;
static char       *bkr_bootstrap_file;
static char       *bkr_pid_file;
static char       *bkr_log_level;


static wk_conf_t  bkr_conf[] = {
    { "brokers", WK_CONF_INT, "1",
      "number of brokers in the cluster", &bkr_brokers, 1, 16, 0 },
    { "partitions", WK_CONF_INT, "6",
      "partitions of each topic", &bkr_partitions, 1, 10000, 0 },
    { "topics", WK_CONF_STR, "chat.messages,chat.receipts",
      "topics to create, separated by commas", &bkr_topics, 0, 0, 0 },
    { "bootstrap-file", WK_CONF_STR, "",
      "write the bootstrap servers to this file (removed on exit)",
      &bkr_bootstrap_file, 0, 0, 0 },
    { "pid-file", WK_CONF_STR, "",
      "write the process id to this file (removed on exit)",
      &bkr_pid_file, 0, 0, 0 },
    { "log-level", WK_CONF_STR, "info",
      "error, warn, info or debug", &bkr_log_level, 0, 0, 0 },
    { NULL, 0, NULL, NULL, NULL, 0, 0, 0 }
};


static wk_conf_spec_t  bkr_spec = {
    "chat-kafka-broker",
    "Runs a Kafka broker (librdkafka's mock cluster) on 127.0.0.1 and\n"
    "creates the topics. It keeps every message in memory only, and a\n"
    "partition keeps only its last ~5 MB: for tests and local runs, never\n"
    "for production. The brokers listen on ports chosen by the system\n"
    "(librdkafka 2.0 cannot choose them): the bootstrap servers are printed\n"
    "on stdout and written to --bootstrap-file. SIGTERM or SIGINT stops it.",
    bkr_conf,
    NULL, NULL, NULL, NULL
};


static void
bkr_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void) rk;

    if (strcmp(fac, "CONFWARN") == 0) {
        return;     /* "no bootstrap.servers": this handle needs none */
    }

    wk_log(wk_log_from_syslog(level), "rdkafka %s: %s", fac, buf);
}


static int
bkr_create_topics(rd_kafka_mock_cluster_t *mc)
{
    char                 *list, *topic, *save;
    int                   replicas;
    rd_kafka_resp_err_t   err;

    list = strdup(bkr_topics);
    if (list == NULL) {
        wk_error("out of memory");
        return -1;
    }

    replicas = bkr_brokers < 3 ? (int) bkr_brokers : 3;

    for (topic = strtok_r(list, ", ", &save);
         topic != NULL;
         topic = strtok_r(NULL, ", ", &save))
    {
        err = rd_kafka_mock_topic_create(mc, topic, (int) bkr_partitions,
                                         replicas);
        if (err) {
            wk_error("cannot create topic \"%s\": %s", topic,
                     rd_kafka_err2str(err));
            free(list);
            return -1;
        }

        wk_info("topic \"%s\": %lld partitions, replication factor %d",
                topic, bkr_partitions, replicas);
    }

    free(list);

    return 0;
}


int
main(int argc, char **argv)
{
    int                       rc, written;
    char                      errstr[512], *line;
    const char               *bootstraps;
    rd_kafka_t               *rk;
    rd_kafka_conf_t          *conf;
    rd_kafka_mock_cluster_t  *mc;

    rc = wk_conf_load(&bkr_spec, argc, argv);
    if (rc != 0) {
        return rc > 0 ? 0 : 2;
    }

    wk_log_init(bkr_spec.prog, bkr_log_level);

    if (wk_signals_init() != 0) {
        return 1;
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, bkr_log_cb);

    if (rd_kafka_conf_set(conf, "client.id", "chat-kafka-broker", errstr,
                          sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        wk_error("%s", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    /* the handle only hosts the cluster's threads */
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        wk_error("rd_kafka_new() failed: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    mc = rd_kafka_mock_cluster_new(rk, (int) bkr_brokers);
    if (mc == NULL) {
        wk_error("cannot create the mock cluster");
        rd_kafka_destroy(rk);
        return 1;
    }

    rc = 1;
    written = 0;

    if (bkr_create_topics(mc) != 0) {
        goto done;
    }

    bootstraps = rd_kafka_mock_cluster_bootstraps(mc);

    line = malloc(strlen(bootstraps) + 2);
    if (line == NULL) {
        wk_error("out of memory");
        goto done;
    }

    sprintf(line, "%s\n", bootstraps);

    if (*bkr_bootstrap_file) {
        if (wk_write_file(bkr_bootstrap_file, line) != 0) {
            free(line);
            goto done;
        }

        written = 1;
    }

    free(line);

    if (*bkr_pid_file && wk_pidfile_write(bkr_pid_file) != 0) {
        goto done;
    }

    printf("%s\n", bootstraps);
    fflush(stdout);

    wk_info("%lld broker(s) listening, bootstrap servers %s", bkr_brokers,
            bootstraps);

    while (!wk_quit) {
        wk_sleep_ms(1000);
    }

    wk_info("stopping: every message the cluster held is gone");

    rc = 0;

done:

    if (written) {
        unlink(bkr_bootstrap_file);
    }

    if (*bkr_pid_file) {
        unlink(bkr_pid_file);
    }

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);

    return rc;
}
