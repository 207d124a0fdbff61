/* ngx_chat_health.c: "chat_health": 200 when every configured store link of
 * the worker that answers is up, 503 otherwise, with a JSON body. */

#include "ngx_chat_health.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_kafka.h"


/*
 * {"status":"up","redis":"up","postgres":"up","kafka":"up","pid":123}
 * A store that is not configured is "off" and does not count; a worker
 * shutting down (nginx -s quit, reload) says "draining" and 503.
 */
#define NGX_CHAT_HEALTH_BUF  160


static ngx_int_t ngx_chat_health_handler(ngx_http_request_t *r);
static const char *ngx_chat_health_state(ngx_uint_t configured,
    ngx_uint_t up, ngx_uint_t *down);


char *
ngx_chat_health_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_main_conf_t      *mcf;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    if (clcf->handler == ngx_chat_health_handler) {
        return "is duplicate";
    }

    clcf->handler = ngx_chat_health_handler;

    /* the workers connect to the stores even with no other chat location */
    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_chat_module);
    mcf->enabled = 1;

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_chat_health_handler(ngx_http_request_t *r)
{
    u_char                *p, *body;
    ngx_int_t              rc;
    ngx_uint_t             down;
    const char            *redis, *pg, *kafka, *status;
    ngx_chat_main_conf_t  *mcf;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    mcf = ngx_http_get_module_main_conf(r, ngx_chat_module);

    down = 0;
    redis = ngx_chat_health_state(mcf->redis != NULL,
                                  ngx_chat_redis_ready(), &down);
    pg = ngx_chat_health_state(mcf->pg_conninfo.len != 0,
                               ngx_chat_pg_ready(), &down);
    kafka = ngx_chat_health_state(ngx_chat_kafka_enabled(),
                                  ngx_chat_kafka_up(), &down);

    if (ngx_exiting || ngx_quit || ngx_terminate) {
        status = "draining";
        down++;

    } else {
        status = down ? "down" : "up";
    }

    body = ngx_pnalloc(r->pool, NGX_CHAT_HEALTH_BUF);
    if (body == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    p = ngx_snprintf(body, NGX_CHAT_HEALTH_BUF,
                     "{\"status\":\"%s\",\"redis\":\"%s\",\"postgres\":\"%s\","
                     "\"kafka\":\"%s\",\"pid\":%P}\n",
                     status, redis, pg, kafka, ngx_pid);

    /* never cached: a load balancer or a probe wants it now */
    r->headers_out.last_modified_time = -1;

    return ngx_chat_send_response(r, down ? NGX_HTTP_SERVICE_UNAVAILABLE
                                          : NGX_HTTP_OK,
                                  "application/json", body, p - body);
}


static const char *
ngx_chat_health_state(ngx_uint_t configured, ngx_uint_t up, ngx_uint_t *down)
{
    if (!configured) {
        return "off";
    }

    if (!up) {
        (*down)++;
        return "down";
    }

    return "up";
}
