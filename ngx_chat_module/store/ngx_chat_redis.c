/* ngx_chat_redis.c: the worker's Redis: its two links (ngx_chat_redis_link.c)
 * and the command link's queue of requests, scripts and timeouts. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <openssl/evp.h>

#include "ngx_chat_redis.h"
#include "ngx_chat_redis_int.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_REDIS_FREE_MAX      256

/*
 * Background scripts (delivered watermarks, presence renewals) come in
 * bursts from timers: at most this many of them are in the command link's
 * pipeline at once, so a SEND never waits behind a whole burst (at 2,000
 * msg/s one worker's delivered flush is ~500 scripts, 10-20 ms of Redis).
 */
#define NGX_CHAT_REDIS_BG_MAX        8

/* "$7\r\nEVALSHA\r\n$40\r\n" + sha1 + "\r\n" after the "*N\r\n" header */
#define NGX_CHAT_REDIS_EVALSHA_HEAD  60


static void ngx_chat_redis_cmd_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_cmd_close(ngx_chat_redis_link_t *link);
static ngx_int_t ngx_chat_redis_cmd_reply(ngx_chat_redis_link_t *link,
    redisReply *reply);
static ngx_int_t ngx_chat_redis_retry_eval(ngx_chat_redis_node_t *node,
    ngx_chat_redis_req_t *req);
static ngx_int_t ngx_chat_redis_asking(ngx_chat_redis_node_t *node);
static void ngx_chat_redis_timeout_handler(ngx_event_t *ev);
static ngx_chat_redis_node_t *ngx_chat_redis_pick(ngx_int_t slot);
static ngx_int_t ngx_chat_redis_key_slot(int argc, const char **argv,
    const size_t *argvlen, int key);
static ngx_chat_redis_req_t *ngx_chat_redis_enqueue(char *cmd, int len,
    ngx_int_t slot, ngx_chat_redis_reply_pt handler, void *data,
    ngx_chat_redis_script_t *script);
static void ngx_chat_redis_free_req(ngx_chat_redis_req_t *req);
static ngx_chat_redis_req_t *ngx_chat_redis_alloc_req(void);
static void ngx_chat_redis_bg_next(void);
static char *ngx_chat_redis_format_eval(ngx_chat_redis_script_t *script,
    int numkeys, int argc, const char **argv, const size_t *argvlen,
    int *len);


ngx_chat_redis_t  ngx_chat_redis;


ngx_int_t
ngx_chat_redis_init(ngx_cycle_t *cycle, ngx_addr_t *addr, ngx_array_t *seeds,
    ngx_msec_t timeout)
{
    ngx_pool_t        *pool;
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    if (r->pool != NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "chat redis: already initialized");
        return NGX_ERROR;
    }

    ngx_memzero(r, sizeof(ngx_chat_redis_t));

    pool = ngx_create_pool(1024, cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    r->pool = pool;
    r->log = cycle->log;
    r->timeout = timeout ? timeout : 1;

    if (seeds) {
        addr = seeds->elts;
    }

    r->addr.socklen = addr->socklen;
    r->addr.sockaddr = ngx_pnalloc(pool, addr->socklen);
    r->addr.name.len = addr->name.len;
    r->addr.name.data = ngx_pnalloc(pool, addr->name.len + 1);

    if (r->addr.sockaddr == NULL || r->addr.name.data == NULL) {
        goto failed;
    }

    ngx_memcpy(r->addr.sockaddr, addr->sockaddr, addr->socklen);
    ngx_memcpy(r->addr.name.data, addr->name.data, addr->name.len);
    r->addr.name.data[addr->name.len] = '\0';

    ngx_queue_init(&r->free);
    ngx_queue_init(&r->bg_wait);

    ngx_chat_redis_sub_init(r);

    if (seeds) {
        if (ngx_chat_redis_cluster_init(r, seeds) != NGX_OK) {
            goto failed;
        }

    } else if (ngx_chat_redis_node_add(&r->addr) == NULL) {
        goto failed;
    }

    ngx_chat_redis_link_init(&r->sub, cycle->log, &r->addr, r->timeout);

    /* from the event loop: the features set their handlers meanwhile */

    ngx_post_event(&r->sub.reconnect, &ngx_posted_events);

    return NGX_OK;

failed:

    ngx_destroy_pool(pool);
    r->pool = NULL;

    return NGX_ERROR;
}


/* a node and its command link, connecting once the event loop runs */

ngx_chat_redis_node_t *
ngx_chat_redis_node_add(ngx_addr_t *addr)
{
    ngx_chat_redis_t       *r;
    ngx_chat_redis_node_t  *node;

    r = &ngx_chat_redis;

    if (r->nnodes == NGX_CHAT_REDIS_NODES_MAX) {
        ngx_log_error(NGX_LOG_ERR, r->log, 0,
                      "chat redis: more than %d nodes",
                      NGX_CHAT_REDIS_NODES_MAX);
        return NULL;
    }

    node = ngx_pcalloc(r->pool, sizeof(ngx_chat_redis_node_t));
    if (node == NULL) {
        return NULL;
    }

    node->addr.socklen = addr->socklen;
    node->addr.sockaddr = ngx_pnalloc(r->pool, addr->socklen);
    node->addr.name.len = addr->name.len;
    node->addr.name.data = ngx_pnalloc(r->pool, addr->name.len + 1);

    if (node->addr.sockaddr == NULL || node->addr.name.data == NULL) {
        return NULL;
    }

    ngx_memcpy(node->addr.sockaddr, addr->sockaddr, addr->socklen);
    ngx_memcpy(node->addr.name.data, addr->name.data, addr->name.len);
    node->addr.name.data[addr->name.len] = '\0';

    ngx_queue_init(&node->pending);

    node->timer.handler = ngx_chat_redis_timeout_handler;
    node->timer.data = node;
    node->timer.log = r->log;
    node->timer.cancelable = 1;

    node->index = r->nnodes;

    node->cmd.name = "command";
    node->cmd.on_connect = ngx_chat_redis_cmd_connect;
    node->cmd.on_close = ngx_chat_redis_cmd_close;
    node->cmd.on_reply = ngx_chat_redis_cmd_reply;

    ngx_chat_redis_link_init(&node->cmd, r->log, &node->addr, r->timeout);

    r->nodes[r->nnodes++] = node;

    ngx_post_event(&node->cmd.reconnect, &ngx_posted_events);

    if (r->cluster) {
        ngx_chat_redis_ssub_init(node);
    }

    return node;
}


void
ngx_chat_redis_set_handlers(ngx_chat_redis_message_pt on_message,
    ngx_chat_redis_state_pt on_state)
{
    ngx_chat_redis.on_message = on_message;
    ngx_chat_redis.on_state = on_state;
}


void
ngx_chat_redis_exit(void)
{
    ngx_uint_t             i;
    ngx_queue_t           *q;
    ngx_chat_redis_t      *r;
    ngx_chat_redis_req_t  *req;

    r = &ngx_chat_redis;

    if (r->pool == NULL) {
        return;
    }

    r->exiting = 1;

    /* on_close fails the pending requests; no reconnect while exiting */

    for (i = 0; i < r->nnodes; i++) {
        ngx_chat_redis_link_exit(&r->nodes[i]->cmd);

        if (r->cluster) {
            ngx_chat_redis_link_exit(&r->nodes[i]->ssub);
        }

        if (r->nodes[i]->timer.timer_set) {
            ngx_del_timer(&r->nodes[i]->timer);
        }
    }

    ngx_chat_redis_link_exit(&r->sub);

    if (r->refresh.timer_set) {
        ngx_del_timer(&r->refresh);
    }

    if (r->retry_timer.timer_set) {
        ngx_del_timer(&r->retry_timer);
    }

    while (r->cluster && !ngx_queue_empty(&r->retry)) {
        q = ngx_queue_head(&r->retry);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);
        ngx_chat_redis_fail_req(req);
    }

    while (!ngx_queue_empty(&r->bg_wait)) {
        q = ngx_queue_head(&r->bg_wait);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);
        ngx_chat_redis_fail_req(req);
    }

    while (!ngx_queue_empty(&r->free)) {
        q = ngx_queue_head(&r->free);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);
        ngx_free(req);
    }

    ngx_chat_redis_sub_exit(r);

    ngx_destroy_pool(r->pool);
    ngx_memzero(r, sizeof(ngx_chat_redis_t));
}


ngx_uint_t
ngx_chat_redis_ready(void)
{
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    if (r->pool == NULL || r->nnodes == 0) {
        return 0;
    }

    if (r->cluster) {
        return r->map_ok;
    }

    return r->nodes[0]->cmd.connected;
}


/* the node a request goes to: the one Redis, or the slot's primary (any
 * live node for a command without keys); NULL: none is connected */

static ngx_chat_redis_node_t *
ngx_chat_redis_pick(ngx_int_t slot)
{
    ngx_uint_t         i;
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    if (!r->cluster) {
        return r->nodes[0]->cmd.connected ? r->nodes[0] : NULL;
    }

    if (slot >= 0) {
        return ngx_chat_redis_slot_node(slot);
    }

    for (i = 0; i < r->nnodes; i++) {
        if (r->nodes[i]->cmd.connected) {
            return r->nodes[i];
        }
    }

    return NULL;
}


/* the slot of argv[key] in a cluster; -1: any node (or one Redis) */

static ngx_int_t
ngx_chat_redis_key_slot(int argc, const char **argv, const size_t *argvlen,
    int key)
{
    if (!ngx_chat_redis.cluster || key < 0 || key >= argc) {
        return -1;
    }

    return ngx_chat_redis_slot((const u_char *) argv[key],
                               argvlen ? argvlen[key]
                                       : ngx_strlen(argv[key]));
}


ngx_chat_redis_req_t *
ngx_chat_redis_command(ngx_chat_redis_reply_pt handler, void *data, int argc,
    const char **argv, const size_t *argvlen)
{
    int    len;
    char  *cmd;

    if (!ngx_chat_redis_ready() || ngx_chat_redis.exiting || argc <= 0) {
        return NULL;
    }

    cmd = NULL;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0 || cmd == NULL) {
        return NULL;
    }

    /* the commands used here have their key first */

    return ngx_chat_redis_enqueue(cmd, len,
                                  ngx_chat_redis_key_slot(argc, argv,
                                                          argvlen, 1),
                                  handler, data, NULL);
}


ngx_int_t
ngx_chat_redis_script(ngx_chat_redis_script_t *script)
{
    u_char        md[EVP_MAX_MD_SIZE];
    unsigned int  mdlen;

    if (script->source == NULL) {
        return NGX_ERROR;
    }

    if (EVP_Digest(script->source, ngx_strlen(script->source), md, &mdlen,
                   EVP_sha1(), NULL)
        != 1 || mdlen != 20)
    {
        return NGX_ERROR;
    }

    ngx_hex_dump((u_char *) script->sha1, md, 20);
    script->sha1[40] = '\0';

    return NGX_OK;
}


ngx_chat_redis_req_t *
ngx_chat_redis_eval(ngx_chat_redis_script_t *script,
    ngx_chat_redis_reply_pt handler, void *data, int numkeys, int argc,
    const char **argv, const size_t *argvlen)
{
    int    len;
    char  *cmd;

    if (!ngx_chat_redis_ready() || ngx_chat_redis.exiting) {
        return NULL;
    }

    cmd = ngx_chat_redis_format_eval(script, numkeys, argc, argv, argvlen,
                                     &len);
    if (cmd == NULL) {
        return NULL;
    }

    return ngx_chat_redis_enqueue(cmd, len,
                                  ngx_chat_redis_key_slot(argc, argv, argvlen,
                                                          numkeys ? 0 : -1),
                                  handler, data, script);
}


ngx_chat_redis_req_t *
ngx_chat_redis_eval_bg(ngx_chat_redis_script_t *script,
    ngx_chat_redis_reply_pt handler, void *data, int numkeys, int argc,
    const char **argv, const size_t *argvlen)
{
    int                    len;
    char                  *cmd;
    ngx_chat_redis_t      *r;
    ngx_chat_redis_req_t  *req;

    r = &ngx_chat_redis;

    if (!ngx_chat_redis_ready() || r->exiting) {
        return NULL;
    }

    if (r->bg_inflight < NGX_CHAT_REDIS_BG_MAX
        && ngx_queue_empty(&r->bg_wait))
    {
        req = ngx_chat_redis_eval(script, handler, data, numkeys, argc,
                                  argv, argvlen);
        if (req) {
            req->bg = 1;
            r->bg_inflight++;
        }

        return req;
    }

    /* waits, formatted, until a background request in flight is answered */

    cmd = ngx_chat_redis_format_eval(script, numkeys, argc, argv, argvlen,
                                     &len);
    if (cmd == NULL) {
        return NULL;
    }

    req = ngx_chat_redis_alloc_req();
    if (req == NULL) {
        redisFreeCommand(cmd);
        return NULL;
    }

    req->script = script;
    req->cmd = cmd;
    req->cmd_len = len;
    req->slot = ngx_chat_redis_key_slot(argc, argv, argvlen,
                                        numkeys ? 0 : -1);
    req->handler = handler;
    req->data = data;
    req->bg = 1;

    ngx_queue_insert_tail(&r->bg_wait, &req->queue);

    return req;
}


/* "EVALSHA sha1 numkeys argv...", formatted by hiredis (free: theirs) */

static char *
ngx_chat_redis_format_eval(ngx_chat_redis_script_t *script, int numkeys,
    int argc, const char **argv, const size_t *argvlen, int *len)
{
    int           i;
    char         *cmd;
    size_t       *lens;
    u_char        nk[NGX_INT_T_LEN];
    const char  **args;

    if (argc < 0 || numkeys < 0 || numkeys > argc
        || script->sha1[0] == '\0')
    {
        return NULL;
    }

    args = ngx_alloc((argc + 3) * (sizeof(char *) + sizeof(size_t)),
                     ngx_chat_redis.log);
    if (args == NULL) {
        return NULL;
    }

    lens = (size_t *) (args + argc + 3);

    args[0] = "EVALSHA";
    lens[0] = sizeof("EVALSHA") - 1;
    args[1] = script->sha1;
    lens[1] = 40;
    args[2] = (const char *) nk;
    lens[2] = ngx_sprintf(nk, "%d", numkeys) - nk;

    for (i = 0; i < argc; i++) {
        args[i + 3] = argv[i];
        lens[i + 3] = argvlen ? argvlen[i] : ngx_strlen(argv[i]);
    }

    cmd = NULL;

    *len = redisFormatCommandArgv(&cmd, argc + 3, args, lens);

    ngx_free(args);

    if (*len < 0 || cmd == NULL) {
        return NULL;
    }

    return cmd;
}


/* background requests in flight were answered: the next ones go out */

static void
ngx_chat_redis_bg_next(void)
{
    ngx_queue_t            *q;
    ngx_chat_redis_t       *r;
    ngx_chat_redis_req_t   *req;
    ngx_chat_redis_node_t  *node;

    r = &ngx_chat_redis;

    while (r->bg_inflight < NGX_CHAT_REDIS_BG_MAX
           && !ngx_queue_empty(&r->bg_wait))
    {
        q = ngx_queue_head(&r->bg_wait);
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);

        ngx_queue_remove(q);

        if (req->handler == NULL) {
            /* cancelled while it waited: never sent */
            ngx_chat_redis_free_req(req);
            continue;
        }

        node = ngx_chat_redis_pick(req->slot);

        if (node == NULL || ngx_chat_redis_node_send(node, req, 0) != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->log, 0,
                          "chat redis: cannot queue a background script");
            ngx_chat_redis_fail_req(req);
            continue;
        }

        r->bg_inflight++;
    }
}


void
ngx_chat_redis_cancel(ngx_chat_redis_req_t *req)
{
    if (req == NULL) {
        return;
    }

    /* stays queued: its reply is still coming and is then discarded */

    req->handler = NULL;
    req->data = NULL;
}


static ngx_chat_redis_req_t *
ngx_chat_redis_enqueue(char *cmd, int len, ngx_int_t slot,
    ngx_chat_redis_reply_pt handler, void *data,
    ngx_chat_redis_script_t *script)
{
    ngx_chat_redis_req_t   *req;
    ngx_chat_redis_node_t  *node;

    node = ngx_chat_redis_pick(slot);
    if (node == NULL) {
        redisFreeCommand(cmd);
        return NULL;
    }

    req = ngx_chat_redis_alloc_req();
    if (req == NULL) {
        redisFreeCommand(cmd);
        return NULL;
    }

    req->script = script;
    req->cmd = cmd;
    req->cmd_len = len;
    req->slot = slot;
    req->handler = handler;
    req->data = data;

    if (ngx_chat_redis_node_send(node, req, 0) != NGX_OK) {
        ngx_chat_redis_free_req(req);
        return NULL;
    }

    return req;
}


/* a request of no slot for a formatted command (taken over) */

ngx_chat_redis_req_t *
ngx_chat_redis_node_request(char *cmd, int len,
    ngx_chat_redis_reply_pt handler, void *data)
{
    ngx_chat_redis_req_t  *req;

    req = ngx_chat_redis_alloc_req();
    if (req == NULL) {
        redisFreeCommand(cmd);
        return NULL;
    }

    req->cmd = cmd;
    req->cmd_len = len;
    req->slot = -1;
    req->handler = handler;
    req->data = data;

    return req;
}


/* "ASKING" and the request its "+OK" answers, next in the node's queue */

static ngx_int_t
ngx_chat_redis_asking(ngx_chat_redis_node_t *node)
{
    ngx_chat_redis_req_t  *ask;

    static u_char  asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

    ask = ngx_chat_redis_alloc_req();
    if (ask == NULL) {
        return NGX_ERROR;
    }

    ask->asking = 1;
    ask->slot = -1;

    if (ngx_chat_redis_append(&node->cmd, asking_cmd, sizeof(asking_cmd) - 1)
        != NGX_OK)
    {
        ngx_chat_redis_free_req(ask);
        return NGX_ERROR;
    }

    ask->start = ngx_current_msec;
    ngx_queue_insert_tail(&node->pending, &ask->queue);

    return NGX_OK;
}


ngx_int_t
ngx_chat_redis_node_send(ngx_chat_redis_node_t *node,
    ngx_chat_redis_req_t *req, ngx_uint_t asking)
{
    ngx_chat_redis_req_t  *ask;

    static u_char  asking_cmd[] = "*1\r\n$6\r\nASKING\r\n";

    ask = NULL;

    if (asking) {
        /* its "+OK" is answered to a request of its own, discarded */

        ask = ngx_chat_redis_alloc_req();
        if (ask == NULL) {
            return NGX_ERROR;
        }

        ask->asking = 1;
        ask->slot = -1;

        if (ngx_chat_redis_reserve(&node->cmd,
                                   sizeof(asking_cmd) - 1 + req->cmd_len)
            != NGX_OK)
        {
            ngx_chat_redis_free_req(ask);
            return NGX_ERROR;
        }

        (void) ngx_chat_redis_append(&node->cmd, asking_cmd,
                                     sizeof(asking_cmd) - 1);
    }

    if (ngx_chat_redis_append(&node->cmd, (u_char *) req->cmd, req->cmd_len)
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (ask) {
        ask->start = ngx_current_msec;
        ngx_queue_insert_tail(&node->pending, &ask->queue);
    }

    /* one Redis: a plain command's text is not needed after it is sent */

    if (!ngx_chat_redis.cluster && req->script == NULL) {
        redisFreeCommand(req->cmd);
        req->cmd = NULL;
    }

    req->start = ngx_current_msec;
    req->start_us = ngx_chat_metric_now_us();

    ngx_queue_insert_tail(&node->pending, &req->queue);

    if (!node->timer.timer_set) {
        ngx_add_timer(&node->timer, ngx_chat_redis.timeout);
    }

    ngx_chat_redis_flush(&node->cmd);

    return NGX_OK;
}


/* a request set aside (TRYAGAIN) that cannot be sent again: failed, and
 * a background one frees its place */

void
ngx_chat_redis_retry_failed(ngx_chat_redis_req_t *req)
{
    ngx_uint_t         bg;
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;
    bg = req->bg;

    ngx_chat_redis_fail_req(req);

    if (bg && r->bg_inflight) {
        r->bg_inflight--;
        ngx_chat_redis_bg_next();
    }
}


/* a request that will get no reply: its handler hears NULL */

void
ngx_chat_redis_fail_req(ngx_chat_redis_req_t *req)
{
    ngx_chat_redis_reply_pt  handler;

    handler = req->handler;

    if (handler) {
        req->handler = NULL;
        handler(NULL, req->data);
    }

    ngx_chat_redis_free_req(req);
}


static ngx_chat_redis_req_t *
ngx_chat_redis_alloc_req(void)
{
    ngx_queue_t           *q;
    ngx_chat_redis_t      *r;
    ngx_chat_redis_req_t  *req;

    r = &ngx_chat_redis;

    if (!ngx_queue_empty(&r->free)) {
        q = ngx_queue_head(&r->free);
        ngx_queue_remove(q);
        r->nfree--;
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);

    } else {
        req = ngx_alloc(sizeof(ngx_chat_redis_req_t), r->log);
        if (req == NULL) {
            return NULL;
        }
    }

    ngx_memzero(req, sizeof(ngx_chat_redis_req_t));

    return req;
}


static void
ngx_chat_redis_free_req(ngx_chat_redis_req_t *req)
{
    ngx_chat_redis_t  *r;

    r = &ngx_chat_redis;

    if (req->cmd) {
        redisFreeCommand(req->cmd);
        req->cmd = NULL;
    }

    if (r->nfree < NGX_CHAT_REDIS_FREE_MAX && !r->exiting) {
        ngx_queue_insert_head(&r->free, &req->queue);
        r->nfree++;
        return;
    }

    ngx_free(req);
}


static void
ngx_chat_redis_cmd_connect(ngx_chat_redis_link_t *link)
{
    int                     len;
    char                   *cmd;
    ngx_chat_redis_t       *r;
    ngx_chat_redis_req_t   *req;
    ngx_chat_redis_node_t  *node;

    r = &ngx_chat_redis;
    node = (ngx_chat_redis_node_t *) link;

    /* its reply proves the server answers (see "alive") */

    cmd = NULL;
    len = redisFormatCommand(&cmd, "PING");
    req = (len > 0 && cmd) ? ngx_chat_redis_alloc_req() : NULL;

    if (req) {
        req->slot = -1;
        req->cmd = cmd;
        req->cmd_len = len;

        if (ngx_chat_redis_node_send(node, req, 0) != NGX_OK) {
            ngx_chat_redis_free_req(req);
        }

    } else if (cmd) {
        redisFreeCommand(cmd);
    }

    if (r->cluster) {
        ngx_chat_redis_cluster_connected(node);
        return;
    }

    ngx_chat_metric_gauge_set(NGX_CHAT_G_REDIS_UP, 1);

    if (r->on_state) {
        r->on_state(1);
    }
}


static void
ngx_chat_redis_cmd_close(ngx_chat_redis_link_t *link)
{
    ngx_uint_t              was;
    ngx_queue_t            *q;
    ngx_chat_redis_t       *r;
    ngx_chat_redis_req_t   *req;
    ngx_chat_redis_node_t  *node;

    r = &ngx_chat_redis;
    node = (ngx_chat_redis_node_t *) link;

    was = link->connected;
    link->connected = 0;

    if (node->timer.timer_set) {
        ngx_del_timer(&node->timer);
    }

    while (!ngx_queue_empty(&node->pending)) {
        q = ngx_queue_head(&node->pending);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);

        if (req->bg && r->bg_inflight) {
            r->bg_inflight--;
        }

        ngx_chat_redis_fail_req(req);
    }

    if (r->cluster) {
        /* the slots it served may have moved: ask again, retry waiting
         * background work elsewhere */

        if (!r->exiting) {
            ngx_chat_redis_refresh(100);
            ngx_chat_redis_bg_next();
        }

        return;
    }

    ngx_chat_metric_gauge_set(NGX_CHAT_G_REDIS_UP, 0);

    while (!ngx_queue_empty(&r->bg_wait)) {
        q = ngx_queue_head(&r->bg_wait);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);
        ngx_chat_redis_fail_req(req);
    }

    r->bg_inflight = 0;

    if (was && !r->exiting && r->on_state) {
        r->on_state(0);
    }
}


static ngx_int_t
ngx_chat_redis_cmd_reply(ngx_chat_redis_link_t *link, redisReply *reply)
{
    void                     *data;
    ngx_int_t                 rc;
    ngx_uint_t                bg;
    ngx_queue_t              *q;
    ngx_chat_redis_t         *r;
    ngx_chat_redis_req_t     *req;
    ngx_chat_redis_node_t    *node;
    ngx_chat_redis_reply_pt   handler;

    r = &ngx_chat_redis;
    node = (ngx_chat_redis_node_t *) link;

    if (ngx_queue_empty(&node->pending)) {
        ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                      "chat redis: unexpected reply on the command link");
        return NGX_ERROR;
    }

    q = ngx_queue_head(&node->pending);
    req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);

    ngx_queue_remove(q);

    if (req->asking) {
        ngx_chat_redis_free_req(req);
        goto done;
    }

    if (req->script && !req->retried && req->handler
        && reply->type == REDIS_REPLY_ERROR && reply->len >= 8
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        if (req->asked && ngx_chat_redis_asking(node) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                          "chat redis: could not send ASKING again");

        } else if (ngx_chat_redis_retry_eval(node, req) == NGX_OK) {
            req->retried = 1;
            req->start = ngx_current_msec;
            ngx_queue_insert_tail(&node->pending, &req->queue);
            ngx_chat_redis_flush(link);
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                      "chat redis: could not send EVAL after NOSCRIPT");
    }

    if (r->cluster && req->handler && reply->type == REDIS_REPLY_ERROR) {
        rc = ngx_chat_redis_redirect(req, reply);

        if (rc == NGX_OK) {
            /* sent again to the node named: its reply comes from there */
            goto done;
        }

        if (rc == NGX_ERROR) {
            /* a redirect that cannot be followed now: a failed command */
            bg = req->bg;
            ngx_chat_redis_fail_req(req);

            if (bg && r->bg_inflight) {
                r->bg_inflight--;
                ngx_chat_redis_bg_next();
            }

            goto done;
        }
    }

    handler = req->handler;
    data = req->data;
    bg = req->bg;

    ngx_chat_metric_observe(NGX_CHAT_H_REDIS, NGX_CHAT_G_REDIS_RTT,
                            ngx_chat_metric_now_us() - req->start_us);

    ngx_chat_redis_free_req(req);

    if (ngx_queue_empty(&node->pending) && node->timer.timer_set) {
        ngx_del_timer(&node->timer);
    }

    if (handler) {
        handler(reply, data);
    }

    if (bg && r->bg_inflight) {
        r->bg_inflight--;
        ngx_chat_redis_bg_next();
    }

    return NGX_OK;

done:

    if (ngx_queue_empty(&node->pending) && node->timer.timer_set) {
        ngx_del_timer(&node->timer);
    }

    return NGX_OK;
}


static ngx_int_t
ngx_chat_redis_retry_eval(ngx_chat_redis_node_t *node,
    ngx_chat_redis_req_t *req)
{
    u_char                   *p, *end, *head, *rest;
    size_t                    len, n;
    ngx_chat_redis_link_t    *link;
    ngx_chat_redis_script_t  *script;
    u_char                    pre[NGX_INT_T_LEN * 2 + 32];

    /*
     * the kept "*N\r\n$7\r\nEVALSHA\r\n$40\r\n<sha1>\r\n<numkeys, args>"
     * becomes "*N\r\n$4\r\nEVAL\r\n$<len>\r\n<source>\r\n<numkeys, args>"
     */

    script = req->script;
    head = (u_char *) req->cmd;
    end = head + req->cmd_len;

    p = ngx_strlchr(head, end, '\n');
    if (p == NULL) {
        return NGX_ERROR;
    }

    p++;
    rest = p + NGX_CHAT_REDIS_EVALSHA_HEAD;

    if (rest > end || ngx_strncmp(p, "$7\r\nEVALSHA\r\n", 13) != 0) {
        return NGX_ERROR;
    }

    len = ngx_strlen(script->source);

    n = p - head;
    if (n > NGX_INT_T_LEN) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(pre, head, n);
    p = ngx_sprintf(p, "$4\r\nEVAL\r\n$%uz\r\n", len);

    link = &node->cmd;

    /* reserved at once: never a partial command in the output */

    if (ngx_chat_redis_reserve(link, (p - pre) + len + 2 + (end - rest))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    link->out_last = ngx_cpymem(link->out_last, pre, p - pre);
    link->out_last = ngx_cpymem(link->out_last, script->source, len);
    *link->out_last++ = '\r';
    *link->out_last++ = '\n';
    link->out_last = ngx_cpymem(link->out_last, rest, end - rest);

    return NGX_OK;
}


static void
ngx_chat_redis_timeout_handler(ngx_event_t *ev)
{
    ngx_msec_t              elapsed;
    ngx_chat_redis_req_t   *req;
    ngx_chat_redis_node_t  *node;

    node = ev->data;

    if (ngx_queue_empty(&node->pending)) {
        return;
    }

    req = ngx_queue_data(ngx_queue_head(&node->pending),
                         ngx_chat_redis_req_t, queue);

    elapsed = ngx_current_msec - req->start;

    if (elapsed >= ngx_chat_redis.timeout) {
        ngx_log_error(NGX_LOG_ERR, &node->cmd.log, 0,
                      "chat redis: command timed out after %M ms", elapsed);
        ngx_chat_redis_close(&node->cmd);
        return;
    }

    ngx_add_timer(ev, ngx_chat_redis.timeout - elapsed);
}


void
ngx_chat_redis_log_reply(redisReply *reply, void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: Redis error: %*s", (size_t) reply->len,
                      reply->str);
    }
}
