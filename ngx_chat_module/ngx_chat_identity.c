/* ngx_chat_identity.c: who a request or session is (JWT or an nginx
 * variable), and creating users on first sight. */

#include "ngx_chat.h"
#include "ngx_chat_pg.h"


/* the per-worker set of users known to exist is dropped past this size */
#define NGX_CHAT_KNOWN_USERS_MAX  100000


typedef struct {
    ngx_uint_t                 generation;
    size_t                     len;
    u_char                     user[NGX_CHAT_USER_ID_MAX + 1];
} ngx_chat_ensure_t;


static ngx_int_t ngx_chat_identity_verify(ngx_pool_t *pool,
    ngx_chat_loc_conf_t *lcf, u_char *token, size_t len,
    ngx_chat_identity_t *id, const char **err);
static ngx_int_t ngx_chat_identity_bearer(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_chat_known_init(ngx_log_t *log);
static void ngx_chat_known_remove(u_char *user, size_t len);
static void ngx_chat_ensure_user_done(PGresult *res, void *data);


static ngx_rbtree_t       ngx_chat_known;
static ngx_rbtree_node_t  ngx_chat_known_sentinel;
static ngx_pool_t        *ngx_chat_known_pool;
static ngx_uint_t         ngx_chat_known_count;
static ngx_uint_t         ngx_chat_known_generation;


/* as chat_touch_user() in sql/: a token's name fills a missing one only */
static const char  ngx_chat_ensure_user_sql[] =
    "INSERT INTO users AS u (id, display_name) VALUES ($1, NULLIF($2, '')) "
    "ON CONFLICT (id) DO UPDATE SET display_name = EXCLUDED.display_name "
    "WHERE u.display_name IS NULL AND EXCLUDED.display_name IS NOT NULL";


ngx_int_t
ngx_chat_identity_from_request(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_uint_t allow_query,
    ngx_chat_identity_t *id, const char **err)
{
    u_char     *dst, *src;
    ngx_str_t   value, token;

    if (lcf->identity != NULL) {
        if (ngx_http_complex_value(r, lcf->identity, &value) != NGX_OK) {
            *err = "cannot evaluate chat_identity";
            return NGX_ERROR;
        }

        if (value.len == 0) {
            *err = "no identity";
            return NGX_DECLINED;
        }

        if (!ngx_chat_user_id_valid(value.data, value.len)) {
            *err = "the identity is not a valid userId";
            return NGX_ERROR;
        }

        id->user.data = ngx_pstrdup(r->pool, &value);
        if (id->user.data == NULL) {
            *err = "out of memory";
            return NGX_ERROR;
        }

        id->user.len = value.len;
        ngx_str_set(&id->name, "");

        return NGX_OK;
    }

    if (ngx_chat_identity_bearer(r, &token) == NGX_OK) {
        return ngx_chat_identity_verify(r->pool, lcf, token.data, token.len,
                                        id, err);
    }

    if (allow_query
        && ngx_http_arg(r, (u_char *) "access_token",
                        sizeof("access_token") - 1, &value)
           == NGX_OK
        && value.len > 0)
    {
        /* a JWT needs no escaping, but a client may have escaped it */

        if (ngx_strlchr(value.data, value.data + value.len, '%') != NULL) {
            dst = ngx_pnalloc(r->pool, value.len);
            if (dst == NULL) {
                *err = "out of memory";
                return NGX_ERROR;
            }

            src = value.data;
            value.data = dst;
            ngx_unescape_uri(&dst, &src, value.len, 0);
            value.len = dst - value.data;
        }

        return ngx_chat_identity_verify(r->pool, lcf, value.data, value.len,
                                        id, err);
    }

    *err = "no credentials";

    return NGX_DECLINED;
}


ngx_int_t
ngx_chat_identity_from_token(ngx_pool_t *pool, ngx_chat_loc_conf_t *lcf,
    u_char *token, size_t len, ngx_chat_identity_t *id, const char **err)
{
    return ngx_chat_identity_verify(pool, lcf, token, len, id, err);
}


/* "Authorization: Bearer <token>", the scheme case-insensitively */
static ngx_int_t
ngx_chat_identity_bearer(ngx_http_request_t *r, ngx_str_t *token)
{
    u_char  *p, *last;

    if (r->headers_in.authorization == NULL) {
        return NGX_DECLINED;
    }

    p = r->headers_in.authorization->value.data;
    last = p + r->headers_in.authorization->value.len;

    if (last - p < (ssize_t) sizeof("Bearer ") - 1
        || ngx_strncasecmp(p, (u_char *) "Bearer", sizeof("Bearer") - 1)
           != 0
        || (p[6] != ' ' && p[6] != '\t'))
    {
        return NGX_DECLINED;
    }

    p += sizeof("Bearer") - 1;

    while (p < last && (*p == ' ' || *p == '\t')) {
        p++;
    }

    while (last > p && (last[-1] == ' ' || last[-1] == '\t')) {
        last--;
    }

    token->data = p;
    token->len = last - p;

    return NGX_OK;
}


static ngx_int_t
ngx_chat_identity_verify(ngx_pool_t *pool, ngx_chat_loc_conf_t *lcf,
    u_char *token, size_t len, ngx_chat_identity_t *id, const char **err)
{
    ngx_chat_jwt_claims_t  claims;

    if (lcf->jwt_secret.len == 0) {
        *err = "no chat_jwt_secret to verify tokens with";
        return NGX_ERROR;
    }

    if (len == 0) {
        *err = "empty token";
        return NGX_ERROR;
    }

    if (ngx_chat_jwt_verify(token, len, lcf->jwt_secret.data,
                            lcf->jwt_secret.len, ngx_time(), &claims, err)
        != 0)
    {
        return NGX_ERROR;
    }

    id->user.data = ngx_pnalloc(pool, claims.sub_len + claims.name_len + 1);
    if (id->user.data == NULL) {
        *err = "out of memory";
        return NGX_ERROR;
    }

    id->user.len = claims.sub_len;
    ngx_memcpy(id->user.data, claims.sub, claims.sub_len);

    id->name.data = id->user.data + claims.sub_len;
    id->name.len = claims.name_len;
    ngx_memcpy(id->name.data, claims.name, claims.name_len);
    id->name.data[claims.name_len] = '\0';

    return NGX_OK;
}


void
ngx_chat_identity_ensure_user(ngx_chat_identity_t *id, ngx_log_t *log)
{
    size_t               len;
    u_char              *name;
    uint32_t             hash;
    const char          *values[2];
    ngx_str_node_t      *sn;
    ngx_chat_ensure_t   *e;

    if (id->user.len == 0 || id->user.len > NGX_CHAT_USER_ID_MAX) {
        return;
    }

    if (ngx_chat_known_pool == NULL
        || ngx_chat_known_count >= NGX_CHAT_KNOWN_USERS_MAX)
    {
        if (ngx_chat_known_init(log) != NGX_OK) {
            return;
        }
    }

    hash = ngx_crc32_short(id->user.data, id->user.len);

    if (ngx_str_rbtree_lookup(&ngx_chat_known, &id->user, hash) != NULL) {
        return;
    }

    /* remembered now, so that a burst of sessions sends one query */

    sn = ngx_palloc(ngx_chat_known_pool,
                    sizeof(ngx_str_node_t) + id->user.len);
    if (sn == NULL) {
        return;
    }

    sn->node.key = hash;
    sn->str.len = id->user.len;
    sn->str.data = (u_char *) sn + sizeof(ngx_str_node_t);
    ngx_memcpy(sn->str.data, id->user.data, id->user.len);

    ngx_rbtree_insert(&ngx_chat_known, &sn->node);
    ngx_chat_known_count++;

    len = sizeof(ngx_chat_ensure_t) + id->name.len + 1;

    e = ngx_alloc(len, log);
    if (e == NULL) {
        ngx_chat_known_remove(id->user.data, id->user.len);
        return;
    }

    e->generation = ngx_chat_known_generation;
    e->len = id->user.len;
    ngx_memcpy(e->user, id->user.data, id->user.len);
    e->user[id->user.len] = '\0';

    name = (u_char *) e + sizeof(ngx_chat_ensure_t);
    ngx_memcpy(name, id->name.data, id->name.len);
    name[id->name.len] = '\0';

    values[0] = (const char *) e->user;
    values[1] = (const char *) name;

    if (ngx_chat_pg_query(ngx_chat_ensure_user_sql, 2, values, NULL,
                          ngx_chat_ensure_user_done, e)
        == NULL)
    {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "chat: cannot queue the creation of user \"%V\"",
                      &id->user);
        ngx_chat_known_remove(id->user.data, id->user.len);
        ngx_free(e);
    }
}


static void
ngx_chat_ensure_user_done(PGresult *res, void *data)
{
    ngx_chat_ensure_t  *e = data;

    ngx_str_t  user;

    user.data = e->user;
    user.len = e->len;

    if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK) {
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: creating user \"%V\" failed: %s", &user,
                      res ? PQresultErrorMessage(res)
                          : "PostgreSQL unavailable");

        if (e->generation == ngx_chat_known_generation) {
            ngx_chat_known_remove(e->user, e->len);
        }
    }

    ngx_free(e);
}


static ngx_int_t
ngx_chat_known_init(ngx_log_t *log)
{
    ngx_pool_t  *pool;

    /* the cycle's log: the caller's (a session's) dies before the pool */
    pool = ngx_create_pool(16384, ngx_cycle->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    if (ngx_chat_known_pool != NULL) {
        ngx_destroy_pool(ngx_chat_known_pool);
    }

    ngx_chat_known_pool = pool;
    ngx_chat_known_count = 0;
    ngx_chat_known_generation++;

    ngx_rbtree_init(&ngx_chat_known, &ngx_chat_known_sentinel,
                    ngx_str_rbtree_insert_value);

    return NGX_OK;
}


static void
ngx_chat_known_remove(u_char *user, size_t len)
{
    ngx_str_t        s;
    ngx_str_node_t  *sn;

    s.data = user;
    s.len = len;

    sn = ngx_str_rbtree_lookup(&ngx_chat_known, &s,
                               ngx_crc32_short(user, len));
    if (sn != NULL) {
        ngx_rbtree_delete(&ngx_chat_known, &sn->node);
        ngx_chat_known_count--;
    }
}
