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
 * The one place that knows how the gateway records presence
 * (ngx_chat_presence.c): chat:p:<user> is a sorted set of the user's
 * session ids scored by their expiry in ms of Redis's clock (TIME); the
 * user is online while some score lies in the future. KEYS: chat:p:<user>
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
        len += sizeof("chat:p:") + strlen(users[i]);
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
        lens[i + 3] = (size_t) sprintf(keys + off, "chat:p:%s", users[i]);
        off += lens[i + 3] + 1;
    }

    rc = -1;

    for (attempt = 0; attempt < 2 && rc != 0; attempt++) {
        if (psh_presence_connect() != 0) {
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
    if (psh_rc) {
        redisFree(psh_rc);
        psh_rc = NULL;
    }
}
