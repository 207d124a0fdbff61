/* wk_kafka.c: librdkafka setup shared by the workers and test tools. */

#include <stdlib.h>
#include <string.h>

#include "wk_kafka.h"
#include "wk_log.h"
#include "wk_proc.h"


#define WK_KAFKA_MAX_EXTRA  64


static struct {
    char  *name;
    char  *value;
} wk_kafka_extras[WK_KAFKA_MAX_EXTRA];

static int  wk_kafka_nextras;


static void
wk_kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
    const char *buf)
{
    (void) rk;

    wk_log(wk_log_from_syslog(level), "rdkafka %s: %s", fac, buf);
}


int
wk_kafka_extra(const char *name, const char *value, void *data)
{
    (void) data;

    if (wk_kafka_nextras == WK_KAFKA_MAX_EXTRA) {
        return -1;
    }

    wk_kafka_extras[wk_kafka_nextras].name = strdup(name);
    wk_kafka_extras[wk_kafka_nextras].value = strdup(value);

    if (wk_kafka_extras[wk_kafka_nextras].name == NULL
        || wk_kafka_extras[wk_kafka_nextras].value == NULL)
    {
        return -1;
    }

    wk_kafka_nextras++;

    return 0;
}


int
wk_kafka_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char  errstr[512];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr))
        != RD_KAFKA_CONF_OK)
    {
        wk_error("kafka setting %s: %s", name, errstr);
        return -1;
    }

    return 0;
}


rd_kafka_conf_t *
wk_kafka_conf(const char *brokers, const char *bootstrap_file, long wait_ms,
    const char *client_id)
{
    char              line[4096];
    int64_t           deadline;
    rd_kafka_conf_t  *conf;
    int               i;

    if (brokers == NULL || *brokers == '\0') {
        if (bootstrap_file == NULL || *bootstrap_file == '\0') {
            wk_error("neither brokers nor bootstrap-file is set");
            return NULL;
        }

        deadline = wk_now_ms() + wait_ms;

        while (wk_read_line(bootstrap_file, line, sizeof(line)) != 0) {
            if (wk_now_ms() >= deadline || wk_quit) {
                wk_error("no bootstrap servers in \"%s\"", bootstrap_file);
                return NULL;
            }

            wk_sleep_ms(100);
        }

        brokers = line;
    }

    conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, wk_kafka_log_cb);

    if (wk_kafka_set(conf, "bootstrap.servers", brokers) != 0
        || wk_kafka_set(conf, "client.id", client_id) != 0)
    {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }

    for (i = 0; i < wk_kafka_nextras; i++) {
        if (wk_kafka_set(conf, wk_kafka_extras[i].name,
                         wk_kafka_extras[i].value)
            != 0)
        {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    }

    wk_info("kafka bootstrap servers %s", brokers);

    return conf;
}
