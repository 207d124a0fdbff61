/* ngx_chat_pg.h: the worker's PostgreSQL connection pool on async libpq,
 * driven by nginx events. */

#ifndef _NGX_CHAT_PG_H_INCLUDED_
#define _NGX_CHAT_PG_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>
#include <libpq-fe.h>


typedef struct ngx_chat_pg_req_s  ngx_chat_pg_req_t;

/*
 * Called once per query with its result (owned by the pool, cleared after
 * the handler returns; check PQresultStatus), or NULL when PostgreSQL is
 * unavailable (not connected within the timeout, connection lost
 * mid-query, timed out).
 */
typedef void (*ngx_chat_pg_handler_pt)(PGresult *res, void *data);

/*
 * While the chat_postgres line is read: checks the connection string with
 * PQconninfoParse (no connection). NGX_CONF_OK or NGX_CONF_ERROR (logged at
 * the line).
 */
char *ngx_chat_pg_check_conninfo(ngx_conf_t *cf, ngx_str_t *conninfo);

/*
 * In init_process: opens pool_size connections with PQconnectStart and
 * PQconnectPoll (never blocking), reconnecting with backoff after failures
 * and PostgreSQL restarts. timeout bounds a query's wait plus run time.
 */
ngx_int_t ngx_chat_pg_init(ngx_cycle_t *cycle, ngx_str_t *conninfo,
    ngx_uint_t pool_size, ngx_msec_t timeout);

/* in exit_process: closes the pool; pending handlers get NULL */
void ngx_chat_pg_exit(void);

/*
 * Queues a query with text parameters (values[i] NULL means SQL NULL;
 * lengths may be NULL for NUL-terminated values). Parameters are copied.
 * The query runs on the first free connection (PQsendQueryParams, PQflush
 * on write events), results come back through the handler. Returns a handle
 * valid until the handler runs or the request is cancelled, or NULL on
 * memory failure (the handler is then never called).
 */
ngx_chat_pg_req_t *ngx_chat_pg_query(const char *sql, int nparams,
    const char *const *values, const int *lengths,
    ngx_chat_pg_handler_pt handler, void *data);

/* 1 while at least one pool connection is up */
ngx_uint_t ngx_chat_pg_ready(void);

/* the handler of a pending query will not be called */
void ngx_chat_pg_cancel(ngx_chat_pg_req_t *req);

#endif /* _NGX_CHAT_PG_H_INCLUDED_ */
