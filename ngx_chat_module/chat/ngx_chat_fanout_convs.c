/* ngx_chat_fanout_convs.c: a Redis Cluster's fan-out: the conversations of
 * the worker's users, whose sharded channels it subscribes to. */

#include "ngx_chat_fanout.h"
#include "ngx_chat_fanout_int.h"
#include "ngx_chat_keys.h"
#include "ngx_chat_pg.h"


static void ngx_chat_fanout_convs_loaded(PGresult *res, void *data);
static ngx_int_t ngx_chat_fanout_join(ngx_chat_user_t *u, ngx_str_t *cid);
static void ngx_chat_fanout_leave(ngx_chat_user_t *u, ngx_chat_conv_t *c);
static ngx_int_t ngx_chat_fanout_json_str(u_char *json, u_char *end,
    const char *key, ngx_str_t *value);


/* the conversations of the users here */
static ngx_rbtree_t       ngx_chat_convs;
static ngx_rbtree_node_t  ngx_chat_convs_sentinel;

/* a user's conversations, at the first session of the user here */
static const char  ngx_chat_convs_sql[] =
    "SELECT conversation_id FROM conversation_members WHERE user_id = $1";


void
ngx_chat_fanout_convs_init(void)
{
    ngx_rbtree_init(&ngx_chat_convs, &ngx_chat_convs_sentinel,
                    ngx_str_rbtree_insert_value);
}


void
ngx_chat_fanout_leave_all(ngx_chat_user_t *u)
{
    while (u->nconvs) {
        ngx_chat_fanout_leave(u, u->convs[u->nconvs - 1]);
    }

    if (u->convs) {
        ngx_free(u->convs);
        u->convs = NULL;
    }

    u->aconvs = 0;
}


void
ngx_chat_fanout_convs_load(ngx_chat_user_t *u)
{
    const char  *values[1];
    int          lengths[1];

    values[0] = (const char *) u->sn.str.data;
    lengths[0] = (int) u->sn.str.len;

    u->convs_req = ngx_chat_pg_query(ngx_chat_convs_sql, 1, values, lengths,
                                     ngx_chat_fanout_convs_loaded, u);

    if (u->convs_req == NULL) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: cannot ask for the conversations of \"%V\"",
                      &u->sn.str);
    }
}


static void
ngx_chat_fanout_convs_loaded(PGresult *res, void *data)
{
    ngx_chat_user_t  *u = data;

    int         i, n;
    ngx_str_t   cid;

    u->convs_req = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        /* its sessions are CONNECTED at their timeout; the next session
         * of the user asks again */
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: the conversations of \"%V\" could not be "
                      "loaded: %s", &u->sn.str,
                      res ? PQresultErrorMessage(res) : "unavailable");
        return;
    }

    n = PQntuples(res);

    for (i = 0; i < n; i++) {
        cid.data = (u_char *) PQgetvalue(res, i, 0);
        cid.len = PQgetlength(res, i, 0);

        if (ngx_chat_fanout_join(u, &cid) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "chat: cannot subscribe \"%V\" to \"%V\"",
                          &u->sn.str, &cid);
        }
    }

    u->loaded = 1;
    ngx_chat_fanout_wake(u);
}


static ngx_int_t
ngx_chat_fanout_join(ngx_chat_user_t *u, ngx_str_t *cid)
{
    void             *p;
    uint32_t          hash;
    ngx_uint_t        i;
    ngx_chat_conv_t  *c;

    hash = ngx_crc32_short(cid->data, cid->len);
    c = (ngx_chat_conv_t *) ngx_str_rbtree_lookup(&ngx_chat_convs, cid, hash);

    if (c == NULL) {
        c = ngx_alloc(sizeof(ngx_chat_conv_t) + cid->len
                      + sizeof(NGX_CHAT_CHANNEL_CONV), ngx_cycle->log);
        if (c == NULL) {
            return NGX_ERROR;
        }

        c->channel.data = (u_char *) (c + 1);
        c->channel.len = ngx_sprintf(c->channel.data,
                                     NGX_CHAT_CHANNEL_CONV "%V}", cid)
                         - c->channel.data;
        c->sn.str.data = c->channel.data + sizeof(NGX_CHAT_CHANNEL_CONV) - 1;
        c->sn.str.len = cid->len;
        c->sn.node.key = hash;
        c->users = NULL;
        c->nusers = 0;
        c->ausers = 0;
        c->acked = 0;

        if (ngx_chat_redis_subscribe(c->channel.data, c->channel.len)
            != NGX_OK)
        {
            ngx_free(c);
            return NGX_ERROR;
        }

        ngx_rbtree_insert(&ngx_chat_convs, &c->sn.node);

    } else {
        for (i = 0; i < c->nusers; i++) {
            if (c->users[i] == u) {
                return NGX_OK;
            }
        }
    }

    if (c->nusers == c->ausers) {
        p = ngx_alloc((c->ausers * 2 + 2) * sizeof(ngx_chat_user_t *),
                      ngx_cycle->log);
        if (p == NULL) {
            goto failed;
        }

        if (c->users) {
            ngx_memcpy(p, c->users, c->nusers * sizeof(ngx_chat_user_t *));
            ngx_free(c->users);
        }

        c->users = p;
        c->ausers = c->ausers * 2 + 2;
    }

    if (u->nconvs == u->aconvs) {
        p = ngx_alloc((u->aconvs * 2 + 8) * sizeof(ngx_chat_conv_t *),
                      ngx_cycle->log);
        if (p == NULL) {
            goto failed;
        }

        if (u->convs) {
            ngx_memcpy(p, u->convs, u->nconvs * sizeof(ngx_chat_conv_t *));
            ngx_free(u->convs);
        }

        u->convs = p;
        u->aconvs = u->aconvs * 2 + 8;
    }

    c->users[c->nusers++] = u;
    u->convs[u->nconvs++] = c;

    if (!c->acked) {
        u->pending++;
    }

    return NGX_OK;

failed:

    if (c->nusers == 0) {
        ngx_chat_redis_unsubscribe(c->channel.data, c->channel.len);
        ngx_rbtree_delete(&ngx_chat_convs, &c->sn.node);

        if (c->users) {
            ngx_free(c->users);
        }

        ngx_free(c);
    }

    return NGX_ERROR;
}


static void
ngx_chat_fanout_leave(ngx_chat_user_t *u, ngx_chat_conv_t *c)
{
    ngx_uint_t  i;

    for (i = 0; i < u->nconvs; i++) {
        if (u->convs[i] == c) {
            u->convs[i] = u->convs[--u->nconvs];
            break;
        }
    }

    for (i = 0; i < c->nusers; i++) {
        if (c->users[i] == u) {
            c->users[i] = c->users[--c->nusers];
            break;
        }
    }

    if (!c->acked && u->pending) {
        u->pending--;
    }

    if (c->nusers) {
        return;
    }

    /* the last user here: SUNSUBSCRIBE */

    ngx_chat_redis_unsubscribe(c->channel.data, c->channel.len);
    ngx_rbtree_delete(&ngx_chat_convs, &c->sn.node);

    if (c->users) {
        ngx_free(c->users);
    }

    ngx_free(c);
}


void
ngx_chat_fanout_conv_acked(u_char *channel, size_t len)
{
    uint32_t          hash;
    ngx_str_t         cid;
    ngx_uint_t        i;
    ngx_chat_conv_t  *c;

    if (channel[len - 1] != '}') {
        return;
    }

    cid.data = channel + sizeof(NGX_CHAT_CHANNEL_CONV) - 1;
    cid.len = len - sizeof(NGX_CHAT_CHANNEL_CONV);
    hash = ngx_crc32_short(cid.data, cid.len);

    c = (ngx_chat_conv_t *) ngx_str_rbtree_lookup(&ngx_chat_convs, &cid,
                                                  hash);
    if (c == NULL || c->acked) {
        /* confirmed again after a reconnect or a slot move */
        return;
    }

    c->acked = 1;

    for (i = 0; i < c->nusers; i++) {
        if (c->users[i]->pending) {
            c->users[i]->pending--;
        }

        ngx_chat_fanout_wake(c->users[i]);
    }
}


/*
 * A membership event to a user here (sql/: "conversation.created",
 * "member.added" of the user: its conversation's channel is subscribed;
 * "member.removed" of the user: dropped).
 */

void
ngx_chat_fanout_membership(ngx_chat_user_t *u, u_char *json, u_char *end)
{
    uint32_t          hash;
    ngx_str_t         type, cid, who;
    ngx_uint_t        self;
    ngx_chat_conv_t  *c;

    if (ngx_chat_fanout_json_str(json, end, "type", &type) != NGX_OK
        || ngx_chat_fanout_json_str(json, end, "conversationId", &cid)
           != NGX_OK)
    {
        return;
    }

    self = ngx_chat_fanout_json_str(json, end, "userId", &who) == NGX_OK
           && who.len == u->sn.str.len
           && ngx_strncmp(who.data, u->sn.str.data, who.len) == 0;

    if ((type.len == sizeof("conversation.created") - 1
         && ngx_strncmp(type.data, "conversation.created", type.len) == 0)
        || (self && type.len == sizeof("member.added") - 1
            && ngx_strncmp(type.data, "member.added", type.len) == 0))
    {
        if (ngx_chat_fanout_join(u, &cid) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "chat: cannot subscribe \"%V\" to \"%V\"",
                          &u->sn.str, &cid);
        }

        return;
    }

    if (self && type.len == sizeof("member.removed") - 1
        && ngx_strncmp(type.data, "member.removed", type.len) == 0)
    {
        hash = ngx_crc32_short(cid.data, cid.len);
        c = (ngx_chat_conv_t *) ngx_str_rbtree_lookup(&ngx_chat_convs, &cid,
                                                      hash);
        if (c) {
            ngx_chat_fanout_leave(u, c);
        }
    }
}


/*
 * The string value of a top-level key of a JSON object as PostgreSQL's
 * json_build_object writes it ("key" : "value"); a value with escapes is
 * not an id and is declined.
 */

static ngx_int_t
ngx_chat_fanout_json_str(u_char *json, u_char *end, const char *key,
    ngx_str_t *value)
{
    u_char  *p, *q;
    size_t   klen;
    u_char   pat[32];

    klen = ngx_strlen(key);

    if (klen + 2 > sizeof(pat)) {
        return NGX_ERROR;
    }

    pat[0] = '"';
    ngx_memcpy(pat + 1, key, klen);
    pat[klen + 1] = '"';

    p = ngx_strlcasestrn(json, end, pat, klen + 2 - 1);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p += klen + 2;

    while (p < end && (*p == ' ' || *p == ':')) {
        p++;
    }

    if (p == end || *p != '"') {
        return NGX_DECLINED;
    }

    p++;

    for (q = p; q < end && *q != '"'; q++) {
        if (*q == '\\') {
            return NGX_DECLINED;
        }
    }

    if (q == end || q == p) {
        return NGX_DECLINED;
    }

    value->data = p;
    value->len = q - p;

    return NGX_OK;
}


/*
 * A publish of a large conversation (route_cluster.lua): "*<skip>\n<dest>
 * \n<message-id>\n<json>", for the members here but skip.
 */

void
ngx_chat_fanout_deliver_conv(u_char *channel, size_t channel_len,
    u_char *payload, size_t len)
{
    u_char           *end, *nl, *json;
    uint32_t          hash;
    ngx_str_t         cid, skip, mid;
    ngx_uint_t        i, n, dest;
    ngx_chat_conv_t  *c;
    ngx_chat_user_t  *u, **local;

    end = payload + len;

    nl = ngx_strlchr(payload, end, '\n');
    if (nl == NULL || channel[channel_len - 1] != '}') {
        goto invalid;
    }

    skip.data = payload + 1;
    skip.len = nl - skip.data;

    json = ngx_chat_fanout_head(nl + 1, end, &dest, &mid);
    if (json == NULL) {
        goto invalid;
    }

    cid.data = channel + sizeof(NGX_CHAT_CHANNEL_CONV) - 1;
    cid.len = channel_len - sizeof(NGX_CHAT_CHANNEL_CONV);
    hash = ngx_crc32_short(cid.data, cid.len);

    c = (ngx_chat_conv_t *) ngx_str_rbtree_lookup(&ngx_chat_convs, &cid,
                                                  hash);
    if (c == NULL || c->nusers == 0) {
        return;
    }

    local = ngx_chat_fanout_local_users(c->nusers);
    if (local == NULL) {
        return;
    }

    n = 0;

    for (i = 0; i < c->nusers; i++) {
        u = c->users[i];

        if (u->sn.str.len == skip.len
            && ngx_strncmp(u->sn.str.data, skip.data, skip.len) == 0)
        {
            continue;
        }

        local[n++] = u;
    }

    if (n) {
        ngx_chat_fanout_body(local, n, dest, &mid, json, end);
    }

    return;

invalid:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "chat: invalid payload on \"%*s\"", channel_len, channel);
}
