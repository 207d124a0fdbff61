/* ngx_chat_redis_link.c: a Redis link on nginx events: connect, backoff,
 * reads through hiredis's reader, pipelined writes. */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>
#include <ngx_event_connect.h>

#include "ngx_chat_redis_int.h"


#define NGX_CHAT_REDIS_BACKOFF_MIN   100
#define NGX_CHAT_REDIS_BACKOFF_MAX   5000
#define NGX_CHAT_REDIS_READ_SIZE     16384
#define NGX_CHAT_REDIS_OUT_SIZE      4096
/* an output buffer a burst grew past this is freed once it drains */
#define NGX_CHAT_REDIS_OUT_KEEP      (64 * 1024)


static void ngx_chat_redis_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_connected(ngx_chat_redis_link_t *link);
static u_char *ngx_chat_redis_out_alloc(ngx_chat_redis_link_t *link,
    size_t size);
static void ngx_chat_redis_out_free(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_nodelay(ngx_connection_t *c);
static ngx_int_t ngx_chat_redis_test_connect(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_schedule(ngx_chat_redis_link_t *link);
static void ngx_chat_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_chat_redis_read_handler(ngx_event_t *rev);
static void ngx_chat_redis_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_chat_redis_send(ngx_chat_redis_link_t *link);


void
ngx_chat_redis_link_init(ngx_chat_redis_link_t *link, ngx_log_t *log,
    ngx_addr_t *addr, ngx_msec_t timeout)
{
    link->log = *log;
    link->log.action = "talking to redis";

    link->peer.sockaddr = addr->sockaddr;
    link->peer.socklen = addr->socklen;
    link->peer.name = &addr->name;
    link->peer.get = ngx_event_get_peer;
    link->peer.log = &link->log;
    link->peer.log_error = NGX_ERROR_ERR;
    link->peer.so_keepalive = 1;

    link->timeout = timeout;
    link->backoff = NGX_CHAT_REDIS_BACKOFF_MIN;

    link->reconnect.handler = ngx_chat_redis_reconnect_handler;
    link->reconnect.data = link;
    link->reconnect.log = &link->log;
    link->reconnect.cancelable = 1;
}


void
ngx_chat_redis_link_exit(ngx_chat_redis_link_t *link)
{
    link->exiting = 1;

    ngx_chat_redis_close(link);

    if (link->reconnect.timer_set) {
        ngx_del_timer(&link->reconnect);
    }

    if (link->reconnect.posted) {
        ngx_delete_posted_event(&link->reconnect);
    }
}



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
        ngx_add_timer(c->write, link->timeout);
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

    ngx_chat_redis_out_free(link);

    if (link->connected) {
        if (!link->exiting) {
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
    if (link->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
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

    if (link->exiting || ngx_exiting || ngx_terminate || ngx_quit) {
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

    if (link->out_end - link->out > NGX_CHAT_REDIS_OUT_KEEP) {
        /* a burst grew it: the next command allocates the usual size */
        ngx_chat_redis_out_free(link);
    }

    link->out_pos = link->out;
    link->out_last = link->out;

    return NGX_OK;
}


/*
 * The output buffer: NGX_CHAT_REDIS_OUT_SIZE from the heap; one a burst
 * grows past NGX_CHAT_REDIS_OUT_KEEP (a storm's NOSCRIPT retries carry the
 * scripts' sources) is mapped of its own, so that freeing it once it
 * drains gives its memory back to the system (from the middle of the heap
 * it would stay the worker's).
 */

static u_char *
ngx_chat_redis_out_alloc(ngx_chat_redis_link_t *link, size_t size)
{
    u_char  *p;

    if (size <= NGX_CHAT_REDIS_OUT_KEEP) {
        return ngx_alloc(size, &link->log);
    }

    p = mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS,
             -1, 0);

    if (p == MAP_FAILED) {
        ngx_log_error(NGX_LOG_ALERT, &link->log, ngx_errno,
                      "chat redis: mmap(%uz) failed", size);
        return NULL;
    }

    return p;
}


static void
ngx_chat_redis_out_free(ngx_chat_redis_link_t *link)
{
    size_t  size;

    if (link->out == NULL) {
        return;
    }

    size = link->out_end - link->out;

    if (size <= NGX_CHAT_REDIS_OUT_KEEP) {
        ngx_free(link->out);

    } else if (munmap(link->out, size) == -1) {
        ngx_log_error(NGX_LOG_ALERT, &link->log, ngx_errno,
                      "chat redis: munmap(%uz) failed", size);
    }

    link->out = NULL;
    link->out_pos = NULL;
    link->out_last = NULL;
    link->out_end = NULL;
}


ngx_int_t
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

        p = ngx_chat_redis_out_alloc(link, size);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (used) {
            ngx_memcpy(p, link->out_pos, used);
        }

        ngx_chat_redis_out_free(link);

        link->out = p;
        link->out_end = p + size;
    }

    link->out_pos = link->out;
    link->out_last = link->out + used;

    return NGX_OK;
}


ngx_int_t
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
