/* chat_kafka_produce.c: test tool: produces JSON lines from stdin, keyed
 * by their conversationId, and waits for every delivery report. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "common/wk_conf.h"
#include "common/wk_kafka.h"
#include "common/wk_log.h"
#include "common/wk_proc.h"


static char       *prd_brokers;
static char       *prd_bootstrap_file;
static char       *prd_topic;
static char       *prd_key_field;
static int         prd_idempotence;
static long long   prd_timeout;
static char       *prd_log_level;

static long        prd_delivered;
static long        prd_failed;


static wk_conf_t  prd_conf[] = {
    WK_KAFKA_CONF(prd_brokers, prd_bootstrap_file),
    { "topic", WK_CONF_STR, "chat.messages",
      "topic to produce to", &prd_topic, 0, 0, 0 },
    { "key-field", WK_CONF_STR, "conversationId",
      "the JSON field whose value is the key (none: no key)",
      &prd_key_field, 0, 0, 0 },
    { "idempotence", WK_CONF_BOOL, "true",
      "enable.idempotence", &prd_idempotence, 0, 0, 0 },
    { "timeout", WK_CONF_INT, "30000",
      "ms to wait for the delivery reports", &prd_timeout, 1, 3600000, 0 },
    WK_LOG_CONF(prd_log_level, "warn"),
    { NULL, 0, NULL, NULL, NULL, 0, 0, 0 }
};


static wk_conf_spec_t  prd_spec = {
    "chat-kafka-produce",
    "Test tool: produces each line of stdin as one message, keyed by the\n"
    "string value of the key field of the line's JSON (no key when the\n"
    "line is not JSON), then waits for every delivery report. Prints\n"
    "\"delivered N failed M\" on stdout; exits 0 when nothing failed.",
    prd_conf,
    "kafka.", "any librdkafka property, e.g. --kafka.acks=all",
    wk_kafka_extra, NULL
};


static void
prd_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void) rk;
    (void) opaque;

    if (m->err) {
        prd_failed++;
        wk_error("delivery failed: %s", rd_kafka_err2str(m->err));
        return;
    }

    prd_delivered++;
}


static int
prd_produce(rd_kafka_t *rk, char *line, size_t len)
{
    json_t               *root, *key;
    const char           *k;
    size_t                klen;
    rd_kafka_resp_err_t   err;

    root = NULL;
    k = NULL;
    klen = 0;

    if (*prd_key_field) {
        root = json_loadb(line, len, 0, NULL);
        key = root ? json_object_get(root, prd_key_field) : NULL;

        if (json_is_string(key)) {
            k = json_string_value(key);
            klen = json_string_length(key);
        }
    }

    for ( ;; ) {
        err = rd_kafka_producev(rk,
                                RD_KAFKA_V_TOPIC(prd_topic),
                                RD_KAFKA_V_KEY(k, klen),
                                RD_KAFKA_V_VALUE(line, len),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_END);

        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            break;
        }

        rd_kafka_poll(rk, 100);
    }

    json_decref(root);

    if (err) {
        wk_error("produce failed: %s", rd_kafka_err2str(err));
        return -1;
    }

    rd_kafka_poll(rk, 0);

    return 0;
}


int
main(int argc, char **argv)
{
    int               rc;
    char              errstr[512], *line;
    size_t            cap;
    ssize_t           len;
    long              produced;
    rd_kafka_t       *rk;
    rd_kafka_conf_t  *conf;

    /* no signal handlers: a signal ends it at once */
    rc = wk_start(&prd_spec, argc, argv, &prd_log_level, 0);
    if (rc >= 0) {
        return rc;
    }

    conf = wk_kafka_conf(prd_brokers, prd_bootstrap_file, 10000,
                         "chat-kafka-produce");
    if (conf == NULL) {
        return 1;
    }

    rd_kafka_conf_set_dr_msg_cb(conf, prd_dr_cb);

    if (wk_kafka_set(conf, "enable.idempotence",
                     prd_idempotence ? "true" : "false")
        != 0)
    {
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        wk_error("rd_kafka_new() failed: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return 1;
    }

    line = NULL;
    cap = 0;
    produced = 0;
    rc = 0;

    while ((len = getline(&line, &cap, stdin)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) {
            len--;
        }

        if (len == 0) {
            continue;
        }

        if (prd_produce(rk, line, (size_t) len) != 0) {
            rc = 1;
            break;
        }

        produced++;
    }

    free(line);

    if (rd_kafka_flush(rk, (int) prd_timeout) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        wk_error("%d message(s) still not delivered",
                 rd_kafka_outq_len(rk));
        rc = 1;
    }

    printf("delivered %ld failed %ld\n", prd_delivered,
           prd_failed + (produced - prd_delivered - prd_failed));

    if (prd_failed || prd_delivered != produced) {
        rc = 1;
    }

    rd_kafka_destroy(rk);

    return rc;
}
