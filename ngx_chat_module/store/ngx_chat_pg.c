/* ngx_chat_pg.c: the worker's PostgreSQL connection pool, async libpq on
 * nginx events (PQconnectPoll, PQsendQueryParams, PQflush). */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_event.h>

#include "ngx_chat_pg.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_PG_BACKOFF_MIN   100
#define NGX_CHAT_PG_BACKOFF_MAX   5000


typedef enum {
    NGX_CHAT_PG_DOWN = 0,
    NGX_CHAT_PG_CONNECTING,
    NGX_CHAT_PG_IDLE,
    NGX_CHAT_PG_BUSY
} ngx_chat_pg_state_e;


typedef struct ngx_chat_pg_conn_s  ngx_chat_pg_conn_t;


struct ngx_chat_pg_req_s {
    ngx_queue_t                  queue;       /* waiting for a connection */
    ngx_chat_pg_handler_pt       handler;     /* NULL once cancelled */
    void                        *data;
    ngx_event_t                  timer;       /* the deadline */
    ngx_chat_pg_conn_t          *pc;          /* running on */
    char                        *sql;
    int                          nparams;
    char                       **values;
    unsigned                     queued:1;
};


struct ngx_chat_pg_conn_s {
    PGconn                      *conn;
    ngx_connection_t            *c;           /* wraps PQsocket(conn) */
    ngx_socket_t                 fd;
    ino_t                        ino;
    dev_t                        dev;

    ngx_chat_pg_state_e          state;
    PostgresPollingStatusType    poll;        /* last PQconnectPoll() */
    ngx_chat_pg_req_t           *req;
    PGresult                    *res;         /* first result of req */

    ngx_event_t                  timer;       /* retry or connect timeout */
    ngx_msec_t                   backoff;
    ngx_uint_t                   failures;
    ngx_uint_t                   index;
    uint64_t                     sent_us;     /* metrics: the query time */

    unsigned                     flushing:1;
};


typedef struct {
    ngx_pool_t                  *pool;
    ngx_log_t                    log;
    char                        *conninfo;
    ngx_msec_t                   timeout;

    ngx_chat_pg_conn_t          *conns;
    ngx_uint_t                   nconns;

    ngx_queue_t                  queue;
    ngx_event_t                  dispatch;    /* posted: runs queued work */
    ngx_msec_t                   last_kick;

    unsigned                     last_failed:1;
    unsigned                     exiting:1;
} ngx_chat_pg_t;


static void ngx_chat_pg_connect(ngx_chat_pg_conn_t *pc);
static void ngx_chat_pg_connect_poll(ngx_chat_pg_conn_t *pc);
static void ngx_chat_pg_connected(ngx_chat_pg_conn_t *pc);
static void ngx_chat_pg_broken(ngx_chat_pg_conn_t *pc, const char *what);
static void ngx_chat_pg_close_conn(ngx_chat_pg_conn_t *pc);
static void ngx_chat_pg_schedule(ngx_chat_pg_conn_t *pc);
static void ngx_chat_pg_timer_handler(ngx_event_t *ev);
static ngx_int_t ngx_chat_pg_sync_socket(ngx_chat_pg_conn_t *pc);
static ngx_int_t ngx_chat_pg_wrap(ngx_chat_pg_conn_t *pc, ngx_socket_t fd);
static void ngx_chat_pg_unwrap(ngx_chat_pg_conn_t *pc, ngx_uint_t closed);
static ngx_int_t ngx_chat_pg_set_events(ngx_chat_pg_conn_t *pc,
    ngx_uint_t rd, ngx_uint_t wr);
static void ngx_chat_pg_read_handler(ngx_event_t *rev);
static void ngx_chat_pg_write_handler(ngx_event_t *wev);
static ngx_int_t ngx_chat_pg_send(ngx_chat_pg_conn_t *pc,
    ngx_chat_pg_req_t *req);
static ngx_int_t ngx_chat_pg_flush(ngx_chat_pg_conn_t *pc);
static void ngx_chat_pg_results(ngx_chat_pg_conn_t *pc);
static void ngx_chat_pg_complete(ngx_chat_pg_conn_t *pc);
static void ngx_chat_pg_dispatch_handler(ngx_event_t *ev);
static void ngx_chat_pg_post_dispatch(void);
static void ngx_chat_pg_fail_queued(void);
static void ngx_chat_pg_fail_req(ngx_chat_pg_req_t *req);
static void ngx_chat_pg_req_timeout(ngx_event_t *ev);
static ngx_uint_t ngx_chat_pg_any_up(void);
static void ngx_chat_pg_kick(void);
static size_t ngx_chat_pg_errlen(const char *msg);
static u_char *ngx_chat_pg_oneline(u_char *buf, size_t size,
    const char *msg);
static void ngx_chat_pg_notice(void *arg, const char *message);


static ngx_chat_pg_t  ngx_chat_pg;


char *
ngx_chat_pg_check_conninfo(ngx_conf_t *cf, ngx_str_t *conninfo)
{
    char                     *errmsg;
    u_char                   *p, *last;
    PQconninfoOption         *opts;
    u_char                    text[512];

    p = ngx_pnalloc(cf->temp_pool, conninfo->len + 1);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memcpy(p, conninfo->data, conninfo->len);
    p[conninfo->len] = '\0';

    errmsg = NULL;

    opts = PQconninfoParse((char *) p, &errmsg);

    if (opts != NULL) {
        PQconninfoFree(opts);
        return NGX_CONF_OK;
    }

    if (errmsg == NULL) {
        /* out of memory */
        return NGX_CONF_ERROR;
    }

    last = ngx_chat_pg_oneline(text, sizeof(text), errmsg);
    PQfreemem(errmsg);

    /* not the string itself: it may hold a password */
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"chat_postgres\" is not a connection string "
                       "(libpq keywords or a postgresql:// URI): %*s",
                       last - text, text);

    return NGX_CONF_ERROR;
}


ngx_int_t
ngx_chat_pg_init(ngx_cycle_t *cycle, ngx_str_t *conninfo,
    ngx_uint_t pool_size, ngx_msec_t timeout)
{
    ngx_uint_t           i;
    ngx_pool_t          *pool;
    ngx_chat_pg_t       *p;
    ngx_chat_pg_conn_t  *pc;

    p = &ngx_chat_pg;

    if (p->pool != NULL) {
        ngx_log_error(NGX_LOG_ALERT, cycle->log, 0,
                      "chat pg: already initialized");
        return NGX_ERROR;
    }

    ngx_memzero(p, sizeof(ngx_chat_pg_t));

    if (pool_size == 0) {
        pool_size = 1;
    }

    pool = ngx_create_pool(1024, cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    p->pool = pool;
    p->log = *cycle->log;
    p->log.action = "talking to postgresql";
    p->timeout = timeout ? timeout : 1;

    p->conninfo = ngx_pnalloc(pool, conninfo->len + 1);
    p->conns = ngx_pcalloc(pool, pool_size * sizeof(ngx_chat_pg_conn_t));

    if (p->conninfo == NULL || p->conns == NULL) {
        ngx_destroy_pool(pool);
        p->pool = NULL;
        return NGX_ERROR;
    }

    ngx_memcpy(p->conninfo, conninfo->data, conninfo->len);
    p->conninfo[conninfo->len] = '\0';

    p->nconns = pool_size;

    ngx_queue_init(&p->queue);

    p->dispatch.handler = ngx_chat_pg_dispatch_handler;
    p->dispatch.data = p;
    p->dispatch.log = &p->log;

    for (i = 0; i < pool_size; i++) {
        pc = &p->conns[i];

        pc->index = i;
        pc->fd = (ngx_socket_t) -1;
        pc->backoff = NGX_CHAT_PG_BACKOFF_MIN;

        pc->timer.handler = ngx_chat_pg_timer_handler;
        pc->timer.data = pc;
        pc->timer.log = &p->log;
        pc->timer.cancelable = 1;
    }

    for (i = 0; i < pool_size; i++) {
        ngx_chat_pg_connect(&p->conns[i]);
    }

    return NGX_OK;
}


void
ngx_chat_pg_exit(void)
{
    ngx_uint_t           i;
    ngx_chat_pg_t       *p;
    ngx_chat_pg_req_t   *req;
    ngx_chat_pg_conn_t  *pc;

    p = &ngx_chat_pg;

    if (p->pool == NULL) {
        return;
    }

    p->exiting = 1;

    for (i = 0; i < p->nconns; i++) {
        pc = &p->conns[i];

        req = pc->req;
        pc->req = NULL;

        ngx_chat_pg_close_conn(pc);

        if (pc->timer.timer_set) {
            ngx_del_timer(&pc->timer);
        }

        if (req) {
            req->pc = NULL;
            ngx_chat_pg_fail_req(req);
        }
    }

    ngx_chat_pg_fail_queued();

    if (p->dispatch.posted) {
        ngx_delete_posted_event(&p->dispatch);
    }

    ngx_destroy_pool(p->pool);
    ngx_memzero(p, sizeof(ngx_chat_pg_t));
}


ngx_chat_pg_req_t *
ngx_chat_pg_query(const char *sql, int nparams, const char *const *values,
    const int *lengths, ngx_chat_pg_handler_pt handler, void *data)
{
    int                 i;
    u_char             *p;
    size_t              size, len;
    ngx_chat_pg_t      *pg;
    ngx_chat_pg_req_t  *req;

    pg = &ngx_chat_pg;

    if (pg->pool == NULL || pg->exiting || sql == NULL || nparams < 0
        || nparams > 65535)
    {
        return NULL;
    }

    size = sizeof(ngx_chat_pg_req_t) + nparams * sizeof(char *)
           + ngx_strlen(sql) + 1;

    for (i = 0; i < nparams; i++) {
        if (values[i]) {
            size += ((lengths && lengths[i] >= 0) ? (size_t) lengths[i]
                                                  : ngx_strlen(values[i]))
                    + 1;
        }
    }

    req = ngx_alloc(size, &pg->log);
    if (req == NULL) {
        return NULL;
    }

    ngx_memzero(req, sizeof(ngx_chat_pg_req_t));

    req->handler = handler;
    req->data = data;
    req->nparams = nparams;
    req->values = (char **) (req + 1);

    p = (u_char *) (req->values + nparams);

    for (i = 0; i < nparams; i++) {
        if (values[i] == NULL) {
            req->values[i] = NULL;
            continue;
        }

        len = (lengths && lengths[i] >= 0) ? (size_t) lengths[i]
                                           : ngx_strlen(values[i]);

        req->values[i] = (char *) p;
        p = ngx_cpymem(p, values[i], len);
        *p++ = '\0';
    }

    req->sql = (char *) p;
    p = ngx_cpymem(p, sql, ngx_strlen(sql));
    *p = '\0';

    req->timer.handler = ngx_chat_pg_req_timeout;
    req->timer.data = req;
    req->timer.log = &pg->log;

    ngx_add_timer(&req->timer, pg->timeout);

    req->queued = 1;
    ngx_queue_insert_tail(&pg->queue, &req->queue);

    if (!ngx_chat_pg_any_up()) {
        ngx_chat_pg_kick();
    }

    /* never calls the handler before the handle is returned */
    ngx_chat_pg_post_dispatch();

    return req;
}


ngx_uint_t
ngx_chat_pg_ready(void)
{
    return ngx_chat_pg_any_up();
}


void
ngx_chat_pg_cancel(ngx_chat_pg_req_t *req)
{
    if (req == NULL) {
        return;
    }

    if (req->pc) {
        /* running: the result is discarded; the deadline still applies */
        req->handler = NULL;
        req->data = NULL;
        return;
    }

    if (req->queued) {
        ngx_queue_remove(&req->queue);
    }

    if (req->timer.timer_set) {
        ngx_del_timer(&req->timer);
    }

    ngx_free(req);
}


/* connections */


static void
ngx_chat_pg_connect(ngx_chat_pg_conn_t *pc)
{
    ngx_chat_pg_t  *p;

    p = &ngx_chat_pg;

    pc->state = NGX_CHAT_PG_CONNECTING;
    pc->poll = PGRES_POLLING_WRITING;
    pc->flushing = 0;

    pc->conn = PQconnectStart(p->conninfo);

    if (pc->conn == NULL) {
        ngx_chat_pg_broken(pc, "PQconnectStart() failed");
        return;
    }

    if (PQstatus(pc->conn) == CONNECTION_BAD) {
        ngx_chat_pg_broken(pc, "could not connect");
        return;
    }

    /* not to stderr: e.g. "terminating connection" on a server restart */
    PQsetNoticeProcessor(pc->conn, ngx_chat_pg_notice, pc);

    if (PQsetnonblocking(pc->conn, 1) != 0) {
        ngx_chat_pg_broken(pc, "PQsetnonblocking() failed");
        return;
    }

    if (ngx_chat_pg_sync_socket(pc) != NGX_OK || pc->c == NULL
        || ngx_chat_pg_set_events(pc, 0, 1) != NGX_OK)
    {
        ngx_chat_pg_broken(pc, "could not watch the socket");
        return;
    }

    ngx_add_timer(&pc->timer, p->timeout);
}


static void
ngx_chat_pg_connect_poll(ngx_chat_pg_conn_t *pc)
{
    PostgresPollingStatusType  st;

    st = PQconnectPoll(pc->conn);

    /* libpq may have moved to another socket (next address or host) */

    if (ngx_chat_pg_sync_socket(pc) != NGX_OK) {
        ngx_chat_pg_broken(pc, "could not watch the socket");
        return;
    }

    switch (st) {

    case PGRES_POLLING_READING:
    case PGRES_POLLING_WRITING:
        pc->poll = st;

        if (pc->c == NULL
            || ngx_chat_pg_set_events(pc, st == PGRES_POLLING_READING,
                                      st == PGRES_POLLING_WRITING)
               != NGX_OK)
        {
            ngx_chat_pg_broken(pc, "could not watch the socket");
        }

        return;

    case PGRES_POLLING_OK:
        ngx_chat_pg_connected(pc);
        return;

    default:
        ngx_chat_pg_broken(pc, "could not connect");
        return;
    }
}


static void
ngx_chat_pg_connected(ngx_chat_pg_conn_t *pc)
{
    ngx_chat_pg_t  *p;

    p = &ngx_chat_pg;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->c == NULL || ngx_chat_pg_set_events(pc, 1, 0) != NGX_OK) {
        ngx_chat_pg_broken(pc, "could not watch the socket");
        return;
    }

    pc->state = NGX_CHAT_PG_IDLE;
    pc->backoff = NGX_CHAT_PG_BACKOFF_MIN;
    p->last_failed = 0;
    ngx_chat_metric_gauge_add(NGX_CHAT_G_PG_CONNS, 1);

    ngx_log_error(NGX_LOG_NOTICE, &p->log, 0,
                  "chat pg: connection %ui %sconnected", pc->index,
                  pc->failures ? "re" : "");

    pc->failures = 0;

    ngx_chat_pg_post_dispatch();
}


/*
 * Any failure, connecting or connected: the running request (if any) gets
 * NULL, the connection is finished, and a new one is tried after backoff.
 */

static void
ngx_chat_pg_broken(ngx_chat_pg_conn_t *pc, const char *what)
{
    u_char             *last;
    const char         *msg;
    ngx_uint_t          was_up, level;
    ngx_chat_pg_t      *p;
    ngx_chat_pg_req_t  *req;
    u_char              text[512];

    p = &ngx_chat_pg;

    was_up = (pc->state == NGX_CHAT_PG_IDLE || pc->state == NGX_CHAT_PG_BUSY);

    msg = pc->conn ? PQerrorMessage(pc->conn) : "";
    if (msg == NULL) {
        msg = "";
    }

    if (was_up) {
        level = NGX_LOG_ERR;

    } else {
        pc->failures++;
        p->last_failed = 1;
        level = (pc->failures == 1) ? NGX_LOG_ERR : NGX_LOG_INFO;
    }

    if (!p->exiting) {
        /* libpq's messages span lines: keep the log entry on one */

        last = ngx_chat_pg_oneline(text, sizeof(text), msg);

        ngx_log_error(level, &p->log, 0,
                      "chat pg: connection %ui %s: %s: %*s", pc->index,
                      was_up ? "lost" : "failed", what, last - text, text);
    }

    req = pc->req;
    pc->req = NULL;

    ngx_chat_pg_close_conn(pc);

    ngx_chat_pg_schedule(pc);

    if (req) {
        req->pc = NULL;
        ngx_chat_pg_fail_req(req);
    }

    if (!was_up && !ngx_queue_empty(&p->queue)) {
        /* queued requests fail now if no connection is left */
        ngx_chat_pg_post_dispatch();
    }
}


static void
ngx_chat_pg_close_conn(ngx_chat_pg_conn_t *pc)
{
    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    if (pc->res) {
        PQclear(pc->res);
        pc->res = NULL;
    }

    /*
     * the socket belongs to libpq: unwatch it, then PQfinish() closes it;
     * libpq may have closed it already (a failed PQconsumeInput())
     */

    if (pc->conn) {
        (void) ngx_chat_pg_sync_socket(pc);
    }

    ngx_chat_pg_unwrap(pc, 0);

    if (pc->conn) {
        PQfinish(pc->conn);
        pc->conn = NULL;
    }

    if (pc->state == NGX_CHAT_PG_IDLE || pc->state == NGX_CHAT_PG_BUSY) {
        ngx_chat_metric_gauge_add(NGX_CHAT_G_PG_CONNS, -1);
    }

    pc->state = NGX_CHAT_PG_DOWN;
    pc->flushing = 0;
}


static void
ngx_chat_pg_schedule(ngx_chat_pg_conn_t *pc)
{
    if (ngx_chat_pg.exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    ngx_add_timer(&pc->timer, pc->backoff);

    pc->backoff *= 2;
    if (pc->backoff > NGX_CHAT_PG_BACKOFF_MAX) {
        pc->backoff = NGX_CHAT_PG_BACKOFF_MAX;
    }
}


static void
ngx_chat_pg_timer_handler(ngx_event_t *ev)
{
    ngx_chat_pg_conn_t  *pc;

    pc = ev->data;

    if (pc->state == NGX_CHAT_PG_CONNECTING) {
        ngx_chat_pg_broken(pc, "connect timed out");
        return;
    }

    if (pc->state != NGX_CHAT_PG_DOWN) {
        return;
    }

    if (ngx_chat_pg.exiting || ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    ngx_chat_pg_connect(pc);
}


/* the socket libpq owns, watched through an nginx connection */


static ngx_int_t
ngx_chat_pg_sync_socket(ngx_chat_pg_conn_t *pc)
{
    ngx_socket_t  fd;
    struct stat   st;

    fd = PQsocket(pc->conn);

    if (pc->c) {
        if (fd == pc->fd) {

            if (pc->state != NGX_CHAT_PG_CONNECTING) {
                return NGX_OK;
            }

            /* the same number may be a new socket: compare the inode */

            if (fstat(fd, &st) == 0 && st.st_ino == pc->ino
                && st.st_dev == pc->dev)
            {
                return NGX_OK;
            }
        }

        /* libpq closed the old socket: its events went with it */
        ngx_chat_pg_unwrap(pc, 1);
    }

    if (fd == (ngx_socket_t) -1) {
        return NGX_OK;
    }

    return ngx_chat_pg_wrap(pc, fd);
}


static ngx_int_t
ngx_chat_pg_wrap(ngx_chat_pg_conn_t *pc, ngx_socket_t fd)
{
    struct stat        st;
    ngx_connection_t  *c;

    c = ngx_get_connection(fd, &ngx_chat_pg.log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = pc;
    c->log = &ngx_chat_pg.log;
    c->read->log = c->log;
    c->write->log = c->log;
    c->read->handler = ngx_chat_pg_read_handler;
    c->write->handler = ngx_chat_pg_write_handler;
    c->number = ngx_atomic_fetch_add(ngx_connection_counter, 1);

    pc->c = c;
    pc->fd = fd;

    if (fstat(fd, &st) == 0) {
        pc->ino = st.st_ino;
        pc->dev = st.st_dev;

    } else {
        pc->ino = 0;
        pc->dev = 0;
    }

    return NGX_OK;
}


static void
ngx_chat_pg_unwrap(ngx_chat_pg_conn_t *pc, ngx_uint_t closed)
{
    ngx_connection_t  *c;

    c = pc->c;

    if (c == NULL) {
        return;
    }

    if (c->read->timer_set) {
        ngx_del_timer(c->read);
    }

    if (c->write->timer_set) {
        ngx_del_timer(c->write);
    }

    if (!closed) {
        if (c->read->active) {
            (void) ngx_del_event(c->read, NGX_READ_EVENT, 0);
        }

        if (c->write->active) {
            (void) ngx_del_event(c->write, NGX_WRITE_EVENT, 0);
        }
    }

    c->read->active = 0;
    c->write->active = 0;

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    c->read->closed = 1;
    c->write->closed = 1;

    ngx_free_connection(c);

    /* stale events of this round see fd -1 and are skipped */
    c->fd = (ngx_socket_t) -1;

    pc->c = NULL;
    pc->fd = (ngx_socket_t) -1;
}


/* level-triggered: libpq may leave data in the socket */

static ngx_int_t
ngx_chat_pg_set_events(ngx_chat_pg_conn_t *pc, ngx_uint_t rd, ngx_uint_t wr)
{
    ngx_connection_t  *c;

    c = pc->c;

    if (rd && !c->read->active) {
        if (ngx_add_event(c->read, NGX_READ_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!rd && c->read->active) {
        if (ngx_del_event(c->read, NGX_READ_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (wr && !c->write->active) {
        if (ngx_add_event(c->write, NGX_WRITE_EVENT, NGX_LEVEL_EVENT)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

    } else if (!wr && c->write->active) {
        if (ngx_del_event(c->write, NGX_WRITE_EVENT, 0) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


static void
ngx_chat_pg_read_handler(ngx_event_t *rev)
{
    PGnotify            *notify;
    ngx_connection_t    *c;
    ngx_chat_pg_conn_t  *pc;

    c = rev->data;
    pc = c->data;

    if (pc->state == NGX_CHAT_PG_CONNECTING) {
        if (pc->poll == PGRES_POLLING_READING) {
            ngx_chat_pg_connect_poll(pc);
        }

        return;
    }

    if (!PQconsumeInput(pc->conn)) {
        ngx_chat_pg_broken(pc, "PQconsumeInput() failed");
        return;
    }

    if (ngx_chat_pg_sync_socket(pc) != NGX_OK || pc->c == NULL
        || PQstatus(pc->conn) == CONNECTION_BAD)
    {
        ngx_chat_pg_broken(pc, "connection closed");
        return;
    }

    while ((notify = PQnotifies(pc->conn)) != NULL) {
        PQfreemem(notify);
    }

    if (pc->state != NGX_CHAT_PG_BUSY) {
        return;
    }

    if (pc->flushing && ngx_chat_pg_flush(pc) != NGX_OK) {
        ngx_chat_pg_broken(pc, "PQflush() failed");
        return;
    }

    ngx_chat_pg_results(pc);
}


static void
ngx_chat_pg_write_handler(ngx_event_t *wev)
{
    ngx_connection_t    *c;
    ngx_chat_pg_conn_t  *pc;

    c = wev->data;
    pc = c->data;

    if (pc->state == NGX_CHAT_PG_CONNECTING) {
        if (pc->poll == PGRES_POLLING_WRITING) {
            ngx_chat_pg_connect_poll(pc);
        }

        return;
    }

    if (pc->state == NGX_CHAT_PG_BUSY && pc->flushing) {
        if (ngx_chat_pg_flush(pc) != NGX_OK) {
            ngx_chat_pg_broken(pc, "PQflush() failed");
        }

        return;
    }

    if (ngx_chat_pg_set_events(pc, 1, 0) != NGX_OK) {
        ngx_chat_pg_broken(pc, "could not watch the socket");
    }
}


/* queries */


static ngx_int_t
ngx_chat_pg_send(ngx_chat_pg_conn_t *pc, ngx_chat_pg_req_t *req)
{
    if (!PQsendQueryParams(pc->conn, req->sql, req->nparams, NULL,
                           (const char *const *) req->values, NULL, NULL, 0))
    {
        return NGX_DECLINED;
    }

    pc->req = req;
    req->pc = pc;
    pc->state = NGX_CHAT_PG_BUSY;
    pc->sent_us = ngx_chat_metric_now_us();

    if (ngx_chat_pg_sync_socket(pc) != NGX_OK || pc->c == NULL) {
        return NGX_ERROR;
    }

    return ngx_chat_pg_flush(pc);
}


static ngx_int_t
ngx_chat_pg_flush(ngx_chat_pg_conn_t *pc)
{
    int  rc;

    rc = PQflush(pc->conn);

    if (rc < 0 || ngx_chat_pg_sync_socket(pc) != NGX_OK || pc->c == NULL) {
        return NGX_ERROR;
    }

    pc->flushing = (rc == 1);

    return ngx_chat_pg_set_events(pc, 1, pc->flushing);
}


static void
ngx_chat_pg_results(ngx_chat_pg_conn_t *pc)
{
    PGresult  *res;

    while (!PQisBusy(pc->conn)) {
        res = PQgetResult(pc->conn);

        if (res == NULL) {
            ngx_chat_pg_complete(pc);
            return;
        }

        switch (PQresultStatus(res)) {

        case PGRES_COPY_IN:
        case PGRES_COPY_OUT:
        case PGRES_COPY_BOTH:
            /* no COPY here: it would never end */
            PQclear(res);
            ngx_chat_pg_broken(pc, "COPY is not supported");
            return;

        default:
            break;
        }

        if (pc->res == NULL) {
            pc->res = res;

        } else {
            PQclear(res);
        }
    }
}


static void
ngx_chat_pg_complete(ngx_chat_pg_conn_t *pc)
{
    void                    *data;
    PGresult                *res;
    ngx_chat_pg_req_t       *req;
    ngx_chat_pg_handler_pt   handler;

    req = pc->req;
    res = pc->res;

    pc->req = NULL;
    pc->res = NULL;
    pc->state = NGX_CHAT_PG_IDLE;

    if (req) {
        ngx_chat_metric_observe(NGX_CHAT_H_PG, NGX_CHAT_G_PG_RTT,
                                ngx_chat_metric_now_us() - pc->sent_us);

        if (req->timer.timer_set) {
            ngx_del_timer(&req->timer);
        }

        handler = req->handler;
        data = req->data;

        ngx_free(req);

        if (handler) {
            handler(res, data);
        }
    }

    if (res) {
        PQclear(res);
    }

    if (pc->state == NGX_CHAT_PG_IDLE && pc->conn
        && PQstatus(pc->conn) == CONNECTION_BAD)
    {
        ngx_chat_pg_broken(pc, "connection closed");
        return;
    }

    ngx_chat_pg_post_dispatch();
}


static void
ngx_chat_pg_post_dispatch(void)
{
    if (ngx_chat_pg.pool == NULL || ngx_chat_pg.exiting) {
        return;
    }

    ngx_post_event(&ngx_chat_pg.dispatch, &ngx_posted_events);
}


static void
ngx_chat_pg_dispatch_handler(ngx_event_t *ev)
{
    u_char              *last;
    ngx_int_t            rc;
    ngx_uint_t           i;
    ngx_queue_t         *q;
    ngx_chat_pg_t       *p;
    ngx_chat_pg_req_t   *req;
    ngx_chat_pg_conn_t  *pc;
    u_char               text[256];

    p = ev->data;

    while (!ngx_queue_empty(&p->queue)) {

        pc = NULL;

        for (i = 0; i < p->nconns; i++) {
            if (p->conns[i].state == NGX_CHAT_PG_IDLE) {
                pc = &p->conns[i];
                break;
            }
        }

        if (pc == NULL) {
            break;
        }

        q = ngx_queue_head(&p->queue);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_pg_req_t, queue);
        req->queued = 0;

        rc = ngx_chat_pg_send(pc, req);

        if (rc == NGX_DECLINED) {

            if (PQstatus(pc->conn) == CONNECTION_OK) {
                /* the request itself was refused */
                last = ngx_chat_pg_oneline(text, sizeof(text),
                                           PQerrorMessage(pc->conn));

                ngx_log_error(NGX_LOG_ERR, &p->log, 0,
                              "chat pg: PQsendQueryParams() failed: %*s",
                              last - text, text);
                ngx_chat_pg_fail_req(req);
                continue;
            }

            /* not sent: the request waits for another connection */
            req->queued = 1;
            ngx_queue_insert_head(&p->queue, &req->queue);
            ngx_chat_pg_broken(pc, "PQsendQueryParams() failed");
            continue;
        }

        if (rc != NGX_OK) {
            ngx_chat_pg_broken(pc, "PQflush() failed");
        }
    }

    /* nothing up, nothing trying, and the last attempt failed: 503 now */

    if (!ngx_queue_empty(&p->queue) && p->last_failed
        && !ngx_chat_pg_any_up())
    {
        for (i = 0; i < p->nconns; i++) {
            if (p->conns[i].state == NGX_CHAT_PG_CONNECTING) {
                return;
            }
        }

        ngx_chat_pg_fail_queued();
    }
}


static void
ngx_chat_pg_fail_queued(void)
{
    ngx_queue_t         *q, failed;
    ngx_chat_pg_req_t   *req;

    /* handlers may queue new requests: those are not failed here */

    ngx_queue_init(&failed);

    while (!ngx_queue_empty(&ngx_chat_pg.queue)) {
        q = ngx_queue_head(&ngx_chat_pg.queue);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&failed, q);
    }

    while (!ngx_queue_empty(&failed)) {
        q = ngx_queue_head(&failed);
        ngx_queue_remove(q);
        req = ngx_queue_data(q, ngx_chat_pg_req_t, queue);
        req->queued = 0;
        ngx_chat_pg_fail_req(req);
    }
}


static void
ngx_chat_pg_fail_req(ngx_chat_pg_req_t *req)
{
    void                    *data;
    ngx_chat_pg_handler_pt   handler;

    if (req->queued) {
        ngx_queue_remove(&req->queue);
        req->queued = 0;
    }

    if (req->timer.timer_set) {
        ngx_del_timer(&req->timer);
    }

    handler = req->handler;
    data = req->data;

    ngx_free(req);

    if (handler) {
        handler(NULL, data);
    }
}


static void
ngx_chat_pg_req_timeout(ngx_event_t *ev)
{
    ngx_chat_pg_req_t   *req;
    ngx_chat_pg_conn_t  *pc;

    req = ev->data;
    pc = req->pc;

    if (pc == NULL) {
        ngx_log_error(NGX_LOG_ERR, &ngx_chat_pg.log, 0,
                      "chat pg: no connection within %M ms",
                      ngx_chat_pg.timeout);
        ngx_chat_pg_fail_req(req);
        return;
    }

    /* PQcancel() blocks: the connection is dropped and made again */

    ngx_log_error(NGX_LOG_ERR, &ngx_chat_pg.log, 0,
                  "chat pg: query timed out after %M ms, "
                  "closing connection %ui", ngx_chat_pg.timeout, pc->index);

    pc->req = NULL;
    req->pc = NULL;

    ngx_chat_pg_close_conn(pc);
    ngx_chat_pg_schedule(pc);

    ngx_chat_pg_fail_req(req);
}


static ngx_uint_t
ngx_chat_pg_any_up(void)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_chat_pg.nconns; i++) {
        if (ngx_chat_pg.conns[i].state == NGX_CHAT_PG_IDLE
            || ngx_chat_pg.conns[i].state == NGX_CHAT_PG_BUSY)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * A query while no connection is up tries one connection now instead of
 * waiting out its backoff (at most every NGX_CHAT_PG_BACKOFF_MIN ms), so
 * a restarted server is used at once and a stopped one fails fast.
 */

static void
ngx_chat_pg_kick(void)
{
    ngx_uint_t           i;
    ngx_chat_pg_t       *p;
    ngx_chat_pg_conn_t  *pc;

    p = &ngx_chat_pg;

    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    pc = NULL;

    for (i = 0; i < p->nconns; i++) {
        if (p->conns[i].state == NGX_CHAT_PG_CONNECTING) {
            return;
        }

        if (pc == NULL && p->conns[i].state == NGX_CHAT_PG_DOWN) {
            pc = &p->conns[i];
        }
    }

    if (pc == NULL
        || ngx_current_msec - p->last_kick < NGX_CHAT_PG_BACKOFF_MIN)
    {
        return;
    }

    p->last_kick = ngx_current_msec;

    if (pc->timer.timer_set) {
        ngx_del_timer(&pc->timer);
    }

    ngx_chat_pg_connect(pc);
}


static size_t
ngx_chat_pg_errlen(const char *msg)
{
    size_t  len;

    len = ngx_strlen(msg);

    while (len && (msg[len - 1] == '\n' || msg[len - 1] == '\r')) {
        len--;
    }

    return len;
}


static u_char *
ngx_chat_pg_oneline(u_char *buf, size_t size, const char *msg)
{
    u_char  *p, *last;

    last = buf + ngx_min(ngx_chat_pg_errlen(msg), size);

    for (p = buf; p < last; p++, msg++) {
        *p = (*msg == '\n' || *msg == '\r' || *msg == '\t') ? ' ' : *msg;
    }

    return last;
}


static void
ngx_chat_pg_notice(void *arg, const char *message)
{
    u_char              *last;
    ngx_chat_pg_conn_t  *pc;
    u_char               text[512];

    pc = arg;

    last = ngx_chat_pg_oneline(text, sizeof(text), message);

    ngx_log_error(NGX_LOG_INFO, &ngx_chat_pg.log, 0,
                  "chat pg: connection %ui: %*s", pc->index, last - text,
                  text);
}
