/* ngx_chat_stream_module.c: the stream{} side of ngx_chat: the chat_stomp
 * and chat_stomp_user directives (ngx_chat_stream_module.so, loaded after
 * ngx_stream_module.so and ngx_chat_module.so). */

#include "ngx_chat.h"
#include "ngx_chat_tcp.h"


typedef struct {
    ngx_flag_t                    enabled;   /* chat_stomp */
    ngx_str_t                     location;  /* its argument; "": the
                                                first chat_websocket
                                                location */
    ngx_stream_complex_value_t   *user;      /* chat_stomp_user */
    ngx_chat_loc_conf_t          *lcf;       /* found at init_module */
    ngx_str_t                     file;      /* chat_stomp's line */
    ngx_uint_t                    line;
} ngx_chat_stream_srv_conf_t;


static void *ngx_chat_stream_create_srv_conf(ngx_conf_t *cf);
static char *ngx_chat_stream_merge_srv_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_chat_stream_stomp(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static ngx_int_t ngx_chat_stream_init_module(ngx_cycle_t *cycle);
static void ngx_chat_stream_handler(ngx_stream_session_t *s);


static ngx_command_t  ngx_chat_stream_commands[] = {

    { ngx_string("chat_stomp"),
      NGX_STREAM_SRV_CONF|NGX_CONF_NOARGS|NGX_CONF_TAKE1,
      ngx_chat_stream_stomp,
      NGX_STREAM_SRV_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("chat_stomp_user"),
      NGX_STREAM_MAIN_CONF|NGX_STREAM_SRV_CONF|NGX_CONF_TAKE1,
      ngx_stream_set_complex_value_slot,
      NGX_STREAM_SRV_CONF_OFFSET,
      offsetof(ngx_chat_stream_srv_conf_t, user),
      NULL },

      ngx_null_command
};


static ngx_stream_module_t  ngx_chat_stream_module_ctx = {
    NULL,                                  /* preconfiguration */
    NULL,                                  /* postconfiguration */

    NULL,                                  /* create main configuration */
    NULL,                                  /* init main configuration */

    ngx_chat_stream_create_srv_conf,       /* create server configuration */
    ngx_chat_stream_merge_srv_conf         /* merge server configuration */
};


ngx_module_t  ngx_chat_stream_module = {
    NGX_MODULE_V1,
    &ngx_chat_stream_module_ctx,           /* module context */
    ngx_chat_stream_commands,              /* module directives */
    NGX_STREAM_MODULE,                     /* module type */
    NULL,                                  /* init master */
    ngx_chat_stream_init_module,           /* init module */
    NULL,                                  /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    NULL,                                  /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_chat_stream_create_srv_conf(ngx_conf_t *cf)
{
    ngx_chat_stream_srv_conf_t  *scf;

    scf = ngx_pcalloc(cf->pool, sizeof(ngx_chat_stream_srv_conf_t));
    if (scf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     scf->enabled = 0;
     *     scf->location = { 0, NULL };
     *     scf->user = NULL;
     *     scf->lcf = NULL;
     */

    return scf;
}


static char *
ngx_chat_stream_merge_srv_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_chat_stream_srv_conf_t  *prev = parent;
    ngx_chat_stream_srv_conf_t  *conf = child;

    if (conf->user == NULL) {
        conf->user = prev->user;
    }

    return NGX_CONF_OK;
}


static char *
ngx_chat_stream_stomp(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_stream_srv_conf_t  *scf = conf;

    ngx_str_t                   *value;
    ngx_stream_core_srv_conf_t  *cscf;

    if (scf->enabled) {
        return "is duplicate";
    }

    value = cf->args->elts;

    scf->enabled = 1;

    if (cf->args->nelts > 1) {
        scf->location = value[1];
    }

    scf->file = cf->conf_file->file.name;
    scf->line = cf->conf_file->line;

    cscf = ngx_stream_conf_get_module_srv_conf(cf, ngx_stream_core_module);
    cscf->handler = ngx_chat_stream_handler;

    return NGX_CONF_OK;
}


/*
 * Once the whole configuration is read (http{} may follow stream{}): each
 * chat_stomp server takes the settings of a chat_websocket location (its
 * JWT secret, limits, heart-beats, send buffer limit), so the two
 * transports of one chat behave alike.
 */

static ngx_int_t
ngx_chat_stream_init_module(ngx_cycle_t *cycle)
{
    ngx_uint_t                    i, j;
    ngx_chat_main_conf_t         *mcf;
    ngx_chat_ws_location_t       *wl;
    ngx_chat_stream_srv_conf_t   *scf;
    ngx_stream_core_srv_conf_t  **cscfp;
    ngx_stream_core_main_conf_t  *cmcf;

    cmcf = ngx_stream_cycle_get_module_main_conf(cycle,
                                                 ngx_stream_core_module);
    if (cmcf == NULL) {
        return NGX_OK;
    }

    mcf = ngx_http_cycle_get_module_main_conf(cycle, ngx_chat_module);

    cscfp = cmcf->servers.elts;

    for (i = 0; i < cmcf->servers.nelts; i++) {
        scf = cscfp[i]->ctx->srv_conf[ngx_chat_stream_module.ctx_index];

        if (!scf->enabled) {
            continue;
        }

        wl = NULL;

        if (mcf != NULL && mcf->ws_locations != NULL) {
            wl = mcf->ws_locations->elts;

            for (j = 0; j < mcf->ws_locations->nelts; j++) {
                if (scf->location.len == 0
                    || (wl[j].name.len == scf->location.len
                        && ngx_strncmp(wl[j].name.data, scf->location.data,
                                       scf->location.len) == 0))
                {
                    break;
                }
            }

            wl = (j < mcf->ws_locations->nelts) ? &wl[j] : NULL;
        }

        if (wl == NULL) {
            ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                          "\"chat_stomp\" takes the settings of a "
                          "\"chat_websocket\" location%s%V, and http{} has "
                          "none in %V:%ui",
                          scf->location.len ? " " : "", &scf->location,
                          &scf->file, scf->line);
            return NGX_ERROR;
        }

        scf->lcf = wl->lcf;
    }

    return NGX_OK;
}


static void
ngx_chat_stream_handler(ngx_stream_session_t *s)
{
    ngx_str_t                    user;
    ngx_chat_stream_srv_conf_t  *scf;

    scf = ngx_stream_get_module_srv_conf(s, ngx_chat_stream_module);

    if (ngx_chat_worker.mcf == NULL || scf->lcf == NULL) {
        ngx_log_error(NGX_LOG_ERR, s->connection->log, 0,
                      "chat is not running in this worker");
        ngx_stream_finalize_session(s, NGX_STREAM_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_str_null(&user);

    if (scf->user != NULL
        && ngx_stream_complex_value(s, scf->user, &user) != NGX_OK)
    {
        ngx_stream_finalize_session(s, NGX_STREAM_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_chat_tcp_start(s, scf->lcf, &user);
}
