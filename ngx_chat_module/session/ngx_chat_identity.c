/* ngx_chat_identity.c: who a request or session is (JWT or an nginx
 * variable), and creating users on first sight. */

#include "ngx_chat_identity.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_pg.h"


/* the per-worker set of users known to exist is dropped past this size */
#define NGX_CHAT_KNOWN_USERS_MAX     100000

/* users created by one statement, statements running at once */
#define NGX_CHAT_ENSURE_BATCH_MAX    1000
#define NGX_CHAT_ENSURE_INFLIGHT     2

/* ms at least between two statements: a storm fills the batches */
#define NGX_CHAT_ENSURE_INTERVAL     10

/* users waiting for a statement; past this they are not created now */
#define NGX_CHAT_ENSURE_PENDING_MAX  50000


typedef struct {
    ngx_queue_t                queue;
    ngx_uint_t                 generation;
    size_t                     len;
    size_t                     name_len;
    u_char                    *name;
    u_char                     user[NGX_CHAT_USER_ID_MAX];
} ngx_chat_ensure_t;


typedef struct {
    ngx_queue_t                users;
    ngx_uint_t                 n;
} ngx_chat_ensure_batch_t;


static ngx_int_t ngx_chat_identity_verify(ngx_pool_t *pool,
    ngx_chat_loc_conf_t *lcf, u_char *token, size_t len,
    ngx_chat_identity_t *id, const char **err);
static ngx_int_t ngx_chat_identity_bearer(ngx_http_request_t *r,
    ngx_str_t *token);
static ngx_int_t ngx_chat_known_init(ngx_log_t *log);
static void ngx_chat_known_remove(u_char *user, size_t len);
static void ngx_chat_ensure_schedule(void);
static void ngx_chat_ensure_flush_handler(ngx_event_t *ev);
static ngx_int_t ngx_chat_ensure_send(void);
static u_char *ngx_chat_ensure_quote(u_char *p, u_char *s, size_t len);
static void ngx_chat_ensure_done(PGresult *res, void *data);
static void ngx_chat_ensure_finish(ngx_chat_ensure_batch_t *b,
    ngx_uint_t failed);


static ngx_rbtree_t       ngx_chat_known;
static ngx_rbtree_node_t  ngx_chat_known_sentinel;
static ngx_pool_t        *ngx_chat_known_pool;
static ngx_uint_t         ngx_chat_known_count;
static ngx_uint_t         ngx_chat_known_generation;

static ngx_queue_t        ngx_chat_ensure_pending;
static ngx_uint_t         ngx_chat_ensure_npending;
static ngx_uint_t         ngx_chat_ensure_inflight;
static ngx_msec_t         ngx_chat_ensure_last;
static ngx_event_t        ngx_chat_ensure_flush;
static ngx_connection_t   ngx_chat_ensure_dummy;  /* for the timer's log */


/*
 * chat_touch_user() in sql/ for a whole batch, in one statement: a token's
 * name fills a missing one only. DISTINCT ON: a row is touched once per
 * statement (a name wins over none); ORDER BY: every batch takes its row
 * locks in the same order, so concurrent batches of the workers never
 * deadlock on each other.
 */
static const char  ngx_chat_ensure_user_sql[] =
    "INSERT INTO users AS u (id, display_name) "
    "SELECT DISTINCT ON (t.id) t.id, NULLIF(t.name, '') "
    "FROM unnest($1::text[], $2::text[]) AS t(id, name) "
    "ORDER BY t.id, t.name = '' "
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
    int                    rc;
    ngx_chat_jwt_rules_t   rules;
    ngx_chat_jwt_claims_t  claims;

    if (lcf->jwt_secret.len == 0) {
        *err = "no chat_jwt_secret to verify tokens with";
        return NGX_ERROR;
    }

    if (len == 0) {
        *err = "empty token";
        return NGX_ERROR;
    }

    rules.now = ngx_time();
    rules.leeway = lcf->jwt_leeway;
    rules.audience = lcf->jwt_audience.len
                     ? (const char *) lcf->jwt_audience.data : NULL;
    rules.audience_len = lcf->jwt_audience.len;
    rules.issuer = lcf->jwt_issuer.len
                   ? (const char *) lcf->jwt_issuer.data : NULL;
    rules.issuer_len = lcf->jwt_issuer.len;

    rc = ngx_chat_jwt_verify_rules(token, len, lcf->jwt_secret.data,
                                   lcf->jwt_secret.len, &rules, &claims,
                                   err);

    if (rc == NGX_CHAT_JWT_REFUSED) {
        ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_JWT_CLAIMS, 1);
    }

    if (rc != 0) {
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


/*
 * Users are created on first sight without holding the session: a user
 * this worker has not seen yet (or seen without a name, now with one)
 * joins the pending batch, and one INSERT per batch creates them all; at
 * most NGX_CHAT_ENSURE_INFLIGHT batches run at once, at most one starts
 * every NGX_CHAT_ENSURE_INTERVAL ms unless a full one waits, so a storm
 * of new sessions takes few pool connections, round trips and statements.
 * The session does not wait: only REST calls reference users (members,
 * creators, devices), and their SQL functions create the users they name.
 * A user is remembered from the moment it is queued (a burst of its
 * sessions queues it once) and forgotten again when its statement fails,
 * so that the next session tries again.
 */

void
ngx_chat_identity_ensure_user(ngx_chat_identity_t *id, ngx_log_t *log)
{
    size_t              name_len;
    uint32_t            hash;
    ngx_str_node_t     *sn;
    ngx_chat_ensure_t  *e;

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

    /* PostgreSQL text holds no NUL: the name ends at one */

    name_len = ngx_strnlen(id->name.data, id->name.len);

    hash = ngx_crc32_short(id->user.data, id->user.len);

    sn = ngx_str_rbtree_lookup(&ngx_chat_known, &id->user, hash);

    if (sn != NULL) {
        /* node.data: queued with a name */

        if (sn->node.data || name_len == 0) {
            return;
        }

        sn->node.data = 1;

    } else {
        sn = ngx_palloc(ngx_chat_known_pool,
                        sizeof(ngx_str_node_t) + id->user.len);
        if (sn == NULL) {
            return;
        }

        sn->node.key = hash;
        sn->node.data = (name_len != 0);
        sn->str.len = id->user.len;
        sn->str.data = (u_char *) sn + sizeof(ngx_str_node_t);
        ngx_memcpy(sn->str.data, id->user.data, id->user.len);

        ngx_rbtree_insert(&ngx_chat_known, &sn->node);
        ngx_chat_known_count++;
    }

    if (ngx_chat_ensure_npending >= NGX_CHAT_ENSURE_PENDING_MAX) {
        ngx_log_error(NGX_LOG_WARN, log, 0,
                      "chat: cannot queue the creation of user \"%V\": "
                      "%ui users are waiting", &id->user,
                      ngx_chat_ensure_npending);
        ngx_chat_known_remove(id->user.data, id->user.len);
        return;
    }

    e = ngx_alloc(sizeof(ngx_chat_ensure_t) + name_len, log);
    if (e == NULL) {
        ngx_chat_known_remove(id->user.data, id->user.len);
        return;
    }

    e->generation = ngx_chat_known_generation;
    e->len = id->user.len;
    ngx_memcpy(e->user, id->user.data, id->user.len);

    e->name = (u_char *) e + sizeof(ngx_chat_ensure_t);
    e->name_len = name_len;
    ngx_memcpy(e->name, id->name.data, name_len);

    if (ngx_chat_ensure_pending.next == NULL) {
        ngx_queue_init(&ngx_chat_ensure_pending);

        ngx_chat_ensure_flush.handler = ngx_chat_ensure_flush_handler;
        ngx_chat_ensure_flush.log = ngx_cycle->log;
        ngx_chat_ensure_flush.cancelable = 1;

        /* the event timer's debug log reads the "fd" of ev->data */
        ngx_chat_ensure_dummy.fd = (ngx_socket_t) -1;
        ngx_chat_ensure_flush.data = &ngx_chat_ensure_dummy;
    }

    ngx_queue_insert_tail(&ngx_chat_ensure_pending, &e->queue);
    ngx_chat_ensure_npending++;

    ngx_chat_ensure_schedule();
}


/*
 * The next statement: posted (the sessions of this event loop iteration
 * go in the same batch), or on a timer while the last one is younger than
 * NGX_CHAT_ENSURE_INTERVAL.
 */

static void
ngx_chat_ensure_schedule(void)
{
    ngx_msec_t    elapsed;
    ngx_event_t  *ev;

    ev = &ngx_chat_ensure_flush;

    if (ngx_chat_ensure_npending == 0
        || ngx_chat_ensure_inflight >= NGX_CHAT_ENSURE_INFLIGHT
        || ev->posted || ev->timer_set)
    {
        return;
    }

    elapsed = ngx_current_msec - ngx_chat_ensure_last;

    if (elapsed >= NGX_CHAT_ENSURE_INTERVAL
        || ngx_chat_ensure_npending >= NGX_CHAT_ENSURE_BATCH_MAX)
    {
        ngx_post_event(ev, &ngx_posted_events);
        return;
    }

    ngx_add_timer(ev, NGX_CHAT_ENSURE_INTERVAL - elapsed);
}


static void
ngx_chat_ensure_flush_handler(ngx_event_t *ev)
{
    ev->timedout = 0;

    do {
        if (ngx_chat_ensure_send() != NGX_OK) {
            break;
        }

        ngx_chat_ensure_last = ngx_current_msec;

    } while (ngx_chat_ensure_npending >= NGX_CHAT_ENSURE_BATCH_MAX
             && ngx_chat_ensure_inflight < NGX_CHAT_ENSURE_INFLIGHT);

    ngx_chat_ensure_schedule();
}


/* the next batch of pending users as two text[] literals, one statement */

static ngx_int_t
ngx_chat_ensure_send(void)
{
    u_char                   *buf, *p;
    size_t                    ids, names;
    const char               *values[2];
    ngx_queue_t              *q;
    ngx_chat_ensure_t        *e;
    ngx_chat_ensure_batch_t  *b;

    b = ngx_alloc(sizeof(ngx_chat_ensure_batch_t), ngx_cycle->log);
    if (b == NULL) {
        return NGX_ERROR;
    }

    ngx_queue_init(&b->users);
    b->n = 0;

    ids = sizeof("{}");
    names = sizeof("{}");

    while (b->n < NGX_CHAT_ENSURE_BATCH_MAX
           && !ngx_queue_empty(&ngx_chat_ensure_pending))
    {
        q = ngx_queue_head(&ngx_chat_ensure_pending);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&b->users, q);
        ngx_chat_ensure_npending--;
        b->n++;

        e = ngx_queue_data(q, ngx_chat_ensure_t, queue);

        /* "...", with every byte escaped at worst */
        ids += 2 * e->len + sizeof("\"\",") - 1;
        names += 2 * e->name_len + sizeof("\"\",") - 1;
    }

    buf = ngx_alloc(ids + names, ngx_cycle->log);
    if (buf == NULL) {
        ngx_chat_ensure_finish(b, 1);
        return NGX_ERROR;
    }

    values[0] = (const char *) buf;

    p = buf;
    *p++ = '{';

    for (q = ngx_queue_head(&b->users);
         q != ngx_queue_sentinel(&b->users);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_chat_ensure_t, queue);

        if (p[-1] != '{') {
            *p++ = ',';
        }

        p = ngx_chat_ensure_quote(p, e->user, e->len);
    }

    *p++ = '}';
    *p++ = '\0';

    values[1] = (const char *) p;

    *p++ = '{';

    for (q = ngx_queue_head(&b->users);
         q != ngx_queue_sentinel(&b->users);
         q = ngx_queue_next(q))
    {
        e = ngx_queue_data(q, ngx_chat_ensure_t, queue);

        if (p[-1] != '{') {
            *p++ = ',';
        }

        p = ngx_chat_ensure_quote(p, e->name, e->name_len);
    }

    *p++ = '}';
    *p = '\0';

    /* the parameters are copied */

    if (ngx_chat_pg_query(ngx_chat_ensure_user_sql, 2, values, NULL,
                          ngx_chat_ensure_done, b)
        == NULL)
    {
        ngx_free(buf);
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: cannot queue the creation of %ui users", b->n);
        ngx_chat_ensure_finish(b, 1);
        return NGX_ERROR;
    }

    ngx_free(buf);
    ngx_chat_ensure_inflight++;

    return NGX_OK;
}


/* an element of an array literal: "..." with " and \ escaped */

static u_char *
ngx_chat_ensure_quote(u_char *p, u_char *s, size_t len)
{
    u_char  *last;

    *p++ = '"';

    for (last = s + len; s < last; s++) {
        if (*s == '"' || *s == '\\') {
            *p++ = '\\';
        }

        *p++ = *s;
    }

    *p++ = '"';

    return p;
}


static void
ngx_chat_ensure_done(PGresult *res, void *data)
{
    ngx_chat_ensure_batch_t  *b = data;

    ngx_queue_t        *q;
    ngx_chat_ensure_t  *e;
    ngx_str_t           user;

    ngx_chat_ensure_inflight--;

    if (res != NULL && PQresultStatus(res) == PGRES_COMMAND_OK) {
        ngx_chat_ensure_finish(b, 0);

    } else {
        q = ngx_queue_head(&b->users);
        e = ngx_queue_data(q, ngx_chat_ensure_t, queue);

        user.data = e->user;
        user.len = e->len;

        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: creating %ui user%s (\"%V\"%s) failed: %s",
                      b->n, b->n == 1 ? "" : "s", &user,
                      b->n == 1 ? "" : ", ...",
                      res ? PQresultErrorMessage(res)
                          : "PostgreSQL unavailable");

        ngx_chat_ensure_finish(b, 1);
    }

    ngx_chat_ensure_schedule();
}


/* failed: the users are forgotten, so that their next session tries again */

static void
ngx_chat_ensure_finish(ngx_chat_ensure_batch_t *b, ngx_uint_t failed)
{
    ngx_queue_t        *q;
    ngx_chat_ensure_t  *e;

    while (!ngx_queue_empty(&b->users)) {
        q = ngx_queue_head(&b->users);
        ngx_queue_remove(q);

        e = ngx_queue_data(q, ngx_chat_ensure_t, queue);

        if (failed && e->generation == ngx_chat_known_generation) {
            ngx_chat_known_remove(e->user, e->len);
        }

        ngx_free(e);
    }

    ngx_free(b);
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
