/* push_presence.c: whether users have a live gateway session, as the
 * push worker asks Redis (the one place that knows the presence keys). */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "common/wk_log.h"
#include "push_presence.h"


static const char     *psh_presence_addr;
static long long       psh_presence_db;
static redisContext   *psh_rc;


/*
 * A Redis Cluster (found when the many-key script is refused with
 * CROSSSLOT, or a key is elsewhere: MOVED): one script per user, on the
 * node of the user's slot, reached by following MOVED and ASK; a
 * connection per node kept.
 */
#define PSH_NODES_MAX  64

typedef struct {
    char             addr[64];
    redisContext    *rc;
} psh_node_t;

static int             psh_cluster;
static psh_node_t      psh_nodes[PSH_NODES_MAX];
static size_t          psh_nnodes;


/*
 * The one place that knows how the gateway records presence
 * (ngx_chat_presence.c): chat:p:{<user>} is a sorted set of the user's
 * session ids scored by their expiry in ms of Redis's clock (TIME); the
 * user is online while some score lies in the future. KEYS: chat:p:{<user>}
 * for each user; the reply: 1 (online) or 0 for each, in order.
 */
static const char  psh_presence_lua[] =
    "local t = redis.call('TIME') "
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
    "local r = {} "
    "for i, k in ipairs(KEYS) do"
    "  r[i] = redis.call('ZCOUNT', k, '(' .. now, '+inf') > 0 and 1 or 0 "
    "end "
    "return r";


static int
psh_presence_connect(void)
{
    char            host[256], *colon;
    long            port;
    redisReply     *reply;
    struct timeval  tv;

    if (psh_rc != NULL) {
        return 0;
    }

    tv.tv_sec = 2;
    tv.tv_usec = 0;

    if (psh_presence_addr[0] == '/') {
        psh_rc = redisConnectUnixWithTimeout(psh_presence_addr, tv);

    } else {
        snprintf(host, sizeof(host), "%s", psh_presence_addr);
        colon = strrchr(host, ':');
        port = 6379;

        if (colon != NULL) {
            *colon = '\0';
            port = atol(colon + 1);
        }

        psh_rc = redisConnectWithTimeout(host, (int) port, tv);
    }

    if (psh_rc == NULL || psh_rc->err) {
        wk_warn("cannot connect to Redis at %s: %s", psh_presence_addr,
                psh_rc ? psh_rc->errstr : "out of memory");
        goto failed;
    }

    if (redisSetTimeout(psh_rc, tv) != REDIS_OK) {
        goto failed;
    }

    if (psh_presence_db) {
        reply = redisCommand(psh_rc, "SELECT %lld", psh_presence_db);

        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            wk_warn("Redis SELECT failed");
            freeReplyObject(reply);
            goto failed;
        }

        freeReplyObject(reply);
    }

    return 0;

failed:

    if (psh_rc) {
        redisFree(psh_rc);
        psh_rc = NULL;
    }

    return -1;
}


static redisContext *
psh_node(const char *addr, size_t len)
{
    char            host[64];
    long            port;
    size_t          i;
    psh_node_t     *nd;
    struct timeval  tv;
    char           *colon;

    if (len == 0 || len >= sizeof(host)) {
        return NULL;
    }

    for (i = 0; i < psh_nnodes; i++) {
        if (strlen(psh_nodes[i].addr) == len
            && memcmp(psh_nodes[i].addr, addr, len) == 0)
        {
            if (psh_nodes[i].rc != NULL) {
                return psh_nodes[i].rc;
            }

            break;
        }
    }

    if (i == psh_nnodes) {
        if (psh_nnodes == PSH_NODES_MAX) {
            return NULL;
        }

        psh_nnodes++;
        memcpy(psh_nodes[i].addr, addr, len);
        psh_nodes[i].addr[len] = '\0';
    }

    nd = &psh_nodes[i];

    memcpy(host, addr, len);
    host[len] = '\0';
    colon = strrchr(host, ':');
    if (colon == NULL) {
        return NULL;
    }

    *colon = '\0';
    port = atol(colon + 1);

    tv.tv_sec = 2;
    tv.tv_usec = 0;

    nd->rc = redisConnectWithTimeout(host, (int) port, tv);

    if (nd->rc == NULL || nd->rc->err
        || redisSetTimeout(nd->rc, tv) != REDIS_OK)
    {
        wk_warn("cannot connect to the Redis Cluster node %s", nd->addr);
        if (nd->rc) {
            redisFree(nd->rc);
            nd->rc = NULL;
        }

        return NULL;
    }

    return nd->rc;
}


static void
psh_node_drop(redisContext *rc)
{
    size_t  i;

    for (i = 0; i < psh_nnodes; i++) {
        if (psh_nodes[i].rc == rc) {
            redisFree(rc);
            psh_nodes[i].rc = NULL;
        }
    }
}


/* a cluster: one user's key, following MOVED and ASK; -1 on failure */

static int
psh_online_one(const char *key, size_t keylen, int *online)
{
    int            hop, asking;
    const char    *addr;
    redisReply    *reply, *ok;
    redisContext  *rc;

    rc = psh_rc;
    asking = 0;

    for (hop = 0; hop < 4 && rc != NULL; hop++) {
        if (asking) {
            ok = redisCommand(rc, "ASKING");
            freeReplyObject(ok);
        }

        reply = redisCommand(rc, "EVAL %s 1 %b", psh_presence_lua, key,
                             keylen);

        if (reply == NULL) {
            wk_warn("Redis: %s", rc->errstr);

            if (rc == psh_rc) {
                redisFree(psh_rc);
                psh_rc = NULL;

            } else {
                psh_node_drop(rc);
            }

            return -1;
        }

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1) {
            *online = reply->element[0]->type == REDIS_REPLY_INTEGER
                      && reply->element[0]->integer == 1;
            freeReplyObject(reply);
            return 0;
        }

        /* "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" */

        if (reply->type == REDIS_REPLY_ERROR
            && (strncmp(reply->str, "MOVED ", 6) == 0
                || strncmp(reply->str, "ASK ", 4) == 0))
        {
            asking = reply->str[0] == 'A';
            addr = strrchr(reply->str, ' ');
            rc = addr ? psh_node(addr + 1, strlen(addr + 1)) : NULL;
            freeReplyObject(reply);
            continue;
        }

        wk_warn("Redis: unexpected presence reply%s%s",
                reply->type == REDIS_REPLY_ERROR ? ": " : "",
                reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        freeReplyObject(reply);
        return -1;
    }

    return -1;
}


/*
 * online[i] = 1 if users[i] has a live session. When Redis cannot be
 * asked, everyone counts as offline: a needless notification is better
 * than a lost one. Returns 0, or -1 when Redis failed (logged).
 */
int
psh_online(char **users, size_t n, int *online)
{
    int          rc, attempt;
    char        *keys, nbuf[24];
    size_t       i, len, off, *lens;
    const char **argv;
    redisReply  *reply;

    memset(online, 0, n * sizeof(int));

    if (n == 0) {
        return 0;
    }

    argv = calloc(n + 3, sizeof(char *));
    lens = calloc(n + 3, sizeof(size_t));

    len = 0;
    for (i = 0; i < n; i++) {
        len += sizeof("chat:p:{}") + strlen(users[i]);
    }

    keys = malloc(len);

    if (argv == NULL || lens == NULL || keys == NULL) {
        wk_error("out of memory");
        free(argv);
        free(lens);
        free(keys);
        return -1;
    }

    argv[0] = "EVAL";
    lens[0] = 4;
    argv[1] = psh_presence_lua;
    lens[1] = sizeof(psh_presence_lua) - 1;

    snprintf(nbuf, sizeof(nbuf), "%zu", n);
    argv[2] = nbuf;
    lens[2] = strlen(nbuf);

    off = 0;
    for (i = 0; i < n; i++) {
        argv[i + 3] = keys + off;
        lens[i + 3] = (size_t) sprintf(keys + off, "chat:p:{%s}", users[i]);
        off += lens[i + 3] + 1;
    }

    rc = -1;

    for (attempt = 0; attempt < 2 && rc != 0; attempt++) {
        if (psh_presence_connect() != 0) {
            continue;
        }

        if (psh_cluster) {
            for (i = 0; i < n; i++) {
                if (psh_online_one(argv[i + 3], lens[i + 3], &online[i])
                    != 0)
                {
                    break;
                }
            }

            if (i == n) {
                rc = 0;
            }

            continue;
        }

        reply = redisCommandArgv(psh_rc, (int) n + 3, argv, lens);

        if (reply == NULL) {
            wk_warn("Redis: %s", psh_rc->errstr);
            redisFree(psh_rc);
            psh_rc = NULL;
            continue;
        }

        if (reply->type == REDIS_REPLY_ARRAY && reply->elements == n) {
            for (i = 0; i < n; i++) {
                online[i] = reply->element[i]->type == REDIS_REPLY_INTEGER
                            && reply->element[i]->integer == 1;
            }

            rc = 0;

        } else if (reply->type == REDIS_REPLY_ERROR
                   && (strncmp(reply->str, "CROSSSLOT", 9) == 0
                       || strncmp(reply->str, "MOVED ", 6) == 0
                       || strncmp(reply->str, "ASK ", 4) == 0))
        {
            /* a Redis Cluster: a script per user from now on */
            wk_info("Redis is a cluster: presence is asked per user");
            psh_cluster = 1;
            freeReplyObject(reply);
            attempt--;
            continue;

        } else {
            wk_warn("Redis: unexpected presence reply%s%s",
                    reply->type == REDIS_REPLY_ERROR ? ": " : "",
                    reply->type == REDIS_REPLY_ERROR ? reply->str : "");
            freeReplyObject(reply);
            break;
        }

        freeReplyObject(reply);
    }

    if (rc != 0) {
        wk_warn("presence unknown: %zu user(s) count as offline", n);
    }

    free(argv);
    free(lens);
    free(keys);

    return rc;
}

int
psh_presence_init(const char *addr, long long db)
{
    psh_presence_addr = addr;
    psh_presence_db = db;

    return psh_presence_connect();
}


void
psh_presence_close(void)
{
    size_t  i;

    if (psh_rc) {
        redisFree(psh_rc);
        psh_rc = NULL;
    }

    for (i = 0; i < psh_nnodes; i++) {
        if (psh_nodes[i].rc) {
            redisFree(psh_nodes[i].rc);
            psh_nodes[i].rc = NULL;
        }
    }

    psh_nnodes = 0;
}
