/* ngx_chat_redis_cluster.c: Redis Cluster for the worker's Redis: the slot
 * of a key, the slot map (CLUSTER SLOTS), MOVED and ASK. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_chat_redis.h"
#include "ngx_chat_redis_int.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_keys.h"
#include "ngx_chat_lua.h"


#define NGX_CHAT_REDIS_REFRESH_MIN   100   /* ms between two CLUSTER SLOTS */
#define NGX_CHAT_REDIS_REFRESH_POLL  200   /* while a slot has no primary */
#define NGX_CHAT_REDIS_REDIRECTS     5
#define NGX_CHAT_REDIS_TRYAGAIN      20    /* ms; a slot mid-migration */
#define NGX_CHAT_REDIS_TRYAGAIN_MAX  50    /* times, then it fails */


static uint16_t ngx_chat_redis_crc16(const u_char *p, size_t len);
static void ngx_chat_redis_refresh_handler(ngx_event_t *ev);
static void ngx_chat_redis_slots_reply(redisReply *reply, void *data);
static ngx_chat_redis_node_t *ngx_chat_redis_node_at(u_char *host,
    size_t len, ngx_int_t port);
static void ngx_chat_redis_cluster_check(void);
static void ngx_chat_redis_retry_handler(ngx_event_t *ev);
static ngx_int_t ngx_chat_redis_bump_mark(ngx_chat_redis_node_t *node,
    ngx_uint_t slot);
static void ngx_chat_redis_bump(ngx_chat_redis_node_t *node);


ngx_int_t
ngx_chat_redis_cluster_init(ngx_chat_redis_t *r, ngx_array_t *seeds)
{
    size_t       len;
    uint32_t     n;
    ngx_uint_t   i, s, found;
    ngx_addr_t  *addr;
    u_char       text[NGX_INT_T_LEN];

    r->cluster = 1;

    r->slots = ngx_palloc(r->pool, NGX_CHAT_REDIS_SLOTS * sizeof(uint16_t));
    r->old_slots = ngx_palloc(r->pool,
                              NGX_CHAT_REDIS_SLOTS * sizeof(uint16_t));
    if (r->slots == NULL || r->old_slots == NULL) {
        return NGX_ERROR;
    }

    for (i = 0; i < NGX_CHAT_REDIS_SLOTS; i++) {
        r->slots[i] = NGX_CHAT_REDIS_NO_NODE;
    }

    /* a tag per slot: the smallest number whose text hashes to it (all
     * 16,384 slots are hit below 200,000, ~1 ms) */

    r->tags = ngx_palloc(r->pool, NGX_CHAT_REDIS_SLOTS * sizeof(uint32_t));
    if (r->tags == NULL) {
        return NGX_ERROR;
    }

    ngx_memset(r->tags, 0xff, NGX_CHAT_REDIS_SLOTS * sizeof(uint32_t));

    for (n = 0, found = 0;
         found < NGX_CHAT_REDIS_SLOTS && n < 0x7fffffff;
         n++)
    {
        len = ngx_sprintf(text, "%uD", n) - text;
        s = ngx_chat_redis_crc16(text, len) & (NGX_CHAT_REDIS_SLOTS - 1);

        if (r->tags[s] == 0xffffffff) {
            r->tags[s] = n;
            found++;
        }
    }

    ngx_queue_init(&r->retry);
    r->retry_timer.handler = ngx_chat_redis_retry_handler;
    r->retry_timer.data = r;
    r->retry_timer.log = r->log;
    r->retry_timer.cancelable = 1;

    r->refresh.handler = ngx_chat_redis_refresh_handler;
    r->refresh.data = r;
    r->refresh.log = r->log;
    r->refresh.cancelable = 1;

    addr = seeds->elts;

    for (i = 0; i < seeds->nelts; i++) {
        if (ngx_chat_redis_node_add(&addr[i]) == NULL) {
            return NGX_ERROR;
        }
    }

    /* the first node to connect asks for the map (cmd_connect) */

    return NGX_OK;
}


/*
 * The slot of a key: CRC16 (XMODEM: polynomial 0x1021, initial 0) of its
 * hash tag, the part between the first "{" and the next "}" when that is
 * not empty, else of the whole key; modulo 16384.
 */

ngx_uint_t
ngx_chat_redis_slot(const u_char *key, size_t len)
{
    size_t  i, j;

    for (i = 0; i < len; i++) {
        if (key[i] == '{') {
            break;
        }
    }

    if (i < len) {
        for (j = i + 1; j < len; j++) {
            if (key[j] == '}') {
                break;
            }
        }

        if (j < len && j > i + 1) {
            key += i + 1;
            len = j - i - 1;
        }
    }

    return ngx_chat_redis_crc16(key, len) & (NGX_CHAT_REDIS_SLOTS - 1);
}


ngx_uint_t
ngx_chat_redis_is_cluster(void)
{
    return ngx_chat_redis.cluster;
}


ngx_uint_t
ngx_chat_redis_key_slot_of(const u_char *key, size_t len)
{
    return ngx_chat_redis_slot(key, len);
}


size_t
ngx_chat_redis_slot_tag(ngx_uint_t slot, u_char *buf)
{
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    if (r->tags == NULL) {
        return 0;
    }

    return ngx_sprintf(buf, "%uD", r->tags[slot & (NGX_CHAT_REDIS_SLOTS - 1)])
           - buf;
}


static uint16_t
ngx_chat_redis_crc16(const u_char *p, size_t len)
{
    ngx_uint_t  bit;
    uint32_t    crc;

    crc = 0;

    while (len--) {
        crc ^= (uint32_t) *p++ << 8;

        for (bit = 0; bit < 8; bit++) {
            crc = (crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1;
        }
    }

    return (uint16_t) (crc & 0xffff);
}


ngx_chat_redis_node_t *
ngx_chat_redis_slot_node(ngx_int_t slot)
{
    ngx_uint_t              i;
    ngx_chat_redis_t       *r;
    ngx_chat_redis_node_t  *node;

    r = &ngx_chat_redis;

    i = r->slots[slot & (NGX_CHAT_REDIS_SLOTS - 1)];

    if (i == NGX_CHAT_REDIS_NO_NODE || i >= r->nnodes) {
        ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_MIN);
        return NULL;
    }

    node = r->nodes[i];

    if (!node->cmd.connected) {
        /* a primary that is down: a failover may already have happened */
        ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_MIN);
        return NULL;
    }

    return node;
}


/* asks for the map after delay ms (not sooner than 100 ms after the last
 * time); one question at a time */

void
ngx_chat_redis_refresh(ngx_msec_t delay)
{
    ngx_msec_t         since;
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    if (!r->cluster || r->exiting || ngx_exiting || ngx_terminate
        || ngx_quit || r->refresh.timer_set || r->refreshing)
    {
        return;
    }

    since = ngx_current_msec - r->refreshed;

    if (r->refreshed && since < NGX_CHAT_REDIS_REFRESH_MIN
        && delay < NGX_CHAT_REDIS_REFRESH_MIN - since)
    {
        delay = NGX_CHAT_REDIS_REFRESH_MIN - since;
    }

    ngx_add_timer(&r->refresh, delay ? delay : 1);
}


static void
ngx_chat_redis_refresh_handler(ngx_event_t *ev)
{
    int                     len;
    char                   *cmd;
    ngx_uint_t              i, n;
    ngx_chat_redis_t       *r;
    ngx_chat_redis_req_t   *req;
    ngx_chat_redis_node_t  *node;

    r = ev->data;

    if (r->exiting || r->refreshing) {
        return;
    }

    /* any live node knows the map: the seeds and nodes in turn */

    node = NULL;
    n = r->nnodes;

    for (i = 0; i < n; i++) {
        node = r->nodes[(r->sub_node + i) % n];

        if (node->cmd.connected) {
            break;
        }

        node = NULL;
    }

    if (node == NULL) {
        /* the links reconnect by themselves; try again */
        ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_POLL);
        return;
    }

    cmd = NULL;
    len = redisFormatCommand(&cmd, "CLUSTER SLOTS");
    if (len < 0 || cmd == NULL) {
        ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_POLL);
        return;
    }

    /* the request keeps cmd: node_send takes it over */

    req = ngx_chat_redis_node_request(cmd, len, ngx_chat_redis_slots_reply,
                                      r);
    if (req == NULL) {
        ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_POLL);
        return;
    }

    if (ngx_chat_redis_node_send(node, req, 0) != NGX_OK) {
        req->handler = NULL;
        ngx_chat_redis_fail_req(req);
        ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_POLL);
        return;
    }

    r->refreshing = 1;
    r->refreshed = ngx_current_msec;
}


/*
 * CLUSTER SLOTS: an array of ranges, each
 *     start, end, [host, port, id, ...] of the primary, then the replicas
 */

static void
ngx_chat_redis_slots_reply(redisReply *reply, void *data)
{
    ngx_uint_t              i, s, start, end, covered, old;
    redisReply             *range, *primary;
    ngx_chat_redis_t       *r;
    ngx_chat_redis_node_t  *node;

    r = data;
    r->refreshing = 0;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, r->log, 0,
                          "chat redis: CLUSTER SLOTS: %*s",
                          (size_t) reply->len, reply->str);
        }

        ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_POLL);
        return;
    }

    ngx_memcpy(r->old_slots, r->slots,
               NGX_CHAT_REDIS_SLOTS * sizeof(uint16_t));

    for (s = 0; s < NGX_CHAT_REDIS_SLOTS; s++) {
        r->slots[s] = NGX_CHAT_REDIS_NO_NODE;
    }

    covered = 0;

    for (i = 0; i < reply->elements; i++) {
        range = reply->element[i];

        if (range->type != REDIS_REPLY_ARRAY || range->elements < 3
            || range->element[0]->type != REDIS_REPLY_INTEGER
            || range->element[1]->type != REDIS_REPLY_INTEGER
            || range->element[2]->type != REDIS_REPLY_ARRAY
            || range->element[2]->elements < 2)
        {
            continue;
        }

        start = (ngx_uint_t) range->element[0]->integer;
        end = (ngx_uint_t) range->element[1]->integer;
        primary = range->element[2];

        if (start > end || end >= NGX_CHAT_REDIS_SLOTS
            || primary->element[0]->type != REDIS_REPLY_STRING
            || primary->element[1]->type != REDIS_REPLY_INTEGER)
        {
            continue;
        }

        node = ngx_chat_redis_node_at((u_char *) primary->element[0]->str,
                                      primary->element[0]->len,
                                      (ngx_int_t) primary->element[1]->integer);
        if (node == NULL) {
            continue;
        }

        if (primary->elements > 2
            && primary->element[2]->type == REDIS_REPLY_STRING
            && primary->element[2]->len == 40)
        {
            ngx_memcpy(node->id, primary->element[2]->str, 40);
            node->id[40] = '\0';
        }

        for (s = start; s <= end; s++) {
            r->slots[s] = (uint16_t) node->index;

            /*
             * the slot's primary changed and the old one is unreachable: a
             * replica was promoted (a slot moved by a reshard has its old
             * primary alive); the replica may have missed the last writes
             */

            old = r->old_slots[s];

            if (old != NGX_CHAT_REDIS_NO_NODE && old != node->index
                && old < r->nnodes && !r->nodes[old]->cmd.connected
                && ngx_chat_redis_bump_mark(node, s) != NGX_OK)
            {
                ngx_log_error(NGX_LOG_ERR, r->log, 0,
                              "chat redis: no memory for a failover");
            }
        }

        covered += end - start + 1;
    }

    for (i = 0; i < r->nnodes; i++) {
        if (r->nodes[i]->nbumps && r->nodes[i]->cmd.connected) {
            ngx_chat_redis_bump(r->nodes[i]);
        }
    }

    if (!r->map_ok) {
        ngx_log_error(NGX_LOG_NOTICE, r->log, 0,
                      "chat redis: cluster slot map loaded, %ui of %d slots "
                      "served, %ui nodes", covered, NGX_CHAT_REDIS_SLOTS,
                      r->nnodes);
    }

    r->map_ok = 1;

    ngx_chat_redis_ssub_sync();
    ngx_chat_redis_cluster_check();
}


/* up once every slot has a connected primary; while one has none, the map
 * is asked for again (a failover in progress) */

static void
ngx_chat_redis_cluster_check(void)
{
    ngx_uint_t         s, i, whole;
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    whole = 1;

    for (s = 0; s < NGX_CHAT_REDIS_SLOTS; s++) {
        i = r->slots[s];

        if (i == NGX_CHAT_REDIS_NO_NODE || !r->nodes[i]->cmd.connected) {
            whole = 0;
            break;
        }
    }

    ngx_chat_metric_gauge_set(NGX_CHAT_G_REDIS_UP, whole);

    if (!whole) {
        ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_POLL);
        return;
    }

    if (!r->up) {
        r->up = 1;

        if (r->on_state) {
            r->on_state(1);
        }
    }
}


/* marks a slot whose epoch the node must move once connected */

static ngx_int_t
ngx_chat_redis_bump_mark(ngx_chat_redis_node_t *node, ngx_uint_t slot)
{
    if (node->bumps == NULL) {
        node->bumps = ngx_pcalloc(ngx_chat_redis.pool,
                                  NGX_CHAT_REDIS_SLOTS / 8);
        if (node->bumps == NULL) {
            return NGX_ERROR;
        }
    }

    if (!(node->bumps[slot / 8] & (1 << (slot % 8)))) {
        node->bumps[slot / 8] |= (u_char) (1 << (slot % 8));
        node->nbumps++;
    }

    return NGX_OK;
}


/*
 * A promoted node: the epoch of each slot it took over moves on
 * (epoch_bump.lua), sent before any command of those slots can reach it
 * (they go to this node only from now on, and queue behind these).
 */

static void
ngx_chat_redis_bump(ngx_chat_redis_node_t *node)
{
    int                    len;
    char                  *cmd;
    u_char                *p;
    ngx_uint_t             slot, sent;
    ngx_chat_redis_req_t  *req;
    u_char                 key[sizeof(NGX_CHAT_KEY_EPOCH_SLOT)
                               + NGX_INT_T_LEN + 2];

    sent = 0;

    for (slot = 0; slot < NGX_CHAT_REDIS_SLOTS; slot++) {
        if (!(node->bumps[slot / 8] & (1 << (slot % 8)))) {
            continue;
        }

        p = ngx_cpymem(key, NGX_CHAT_KEY_EPOCH_SLOT,
                       sizeof(NGX_CHAT_KEY_EPOCH_SLOT) - 1);
        p += ngx_chat_redis_slot_tag(slot, p);
        p = ngx_cpymem(p, NGX_CHAT_TAG_CLOSE, sizeof(NGX_CHAT_TAG_CLOSE) - 1);

        cmd = NULL;
        len = redisFormatCommand(&cmd, "EVAL %s 1 %b %s",
                                 NGX_CHAT_LUA_EPOCH_BUMP, key,
                                 (size_t) (p - key), node->id);
        if (len < 0 || cmd == NULL) {
            break;
        }

        req = ngx_chat_redis_node_request(cmd, len, ngx_chat_redis_log_reply,
                                          NULL);

        if (req == NULL || ngx_chat_redis_node_send(node, req, 0) != NGX_OK) {
            if (req) {
                ngx_chat_redis_fail_req(req);
            }

            /* the link is lost or memory ran out: again on reconnect */
            break;
        }

        node->bumps[slot / 8] &= (u_char) ~(1 << (slot % 8));
        node->nbumps--;
        sent++;
    }

    ngx_log_error(NGX_LOG_WARN, ngx_chat_redis.log, 0,
                  "chat redis: %V was promoted: the epoch of %ui slots "
                  "moves on (their counters are re-based)", &node->addr.name,
                  sent);
}


void
ngx_chat_redis_cluster_connected(ngx_chat_redis_node_t *node)
{
    if (node->nbumps) {
        ngx_chat_redis_bump(node);
    }

    if (ngx_chat_redis.map_ok) {
        ngx_chat_redis_cluster_check();

    } else {
        ngx_chat_redis_refresh(0);
    }
}


/* the node at host:port (an address as the cluster names it), added with
 * its link if new */

static ngx_chat_redis_node_t *
ngx_chat_redis_node_at(u_char *host, size_t len, ngx_int_t port)
{
    u_char            *p;
    ngx_uint_t         i;
    ngx_addr_t         addr;
    ngx_chat_redis_t  *r;
    u_char             name[NGX_SOCKADDR_STRLEN + NGX_INT_T_LEN + 2];

    r = &ngx_chat_redis;

    if (len == 0 || len > NGX_SOCKADDR_STRLEN || port < 1 || port > 65535) {
        return NULL;
    }

    p = ngx_sprintf(name, "%*s:%i", len, host, port);

    for (i = 0; i < r->nnodes; i++) {
        if (r->nodes[i]->addr.name.len == (size_t) (p - name)
            && ngx_strncmp(r->nodes[i]->addr.name.data, name, p - name) == 0)
        {
            return r->nodes[i];
        }
    }

    /* an IP address, as Redis Cluster announces its nodes: no resolving */

    ngx_memzero(&addr, sizeof(ngx_addr_t));

    if (ngx_parse_addr(r->pool, &addr, host, len) != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, r->log, 0,
                      "chat redis: cluster node \"%*s\" is not an IP address",
                      len, host);
        return NULL;
    }

    ngx_inet_set_port(addr.sockaddr, (in_port_t) port);

    addr.name.data = name;
    addr.name.len = p - name;

    /* node_add copies the address */

    ngx_log_error(NGX_LOG_NOTICE, r->log, 0,
                  "chat redis: cluster node %V", &addr.name);

    return ngx_chat_redis_node_add(&addr);
}


/*
 * "MOVED <slot> <host>:<port>": the slot lives there now (the map is asked
 * for again); "ASK <slot> <host>:<port>": this command only, after ASKING
 * (a slot being migrated). NGX_OK: sent there; NGX_DECLINED: not a
 * redirect (the handler gets the error); NGX_ERROR: cannot be followed now.
 */

ngx_int_t
ngx_chat_redis_redirect(ngx_chat_redis_req_t *req, redisReply *reply)
{
    u_char                 *p, *last, *host, *colon;
    ngx_int_t               slot, port;
    ngx_uint_t              ask, old;
    ngx_chat_redis_t       *r;
    ngx_chat_redis_node_t  *node;

    r = &ngx_chat_redis;

    p = (u_char *) reply->str;
    last = p + reply->len;

    if (reply->len > 6 && ngx_strncmp(p, "MOVED ", 6) == 0) {
        ask = 0;
        p += 6;

    } else if (reply->len > 4 && ngx_strncmp(p, "ASK ", 4) == 0) {
        ask = 1;
        p += 4;

    } else if ((reply->len >= 8 && ngx_strncmp(p, "TRYAGAIN", 8) == 0)
               || ngx_strnstr(p, "non local key", reply->len) != NULL)
    {
        /*
         * a multi-key command while its slot migrates, some keys moved (or
         * a script that reached a key already moved; the scripts read
         * before they write): sent again, by its slot, once the migration
         * had time to go on
         */

        if (req->cmd == NULL || ++req->tryagain > NGX_CHAT_REDIS_TRYAGAIN_MAX
            || r->exiting)
        {
            return NGX_ERROR;
        }

        ngx_queue_insert_tail(&r->retry, &req->queue);

        if (!r->retry_timer.timer_set) {
            ngx_add_timer(&r->retry_timer, NGX_CHAT_REDIS_TRYAGAIN);
        }

        return NGX_OK;

    } else {
        if (reply->len >= 11 && ngx_strncmp(p, "CLUSTERDOWN", 11) == 0) {
            ngx_chat_redis_refresh(NGX_CHAT_REDIS_REFRESH_MIN);
            return NGX_ERROR;
        }

        return NGX_DECLINED;
    }

    /*
     * an ASK after a TRYAGAIN is the same migration going on (the retry
     * goes to the slot's owner, which asks again): TRYAGAIN_MAX bounds it
     */

    if (req->cmd == NULL
        || ((!ask || req->tryagain == 0)
            && ++req->redirects > NGX_CHAT_REDIS_REDIRECTS))
    {
        ngx_log_error(NGX_LOG_ERR, r->log, 0,
                      "chat redis: too many redirects: %*s",
                      (size_t) reply->len, reply->str);
        return NGX_ERROR;
    }

    host = ngx_strlchr(p, last, ' ');
    if (host == NULL) {
        return NGX_ERROR;
    }

    slot = ngx_atoi(p, host - p);
    host++;

    colon = NULL;

    for (p = last - 1; p > host; p--) {
        if (*p == ':') {
            colon = p;
            break;
        }
    }

    if (slot < 0 || slot >= NGX_CHAT_REDIS_SLOTS || colon == NULL) {
        return NGX_ERROR;
    }

    port = ngx_atoi(colon + 1, last - colon - 1);

    node = ngx_chat_redis_node_at(host, colon - host, port);

    if (!ask) {
        ngx_chat_redis_refresh(0);

        if (node) {
            old = r->slots[slot];

            /*
             * as in the map's load: the slot's old primary unreachable, the
             * node named was promoted, and its epoch moves before this
             * command reaches it
             */

            if (old != NGX_CHAT_REDIS_NO_NODE && old != node->index
                && old < r->nnodes && !r->nodes[old]->cmd.connected
                && ngx_chat_redis_bump_mark(node, slot) == NGX_OK
                && node->cmd.connected)
            {
                ngx_chat_redis_bump(node);
            }

            r->slots[slot] = (uint16_t) node->index;
        }
    }

    if (node == NULL || !node->cmd.connected) {
        return NGX_ERROR;
    }

    /* another node may not know the script yet: NOSCRIPT is retried
     * there too (after ASKING again if it was an ASK) */

    req->retried = 0;
    req->asked = ask;

    if (ngx_chat_redis_node_send(node, req, ask) != NGX_OK) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


static void
ngx_chat_redis_retry_handler(ngx_event_t *ev)
{
    ngx_queue_t             *q, retry;
    ngx_chat_redis_t        *r;
    ngx_chat_redis_req_t    *req;
    ngx_chat_redis_node_t   *node;

    r = ev->data;

    /* taken whole: a request answered TRYAGAIN again comes back later */

    ngx_queue_init(&retry);

    if (!ngx_queue_empty(&r->retry)) {
        ngx_queue_add(&retry, &r->retry);
        ngx_queue_init(&r->retry);
    }

    while (!ngx_queue_empty(&retry)) {
        q = ngx_queue_head(&retry);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);

        node = (req->handler && req->slot >= 0)
               ? ngx_chat_redis_slot_node(req->slot) : NULL;

        if (node == NULL || ngx_chat_redis_node_send(node, req, 0) != NGX_OK) {
            ngx_chat_redis_retry_failed(req);
        }
    }
}


/* the pub/sub link was lost: the next time it tries the next node */

void
ngx_chat_redis_sub_next(ngx_chat_redis_link_t *link)
{
    ngx_chat_redis_t       *r;
    ngx_chat_redis_node_t  *node;

    r = &ngx_chat_redis;

    if (!r->cluster || r->nnodes == 0 || r->exiting) {
        return;
    }

    r->sub_node = (r->sub_node + 1) % r->nnodes;
    node = r->nodes[r->sub_node];

    link->peer.sockaddr = node->addr.sockaddr;
    link->peer.socklen = node->addr.socklen;
    link->peer.name = &node->addr.name;
}
