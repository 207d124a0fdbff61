/* ngx_chat_history.c: history and read-your-writes: PostgreSQL answers
 * merged with what Redis already knows (buffered messages, seq counters,
 * delivered and read watermarks). */

#include <jansson.h>

#include "ngx_chat_history.h"
#include "ngx_chat_keys.h"
#include "ngx_chat_lua.h"


#define NGX_CHAT_HISTORY_LIMIT_DEFAULT     50
#define NGX_CHAT_HISTORY_LIMIT_MAX         200
#define NGX_CHAT_HISTORY_SEQ_MAX_LEN       18


/* a member's watermarks, the lowest two of a kind for "every other" */
typedef struct {
    int64_t                    min[2];
    ngx_str_t                  who;        /* whose is min[0] */
} ngx_chat_history_mark_t;


static const char  ngx_chat_history_sql_history[] =
    "SELECT * FROM chat_api_history($1, $2, $3, $4, $5, $6)";


/*
 * The newest state of conversations that PostgreSQL may not have yet: for
 * each conversation the seq counter, the newest buffered message and the
 * caller's read watermark (moved by /app/chat.read before the persistence
 * worker writes it). The buffer is written oldest first; lists written
 * newest first by older versions have the newest at the head, so the
 * higher seq of head and tail wins.
 * KEYS: "chat:s:{<id>}", "chat:h:{<id>}", "chat:r:{<id>}" for each
 * conversation.
 * ARGV: the caller's userId, then PostgreSQL's read seq of each conversation.
 * Returns counter, newest message, read seq ("" where there is none), and
 * the seqs of the caller's own buffered messages above the higher read seq
 * (newest first; they are not unread), ...
 */
static ngx_chat_redis_script_t  ngx_chat_history_latest_script = {
    NGX_CHAT_LUA_HISTORY_LATEST,
    ""
};


/*
 * A conversation's recent state for its history: the page of the buffered
 * messages that before, after and limit ask for (oldest first), and the
 * delivered and read watermarks per member.
 * KEYS: "chat:h:{<id>}", "chat:dl:{<id>}", "chat:r:{<id>}", "chat:hc:{<id>}".
 * ARGV: before (0: none), after (-1: none), limit.
 * Returns [messages, [user, seq, ...], [user, seq, ...], more (0 or 1),
 * the buffered change events].
 */
static ngx_chat_redis_script_t  ngx_chat_history_recent_script = {
    NGX_CHAT_LUA_HISTORY_RECENT,
    ""
};


static ngx_int_t ngx_chat_history_seq_arg(ngx_http_request_t *r, char *name,
    size_t len, int64_t min, int64_t *value);
static void ngx_chat_history_recent_handler(redisReply *reply, void *data);
static ngx_int_t ngx_chat_history_answer(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);
static json_t *ngx_chat_history_hash(redisReply *hash);
static json_t *ngx_chat_history_receipts(json_t *members);
static void ngx_chat_history_raise(json_t *members, json_t *marks);
static int64_t ngx_chat_history_msg_seq(json_t *m);
static json_t *ngx_chat_history_list(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, redisReply *list);
static ngx_int_t ngx_chat_history_apply(json_t *m, json_t *changes);
static ngx_int_t ngx_chat_history_seq_cmp(const void *a, const void *b);
static void ngx_chat_history_marks(json_t *members,
    ngx_chat_history_mark_t *marks);
static int64_t ngx_chat_history_mark(ngx_chat_history_mark_t *mark,
    const char *sender);
static ngx_int_t ngx_chat_history_latest(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);
static void ngx_chat_history_latest_handler(redisReply *reply, void *data);
static ngx_int_t ngx_chat_history_latest_ask(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx, json_t *list, size_t from, size_t to,
    ngx_chat_redis_reply_pt handler);
static void ngx_chat_history_latest_step(redisReply *reply, void *data);
static void ngx_chat_history_latest_done(ngx_chat_api_ctx_t *ctx,
    json_t *list, size_t n);
static void ngx_chat_history_latest_merge(json_t *conv, redisReply *counter,
    redisReply *newest, redisReply *rd, redisReply *own);
static int64_t ngx_chat_history_own(json_t *conv, redisReply *own,
    int64_t read, int64_t seq);
static const char *ngx_chat_history_activity(json_t *conv);
static int ngx_libc_cdecl ngx_chat_history_activity_cmp(const void *a,
    const void *b);
static ngx_int_t ngx_chat_history_latest_send(ngx_http_request_t *r,
    ngx_chat_api_ctx_t *ctx);


ngx_int_t
ngx_chat_history_init_process(ngx_cycle_t *cycle)
{
    if (ngx_chat_redis_script(&ngx_chat_history_latest_script) != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_chat_redis_script(&ngx_chat_history_recent_script);
}


/*
 * GET /conversations/{id}/messages?before=S|after=S&limit=N
 *
 * PostgreSQL (the persisted messages, membership, watermarks) and Redis
 * (chat:h:{<id>}: the newest messages, written when they are accepted;
 * chat:dl:{<id>} and chat:r:{<id>}: the watermarks, moved by the gateway
 * before the persistence worker writes them) are asked at once; the answer
 * is their union by seq, with each member's higher watermark of both.
 *
 * If Redis cannot be asked (down, or the command fails), the answer comes
 * from PostgreSQL alone, logged at warn: a receipted message that the
 * persistence worker has not written yet is then missing from it. A 503
 * would not be better: the client could not read any history while Redis
 * is down, although most of it is in PostgreSQL, and a client that saw a
 * gap asks again later anyway. Without PostgreSQL there is no membership
 * to check: 503.
 */
ngx_int_t
ngx_chat_history_messages(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    const char **values)
{
    u_char      *p;
    ngx_int_t    rc, n;
    ngx_str_t    arg;
    const char  *argv[7];
    size_t       argvlen[7];

    /* after=0 is "from the start"; nothing is before seq 1 */

    rc = ngx_chat_history_seq_arg(r, "before", sizeof("before") - 1, 1,
                                  &ctx->before);

    if (rc != NGX_OK) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "before must be a positive integer");
    }

    rc = ngx_chat_history_seq_arg(r, "after", sizeof("after") - 1, 0,
                                  &ctx->after);

    if (rc != NGX_OK) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "after must be an integer of 0 or more");
    }

    if (ctx->before > 0 && ctx->after >= 0) {
        return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                  "before and after cannot be combined");
    }

    ctx->limit = NGX_CHAT_HISTORY_LIMIT_DEFAULT;

    if (ngx_http_arg(r, (u_char *) "limit", sizeof("limit") - 1, &arg)
        == NGX_OK)
    {
        n = (arg.len > 0 && arg.len <= 3) ? ngx_atoi(arg.data, arg.len)
                                           : NGX_ERROR;

        if (n < 1 || n > NGX_CHAT_HISTORY_LIMIT_MAX) {
            return ngx_chat_api_error(r, NGX_HTTP_BAD_REQUEST, "bad_request",
                                      "limit must be an integer from 1 "
                                      "to 200");
        }

        ctx->limit = (ngx_uint_t) n;
    }

    p = ngx_pnalloc(r->pool, 6 * (NGX_INT64_LEN + 1)
                             + 4 * (sizeof(NGX_CHAT_KEY_DELIVERED) - 1
                                    + ctx->arg.len
                                    + sizeof(NGX_CHAT_TAG_CLOSE) - 1));
    if (p == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    values[3] = NULL;
    values[4] = NULL;

    if (ctx->before > 0) {
        values[3] = (char *) p;
        p = ngx_sprintf(p, "%L%Z", ctx->before);
    }

    if (ctx->after >= 0) {
        values[4] = (char *) p;
        p = ngx_sprintf(p, "%L%Z", ctx->after);
    }

    values[5] = (char *) p;
    p = ngx_sprintf(p, "%ui%Z", ctx->limit);

    argv[0] = (char *) p;
    p = ngx_sprintf(p, NGX_CHAT_KEY_HISTORY "%V" NGX_CHAT_TAG_CLOSE,
                    &ctx->arg);
    argvlen[0] = (u_char *) p - (u_char *) argv[0];

    argv[1] = (char *) p;
    p = ngx_sprintf(p, NGX_CHAT_KEY_DELIVERED "%V" NGX_CHAT_TAG_CLOSE,
                    &ctx->arg);
    argvlen[1] = (u_char *) p - (u_char *) argv[1];

    argv[2] = (char *) p;
    p = ngx_sprintf(p, NGX_CHAT_KEY_READ "%V" NGX_CHAT_TAG_CLOSE,
                    &ctx->arg);
    argvlen[2] = (u_char *) p - (u_char *) argv[2];

    argv[3] = (char *) p;
    p = ngx_sprintf(p, NGX_CHAT_KEY_CHANGES "%V" NGX_CHAT_TAG_CLOSE, &ctx->arg);
    argvlen[3] = (u_char *) p - (u_char *) argv[3];

    /* the script reads and returns only the page asked for */

    argv[4] = (char *) p;
    p = ngx_sprintf(p, "%L", ctx->before > 0 ? ctx->before : 0);
    argvlen[4] = (u_char *) p - (u_char *) argv[4];

    argv[5] = (char *) p;
    p = ngx_sprintf(p, "%L", ctx->after);
    argvlen[5] = (u_char *) p - (u_char *) argv[5];

    argv[6] = (char *) p;
    p = ngx_sprintf(p, "%ui", ctx->limit);
    argvlen[6] = (u_char *) p - (u_char *) argv[6];

    ctx->enrich = ngx_chat_history_enrich;

    ctx->redis = ngx_chat_redis_eval(&ngx_chat_history_recent_script,
                                     ngx_chat_history_recent_handler, ctx,
                                     4, 7, argv, argvlen);

    if (ctx->redis == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat api: Redis is unavailable, the history of "
                      "\"%V\" comes from PostgreSQL alone", &ctx->arg);
    }

    return ngx_chat_api_query(r, ctx, ngx_chat_history_sql_history, 6, values);
}


/* NGX_OK: absent (-1) or an integer of at least min; NGX_ERROR: else */
static ngx_int_t
ngx_chat_history_seq_arg(ngx_http_request_t *r, char *name, size_t len,
    int64_t min, int64_t *value)
{
    off_t      n;
    ngx_str_t  arg;

    *value = -1;

    if (ngx_http_arg(r, (u_char *) name, len, &arg) != NGX_OK) {
        return NGX_OK;
    }

    if (arg.len == 0 || arg.len > NGX_CHAT_HISTORY_SEQ_MAX_LEN) {
        return NGX_ERROR;
    }

    n = ngx_atoof(arg.data, arg.len);

    if (n < min) {
        return NGX_ERROR;
    }

    *value = (int64_t) n;

    return NGX_OK;
}


/*
 * The recent script's answer: the buffered messages (oldest first) and the
 * watermarks that the persistence worker may not have written yet.
 */
static void
ngx_chat_history_recent_handler(redisReply *reply, void *data)
{
    ngx_chat_api_ctx_t  *ctx = data;

    json_t              *dl, *rd;
    ngx_http_request_t  *r;

    ctx->redis = NULL;
    r = ctx->r;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 5
        || reply->element[0]->type != REDIS_REPLY_ARRAY
        || reply->element[3]->type != REDIS_REPLY_INTEGER
        || reply->element[4]->type != REDIS_REPLY_ARRAY)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat api: Redis failed, the history of \"%V\" "
                      "comes from PostgreSQL alone", &ctx->arg);

    } else {
        dl = ngx_chat_history_hash(reply->element[1]);
        rd = ngx_chat_history_hash(reply->element[2]);

        if (dl != NULL && rd != NULL) {
            ctx->marks = json_pack("[oo]", dl, rd);

        } else {
            if (dl != NULL) {
                json_decref(dl);
            }

            if (rd != NULL) {
                json_decref(rd);
            }
        }

        ctx->recent_more = (reply->element[3]->integer != 0);
        ctx->recent = ngx_chat_history_list(r, ctx, reply->element[0]);

        if (ctx->recent != NULL) {
            ctx->changes = ngx_chat_history_list(r, ctx, reply->element[4]);

            if (ctx->changes == NULL) {
                json_decref(ctx->recent);
                ctx->recent = NULL;
            }
        }

        if (ctx->recent == NULL) {
            ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                          "chat api: out of memory, the history of \"%V\" "
                          "comes from PostgreSQL alone", &ctx->arg);
        }
    }

    if (ctx->pg_json == NULL) {
        /* PostgreSQL has not answered yet */
        return;
    }

    ngx_chat_api_finish(ctx, ngx_chat_history_answer(r, ctx));
}


/* the buffered entries of list, decoded; NULL: out of memory */
static json_t *
ngx_chat_history_list(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    redisReply *list)
{
    size_t         i;
    json_t        *out, *m;
    redisReply    *e;
    json_error_t   jerr;

    out = json_array();

    for (i = 0; out != NULL && i < list->elements; i++) {
        e = list->element[i];

        if (e->type != REDIS_REPLY_STRING) {
            continue;
        }

        m = json_loadb(e->str, e->len, 0, &jerr);

        if (m == NULL || ngx_chat_history_msg_seq(m) < 1) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "chat api: a bad message in \""
                          NGX_CHAT_KEY_HISTORY "%V" NGX_CHAT_TAG_CLOSE "\"",
                          &ctx->arg);

            if (m != NULL) {
                json_decref(m);
            }

            continue;
        }

        if (json_array_append_new(out, m) != 0) {
            json_decref(out);
            out = NULL;
        }
    }

    return out;
}


/*
 * Brings a message up to date with the buffered changes of it
 * (PROTOCOL.md section 10), oldest first: PostgreSQL's copy may not have
 * them yet. Each change sets a state (content, a tombstone, one user's
 * emoji), so one applied twice leaves what once would.
 */
static ngx_int_t
ngx_chat_history_apply(json_t *m, json_t *changes)
{
    size_t       i, j;
    json_t      *c, *reactions, *users, *u, *kept;
    int64_t      seq;
    const char  *type, *who, *emoji;

    if (changes == NULL
        || ngx_strcmp(json_string_value(json_object_get(m, "type"))
                      ? json_string_value(json_object_get(m, "type")) : "",
                      "message") != 0)
    {
        return NGX_OK;
    }

    seq = ngx_chat_history_msg_seq(m);

    json_array_foreach(changes, i, c) {
        if (json_integer_value(json_object_get(c, "target")) != seq) {
            continue;
        }

        type = json_string_value(json_object_get(c, "type"));
        who = json_string_value(json_object_get(c, "senderId"));

        if (type == NULL || who == NULL
            || json_is_true(json_object_get(m, "deleted")))
        {
            continue;
        }

        if (ngx_strcmp(type, "message.edited") == 0) {
            if (json_object_set(m, "content", json_object_get(c, "content"))
                || json_object_set(m, "editedAt",
                                   json_object_get(c, "createdAt")))
            {
                return NGX_ERROR;
            }

        } else if (ngx_strcmp(type, "message.deleted") == 0) {
            if (json_object_set_new(m, "content", json_string(""))
                || json_object_set_new(m, "metadata", json_object())
                || json_object_set_new(m, "deleted", json_true())
                || json_object_set(m, "deletedAt",
                                   json_object_get(c, "createdAt")))
            {
                return NGX_ERROR;
            }

            json_object_del(m, "editedAt");
            json_object_del(m, "reactions");

        } else if (ngx_strncmp(type, "reaction.", 9) == 0) {
            emoji = json_string_value(json_object_get(c, "emoji"));
            if (emoji == NULL) {
                continue;
            }

            reactions = json_object_get(m, "reactions");
            if (!json_is_object(reactions)) {
                reactions = json_object();
                if (reactions == NULL
                    || json_object_set_new(m, "reactions", reactions))
                {
                    return NGX_ERROR;
                }
            }

            users = json_object_get(reactions, emoji);

            kept = json_array();
            if (kept == NULL) {
                return NGX_ERROR;
            }

            json_array_foreach(users, j, u) {
                if (json_is_string(u)
                    && ngx_strcmp(json_string_value(u), who) != 0
                    && json_array_append(kept, u))
                {
                    json_decref(kept);
                    return NGX_ERROR;
                }
            }

            if (ngx_strcmp(type, "reaction.added") == 0
                && json_array_append_new(kept, json_string(who)))
            {
                json_decref(kept);
                return NGX_ERROR;
            }

            /* an added one keeps its place: only a new one goes last */

            if (ngx_strcmp(type, "reaction.added") == 0
                && json_array_size(kept) == json_array_size(users))
            {
                json_decref(kept);
                continue;
            }

            if (json_array_size(kept) == 0) {
                json_decref(kept);
                json_object_del(reactions, emoji);

            } else if (json_object_set_new(reactions, emoji, kept)) {
                return NGX_ERROR;
            }

            if (json_object_size(reactions) == 0) {
                json_object_del(m, "reactions");
            }
        }
    }

    return NGX_OK;
}


/* a conversation list or one conversation: with their latest messages;
 * history: merged when Redis is back too */

ngx_int_t
ngx_chat_history_enrich(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx)
{
    if (ctx->route != NGX_CHAT_API_MESSAGES) {
        return ngx_chat_history_latest(r, ctx);
    }

    if (ctx->redis != NULL) {
        return NGX_DONE;
    }

    return ngx_chat_history_answer(r, ctx);
}


/* the union of both sources by seq, one page of it, with statuses */
static ngx_int_t
ngx_chat_history_answer(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx)
{
    size_t                i, j, k, n, start, count;
    json_t               *msgs, *root, *out, *m, *cmid, *receipts;
    int64_t               seq, delivered, rd;
    ngx_int_t             rc;
    ngx_uint_t            more;
    const char           *status, *sender;
    ngx_chat_history_mark_t   marks[2];
    json_t              **all;

    msgs = json_object_get(ctx->pg_json, "messages");

    n = json_array_size(msgs) + json_array_size(ctx->recent);

    all = ngx_palloc(r->pool, (n + 1) * sizeof(json_t *));
    if (all == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* PostgreSQL's rows first: on equal seqs the stable sort keeps them */

    k = 0;

    for (j = 0; j < 2; j++) {
        json_array_foreach(j ? ctx->recent : msgs, i, m) {
            seq = ngx_chat_history_msg_seq(m);

            if (seq < 1
                || (ctx->before > 0 && seq >= ctx->before)
                || (ctx->after >= 0 && seq <= ctx->after))
            {
                continue;
            }

            all[k++] = m;
        }
    }

    ngx_sort(all, k, sizeof(json_t *), ngx_chat_history_seq_cmp);

    n = k;
    k = 0;

    for (i = 0; i < n; i++) {
        if (k > 0
            && ngx_chat_history_msg_seq(all[k - 1])
               == ngx_chat_history_msg_seq(all[i]))
        {
            continue;
        }

        all[k++] = all[i];
    }

    /* after: the lowest above; otherwise the highest (below before) */

    /* Redis left out some that match: more there are, whatever the page */

    more = (k > ctx->limit) || ctx->recent_more;
    count = (k > ctx->limit) ? ctx->limit : k;
    start = (ctx->after >= 0 || k <= ctx->limit) ? 0 : k - ctx->limit;

    ngx_chat_history_raise(json_object_get(ctx->pg_json, "members"),
                           ctx->marks);
    ngx_chat_history_marks(json_object_get(ctx->pg_json, "members"), marks);

    out = json_array();
    if (out == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = start; i < start + count; i++) {
        m = all[i];

        cmid = json_object_get(m, "clientMsgId");

        if (cmid != NULL && json_is_null(cmid)) {
            json_object_del(m, "clientMsgId");
        }

        sender = json_string_value(json_object_get(m, "senderId"));
        seq = ngx_chat_history_msg_seq(m);

        delivered = ngx_chat_history_mark(&marks[0], sender);
        rd = ngx_chat_history_mark(&marks[1], sender);

        status = (seq <= rd) ? "read"
                 : (seq <= delivered) ? "delivered" : "sent";

        if (ngx_chat_history_apply(m, ctx->changes) != NGX_OK
            || json_object_set_new(m, "status", json_string(status)) != 0
            || json_array_append(out, m) != 0)
        {
            json_decref(out);
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    receipts = ngx_chat_history_receipts(json_object_get(ctx->pg_json,
                                                         "members"));
    if (receipts == NULL) {
        json_decref(out);
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    root = json_pack("{s:o,s:b,s:o}", "messages", out, "hasMore", (int) more,
                     "receipts", receipts);
    if (root == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rc = ngx_chat_api_send_json(r, root);

    json_decref(root);

    return rc;
}


/*
 * Each member's watermarks, [{"userId", "delivered", "read"}], from the
 * members' [[userId, delivered, read], ...]: who a group's ticks stand for.
 */
static json_t *
ngx_chat_history_receipts(json_t *members)
{
    size_t   i;
    json_t  *out, *e, *o;
    int64_t  rd, dl;

    out = json_array();
    if (out == NULL) {
        return NULL;
    }

    json_array_foreach(members, i, e) {
        if (!json_is_string(json_array_get(e, 0))) {
            continue;
        }

        rd = json_integer_value(json_array_get(e, 2));
        dl = ngx_max(json_integer_value(json_array_get(e, 1)), rd);

        o = json_pack("{s:O,s:I,s:I}", "userId", json_array_get(e, 0),
                      "delivered", (json_int_t) dl, "read", (json_int_t) rd);

        if (o == NULL || json_array_append_new(out, o) != 0) {
            json_decref(out);
            return NULL;
        }
    }

    return out;
}


/* HGETALL's [field, value, ...] as {"userId": seq}; NULL: no memory */
static json_t *
ngx_chat_history_hash(redisReply *hash)
{
    off_t        v;
    size_t       i;
    json_t      *o;
    redisReply  *k, *e;
    u_char       user[NGX_CHAT_USER_ID_MAX + 1];

    o = json_object();
    if (o == NULL) {
        return NULL;
    }

    if (hash->type != REDIS_REPLY_ARRAY) {
        return o;
    }

    for (i = 0; i + 1 < hash->elements; i += 2) {
        k = hash->element[i];
        e = hash->element[i + 1];

        if (k->type != REDIS_REPLY_STRING || e->type != REDIS_REPLY_STRING
            || k->len == 0 || k->len > NGX_CHAT_USER_ID_MAX
            || e->len == 0 || e->len > NGX_CHAT_HISTORY_SEQ_MAX_LEN)
        {
            continue;
        }

        v = ngx_atoof((u_char *) e->str, e->len);

        if (v < 1) {
            continue;
        }

        ngx_memcpy(user, k->str, k->len);
        user[k->len] = '\0';

        if (json_object_set_new(o, (char *) user, json_integer(v)) != 0) {
            json_decref(o);
            return NULL;
        }
    }

    return o;
}


/*
 * Raises PostgreSQL's watermarks of the members, [[userId, delivered,
 * read], ...], to Redis's, [{"userId": delivered}, {"userId": read}]:
 * Redis is ahead until the persistence worker has written them; the
 * members are PostgreSQL's (a former member's watermark does not count).
 */
static void
ngx_chat_history_raise(json_t *members, json_t *marks)
{
    size_t       i, j;
    json_t      *e, *v;
    int64_t      have;
    const char  *user;

    if (marks == NULL) {
        return;
    }

    json_array_foreach(members, i, e) {
        user = json_string_value(json_array_get(e, 0));

        if (user == NULL) {
            continue;
        }

        for (j = 0; j < 2; j++) {
            v = json_object_get(json_array_get(marks, j), user);
            have = json_integer_value(json_array_get(e, j + 1));

            if (json_is_integer(v) && json_integer_value(v) > have) {
                (void) json_array_set_new(e, j + 1,
                                          json_integer(json_integer_value(v)));
            }
        }
    }
}


static int64_t
ngx_chat_history_msg_seq(json_t *m)
{
    json_t  *seq;

    seq = json_object_get(m, "seq");

    return json_is_integer(seq) ? (int64_t) json_integer_value(seq) : 0;
}


static ngx_int_t
ngx_chat_history_seq_cmp(const void *a, const void *b)
{
    int64_t  x, y;

    x = ngx_chat_history_msg_seq(*(json_t **) a);
    y = ngx_chat_history_msg_seq(*(json_t **) b);

    return (x > y) - (x < y);
}


/*
 * A message is delivered (read) when every member but its sender has a
 * delivered (read) watermark at or above it: the lowest watermark of the
 * others. marks[0]: delivered (a read implies delivered), marks[1]: read.
 * members: [[userId, delivered, read], ...].
 */
static void
ngx_chat_history_marks(json_t *members, ngx_chat_history_mark_t *marks)
{
    size_t      i, j;
    json_t     *e;
    int64_t     v[2];
    ngx_str_t   who;

    for (j = 0; j < 2; j++) {
        marks[j].min[0] = INT64_MAX;
        marks[j].min[1] = INT64_MAX;
        ngx_str_null(&marks[j].who);
    }

    json_array_foreach(members, i, e) {
        if (!json_is_string(json_array_get(e, 0))) {
            continue;
        }

        who.data = (u_char *) json_string_value(json_array_get(e, 0));
        who.len = json_string_length(json_array_get(e, 0));

        v[1] = json_integer_value(json_array_get(e, 2));
        v[0] = ngx_max(json_integer_value(json_array_get(e, 1)), v[1]);

        for (j = 0; j < 2; j++) {
            if (v[j] < marks[j].min[0]) {
                marks[j].min[1] = marks[j].min[0];
                marks[j].min[0] = v[j];
                marks[j].who = who;

            } else if (v[j] < marks[j].min[1]) {
                marks[j].min[1] = v[j];
            }
        }
    }
}


/* the lowest watermark of the members other than sender; 0 if none */
static int64_t
ngx_chat_history_mark(ngx_chat_history_mark_t *mark, const char *sender)
{
    int64_t  v;

    v = mark->min[0];

    if (sender != NULL
        && mark->who.len == ngx_strlen(sender)
        && ngx_strncmp(mark->who.data, sender, mark->who.len) == 0)
    {
        v = mark->min[1];
    }

    return (v == INT64_MAX) ? 0 : v;
}


/*
 * GET /conversations and /conversations/{id}: lastSeq, lastMessage and
 * unread include the messages accepted but not yet persisted, from the
 * Redis seq counters and buffers. Without Redis, PostgreSQL's answer
 * stands (logged at warn).
 */
static ngx_int_t
ngx_chat_history_latest(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx)
{
    size_t   n;
    json_t  *list;

    if (ctx->route == NGX_CHAT_API_CONVERSATIONS) {
        list = json_object_get(ctx->pg_json, "conversations");
        n = json_array_size(list);

    } else {
        list = NULL;
        n = 1;
    }

    if (n == 0) {
        return ngx_chat_history_latest_send(r, ctx);
    }

    if (n > 1 && ngx_chat_redis_is_cluster()) {
        /* the conversations' keys are in their own slots: one script per
         * conversation, one after the other */
        ctx->redis_next = 0;
        return ngx_chat_history_latest_ask(r, ctx, list, 0, 1,
                                           ngx_chat_history_latest_step);
    }

    return ngx_chat_history_latest_ask(r, ctx, list, 0, n,
                                       ngx_chat_history_latest_handler);
}


/* the script for conversations from..to-1 of list (or the one of
 * ctx->pg_json) */

static ngx_int_t
ngx_chat_history_latest_ask(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx,
    json_t *list, size_t from, size_t to, ngx_chat_redis_reply_pt handler)
{
    u_char       *p;
    size_t        i, n;
    json_t       *conv, *id;
    size_t       *argvlen;
    const char  **argv;

    n = to - from;

    argv = ngx_palloc(r->pool, (4 * n + 1) * sizeof(char *));
    argvlen = ngx_palloc(r->pool, (4 * n + 1) * sizeof(size_t));

    if (argv == NULL || argvlen == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    for (i = 0; i < n; i++) {
        conv = list ? json_array_get(list, from + i) : ctx->pg_json;
        id = json_object_get(conv, "conversationId");

        if (!json_is_string(id)) {
            return ngx_chat_api_error(r, NGX_HTTP_INTERNAL_SERVER_ERROR,
                                      "internal", "internal error");
        }

        p = ngx_pnalloc(r->pool, 3 * (sizeof(NGX_CHAT_KEY_SEQ) - 1
                                      + sizeof(NGX_CHAT_TAG_CLOSE) - 1)
                                 + 3 * json_string_length(id));
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        argv[3 * i] = (char *) p;
        argvlen[3 * i] = sizeof(NGX_CHAT_KEY_SEQ) - 1 + json_string_length(id)
                         + sizeof(NGX_CHAT_TAG_CLOSE) - 1;
        p = ngx_sprintf(p, NGX_CHAT_KEY_SEQ "%s" NGX_CHAT_TAG_CLOSE,
                        json_string_value(id));

        argv[3 * i + 1] = (char *) p;
        argvlen[3 * i + 1] = argvlen[3 * i];
        p = ngx_sprintf(p, NGX_CHAT_KEY_HISTORY "%s" NGX_CHAT_TAG_CLOSE,
                        json_string_value(id));

        argv[3 * i + 2] = (char *) p;
        argvlen[3 * i + 2] = argvlen[3 * i];
        ngx_sprintf(p, NGX_CHAT_KEY_READ "%s" NGX_CHAT_TAG_CLOSE,
                    json_string_value(id));

        p = ngx_pnalloc(r->pool, NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        argv[3 * n + 1 + i] = (char *) p;
        argvlen[3 * n + 1 + i] = ngx_sprintf(p, "%L",
            (int64_t) json_integer_value(json_object_get(conv, "lastReadSeq")))
            - p;
    }

    argv[3 * n] = (char *) ctx->id.user.data;
    argvlen[3 * n] = ctx->id.user.len;

    ctx->redis = ngx_chat_redis_eval(&ngx_chat_history_latest_script,
                                     handler, ctx, (int) (3 * n),
                                     (int) (4 * n + 1), argv, argvlen);

    if (ctx->redis == NULL) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat api: Redis is unavailable, conversations "
                      "come from PostgreSQL alone");

        return ngx_chat_history_latest_send(r, ctx);
    }

    return NGX_DONE;
}


static void
ngx_chat_history_latest_handler(redisReply *reply, void *data)
{
    ngx_chat_api_ctx_t  *ctx = data;

    size_t               i, n;
    json_t              *list, *conv;
    ngx_http_request_t  *r;

    ctx->redis = NULL;
    r = ctx->r;

    list = NULL;
    n = 1;

    if (ctx->route == NGX_CHAT_API_CONVERSATIONS) {
        list = json_object_get(ctx->pg_json, "conversations");
        n = json_array_size(list);
    }

    if (reply == NULL
        || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4 * n)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat api: Redis failed, conversations come from "
                      "PostgreSQL alone");

        ngx_chat_api_finish(ctx, ngx_chat_history_latest_send(r, ctx));
        return;
    }

    for (i = 0; i < n; i++) {
        conv = list ? json_array_get(list, i) : ctx->pg_json;
        ngx_chat_history_latest_merge(conv, reply->element[4 * i],
                                      reply->element[4 * i + 1],
                                      reply->element[4 * i + 2],
                                      reply->element[4 * i + 3]);
    }

    ngx_chat_history_latest_done(ctx, list, n);
}


/* a cluster: one conversation's answer merged, the next one asked */

static void
ngx_chat_history_latest_step(redisReply *reply, void *data)
{
    ngx_chat_api_ctx_t  *ctx = data;

    size_t               i, n;
    json_t              *list;
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    ctx->redis = NULL;
    r = ctx->r;

    list = json_object_get(ctx->pg_json, "conversations");
    n = json_array_size(list);
    i = ctx->redis_next;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 4 || i >= n)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "chat api: Redis failed, conversations come from "
                      "PostgreSQL alone");

        ngx_chat_api_finish(ctx, ngx_chat_history_latest_send(r, ctx));
        return;
    }

    ngx_chat_history_latest_merge(json_array_get(list, i), reply->element[0],
                                  reply->element[1], reply->element[2],
                                  reply->element[3]);

    if (++ctx->redis_next < n) {
        rc = ngx_chat_history_latest_ask(r, ctx, list, ctx->redis_next,
                                         ctx->redis_next + 1,
                                         ngx_chat_history_latest_step);
        if (rc != NGX_DONE) {
            ngx_chat_api_finish(ctx, rc);
        }

        return;
    }

    ngx_chat_history_latest_done(ctx, list, n);
}


/* every answer merged: most recently active first, then sent */

static void
ngx_chat_history_latest_done(ngx_chat_api_ctx_t *ctx, json_t *list, size_t n)
{
    size_t               i;
    json_t             **all;
    ngx_http_request_t  *r;

    r = ctx->r;

    if (list != NULL && n > 1) {

        /* most recently active first, with the new last messages */

        all = ngx_palloc(r->pool, n * sizeof(json_t *));
        if (all == NULL) {
            ngx_chat_api_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
            return;
        }

        for (i = 0; i < n; i++) {
            all[i] = json_incref(json_array_get(list, i));
        }

        json_array_clear(list);

        ngx_qsort(all, n, sizeof(json_t *), ngx_chat_history_activity_cmp);

        for (i = 0; i < n; i++) {
            if (json_array_append_new(list, all[i]) != 0) {
                while (++i < n) {
                    json_decref(all[i]);
                }

                ngx_chat_api_finish(ctx, NGX_HTTP_INTERNAL_SERVER_ERROR);
                return;
            }
        }
    }

    ngx_chat_api_finish(ctx, ngx_chat_history_latest_send(r, ctx));
}


/*
 * lastSeq and lastReadSeq: the higher of both; lastMessage: the newer;
 * unread follows, without the caller's own messages
 */
static void
ngx_chat_history_latest_merge(json_t *conv, redisReply *counter,
    redisReply *newest, redisReply *rd, redisReply *own)
{
    off_t         v;
    json_t       *m, *last;
    int64_t       seq, read;
    json_error_t  jerr;

    seq = json_integer_value(json_object_get(conv, "lastSeq"));

    if (counter->type == REDIS_REPLY_STRING && counter->len > 0) {
        v = ngx_atoof((u_char *) counter->str, counter->len);

        if (v > seq) {
            seq = v;
        }
    }

    last = json_object_get(conv, "lastMessage");

    if (newest->type == REDIS_REPLY_STRING && newest->len > 0) {
        m = json_loadb(newest->str, newest->len, 0, &jerr);

        if (m != NULL && ngx_chat_history_msg_seq(m) > 0) {
            if (!json_is_object(last)
                || ngx_chat_history_msg_seq(m) > ngx_chat_history_msg_seq(last))
            {
                (void) json_object_set(conv, "lastMessage", m);
            }

            seq = ngx_max(seq, ngx_chat_history_msg_seq(m));
        }

        if (m != NULL) {
            json_decref(m);
        }
    }

    read = json_integer_value(json_object_get(conv, "lastReadSeq"));

    if (rd->type == REDIS_REPLY_STRING && rd->len > 0
        && rd->len <= NGX_CHAT_HISTORY_SEQ_MAX_LEN)
    {
        v = ngx_atoof((u_char *) rd->str, rd->len);

        if (v > read) {
            read = v;
            (void) json_object_set_new(conv, "lastReadSeq",
                                       json_integer(read));
        }
    }

    (void) json_object_set_new(conv, "lastSeq", json_integer(seq));
    (void) json_object_set_new(conv, "unread",
        json_integer(ngx_max(seq - read
                             - ngx_chat_history_own(conv, own, read, seq),
                             0)));
}


/*
 * How many of the caller's own messages lie in (read, seq]: the union of
 * PostgreSQL's "ownSeqs" and the buffered ones from Redis, both newest
 * first, each seq counted once.
 */
static int64_t
ngx_chat_history_own(json_t *conv, redisReply *own, int64_t read,
    int64_t seq)
{
    off_t    v;
    json_t  *pg;
    size_t   i, j;
    int64_t  a, b, s, prev, count;

    pg = json_object_get(conv, "ownSeqs");

    if (own->type != REDIS_REPLY_ARRAY) {
        own = NULL;
    }

    i = 0;
    j = 0;
    prev = -1;
    count = 0;

    for ( ;; ) {
        a = (i < json_array_size(pg))
            ? (int64_t) json_integer_value(json_array_get(pg, i)) : -1;

        b = -1;

        if (own != NULL && j < own->elements) {
            if (own->element[j]->type != REDIS_REPLY_STRING
                || own->element[j]->len == 0
                || own->element[j]->len > NGX_CHAT_HISTORY_SEQ_MAX_LEN)
            {
                j++;
                continue;
            }

            v = ngx_atoof((u_char *) own->element[j]->str,
                          own->element[j]->len);
            b = (v == NGX_ERROR) ? 0 : (int64_t) v;
        }

        if (a <= read && b <= read) {
            break;
        }

        if (a >= b) {
            s = a;
            i++;

        } else {
            s = b;
            j++;
        }

        if (s != prev && s <= seq) {
            count++;
        }

        prev = s;
    }

    return count;
}


/*
 * The newest message's time, else the creation time: PostgreSQL's
 * "activityAt" (the list only), raised by a newer last message from Redis.
 * The times are all RFC 3339 UTC with milliseconds: they compare as strings.
 */
static const char *
ngx_chat_history_activity(json_t *conv)
{
    json_t      *m;
    const char  *t, *last;

    t = json_string_value(json_object_get(conv, "activityAt"));

    if (t == NULL) {
        t = json_string_value(json_object_get(conv, "createdAt"));
    }

    m = json_object_get(conv, "lastMessage");
    last = json_string_value(json_object_get(m, "createdAt"));

    if (t == NULL || (last != NULL && ngx_strcmp(last, t) > 0)) {
        t = last;
    }

    return t ? t : "";
}


/* most recently active first, as PostgreSQL orders them */
static int ngx_libc_cdecl
ngx_chat_history_activity_cmp(const void *a, const void *b)
{
    int          rc;
    json_t      *x, *y;
    const char  *tx, *ty;

    x = *(json_t **) a;
    y = *(json_t **) b;

    rc = ngx_strcmp(ngx_chat_history_activity(y), ngx_chat_history_activity(x));

    if (rc != 0) {
        return rc;
    }

    tx = json_string_value(json_object_get(x, "conversationId"));
    ty = json_string_value(json_object_get(y, "conversationId"));

    return ngx_strcmp(ty ? ty : "", tx ? tx : "");
}


/* the conversations without the field only the gateway needs */
static ngx_int_t
ngx_chat_history_latest_send(ngx_http_request_t *r, ngx_chat_api_ctx_t *ctx)
{
    size_t   i;
    json_t  *conv;

    json_array_foreach(json_object_get(ctx->pg_json, "conversations"), i,
                       conv)
    {
        (void) json_object_del(conv, "activityAt");
        (void) json_object_del(conv, "ownSeqs");
    }

    (void) json_object_del(ctx->pg_json, "ownSeqs");

    return ngx_chat_api_send_json(r, ctx->pg_json);
}
