/* chat_kafka_broker.c: an in-memory Kafka broker on loopback (librdkafka's
 * mock cluster) with the chat topics, for tests and the embedded default. */

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

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
static char       *bkr_control_file;

/* the leader of each partition of each topic, as set by us: the mock
 * cluster does not say, and "kill" moves a dead broker's partitions */
#define BKR_TOPICS_MAX  16

typedef struct {
    char              *name;
    int               *leader;          /* [bkr_partitions] */
} bkr_topic_t;

static bkr_topic_t  bkr_topic[BKR_TOPICS_MAX];
static int          bkr_ntopics;
static int         *bkr_up;             /* [bkr_brokers + 1]: 1 up */

/* the control connection: one at a time, line commands */
#define BKR_LINE_MAX    256
#define BKR_OP_PAUSE    3               /* ms, see bkr_pause() */

static int          bkr_listen_fd = -1;
static int          bkr_client_fd = -1;
static char         bkr_line[BKR_LINE_MAX];
static size_t       bkr_line_len;


static wk_conf_t  bkr_conf[] = {
    { "brokers", WK_CONF_INT, "3",
      "number of brokers in the cluster (topics are replicated on up to 3)",
      &bkr_brokers, 1, 16, 0 },
    { "partitions", WK_CONF_INT, "6",
      "partitions of each topic", &bkr_partitions, 1, 10000, 0 },
    { "topics", WK_CONF_STR, "chat.messages,chat.receipts",
      "topics to create, separated by commas", &bkr_topics, 0, 0, 0 },
    { "bootstrap-file", WK_CONF_STR, "",
      "write the bootstrap servers to this file (removed on exit)",
      &bkr_bootstrap_file, 0, 0, 0 },
    { "control-file", WK_CONF_STR, "",
      "listen for control commands on 127.0.0.1 and write ADDR:PORT to "
      "this file", &bkr_control_file, 0, 0, 0 },
    WK_PID_CONF(bkr_pid_file),
    WK_LOG_CONF(bkr_log_level, "info"),
    { NULL, 0, NULL, NULL, NULL, 0, 0, 0 }
};


static wk_conf_spec_t  bkr_spec = {
    "chat-kafka-broker",
    "Runs a Kafka broker (librdkafka's mock cluster) on 127.0.0.1 and\n"
    "creates the topics. It keeps every message in memory only, and a\n"
    "partition keeps only its last ~5 MB: for tests and local runs, never\n"
    "for production. The brokers listen on ports chosen by the system\n"
    "(librdkafka 2.0 cannot choose them): the bootstrap servers are printed\n"
    "on stdout and written to --bootstrap-file. SIGTERM or SIGINT stops it.\n"
    "\n"
    "With --control-file it takes commands, one per line, on a loopback TCP\n"
    "port (each answered \"ok ...\" or \"error: ...\"), to play faults:\n"
    "  down ID                broker ID (1..brokers) refuses connections\n"
    "  up ID                  and takes them again\n"
    "  kill ID                down, and its partitions' leadership moves to\n"
    "                         the next broker up (what a controller does)\n"
    "  leader TOPIC P ID      partition P of TOPIC is led by broker ID\n"
    "  leaders                the leader of every partition\n"
    "  rtt ID MS              broker ID answers MS milliseconds late",
    bkr_conf,
    NULL, NULL, NULL, NULL
};


static void bkr_pause(void);
static int bkr_set_leader(rd_kafka_mock_cluster_t *mc, bkr_topic_t *t,
    int p, int id);


static void
bkr_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void) rk;

    if (strcmp(fac, "CONFWARN") == 0) {
        return;     /* "no bootstrap.servers": this handle needs none */
    }

    wk_log(wk_log_from_syslog(level), "rdkafka %s: %s", fac, buf);
}


/* leaders spread over the brokers, partition p on broker p % n + 1 */
static int
bkr_track_topic(rd_kafka_mock_cluster_t *mc, const char *topic)
{
    int           p;
    bkr_topic_t  *t;

    if (bkr_ntopics == BKR_TOPICS_MAX) {
        wk_error("more than %d topics", BKR_TOPICS_MAX);
        return -1;
    }

    t = &bkr_topic[bkr_ntopics];
    t->name = strdup(topic);
    t->leader = calloc((size_t) bkr_partitions, sizeof(int));

    if (t->name == NULL || t->leader == NULL) {
        free(t->name);
        free(t->leader);
        wk_error("out of memory");
        return -1;
    }

    bkr_ntopics++;

    for (p = 0; p < (int) bkr_partitions; p++) {
        if (bkr_set_leader(mc, t, p, p % (int) bkr_brokers + 1) != 0) {
            wk_error("cannot set the leader of %s [%d]", topic, p);
            return -1;
        }
    }

    return 0;
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
        bkr_pause();

        err = rd_kafka_mock_topic_create(mc, topic, (int) bkr_partitions,
                                         replicas);
        if (err) {
            wk_error("cannot create topic \"%s\": %s", topic,
                     rd_kafka_err2str(err));
            free(list);
            return -1;
        }

        if (bkr_track_topic(mc, topic) != 0) {
            free(list);
            return -1;
        }

        wk_info("topic \"%s\": %lld partitions, replication factor %d",
                topic, bkr_partitions, replicas);
    }

    free(list);

    return 0;
}


/* the control port: 127.0.0.1, a port the system chooses, in the file */
static int
bkr_control_open(void)
{
    int                 fd, one;
    char                text[64];
    socklen_t           len;
    struct sockaddr_in  sin;

    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd == -1) {
        wk_error("control: socket() failed: %s", strerror(errno));
        return -1;
    }

    one = 1;
    (void) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sin.sin_port = 0;

    len = sizeof(sin);

    if (bind(fd, (struct sockaddr *) &sin, sizeof(sin)) == -1
        || listen(fd, 4) == -1
        || getsockname(fd, (struct sockaddr *) &sin, &len) == -1)
    {
        wk_error("control: cannot listen on 127.0.0.1: %s", strerror(errno));
        close(fd);
        return -1;
    }

    snprintf(text, sizeof(text), "127.0.0.1:%d\n", ntohs(sin.sin_port));

    if (wk_write_file(bkr_control_file, text) != 0) {
        close(fd);
        return -1;
    }

    bkr_listen_fd = fd;

    wk_info("control commands on 127.0.0.1:%d", ntohs(sin.sin_port));

    return 0;
}


static int
bkr_broker_id(const char *arg)
{
    char  *end;
    long   id;

    if (arg == NULL) {
        return -1;
    }

    id = strtol(arg, &end, 10);

    return (*end == '\0' && id >= 1 && id <= bkr_brokers) ? (int) id : -1;
}


static bkr_topic_t *
bkr_find_topic(const char *name)
{
    int  i;

    for (i = 0; name && i < bkr_ntopics; i++) {
        if (strcmp(bkr_topic[i].name, name) == 0) {
            return &bkr_topic[i];
        }
    }

    return NULL;
}


/*
 * librdkafka 2.0's mock thread misses the wake-up of a request made right
 * after its answer to the previous one and sleeps out its 1 s poll: a
 * short pause between requests keeps six of them from taking 5 s
 */
static void
bkr_pause(void)
{
    wk_nap_ms(BKR_OP_PAUSE);
}


static int
bkr_set_leader(rd_kafka_mock_cluster_t *mc, bkr_topic_t *t, int p, int id)
{
    bkr_pause();

    if (rd_kafka_mock_partition_set_leader(mc, t->name, p, id)) {
        return -1;
    }

    t->leader[p] = id;

    return 0;
}


/* a broker's partitions go to the next broker up, as an election would */
static int
bkr_move_leaders(rd_kafka_mock_cluster_t *mc, int id)
{
    int           i, p, k, to, moved;
    bkr_topic_t  *t;

    moved = 0;

    for (i = 0; i < bkr_ntopics; i++) {
        t = &bkr_topic[i];

        for (p = 0; p < (int) bkr_partitions; p++) {
            if (t->leader[p] != id) {
                continue;
            }

            for (k = 1; k < (int) bkr_brokers; k++) {
                to = (id - 1 + k) % (int) bkr_brokers + 1;

                if (bkr_up[to]) {
                    if (bkr_set_leader(mc, t, p, to) != 0) {
                        return -1;
                    }

                    moved++;
                    break;
                }
            }
        }
    }

    return moved;
}


/* runs one command line; the answer goes into out */
static void
bkr_command(rd_kafka_mock_cluster_t *mc, char *line, char *out, size_t size)
{
    int           id, p, n;
    long          ms;
    char         *cmd, *a1, *a2, *a3, *save, *end;
    size_t        len;
    bkr_topic_t  *t;

    cmd = strtok_r(line, " \t\r", &save);
    a1 = cmd ? strtok_r(NULL, " \t\r", &save) : NULL;
    a2 = a1 ? strtok_r(NULL, " \t\r", &save) : NULL;
    a3 = a2 ? strtok_r(NULL, " \t\r", &save) : NULL;

    if (cmd == NULL) {
        snprintf(out, size, "error: empty command\n");
        return;
    }

    if (strcmp(cmd, "down") == 0 || strcmp(cmd, "up") == 0
        || strcmp(cmd, "kill") == 0)
    {
        id = bkr_broker_id(a1);
        if (id < 0) {
            snprintf(out, size, "error: %s needs a broker id, 1 to %lld\n",
                     cmd, bkr_brokers);
            return;
        }

        bkr_pause();

        if (cmd[0] == 'u') {
            rd_kafka_mock_broker_set_up(mc, id);
            bkr_up[id] = 1;
            wk_info("control: broker %d up", id);
            snprintf(out, size, "ok broker %d up\n", id);
            return;
        }

        rd_kafka_mock_broker_set_down(mc, id);
        bkr_up[id] = 0;
        wk_info("control: broker %d down", id);

        if (cmd[0] == 'd') {
            snprintf(out, size, "ok broker %d down\n", id);
            return;
        }

        n = bkr_move_leaders(mc, id);
        if (n < 0) {
            snprintf(out, size, "error: moving the leaders failed\n");
            return;
        }

        wk_info("control: %d partition leader(s) moved off broker %d", n, id);
        snprintf(out, size, "ok broker %d down, %d leader(s) moved\n", id, n);
        return;
    }

    if (strcmp(cmd, "leader") == 0) {
        t = bkr_find_topic(a1);
        p = a2 ? (int) strtol(a2, &end, 10) : -1;
        id = bkr_broker_id(a3);

        if (t == NULL || a2 == NULL || *end != '\0' || p < 0
            || p >= (int) bkr_partitions || id < 0)
        {
            snprintf(out, size, "error: leader TOPIC PARTITION BROKER\n");
            return;
        }

        if (bkr_set_leader(mc, t, p, id) != 0) {
            snprintf(out, size, "error: the mock cluster refused\n");
            return;
        }

        wk_info("control: %s [%d] led by broker %d", t->name, p, id);
        snprintf(out, size, "ok %s [%d] led by broker %d\n", t->name, p, id);
        return;
    }

    if (strcmp(cmd, "leaders") == 0) {
        len = (size_t) snprintf(out, size, "ok");

        for (n = 0; n < bkr_ntopics && len < size; n++) {
            t = &bkr_topic[n];
            len += (size_t) snprintf(out + len, size - len, " %s:", t->name);

            for (p = 0; p < (int) bkr_partitions && len < size; p++) {
                len += (size_t) snprintf(out + len, size - len, "%s%d",
                                         p ? "," : "", t->leader[p]);
            }
        }

        if (len < size) {
            snprintf(out + len, size - len, "\n");
        }

        return;
    }

    if (strcmp(cmd, "rtt") == 0) {
        id = bkr_broker_id(a1);
        ms = a2 ? strtol(a2, &end, 10) : -1;

        if (id < 0 || a2 == NULL || *end != '\0' || ms < 0 || ms > 60000) {
            snprintf(out, size, "error: rtt BROKER MS (0 to 60000)\n");
            return;
        }

        bkr_pause();
        rd_kafka_mock_broker_set_rtt(mc, id, (int) ms);
        wk_info("control: broker %d rtt %ld ms", id, ms);
        snprintf(out, size, "ok broker %d rtt %ld ms\n", id, ms);
        return;
    }

    snprintf(out, size, "error: unknown command \"%.40s\"\n", cmd);
}


static void
bkr_client_close(void)
{
    if (bkr_client_fd != -1) {
        close(bkr_client_fd);
        bkr_client_fd = -1;
    }

    bkr_line_len = 0;
}


/* the commands in what came; a line too long is an error, then skipped */
static void
bkr_client_read(rd_kafka_mock_cluster_t *mc)
{
    char     *nl, answer[4096];
    size_t    used;
    ssize_t   n;

    n = read(bkr_client_fd, bkr_line + bkr_line_len,
             sizeof(bkr_line) - 1 - bkr_line_len);

    if (n <= 0) {
        if (n == -1 && (errno == EINTR || errno == EAGAIN)) {
            return;
        }

        bkr_client_close();
        return;
    }

    bkr_line_len += (size_t) n;
    bkr_line[bkr_line_len] = '\0';

    while ((nl = memchr(bkr_line, '\n', bkr_line_len)) != NULL) {
        *nl = '\0';
        used = (size_t) (nl - bkr_line) + 1;

        bkr_command(mc, bkr_line, answer, sizeof(answer));

        if (write(bkr_client_fd, answer, strlen(answer)) == -1) {
            bkr_client_close();
            return;
        }

        memmove(bkr_line, bkr_line + used, bkr_line_len - used);
        bkr_line_len -= used;
    }

    if (bkr_line_len == sizeof(bkr_line) - 1) {
        snprintf(answer, sizeof(answer), "error: line too long\n");

        /* the client is dropped whether or not it could read why */
        if (write(bkr_client_fd, answer, strlen(answer)) == -1) {
            fprintf(stderr, "chat-kafka-broker: control client: %s\n",
                    strerror(errno));
        }

        bkr_client_close();
    }
}


/* waits up to ms for control commands and runs them */
static void
bkr_control_poll(rd_kafka_mock_cluster_t *mc, int ms)
{
    int            fd, n;
    struct pollfd  pfd[2];

    if (bkr_listen_fd == -1) {
        wk_sleep_ms(ms);
        return;
    }

    pfd[0].fd = bkr_listen_fd;
    pfd[0].events = POLLIN;
    pfd[1].fd = bkr_client_fd;
    pfd[1].events = POLLIN;

    n = poll(pfd, bkr_client_fd == -1 ? 1 : 2, ms);
    if (n <= 0) {
        return;
    }

    if (bkr_client_fd != -1 && (pfd[1].revents & (POLLIN|POLLHUP|POLLERR))) {
        bkr_client_read(mc);
    }

    if (pfd[0].revents & POLLIN) {
        fd = accept(bkr_listen_fd, NULL, NULL);

        if (fd != -1) {
            /* one controller at a time: the newest */
            bkr_client_close();
            bkr_client_fd = fd;
        }
    }
}


int
main(int argc, char **argv)
{
    int                       rc, written, i;
    char                      errstr[512], *line;
    const char               *bootstraps;
    rd_kafka_t               *rk;
    rd_kafka_conf_t          *conf;
    rd_kafka_mock_cluster_t  *mc;

    rc = wk_start(&bkr_spec, argc, argv, &bkr_log_level, 1);
    if (rc >= 0) {
        return rc;
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

    bkr_up = calloc((size_t) bkr_brokers + 1, sizeof(int));
    if (bkr_up == NULL) {
        wk_error("out of memory");
        goto done;
    }

    for (i = 1; i <= (int) bkr_brokers; i++) {
        bkr_up[i] = 1;
    }

    if (bkr_create_topics(mc) != 0) {
        goto done;
    }

    if (*bkr_control_file && bkr_control_open() != 0) {
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
        bkr_control_poll(mc, 1000);
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

    bkr_client_close();

    if (bkr_listen_fd != -1) {
        close(bkr_listen_fd);
        unlink(bkr_control_file);
    }

    for (i = 0; i < bkr_ntopics; i++) {
        free(bkr_topic[i].name);
        free(bkr_topic[i].leader);
    }

    free(bkr_up);

    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);

    return rc;
}
