/* ngx_chat_redis.c: the worker's Redis links on nginx events (connect,
 * backoff, I/O, hiredis's reader and formatter) and its command link. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>
#include <openssl/evp.h>

#include "ngx_chat_redis.h"
#include "ngx_chat_redis_int.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_REDIS_BACKOFF_MIN   100
#define NGX_CHAT_REDIS_BACKOFF_MAX   5000
#define NGX_CHAT_REDIS_READ_SIZE     16384
#define NGX_CHAT_REDIS_OUT_SIZE      4096
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


struct ngx_chat_redis_req_s {
    ngx_queue_t                  queue;
    ngx_chat_redis_reply_pt      handler;     /* NULL once cancelled */
    void                        *data;
    ngx_msec_t                   start;
    uint64_t                     start_us;    /* metrics: the RTT */
    ngx_chat_redis_script_t     *script;      /* EVALSHA requests only */
    char                        *cmd;         /* the formatted EVALSHA */
    size_t                       cmd_len;
    ngx_uint_t                   retried;
    unsigned                     bg:1;        /* a background request */
};


static void ngx_chat_redis_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_connected(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_nodelay(ngx_connection_t *c);
static ngx_int_t ngx_chat_redis_test_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_schedule(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_chat_redis_read_handler(ngx_event_t *rev);
static void ngx_chat_redis_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_chat_redis_send(ngx_chat_redis_link_t *link);
static ngx_int_t ngx_chat_redis_reserve(ngx_chat_redis_link_t *link,
    size_t len);
static ngx_int_t ngx_chat_redis_append(ngx_chat_redis_link_t *link,
    const u_char *data, size_t len);

static void ngx_chat_redis_cmd_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_cmd_close(ngx_chat_redis_link_t *link);
static ngx_int_t ngx_chat_redis_cmd_reply(ngx_chat_redis_link_t *link,
    redisReply *reply);
static ngx_int_t ngx_chat_redis_retry_eval(ngx_chat_redis_req_t *req);
static void ngx_chat_redis_timeout_handler(ngx_event_t *ev);
static ngx_chat_redis_req_t *ngx_chat_redis_enqueue(char *cmd, int len,
    ngx_chat_redis_reply_pt handler, void *data,
    ngx_chat_redis_script_t *script);
static void ngx_chat_redis_free_req(ngx_chat_redis_req_t *req);
static ngx_chat_redis_req_t *ngx_chat_redis_alloc_req(void);
static void ngx_chat_redis_bg_next(void);
static char *ngx_chat_redis_format_eval(ngx_chat_redis_script_t *script,
    int numkeys, int argc, const char **argv, const size_t *argvlen,
    int *len);


ngx_chat_redis_t  ngx_chat_redis;


ngx_int_t
ngx_chat_redis_init(ngx_cycle_t *cycle, ngx_addr_t *addr,
    ngx_msec_t timeout, ngx_chat_redis_message_pt on_message,
    ngx_chat_redis_state_pt on_state)
{
    ngx_uint_t              i;
    ngx_pool_t             *pool;
    ngx_chat_redis_t       *r;
    ngx_chat_redis_link_t  *link;

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
    r->on_message = on_message;
    r->on_state = on_state;

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

    ngx_queue_init(&r->pending);
    ngx_queue_init(&r->free);
    ngx_queue_init(&r->bg_wait);

    r->timer.handler = ngx_chat_redis_timeout_handler;
    r->timer.data = r;
    r->timer.log = r->log;

    r->cmd.name = "command";
    r->cmd.on_connect = ngx_chat_redis_cmd_connect;
    r->cmd.on_close = ngx_chat_redis_cmd_close;
    r->cmd.on_reply = ngx_chat_redis_cmd_reply;

    ngx_chat_redis_sub_init(r);

    for (i = 0; i < 2; i++) {
        link = i ? &r->sub : &r->cmd;

        link->log = *cycle->log;
        link->log.action = "talking to redis";

        link->peer.sockaddr = r->addr.sockaddr;
        link->peer.socklen = r->addr.socklen;
        link->peer.name = &r->addr.name;
        link->peer.get = ngx_event_get_peer;
        link->peer.log = &link->log;
        link->peer.log_error = NGX_ERROR_ERR;
        link->peer.so_keepalive = 1;

        link->backoff = NGX_CHAT_REDIS_BACKOFF_MIN;

        link->reconnect.handler = ngx_chat_redis_reconnect_handler;
        link->reconnect.data = link;
        link->reconnect.log = &link->log;
        link->reconnect.cancelable = 1;
    }

    ngx_chat_redis_connect(&r->cmd);
    ngx_chat_redis_connect(&r->sub);

    return NGX_OK;

failed:

    ngx_destroy_pool(pool);
    r->pool = NULL;

    return NGX_ERROR;
}


void
ngx_chat_redis_exit(void)
{
    ngx_queue_t           *q;
    ngx_chat_redis_t      *r;
    ngx_chat_redis_req_t  *req;

    r = &ngx_chat_redis;

    if (r->pool == NULL) {
        return;
    }

    r->exiting = 1;

    /* on_close fails the pending requests; no reconnect while exiting */

    ngx_chat_redis_close(&r->cmd);
    ngx_chat_redis_close(&r->sub);

    if (r->cmd.reconnect.timer_set) {
        ngx_del_timer(&r->cmd.reconnect);
    }

    if (r->sub.reconnect.timer_set) {
        ngx_del_timer(&r->sub.reconnect);
    }

    if (r->timer.timer_set) {
        ngx_del_timer(&r->timer);
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
    return ngx_chat_redis.pool != NULL && ngx_chat_redis.cmd.connected;
}


/* links */


static void
ngx_chat_redis_connect(ngx_chat_redis_link_t *link)
{
    ngx_int_t          rc;
    ngx_connection_t  *c;

    link->peer.connection = NULL;
    link->peer.tries = 1;

    rc = ngx_event_connect_peer(&link->peer);

    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        link->peer.connection = NULL;
        link->failures++;
        ngx_chat_redis_schedule(link);
        return;
    }

    c = link->peer.connection;
    link->connection = c;

    ngx_chat_redis_nodelay(c);

    c->data = link;
    c->read->handler = ngx_chat_redis_read_handler;
    c->write->handler = ngx_chat_redis_write_handler;
    c->read->cancelable = 1;
    c->write->cancelable = 1;

    link->reader = redisReaderCreate();
    if (link->reader == NULL) {
        ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                      "chat redis: redisReaderCreate() failed");
        ngx_chat_redis_close(link);
        return;
    }

    if (rc == NGX_AGAIN) {
        link->connecting = 1;
        ngx_add_timer(c->write, ngx_chat_redis.timeout);
        return;
    }

    ngx_chat_redis_connected(link);
}


/* commands and replies are small and latency-bound: no Nagle delay */

static void
ngx_chat_redis_nodelay(ngx_connection_t *c)
{
    int  on = 1;

    if (c->sockaddr && c->sockaddr->sa_family == AF_UNIX) {
        return;
    }

    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, (const void *) &on,
                   sizeof(int))
        == -1)
    {
        ngx_log_error(NGX_LOG_WARN, c->log, ngx_socket_errno,
                      "chat redis: setsockopt(TCP_NODELAY) failed");
        return;
    }

    c->tcp_nodelay = NGX_TCP_NODELAY_SET;
}


static void
ngx_chat_redis_connected(ngx_chat_redis_link_t *link)
{
    ngx_connection_t  *c;

    c = link->connection;

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    link->connecting = 0;
    link->connected = 1;
    link->alive = 0;

    ngx_log_error(NGX_LOG_NOTICE, &link->log, 0,
                  "chat redis: %s link connected to %V%s", link->name,
                  link->peer.name, link->failures ? " again" : "");

    link->failures = 0;

    link->on_connect(link);
}


static ngx_int_t
ngx_chat_redis_test_connect(ngx_chat_redis_link_t *link)
{
    int                err;
    socklen_t          len;
    ngx_uint_t         level;
    ngx_connection_t  *c;

    c = link->connection;

    err = 0;
    len = sizeof(int);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len) == -1) {
        err = ngx_socket_errno;
    }

    if (err) {
        level = link->failures ? NGX_LOG_INFO : NGX_LOG_ERR;

        ngx_log_error(level, &link->log, err,
                      "chat redis: connect() to %V failed", link->peer.name);
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_chat_redis_close(ngx_chat_redis_link_t *link)
{
    if (link->connection) {
        ngx_close_connection(link->connection);
        link->connection = NULL;
        link->peer.connection = NULL;
    }

    if (link->reader) {
        redisReaderFree(link->reader);
        link->reader = NULL;
    }

    if (link->out) {
        ngx_free(link->out);
        link->out = NULL;
        link->out_pos = NULL;
        link->out_last = NULL;
        link->out_end = NULL;
    }

    if (link->connected) {
        if (!ngx_chat_redis.exiting) {
            ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                          "chat redis: %s link to %V lost", link->name,
                          link->peer.name);
        }

    } else {
        link->failures++;
    }

    link->connecting = 0;

    link->on_close(link);

    link->connected = 0;

    ngx_chat_redis_schedule(link);
}


static void
ngx_chat_redis_schedule(ngx_chat_redis_link_t *link)
{
    if (ngx_chat_redis.exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (link->reconnect.timer_set) {
        return;
    }

    ngx_add_timer(&link->reconnect, link->backoff);

    link->backoff *= 2;
    if (link->backoff > NGX_CHAT_REDIS_BACKOFF_MAX) {
        link->backoff = NGX_CHAT_REDIS_BACKOFF_MAX;
    }
}


static void
ngx_chat_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_chat_redis_link_t  *link;

    link = ev->data;

    if (ngx_chat_redis.exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (link->connection == NULL) {
        ngx_chat_redis_connect(link);
    }
}


static void
ngx_chat_redis_read_handler(ngx_event_t *rev)
{
    int                     rc;
    ssize_t                 n;
    redisReply             *reply;
    ngx_connection_t       *c;
    ngx_chat_redis_link_t  *link;
    u_char                  buf[NGX_CHAT_REDIS_READ_SIZE];

    c = rev->data;
    link = c->data;

    if (link->connecting) {
        if (ngx_chat_redis_test_connect(link) != NGX_OK) {
            ngx_chat_redis_close(link);
            return;
        }

        ngx_chat_redis_connected(link);

        if (link->connection != c) {
            return;
        }
    }

    for ( ;; ) {
        n = c->recv(c, buf, sizeof(buf));

        if (n == NGX_AGAIN) {
            break;
        }

        if (n == 0 || n == NGX_ERROR) {
            if (n == 0 && link->connected) {
                ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                              "chat redis: %V closed the %s link",
                              link->peer.name, link->name);
            }

            ngx_chat_redis_close(link);
            return;
        }

        if (redisReaderFeed(link->reader, (const char *) buf, n)
            != REDIS_OK)
        {
            ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                          "chat redis: redisReaderFeed() failed");
            ngx_chat_redis_close(link);
            return;
        }

        for ( ;; ) {
            reply = NULL;
            rc = redisReaderGetReply(link->reader, (void **) &reply);

            if (rc != REDIS_OK) {
                ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                              "chat redis: bad reply on the %s link: %s",
                              link->name, link->reader->errstr);
                ngx_chat_redis_close(link);
                return;
            }

            if (reply == NULL) {
                break;
            }

            if (!link->alive && reply->type != REDIS_REPLY_ERROR) {
                /* a server that accepts and drops keeps its backoff */
                link->alive = 1;
                link->backoff = NGX_CHAT_REDIS_BACKOFF_MIN;
            }

            rc = link->on_reply(link, reply);

            freeReplyObject(reply);

            if (rc != NGX_OK) {
                ngx_chat_redis_close(link);
                return;
            }

            if (link->connection != c) {
                /* closed by a handler */
                return;
            }
        }
    }

    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_chat_redis_close(link);
    }
}


static void
ngx_chat_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t       *c;
    ngx_chat_redis_link_t  *link;

    c = wev->data;
    link = c->data;

    if (wev->timedout) {
        ngx_log_error(NGX_LOG_ERR, &link->log, NGX_ETIMEDOUT,
                      "chat redis: connect() to %V timed out",
                      link->peer.name);
        ngx_chat_redis_close(link);
        return;
    }

    if (link->connecting) {
        if (ngx_chat_redis_test_connect(link) != NGX_OK) {
            ngx_chat_redis_close(link);
            return;
        }

        ngx_chat_redis_connected(link);

        if (link->connection != c) {
            return;
        }
    }

    (void) ngx_chat_redis_send(link);
}


static ngx_int_t
ngx_chat_redis_send(ngx_chat_redis_link_t *link)
{
    ssize_t            n;
    ngx_connection_t  *c;

    c = link->connection;

    if (c == NULL || !link->connected) {
        return NGX_ERROR;
    }

    while (link->out_pos < link->out_last) {
        n = c->send(c, link->out_pos, link->out_last - link->out_pos);

        if (n == NGX_AGAIN) {
            if (ngx_handle_write_event(c->write, 0) != NGX_OK) {
                ngx_chat_redis_close(link);
                return NGX_ERROR;
            }

            return NGX_AGAIN;
        }

        if (n == NGX_ERROR || n == 0) {
            ngx_chat_redis_close(link);
            return NGX_ERROR;
        }

        link->out_pos += n;
    }

    link->out_pos = link->out;
    link->out_last = link->out;

    return NGX_OK;
}


static ngx_int_t
ngx_chat_redis_reserve(ngx_chat_redis_link_t *link, size_t len)
{
    u_char  *p;
    size_t   size, used;

    if ((size_t) (link->out_end - link->out_last) >= len) {
        return NGX_OK;
    }

    used = link->out_last - link->out_pos;
    size = link->out_end - link->out;

    if (used + len <= size) {
        ngx_memmove(link->out, link->out_pos, used);

    } else {
        if (size < NGX_CHAT_REDIS_OUT_SIZE) {
            size = NGX_CHAT_REDIS_OUT_SIZE;
        }

        while (size < used + len) {
            size *= 2;
        }

        p = ngx_alloc(size, &link->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (used) {
            ngx_memcpy(p, link->out_pos, used);
        }

        if (link->out) {
            ngx_free(link->out);
        }

        link->out = p;
        link->out_end = p + size;
    }

    link->out_pos = link->out;
    link->out_last = link->out + used;

    return NGX_OK;
}


static ngx_int_t
ngx_chat_redis_append(ngx_chat_redis_link_t *link, const u_char *data,
    size_t len)
{
    if (ngx_chat_redis_reserve(link, len) != NGX_OK) {
        return NGX_ERROR;
    }

    link->out_last = ngx_cpymem(link->out_last, data, len);

    return NGX_OK;
}


ngx_int_t
ngx_chat_redis_append_argv(ngx_chat_redis_link_t *link, int argc,
    const char **argv, const size_t *argvlen)
{
    int         len;
    char       *cmd;
    ngx_int_t   rc;

    cmd = NULL;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0 || cmd == NULL) {
        return NGX_ERROR;
    }

    rc = ngx_chat_redis_append(link, (u_char *) cmd, len);

    redisFreeCommand(cmd);

    return rc;
}


void
ngx_chat_redis_flush(ngx_chat_redis_link_t *link)
{
    /* written once the current event cycle is done: pipelines commands */

    if (link->connection && link->connected) {
        ngx_post_event(link->connection->write, &ngx_posted_events);
    }
}


/* the command link */


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

    return ngx_chat_redis_enqueue(cmd, len, handler, data, NULL);
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

    return ngx_chat_redis_enqueue(cmd, len, handler, data, script);
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
    ngx_queue_t           *q;
    ngx_chat_redis_t      *r;
    ngx_chat_redis_req_t  *req;

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

        if (ngx_chat_redis_append(&r->cmd, (u_char *) req->cmd,
                                  req->cmd_len)
            != NGX_OK)
        {
            ngx_log_error(NGX_LOG_ERR, r->log, 0,
                          "chat redis: cannot queue a background script");
            req->handler(NULL, req->data);
            ngx_chat_redis_free_req(req);
            continue;
        }

        req->start = ngx_current_msec;
        req->start_us = ngx_chat_metric_now_us();

        ngx_queue_insert_tail(&r->pending, &req->queue);
        r->bg_inflight++;

        if (!r->timer.timer_set) {
            ngx_add_timer(&r->timer, r->timeout);
        }

        ngx_chat_redis_flush(&r->cmd);
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
ngx_chat_redis_enqueue(char *cmd, int len, ngx_chat_redis_reply_pt handler,
    void *data, ngx_chat_redis_script_t *script)
{
    ngx_chat_redis_t      *r;
    ngx_chat_redis_req_t  *req;

    r = &ngx_chat_redis;

    req = ngx_chat_redis_alloc_req();
    if (req == NULL) {
        redisFreeCommand(cmd);
        return NULL;
    }

    if (ngx_chat_redis_append(&r->cmd, (u_char *) cmd, len) != NGX_OK) {
        redisFreeCommand(cmd);
        ngx_free(req);
        return NULL;
    }

    if (script) {
        req->script = script;
        req->cmd = cmd;
        req->cmd_len = len;

    } else {
        redisFreeCommand(cmd);
    }

    req->handler = handler;
    req->data = data;
    req->start = ngx_current_msec;
    req->start_us = ngx_chat_metric_now_us();

    ngx_queue_insert_tail(&r->pending, &req->queue);

    if (!r->timer.timer_set) {
        ngx_add_timer(&r->timer, r->timeout);
    }

    ngx_chat_redis_flush(&r->cmd);

    return req;
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
    const char  *argv[1];
    size_t       argvlen[1];

    /* its reply proves the server answers (see "alive") */

    (void) link;

    argv[0] = "PING";
    argvlen[0] = sizeof("PING") - 1;

    (void) ngx_chat_redis_command(NULL, NULL, 1, argv, argvlen);

    ngx_chat_metric_gauge_set(NGX_CHAT_G_REDIS_UP, 1);

    if (ngx_chat_redis.on_state) {
        ngx_chat_redis.on_state(1);
    }
}


static void
ngx_chat_redis_cmd_close(ngx_chat_redis_link_t *link)
{
    ngx_uint_t                was;
    ngx_queue_t              *q;
    ngx_chat_redis_t         *r;
    ngx_chat_redis_req_t     *req;
    ngx_chat_redis_reply_pt   handler;

    r = &ngx_chat_redis;

    was = link->connected;
    link->connected = 0;
    ngx_chat_metric_gauge_set(NGX_CHAT_G_REDIS_UP, 0);

    if (r->timer.timer_set) {
        ngx_del_timer(&r->timer);
    }

    r->bg_inflight = 0;

    while (!ngx_queue_empty(&r->pending)
           || !ngx_queue_empty(&r->bg_wait))
    {
        q = ngx_queue_empty(&r->pending) ? ngx_queue_head(&r->bg_wait)
                                         : ngx_queue_head(&r->pending);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);

        handler = req->handler;

        if (handler) {
            req->handler = NULL;
            handler(NULL, req->data);
        }

        ngx_chat_redis_free_req(req);
    }

    if (was && !r->exiting && r->on_state) {
        r->on_state(0);
    }
}


static ngx_int_t
ngx_chat_redis_cmd_reply(ngx_chat_redis_link_t *link, redisReply *reply)
{
    void                     *data;
    ngx_uint_t                bg;
    ngx_queue_t              *q;
    ngx_chat_redis_t         *r;
    ngx_chat_redis_req_t     *req;
    ngx_chat_redis_reply_pt   handler;

    r = &ngx_chat_redis;

    if (ngx_queue_empty(&r->pending)) {
        ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                      "chat redis: unexpected reply on the command link");
        return NGX_ERROR;
    }

    q = ngx_queue_head(&r->pending);
    req = ngx_queue_data(q, ngx_chat_redis_req_t, queue);

    ngx_queue_remove(q);

    if (req->script && !req->retried && req->handler
        && reply->type == REDIS_REPLY_ERROR && reply->len >= 8
        && ngx_strncmp(reply->str, "NOSCRIPT", 8) == 0)
    {
        if (ngx_chat_redis_retry_eval(req) == NGX_OK) {
            req->retried = 1;
            req->start = ngx_current_msec;
            ngx_queue_insert_tail(&r->pending, &req->queue);
            ngx_chat_redis_flush(link);
            return NGX_OK;
        }

        ngx_log_error(NGX_LOG_ERR, &link->log, 0,
                      "chat redis: could not send EVAL after NOSCRIPT");
    }

    handler = req->handler;
    data = req->data;
    bg = req->bg;

    ngx_chat_metric_observe(NGX_CHAT_H_REDIS, NGX_CHAT_G_REDIS_RTT,
                            ngx_chat_metric_now_us() - req->start_us);

    ngx_chat_redis_free_req(req);

    if (ngx_queue_empty(&r->pending) && r->timer.timer_set) {
        ngx_del_timer(&r->timer);
    }

    if (handler) {
        handler(reply, data);
    }

    if (bg && r->bg_inflight) {
        r->bg_inflight--;

        if (link->connected && link->connection) {
            ngx_chat_redis_bg_next();
        }
    }

    return NGX_OK;
}


static ngx_int_t
ngx_chat_redis_retry_eval(ngx_chat_redis_req_t *req)
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

    link = &ngx_chat_redis.cmd;

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
    ngx_msec_t             elapsed;
    ngx_chat_redis_t      *r;
    ngx_chat_redis_req_t  *req;

    r = ev->data;

    if (ngx_queue_empty(&r->pending)) {
        return;
    }

    req = ngx_queue_data(ngx_queue_head(&r->pending), ngx_chat_redis_req_t,
                         queue);

    elapsed = ngx_current_msec - req->start;

    if (elapsed >= r->timeout) {
        ngx_log_error(NGX_LOG_ERR, &r->cmd.log, 0,
                      "chat redis: command timed out after %M ms", elapsed);
        ngx_chat_redis_close(&r->cmd);
        return;
    }

    ngx_add_timer(ev, r->timeout - elapsed);
}
