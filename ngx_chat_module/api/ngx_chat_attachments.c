/* ngx_chat_attachments.c: chat_attachments: uploads streamed by nginx to a
 * file and moved into the store, downloads served by nginx itself through
 * an internal location, both for members of the conversation only
 * (PROTOCOL.md section 11). */

#include "ngx_chat_attachments.h"
#include "ngx_chat_api_request.h"
#include "ngx_chat_identity.h"
#include "ngx_chat_pg.h"


#define NGX_CHAT_ATTACH_ID_LEN    34          /* "a_" and 32 hex digits */
#define NGX_CHAT_ATTACH_CONV_MAX  36


typedef struct {
    ngx_http_request_t       *r;
    ngx_chat_pg_req_t        *pg;
    ngx_chat_identity_t       id;
    ngx_str_t                 conv;
    ngx_str_t                 attachment;  /* its id */
    ngx_str_t                 path;        /* the file in the store */
    ngx_uint_t                get;         /* a download */
} ngx_chat_attach_ctx_t;


static const char  ngx_chat_attach_add_sql[] =
    "SELECT * FROM chat_api_attachment_add($1, $2, $3, $4, $5, $6::bigint,"
    " $7)";

static const char  ngx_chat_attach_get_sql[] =
    "SELECT * FROM chat_api_attachment_get($1, $2, $3)";


static ngx_str_t  ngx_chat_attach_default_types[] = {
    ngx_string("image/png"),
    ngx_string("image/jpeg"),
    ngx_string("image/gif"),
    ngx_string("image/webp"),
    ngx_string("application/pdf"),
    ngx_string("text/plain"),
    ngx_null_string
};


static ngx_int_t ngx_chat_attach_type_ok(ngx_chat_loc_conf_t *lcf,
    ngx_str_t *type);
static void ngx_chat_attach_body(ngx_http_request_t *r);
static void ngx_chat_attach_added(PGresult *res, void *data);
static ngx_int_t ngx_chat_attach_get(ngx_http_request_t *r,
    ngx_chat_attach_ctx_t *ctx);
static void ngx_chat_attach_got(PGresult *res, void *data);
static void ngx_chat_attach_cleanup(void *data);
static ngx_int_t ngx_chat_attach_query(ngx_chat_attach_ctx_t *ctx,
    const char *sql, int n, const char **values,
    ngx_chat_pg_handler_pt handler);


char *
ngx_chat_attachments_set(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_chat_loc_conf_t  *lcf = conf;

    ngx_str_t                 *value;
    ngx_chat_main_conf_t      *mcf;
    ngx_http_core_loc_conf_t  *clcf;

    if (lcf->handler != NGX_CHAT_HANDLER_NONE) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (value[1].len == 0 || value[2].len == 0
        || value[2].data[0] != '/'
        || value[2].data[value[2].len - 1] != '/')
    {
        return "takes a directory and the URI prefix of an internal "
               "location ending with \"/\"";
    }

    lcf->attach_dir = value[1];

    if (ngx_conf_full_name(cf->cycle, &lcf->attach_dir, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    lcf->attach_uri = value[2];

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    mcf = ngx_http_conf_get_module_main_conf(cf, ngx_chat_module);

    lcf->handler = NGX_CHAT_HANDLER_ATTACH;
    lcf->handler_where.file = cf->conf_file->file.name;
    lcf->handler_where.line = cf->conf_file->line;
    clcf->handler = ngx_chat_attachments_handler;
    mcf->enabled = 1;

    return NGX_CONF_OK;
}


/* chat_attachment_types <type>...: the allow-list, replacing the default */

char *
ngx_chat_attachment_types_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf)
{
    ngx_chat_loc_conf_t  *lcf = conf;

    ngx_str_t   *value, *t;
    ngx_uint_t   i;

    if (lcf->attach_types != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    lcf->attach_types = ngx_array_create(cf->pool, cf->args->nelts - 1,
                                         sizeof(ngx_str_t));
    if (lcf->attach_types == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    for (i = 1; i < cf->args->nelts; i++) {
        if (ngx_strlchr(value[i].data, value[i].data + value[i].len, '/')
            == NULL)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"%V\" is not a media type", &value[i]);
            return NGX_CONF_ERROR;
        }

        t = ngx_array_push(lcf->attach_types);
        if (t == NULL) {
            return NGX_CONF_ERROR;
        }

        *t = value[i];
    }

    return NGX_CONF_OK;
}


/*
 * POST <location>?conversationId=: the body goes to a file (never into
 * memory), then is renamed into the store as its id, then recorded;
 * GET <location>/<id>: checked, then served from the internal location.
 */

ngx_int_t
ngx_chat_attachments_handler(ngx_http_request_t *r)
{
    u_char                    *p;
    ngx_int_t                  rc;
    ngx_str_t                  tail, arg, type;
    const char                *err;
    ngx_pool_cleanup_t        *cln;
    ngx_chat_loc_conf_t       *lcf;
    ngx_chat_attach_ctx_t     *ctx;
    ngx_http_core_loc_conf_t  *clcf;

    if (r != r->main) {
        return NGX_HTTP_NOT_FOUND;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_chat_attach_ctx_t));
    if (ctx == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    ctx->r = r;

    err = "no credentials";

    if (ngx_chat_identity_from_request(r, lcf, 0, &ctx->id, &err) != NGX_OK) {
        return ngx_chat_api_error(r, NGX_HTTP_UNAUTHORIZED, "unauthorized",
                                  err);
    }

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    cln->handler = ngx_chat_attach_cleanup;
    cln->data = ctx;

    ngx_http_set_ctx(r, ctx, ngx_chat_module);

    /* the URI after the location's name: "" or "/<id>" */

    tail = r->uri;

    if (clcf->name.len <= tail.len
        && ngx_strncmp(tail.data, clcf->name.data, clcf->name.len) == 0)
    {
        tail.data += clcf->name.len;
        tail.len -= clcf->name.len;
    }

    if (tail.len && tail.data[0] == '/') {
        tail.data++;
        tail.len--;
    }

    if (tail.len) {
        if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
            return ngx_chat_api_error(r, NGX_HTTP_NOT_ALLOWED,
                                      "method_not_allowed",
                                      "an attachment is read with GET");
        }

        if (tail.len != NGX_CHAT_ATTACH_ID_LEN
            || ngx_strncmp(tail.data, "a_", 2) != 0)
        {
            return ngx_chat_api_error(r, NGX_HTTP_NOT_FOUND, "not_found",
                                      "no such attachment");
        }

        for (p = tail.data + 2; p < tail.data + tail.len; p++) {
            if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) {
                return ngx_chat_api_error(r, NGX_HTTP_NOT_FOUND,
                                          "not_found", "no such attachment");
            }
        }

        ctx->attachment = tail;
        ctx->get = 1;

        if (ngx_http_discard_request_body(r) != NGX_OK) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_chat_attach_get(r, ctx);
    }

    if (r->method != NGX_HTTP_POST) {
        return ngx_chat_api_error(r, NGX_HTTP_NOT_ALLOWED,
                                  "method_not_allowed",
                                  "an attachment is uploaded with POST");
    }

    if (ngx_http_arg(r, (u_char *) "conversationId",
                     sizeof("conversationId") - 1, &arg)
        != NGX_OK
        || arg.len == 0 || arg.len > NGX_CHAT_ATTACH_CONV_MAX)
    {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "conversationId must be given");
    }

    for (p = arg.data; p < arg.data + arg.len; p++) {
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z')
              || *p == '_'))
        {
            return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                      "conversationId is not valid");
        }
    }

    ctx->conv = arg;

    /* the type, before a byte of the body is read */

    ngx_str_null(&type);

    if (r->headers_in.content_type) {
        type = r->headers_in.content_type->value;

        for (p = type.data; p < type.data + type.len; p++) {
            if (*p == ';' || *p == ' ') {
                break;
            }
        }

        type.len = p - type.data;
    }

    if (ngx_chat_attach_type_ok(lcf, &type) != NGX_OK) {
        return ngx_chat_api_error(r, NGX_HTTP_UNSUPPORTED_MEDIA_TYPE,
                                  "unsupported_type",
                                  "this type of file is not accepted");
    }

    if (r->headers_in.content_length_n == 0) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "the file is empty");
    }

    /* to a file whatever its size, and the file is ours afterwards */

    r->request_body_in_file_only = 1;
    r->request_body_in_persistent_file = 1;
    r->request_body_in_clean_file = 1;
    r->request_body_file_log_level = 0;

    rc = ngx_http_read_client_request_body(r, ngx_chat_attach_body);

    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        return rc;
    }

    return NGX_DONE;
}


static ngx_int_t
ngx_chat_attach_type_ok(ngx_chat_loc_conf_t *lcf, ngx_str_t *type)
{
    ngx_str_t   *t;
    ngx_uint_t   i, n;

    if (lcf->attach_types != NULL) {
        t = lcf->attach_types->elts;
        n = lcf->attach_types->nelts;

    } else {
        t = ngx_chat_attach_default_types;
        n = sizeof(ngx_chat_attach_default_types) / sizeof(ngx_str_t) - 1;
    }

    for (i = 0; i < n; i++) {
        if (t[i].len == type->len
            && ngx_strncasecmp(t[i].data, type->data, type->len) == 0)
        {
            return NGX_OK;
        }
    }

    return NGX_DECLINED;
}


/* the body is in its file: into the store as the attachment's id */

static void
ngx_chat_attach_body(ngx_http_request_t *r)
{
    u_char                 *p;
    off_t                   size;
    ngx_str_t               ctype;
    ngx_uint_t              i;
    ngx_temp_file_t        *tf;
    ngx_ext_rename_file_t   ext;
    ngx_chat_loc_conf_t    *lcf;
    ngx_chat_attach_ctx_t  *ctx;
    const char             *values[7];
    u_char                  size_buf[NGX_OFF_T_LEN + 1];

    ctx = ngx_http_get_module_ctx(r, ngx_chat_module);
    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    tf = r->request_body ? r->request_body->temp_file : NULL;

    if (tf == NULL || tf->offset == 0) {
        ngx_http_finalize_request(r,
            ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                               "the file is empty"));
        return;
    }

    size = tf->offset;

    /* an id nobody can guess: 128 random bits */

    ctx->attachment.data = ngx_pnalloc(r->pool, NGX_CHAT_ATTACH_ID_LEN);
    ctx->path.len = lcf->attach_dir.len + 1 + NGX_CHAT_ATTACH_ID_LEN;
    ctx->path.data = ngx_pnalloc(r->pool, ctx->path.len + 1);

    if (ctx->attachment.data == NULL || ctx->path.data == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    p = ngx_cpymem(ctx->attachment.data, "a_", 2);

    for (i = 0; i < 4; i++) {
        p = ngx_sprintf(p, "%08xD", (uint32_t) ngx_random());
    }

    ctx->attachment.len = NGX_CHAT_ATTACH_ID_LEN;

    ngx_sprintf(ctx->path.data, "%V/%V%Z", &lcf->attach_dir,
                &ctx->attachment);

    /* a rename: client_body_temp_path on the store's file system */

    ext.access = NGX_FILE_DEFAULT_ACCESS;
    ext.path_access = NGX_FILE_DEFAULT_ACCESS;
    ext.time = -1;
    ext.create_path = 0;
    ext.delete_file = 1;
    ext.fd = tf->file.fd;
    ext.log = r->connection->log;

    if (ngx_ext_rename_file(&tf->file.name, &ctx->path, &ext) != NGX_OK) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ctype = r->headers_in.content_type->value;

    for (p = ctype.data; p < ctype.data + ctype.len; p++) {
        if (*p == ';' || *p == ' ') {
            break;
        }
    }

    ctype.len = p - ctype.data;

    *ngx_sprintf(size_buf, "%O", size) = '\0';

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = ngx_chat_api_cstr(r->pool, &ctx->attachment);
    values[3] = ngx_chat_api_cstr(r->pool, &ctx->conv);
    values[4] = ngx_chat_api_cstr(r->pool, &ctype);
    values[5] = (char *) size_buf;

    /* the download URL: this location and the id */

    p = ngx_pnalloc(r->pool, r->uri.len + 1 + NGX_CHAT_ATTACH_ID_LEN + 1);
    if (p == NULL) {
        goto failed;
    }

    values[6] = (char *) p;
    ngx_sprintf(p, "%V/%V%Z", &r->uri, &ctx->attachment);

    for (i = 0; i < 5; i++) {
        if (values[i] == NULL) {
            goto failed;
        }
    }

    if (ngx_chat_attach_query(ctx, ngx_chat_attach_add_sql, 7, values,
                              ngx_chat_attach_added)
        != NGX_OK)
    {
        goto failed;
    }

    return;

failed:

    (void) ngx_delete_file(ctx->path.data);
    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
}


static void
ngx_chat_attach_added(PGresult *res, void *data)
{
    ngx_chat_attach_ctx_t  *ctx = data;

    ngx_http_request_t  *r;

    ctx->pg = NULL;
    r = ctx->r;

    /* not stored (not a member, no such conversation, an error): gone */

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1
        || ngx_strcmp(PQgetvalue(res, 0, 0), "201") != 0)
    {
        if (ngx_delete_file(ctx->path.data) == NGX_FILE_ERROR) {
            ngx_log_error(NGX_LOG_CRIT, r->connection->log, ngx_errno,
                          ngx_delete_file_n " \"%s\" failed",
                          ctx->path.data);
        }
    }

    ngx_http_finalize_request(r, ngx_chat_api_result(r, res));
}


static ngx_int_t
ngx_chat_attach_get(ngx_http_request_t *r, ngx_chat_attach_ctx_t *ctx)
{
    const char  *values[3];

    values[0] = ngx_chat_api_cstr(r->pool, &ctx->id.user);
    values[1] = ngx_chat_api_cstr(r->pool, &ctx->id.name);
    values[2] = ngx_chat_api_cstr(r->pool, &ctx->attachment);

    if (values[0] == NULL || values[1] == NULL || values[2] == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    if (ngx_chat_attach_query(ctx, ngx_chat_attach_get_sql, 3, values,
                              ngx_chat_attach_got)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    r->main->count++;

    return NGX_DONE;
}


/* a member: nginx serves the file from the internal location */

static void
ngx_chat_attach_got(PGresult *res, void *data)
{
    ngx_chat_attach_ctx_t  *ctx = data;

    size_t                len;
    ngx_str_t             uri;
    ngx_table_elt_t      *h;
    ngx_http_request_t   *r;
    ngx_chat_loc_conf_t  *lcf;

    ctx->pg = NULL;
    r = ctx->r;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || PQntuples(res) != 1
        || ngx_strcmp(PQgetvalue(res, 0, 0), "200") != 0)
    {
        ngx_http_finalize_request(r, ngx_chat_api_result(r, res));
        return;
    }

    lcf = ngx_http_get_module_loc_conf(r, ngx_chat_module);

    len = PQgetlength(res, 0, 1);

    r->headers_out.content_type.data = ngx_pnalloc(r->pool, len);
    uri.len = lcf->attach_uri.len + ctx->attachment.len;
    uri.data = ngx_pnalloc(r->pool, uri.len);
    h = ngx_list_push(&r->headers_out.headers);

    if (r->headers_out.content_type.data == NULL || uri.data == NULL
        || h == NULL)
    {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    ngx_memcpy(r->headers_out.content_type.data, PQgetvalue(res, 0, 1), len);
    r->headers_out.content_type.len = len;
    r->headers_out.content_type_len = len;

    /* what was uploaded is shown as its type, never guessed as another */

    h->hash = 1;
    ngx_str_set(&h->key, "X-Content-Type-Options");
    ngx_str_set(&h->value, "nosniff");

    ngx_sprintf(uri.data, "%V%V", &lcf->attach_uri, &ctx->attachment);

    (void) ngx_http_internal_redirect(r, &uri, NULL);
    ngx_http_finalize_request(r, NGX_DONE);
}


static ngx_int_t
ngx_chat_attach_query(ngx_chat_attach_ctx_t *ctx, const char *sql, int n,
    const char **values, ngx_chat_pg_handler_pt handler)
{
    ctx->pg = ngx_chat_pg_query(sql, n, values, NULL, handler, ctx);

    return ctx->pg ? NGX_OK : NGX_ERROR;
}


static void
ngx_chat_attach_cleanup(void *data)
{
    ngx_chat_attach_ctx_t  *ctx = data;

    if (ctx->pg) {
        ngx_chat_pg_cancel(ctx->pg);
        ctx->pg = NULL;
    }
}
