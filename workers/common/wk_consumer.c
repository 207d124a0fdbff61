/* wk_consumer.c: the Kafka consumer-group member the workers share:
 * subscription, rebalancing, polling and offset commits. */

#include <stdio.h>
#include <string.h>

#include "wk_consumer.h"
#include "wk_kafka.h"
#include "wk_log.h"
#include "wk_proc.h"


static rd_kafka_t          *wk_consumer_rk;
static rd_kafka_queue_t    *wk_consumer_queue;
static wk_consumer_conf_t   wk_consumer_cf;


static void
wk_consumer_error_cb(rd_kafka_t *rk, int err, const char *reason,
    void *opaque)
{
    char  buf[512];

    (void) opaque;

    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        rd_kafka_fatal_error(rk, buf, sizeof(buf));
        wk_error("kafka fatal error: %s", buf);
        wk_quit = wk_consumer_cf.fatal_quit;
        return;
    }

    wk_warn("kafka: %s: %s", rd_kafka_err2name(err), reason);
}


static void
wk_consumer_rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    int  cooperative;

    (void) opaque;

    cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE")
                  == 0;

    switch (err) {

    case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
        wk_info("assigned %d partition(s)", parts->cnt);

        if (cooperative) {
            rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
        } else {
            rd_kafka_assign(rk, parts);
        }

        if (wk_consumer_cf.assign) {
            wk_consumer_cf.assign(parts);
        }

        break;

    case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
        wk_info("%d partition(s) revoked%s", parts->cnt,
                rd_kafka_assignment_lost(rk) ? " (lost)" : "");

        if (wk_consumer_cf.revoke) {
            wk_consumer_cf.revoke(parts, 0);
        }

        if (cooperative) {
            rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
        } else {
            rd_kafka_assign(rk, NULL);
        }

        break;

    default:
        wk_error("rebalance failed: %s", rd_kafka_err2str(err));

        if (wk_consumer_cf.revoke) {
            wk_consumer_cf.revoke(parts, 1);
        }

        rd_kafka_assign(rk, NULL);
        break;
    }
}


static int
wk_consumer_subscribe(rd_kafka_t *rk, const wk_consumer_conf_t *cf)
{
    int                               i;
    char                              names[512];
    size_t                            len;
    rd_kafka_resp_err_t               err;
    rd_kafka_topic_partition_list_t  *topics;

    topics = rd_kafka_topic_partition_list_new(WK_CONSUMER_TOPICS);
    if (topics == NULL) {
        wk_error("out of memory");
        return -1;
    }

    names[0] = '\0';
    len = 0;

    for (i = 0; i < WK_CONSUMER_TOPICS; i++) {
        if (cf->topics[i] == NULL || *cf->topics[i] == '\0') {
            continue;
        }

        rd_kafka_topic_partition_list_add(topics, cf->topics[i],
                                          RD_KAFKA_PARTITION_UA);

        if (len < sizeof(names)) {
            len += snprintf(names + len, sizeof(names) - len, "%s\"%s\"",
                            len ? " and " : "", cf->topics[i]);
        }
    }

    err = rd_kafka_subscribe(rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);

    if (err) {
        wk_error("cannot subscribe to %s: %s", names,
                 rd_kafka_err2str(err));
        return -1;
    }

    wk_info("member of group \"%s\" on topic %s", cf->group, names);

    return 0;
}


rd_kafka_t *
wk_consumer_open(const wk_consumer_conf_t *cf)
{
    char              errstr[512], st[32];
    rd_kafka_t       *rk;
    rd_kafka_conf_t  *conf;

    wk_consumer_cf = *cf;

    conf = wk_kafka_conf(cf->brokers, cf->bootstrap_file,
                         cf->bootstrap_wait ? cf->bootstrap_wait : 30000,
                         cf->client_id);
    if (conf == NULL) {
        return NULL;
    }

    rd_kafka_conf_set_rebalance_cb(conf, wk_consumer_rebalance_cb);
    rd_kafka_conf_set_error_cb(conf, wk_consumer_error_cb);

    if (wk_kafka_set(conf, "group.id", cf->group) != 0
        || wk_kafka_set(conf, "enable.auto.commit", "false") != 0
        || wk_kafka_set(conf, "enable.auto.offset.store", "false") != 0
        || wk_kafka_set(conf, "auto.offset.reset", "earliest") != 0
        || wk_kafka_set(conf, "enable.partition.eof", "false") != 0)
    {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    if (cf->session_timeout) {
        snprintf(st, sizeof(st), "%lld", cf->session_timeout);

        if (wk_kafka_set(conf, "session.timeout.ms", st) != 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }

    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        wk_error("rd_kafka_new() failed: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    rd_kafka_poll_set_consumer(rk);

    wk_consumer_queue = rd_kafka_queue_get_consumer(rk);
    if (wk_consumer_queue == NULL) {
        wk_error("no consumer queue");
        rd_kafka_destroy(rk);
        return NULL;
    }

    /* a byte on wake_fd when the consumer queue gets something */
    if (cf->wake_fd >= 0) {
        rd_kafka_queue_io_event_enable(wk_consumer_queue, cf->wake_fd, "1",
                                       1);
    }

    if (wk_consumer_subscribe(rk, cf) != 0) {
        rd_kafka_queue_destroy(wk_consumer_queue);
        wk_consumer_queue = NULL;
        rd_kafka_destroy(rk);
        return NULL;
    }

    wk_consumer_rk = rk;

    return rk;
}


rd_kafka_message_t *
wk_consumer_poll(int timeout_ms)
{
    rd_kafka_message_t  *m;

    for ( ;; ) {
        m = rd_kafka_consumer_poll(wk_consumer_rk, timeout_ms);

        if (m == NULL || m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            return m;
        }

        if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET) {
            wk_error("offset reset: %s: records the broker deleted before "
                     "they were consumed are lost",
                     rd_kafka_message_errstr(m));

        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            wk_warn("consumer: %s", rd_kafka_message_errstr(m));
        }

        rd_kafka_message_destroy(m);

        /* an error is an event: what follows it is not waited for */
        timeout_ms = 0;
    }
}


int
wk_offsets_add(rd_kafka_topic_partition_list_t **offsets, const char *topic,
    int32_t partition, int64_t offset)
{
    rd_kafka_topic_partition_t  *tp;

    if (*offsets == NULL) {
        *offsets = rd_kafka_topic_partition_list_new(16);
        if (*offsets == NULL) {
            return -1;
        }
    }

    tp = rd_kafka_topic_partition_list_find(*offsets, topic, partition);
    if (tp == NULL) {
        tp = rd_kafka_topic_partition_list_add(*offsets, topic, partition);
    }

    if (tp->offset < offset) {
        tp->offset = offset;
    }

    return 0;
}


static void
wk_consumer_commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
    rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void) rk;
    (void) offsets;
    (void) opaque;

    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
        wk_warn("offset commit failed: %s (those records will be consumed "
                "again, harmlessly)", rd_kafka_err2str(err));
    }
}


int
wk_consumer_commit(rd_kafka_topic_partition_list_t *offsets, int sync)
{
    rd_kafka_resp_err_t  err;

    if (offsets == NULL) {
        return 0;
    }

    if (sync) {
        err = rd_kafka_commit(wk_consumer_rk, offsets, 0);

    } else {
        err = rd_kafka_commit_queue(wk_consumer_rk, offsets,
                                    wk_consumer_queue, wk_consumer_commit_cb,
                                    NULL);
    }

    if (err) {
        wk_consumer_commit_cb(wk_consumer_rk, err, offsets, NULL);
    }

    rd_kafka_topic_partition_list_destroy(offsets);

    return err && err != RD_KAFKA_RESP_ERR__NO_OFFSET ? -1 : 0;
}


void
wk_consumer_close(void)
{
    if (wk_consumer_rk == NULL) {
        return;
    }

    rd_kafka_queue_destroy(wk_consumer_queue);
    wk_consumer_queue = NULL;

    rd_kafka_consumer_close(wk_consumer_rk);
    rd_kafka_destroy(wk_consumer_rk);
    wk_consumer_rk = NULL;
}
