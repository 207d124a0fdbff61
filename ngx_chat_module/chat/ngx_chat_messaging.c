/* ngx_chat_messaging.c: what sessions SEND to /app/...: per-conversation
 * seq, the membership cache and publishing through Redis Lua scripts, and
 * the durable copy in Kafka (the bodies: ngx_chat_messaging_body.c). */

#include "ngx_chat_messaging_int.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_kafka.h"
#include "ngx_chat_fanout.h"
#include "ngx_chat_receipts.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_keys.h"
#include "ngx_chat_lua.h"
#include "ngx_chat_sockjs.h"

#include <jansson.h>


#define NGX_CHAT_DEDUP_TTL       "86400"
#define NGX_CHAT_HISTORY_LEN     "200"      /* recent messages kept in Redis
                                               for read-your-writes */
#define NGX_CHAT_REBUILD_TRIES   3
#define NGX_CHAT_SEQ_JUMP        "1000000"  /* past any seq still in flight
                                               when Redis lost its data */
#define NGX_CHAT_NOT_FOUND_TTL   10000      /* ms a "no such conversation"
                                               is remembered */
#define NGX_CHAT_NOT_FOUND_MAX   4096       /* conversation ids remembered */


/*
 * A membership cache rebuild in flight: one per conversation in a worker.
 * The ops that miss the cache meanwhile, or start while it runs, wait for
 * it in arrival order (a session's SENDs keep their order) and then run
 * again, or all fail the way a single op would.
 */
typedef struct {
    ngx_str_node_t            sn;          /* the conversation id */
    ngx_pool_t               *pool;
    ngx_queue_t               waiters;     /* ngx_chat_send_t */
    ngx_chat_pg_req_t        *pg;
    ngx_chat_redis_req_t     *redis;
    ngx_str_t                 keys[3];     /* members, seq, gen */
    ngx_str_t                 gen;
} ngx_chat_rebuild_t;


static size_t ngx_chat_messaging_epoch_key(ngx_uint_t slot, u_char *buf);
static void ngx_chat_send_reply(redisReply *reply, void *data);
static ngx_chat_rebuild_t *ngx_chat_rebuild_find(ngx_str_t *conversation);
static void ngx_chat_rebuild_wait(ngx_chat_rebuild_t *rb,
    ngx_chat_send_t *op);
static void ngx_chat_send_rebuild(ngx_chat_send_t *op, redisReply *gen);
static void ngx_chat_send_rebuild_pg(PGresult *res, void *data);
static void ngx_chat_send_rebuild_reply(redisReply *reply, void *data);
static void ngx_chat_rebuild_done(ngx_chat_rebuild_t *rb, const char *code,
    const char *message);
static void ngx_chat_send_produce(ngx_chat_send_t *op, ngx_int_t code,
    redisReply *value);
static void ngx_chat_send_delivered(ngx_int_t rc, void *data);
static void ngx_chat_read_produce(ngx_chat_send_t *op, redisReply *value);
static void ngx_chat_messaging_accept(ngx_chat_send_t *op);
static void ngx_chat_messaging_accepted(PGresult *res, void *data);
static ngx_chat_send_t *ngx_chat_send_sibling(ngx_chat_send_t *op,
    ngx_uint_t earlier);
static void ngx_chat_send_accepted(ngx_chat_send_t *op);
static void ngx_chat_send_answer(ngx_chat_send_t *op);
static void ngx_chat_send_cancel(ngx_chat_op_t *op);
static ngx_int_t ngx_chat_messaging_send(ngx_chat_session_t *s,
    ngx_str_t *destination, u_char *body, size_t len, ngx_str_t *receipt);
static void ngx_chat_messaging_on_state(ngx_uint_t up);


static ngx_rbtree_t       ngx_chat_rebuilds;
static ngx_rbtree_node_t  ngx_chat_rebuilds_sentinel;


/*
 * Conversations PostgreSQL did not know, remembered for a while by the
 * worker: a flood of SENDs to a bad id costs one query, not one each.
 * Ids are made by the server at random, so no id is remembered before it
 * exists; one whose membership changes here is forgotten at once.
 */
typedef struct {
    ngx_str_node_t            sn;          /* the conversation id */
    ngx_queue_t               queue;       /* oldest first */
    ngx_msec_t                expires;
} ngx_chat_not_found_t;

static ngx_rbtree_t       ngx_chat_not_found;
static ngx_rbtree_node_t  ngx_chat_not_found_sentinel;
static ngx_queue_t        ngx_chat_not_found_queue;
static ngx_uint_t         ngx_chat_not_found_n;

static ngx_chat_not_found_t *ngx_chat_not_found_find(ngx_str_t *conv);
static void ngx_chat_not_found_add(ngx_str_t *conv);
static void ngx_chat_not_found_del(ngx_chat_not_found_t *nf);


/* where sessions SEND (in this order in the "unknown destination" error) */
static ngx_chat_dest_t  ngx_chat_messaging_dests[] = {
    { ngx_string("/app/chat.send"), 0, ngx_chat_messaging_send, NULL, NULL,
      NULL, 0, 0, 0 },
    { ngx_string("/app/chat.typing"), 0, ngx_chat_messaging_send, NULL, NULL,
      NULL, 0, 0, 0 },
    { ngx_string("/app/chat.read"), 0, ngx_chat_messaging_send, NULL, NULL,
      NULL, 0, 0, 0 },
    { ngx_string("/app/chat.edit"), 0, ngx_chat_messaging_send, NULL, NULL,
      NULL, 0, 0, 0 },
    { ngx_string("/app/chat.delete"), 0, ngx_chat_messaging_send, NULL, NULL,
      NULL, 0, 0, 0 },
    { ngx_string("/app/chat.react"), 0, ngx_chat_messaging_send, NULL, NULL,
      NULL, 0, 0, 0 }
};


/*
 * The scripts' membership check (member.lua), hit first: SISMEMBER alone
 * tells a member of a cached conversation; only a miss asks whether the
 * set is there at all. A cached conversation with no seq counter (Redis
 * lost it) is rebuilt too. {0, ""}: not a member; {4, ""}: a member of
 * a direct conversation with a block between its members (the cache holds
 * them as "!<user>": nothing is routed to them); {-1, generation}:
 * rebuild the cache. A member that has not accepted the conversation (a
 * request, sql/007_consent.sql) is there as "<user>" and "?<user>": acting
 * in it accepts it. Its first message removes the mark (PostgreSQL learns
 * it when the message is stored); its typing or a read that moves the
 * watermark removes it and answers {5, ""} or {6, seq}: the gateway then
 * tells PostgreSQL.
 */


/*
 * One script accepts a message: membership check, idempotency on the
 * client's id, the next seq, one publish to every worker that has members'
 * sessions (ngx_chat_fanout.h) and the recent-history buffer, all atomic,
 * so publish order is seq order on every worker. The history list is
 * trimmed at every 16th seq: it holds up to 15 more than its length.
 *
 * KEYS: members set, seq counter, membership generation, dedup key (the
 * members set again when there is none), history list; in a cluster also
 * the epoch of the slot and the counter's stamp (differing: {-1, gen}, a
 * rebuild re-bases the counter).
 * ARGV: sender, route ("<destination>\n<id>\n"), JSON head (ends with
 * "seq":), JSON tail, dedup ttl, history length, replyTo ("": none).
 * Returns {1, seq}, {2, "<seq> <json>"} (a retry of an accepted message),
 * {7, ""} (replyTo is not an earlier seq), {0, ""} (not a member) or
 * {-1, generation} (rebuild the cache first).
 */
static ngx_chat_redis_script_t  ngx_chat_send_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_MEMBER NGX_CHAT_LUA_MESSAGING_SEND,
    ""
};


/*
 * A change of a message (PROTOCOL.md section 10): checked against the
 * message's state (its buffered copy, else PostgreSQL's answer and the
 * buffered changes of it), then a seq, the publish and the event in the
 * buffer like a message, and the buffered copy of the message (and, for a
 * delete, of its edits) brought up to date in the same step.
 * KEYS: members set, seq counter, membership generation, history list,
 * changes list (the change events of the history list alone).
 * ARGV: user, route, JSON head, JSON tail, event type, target seq, and
 * PostgreSQL's state of the target: sender ("": unknown), deleted (1/0),
 * the user may delete any (1/0), the user has the reaction (1/0); then
 * the new content or the emoji, the time, history length.
 * Returns {1, seq}, {3, ""} (a reaction already so: nothing to do),
 * {7, ""} (the target is a change), {8, ""} (no such message, or deleted),
 * {9, ""} (not allowed), {0, ""} or {-1, generation} as above.
 */
static ngx_chat_redis_script_t  ngx_chat_change_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_MEMBER NGX_CHAT_LUA_MESSAGING_CHANGE,
    ""
};




/*
 * Relays a typing event to the other members, at most once per interval
 * for one user in one conversation (across all servers).
 * KEYS: members set, seq counter, membership generation, limiter key.
 * ARGV: sender, payload, interval (ms). Returns {1, ""}, {0, ""} or
 * {-1, generation} as above.
 */
static ngx_chat_redis_script_t  ngx_chat_relay_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_MEMBER NGX_CHAT_LUA_MESSAGING_RELAY,
    ""
};


/*
 * A read watermark: it only moves forward and never past the last seq;
 * a move is relayed to the other members.
 * Reading implies having received: the delivered watermark follows.
 * KEYS: members set, seq counter, generation, reads hash, delivered hash.
 * ARGV: reader,
 * seq, payload head (ends with "seq":), payload tail. Returns {1, seq}
 * (moved there), {3, seq} (it already was there), {0, ""} or
 * {-1, generation} as above.
 */
static ngx_chat_redis_script_t  ngx_chat_read_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_MEMBER NGX_CHAT_LUA_MESSAGING_READ,
    ""
};


/*
 * Fills the membership cache from PostgreSQL's answer, unless the
 * membership changed since the miss (the generation moved on), and makes
 * sure the seq counter is above every seq ever handed out.
 *
 * A missing counter of a conversation that existed before Redis's data
 * began (the epoch key, set when a gateway first reaches this Redis) means
 * Redis lost it: messages accepted since the last one PostgreSQL holds may
 * still be on their way to it, so the counter jumps forward once, past any
 * of them (PROTOCOL.md section 6).
 *
 * KEYS: members set, seq counter, generation, epoch (in a cluster: of the
 * conversation's slot, and then the counter's stamp). ARGV: generation,
 * seq floor (PostgreSQL), conversation creation (ms), jump, members...
 * The "" member marks a conversation that has no members.
 *
 * In a cluster a counter whose stamp is not the slot's epoch was written
 * before a failover (ngx_chat_redis_cluster.c moves the epoch of the slots
 * of a promoted replica): the replica may have missed its last increments,
 * so it jumps forward once too, and takes the epoch as its stamp.
 */
static ngx_chat_redis_script_t  ngx_chat_rebuild_script = {
    NGX_CHAT_LUA_MESSAGING_REBUILD,
    ""
};


/* KEYS: members set, generation */
static ngx_chat_redis_script_t  ngx_chat_invalidate_script = {
    NGX_CHAT_LUA_MESSAGING_INVALIDATE,
    ""
};


static const char  ngx_chat_rebuild_sql[] =
    "SELECT greatest(c.last_seq, coalesce((SELECT max(m.seq) FROM messages m"
    " WHERE m.conversation_id = c.id), 0)),"
    " array_to_string(array(SELECT CASE WHEN chat_conversation_blocked(c.id)"
    " THEN '!' ELSE '' END || cm.user_id FROM conversation_members cm"
    " WHERE cm.conversation_id = c.id"
    " UNION ALL SELECT '?' || cm.user_id FROM conversation_members cm"
    " WHERE cm.conversation_id = c.id AND cm.state = 'request'), ','),"
    " (extract(epoch FROM c.created_at) * 1000)::bigint"
    " FROM conversations c WHERE c.id = $1";


/* a member's typing or read accepts its request (sql/007_consent.sql) */
static const char  ngx_chat_accept_sql[] =
    "SELECT chat_accept_by_activity($1, $2)";


ngx_int_t
ngx_chat_messaging_init_process(ngx_cycle_t *cycle)
{
    ngx_uint_t  i;

    if (ngx_worker > 31) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "chat: at most 32 worker processes are supported");
        return NGX_ERROR;
    }

    if (ngx_chat_fanout_init() != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_rbtree_init(&ngx_chat_rebuilds, &ngx_chat_rebuilds_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_rbtree_init(&ngx_chat_not_found, &ngx_chat_not_found_sentinel,
                    ngx_str_rbtree_insert_value);
    ngx_queue_init(&ngx_chat_not_found_queue);
    ngx_chat_not_found_n = 0;

    if (ngx_chat_fanout_script(&ngx_chat_send_script) != NGX_OK
        || ngx_chat_fanout_script(&ngx_chat_relay_script) != NGX_OK
        || ngx_chat_fanout_script(&ngx_chat_read_script) != NGX_OK
        || ngx_chat_fanout_script(&ngx_chat_change_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_rebuild_script) != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_invalidate_script) != NGX_OK)
    {
        return NGX_ERROR;
    }

    for (i = 0; i < sizeof(ngx_chat_messaging_dests)
                    / sizeof(ngx_chat_dest_t); i++)
    {
        if (ngx_chat_session_add_dest(&ngx_chat_messaging_dests[i])
            == NGX_ERROR)
        {
            return NGX_ERROR;
        }
    }

    ngx_chat_redis_set_handlers(ngx_chat_fanout_on_message,
                                ngx_chat_messaging_on_state);

    if (ngx_chat_sockjs_relay_init() != NGX_OK) {
        return NGX_ERROR;
    }

    return ngx_chat_fanout_start();
}


/*
 * The command link is up: this worker's users go back on their routes
 * (Redis may have restarted empty), and the time this Redis's data began is
 * marked if nobody did yet: counters of conversations older than that were
 * lost (see the rebuild script).
 */

static void
ngx_chat_messaging_on_state(ngx_uint_t up)
{
    u_char       *p;
    ngx_uint_t    slot;
    const char   *argv[4];
    size_t        argvlen[4];
    u_char        ms[NGX_INT64_LEN];
    u_char        key[sizeof(NGX_CHAT_KEY_EPOCH_SLOT) + NGX_INT_T_LEN];

    if (!up) {
        return;
    }

    ngx_chat_fanout_reroute();

    p = ngx_sprintf(ms, "%uL", ngx_chat_now_ms());

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = NGX_CHAT_KEY_EPOCH;
    argvlen[1] = sizeof(NGX_CHAT_KEY_EPOCH) - 1;
    argv[2] = (char *) ms;
    argvlen[2] = p - ms;
    argv[3] = "NX";
    argvlen[3] = 2;

    if (!ngx_chat_redis_is_cluster()) {
        (void) ngx_chat_redis_command(ngx_chat_redis_log_reply, NULL, 4,
                                      argv, argvlen);
        return;
    }

    /* a cluster: an epoch per slot, so a node that comes back empty is seen
     * by the slots it serves (16,384 SET NX, pipelined per node) */

    argv[1] = (char *) key;

    for (slot = 0; slot < NGX_CHAT_REDIS_SLOT_COUNT; slot++) {
        argvlen[1] = ngx_chat_messaging_epoch_key(slot, key);

        (void) ngx_chat_redis_command(ngx_chat_redis_log_reply, NULL, 4,
                                      argv, argvlen);
    }
}


/* "chat:epoch:{<tag>}" of a slot: buf has room for
 * sizeof(NGX_CHAT_KEY_EPOCH_SLOT) + NGX_INT_T_LEN */

static size_t
ngx_chat_messaging_epoch_key(ngx_uint_t slot, u_char *buf)
{
    u_char  *p;

    p = ngx_cpymem(buf, NGX_CHAT_KEY_EPOCH_SLOT,
                   sizeof(NGX_CHAT_KEY_EPOCH_SLOT) - 1);
    p += ngx_chat_redis_slot_tag(slot, p);
    p = ngx_cpymem(p, NGX_CHAT_TAG_CLOSE, sizeof(NGX_CHAT_TAG_CLOSE) - 1);

    return p - buf;
}


void
ngx_chat_messaging_membership_changed(ngx_str_t *conversation_id)
{
    const char            *argv[4];
    size_t                 argvlen[4];
    ngx_chat_not_found_t  *nf;
    u_char                 members[NGX_CHAT_CONV_ID_MAX + 16];
    u_char                 gen[NGX_CHAT_CONV_ID_MAX + 16];

    if (conversation_id->len > NGX_CHAT_CONV_ID_MAX) {
        return;
    }

    nf = ngx_chat_not_found_find(conversation_id);
    if (nf) {
        ngx_chat_not_found_del(nf);
    }

    argv[0] = (char *) members;
    argvlen[0] = ngx_sprintf(members,
                             NGX_CHAT_KEY_MEMBERS "%V" NGX_CHAT_TAG_CLOSE,
                             conversation_id)
                 - members;
    argv[1] = (char *) gen;
    argvlen[1] = ngx_sprintf(gen, NGX_CHAT_KEY_GEN "%V" NGX_CHAT_TAG_CLOSE,
                             conversation_id)
                 - gen;

    if (ngx_chat_redis_eval(&ngx_chat_invalidate_script,
                            ngx_chat_redis_log_reply, NULL, 2, 2, argv, argvlen)
        == NULL)
    {
        /*
         * Redis is down: the cache cannot be reached by anybody either;
         * entries expire within a day at the latest
         */
        ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                      "chat: membership cache of \"%V\" not invalidated, "
                      "Redis is unavailable", conversation_id);
    }
}


/* SEND to /app/...: the destinations, indexed by NGX_CHAT_OP_* */

static ngx_str_t  ngx_chat_send_kinds[] = {
    ngx_string("/app/chat.send"),
    ngx_string("/app/chat.typing"),
    ngx_string("/app/chat.read"),
    ngx_string("/app/chat.edit"),
    ngx_string("/app/chat.delete"),
    ngx_string("/app/chat.react"),
    ngx_null_string
};


static ngx_int_t
ngx_chat_messaging_send(ngx_chat_session_t *s, ngx_str_t *destination,
    u_char *body, size_t len, ngx_str_t *receipt)
{
    ngx_int_t         rc;
    ngx_uint_t        kind;
    ngx_pool_t       *pool;
    ngx_chat_send_t  *op, *prev;

    for (kind = 0; ngx_chat_send_kinds[kind].len; kind++) {
        if (destination->len == ngx_chat_send_kinds[kind].len
            && ngx_strncmp(destination->data, ngx_chat_send_kinds[kind].data,
                           destination->len) == 0)
        {
            break;
        }
    }

    if (ngx_chat_send_kinds[kind].len == 0) {
        return NGX_DECLINED;
    }

    /*
     * chat_send_rate: refused before it is an op, like the in-flight cap;
     * a change takes a seq like a message and counts like one
     */

    if ((kind == NGX_CHAT_OP_SEND || kind >= NGX_CHAT_OP_EDIT)
        && ngx_chat_fanout_send_rate(s) != NGX_OK)
    {
        ngx_chat_session_reject(s, "rate_limited",
                                "too many messages, slow down "
                                "(chat_send_rate)", NULL, receipt);
        return NGX_OK;
    }

    pool = ngx_create_pool(1024, s->log);
    if (pool == NULL) {
        return NGX_ERROR;
    }

    op = ngx_pcalloc(pool, sizeof(ngx_chat_send_t));
    if (op == NULL) {
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    op->pool = pool;
    op->kind = kind;
    op->started = ngx_chat_metric_now_us();

    if (receipt->len) {
        op->receipt.data = ngx_pstrdup(pool, receipt);
        if (op->receipt.data == NULL) {
            ngx_destroy_pool(pool);
            return NGX_ERROR;
        }

        op->receipt.len = receipt->len;
    }

    ngx_chat_session_op_start(s, &op->op, ngx_chat_send_cancel);

    if (kind == NGX_CHAT_OP_SEND) {
        rc = ngx_chat_send_prepare(s, op, body, len);

    } else if (kind == NGX_CHAT_OP_TYPING) {
        rc = ngx_chat_typing_prepare(s, op, body, len);

    } else if (kind >= NGX_CHAT_OP_EDIT) {
        rc = ngx_chat_change_prepare(s, op, body, len);

    } else {
        rc = ngx_chat_read_prepare(s, op, body, len);
    }

    if (rc == NGX_ERROR) {
        ngx_chat_session_op_done(s, &op->op);
        ngx_destroy_pool(pool);
        return NGX_ERROR;
    }

    if (rc == NGX_DECLINED) {
        /* rejected; the rejection was sent */
        ngx_chat_session_op_done(s, &op->op);
        ngx_destroy_pool(pool);
        return NGX_OK;
    }

    /*
     * one op of a session per conversation in the Redis stage at a time:
     * a later op started at once could overtake this one (a cache rebuild,
     * a NOSCRIPT retry, another worker filling the cache in between)
     */

    prev = ngx_chat_send_sibling(op, 1);

    if (prev && prev->stage <= NGX_CHAT_STAGE_REDIS) {
        op->stage = NGX_CHAT_STAGE_QUEUED;
        return NGX_OK;
    }

    op->stage = NGX_CHAT_STAGE_REDIS;
    ngx_chat_send_run(op);

    return NGX_OK;
}


/*
 * The nearest op of the same session on the same conversation before
 * (earlier) or after op, among those not answered yet; NULL if none.
 */

static ngx_chat_send_t *
ngx_chat_send_sibling(ngx_chat_send_t *op, ngx_uint_t earlier)
{
    ngx_queue_t         *q, *end;
    ngx_chat_op_t       *o;
    ngx_chat_send_t     *sib;
    ngx_chat_session_t  *s;

    s = op->op.session;
    end = ngx_queue_sentinel(&s->ops);

    for (q = earlier ? ngx_queue_prev(&op->op.link)
                     : ngx_queue_next(&op->op.link);
         q != end;
         q = earlier ? ngx_queue_prev(q) : ngx_queue_next(q))
    {
        o = ngx_queue_data(q, ngx_chat_op_t, link);

        if (o->cancel != ngx_chat_send_cancel) {
            continue;
        }

        sib = (ngx_chat_send_t *) o;

        if (sib->conversation.len == op->conversation.len
            && ngx_strncmp(sib->conversation.data, op->conversation.data,
                           op->conversation.len)
               == 0)
        {
            return sib;
        }
    }

    return NULL;
}


void
ngx_chat_send_run(ngx_chat_send_t *op)
{
    u_char                   *p;
    size_t                    n;
    ngx_str_t                *user;
    ngx_uint_t                i, nkeys, argc;
    const char               *argv[24];
    size_t                    argvlen[24];
    ngx_chat_rebuild_t       *rb;
    ngx_chat_redis_script_t  *script;
    u_char                    interval[NGX_INT64_LEN];
    u_char                    epoch[sizeof(NGX_CHAT_KEY_EPOCH_SLOT)
                                    + NGX_INT_T_LEN];
    u_char                    stamp[sizeof(NGX_CHAT_KEY_STAMP)
                                    + NGX_CHAT_CONV_ID_MAX + 1];

    /* the cache is being rebuilt: after the ops that wait for it already */

    rb = ngx_chat_rebuild_find(&op->conversation);
    if (rb) {
        ngx_chat_rebuild_wait(rb, op);
        return;
    }

    if (ngx_chat_not_found_find(&op->conversation) != NULL) {
        ngx_chat_send_finish(op, "not_found", "no such conversation");
        return;
    }

    /* a change: PostgreSQL's state of its target first, once */

    if (op->kind >= NGX_CHAT_OP_EDIT && !op->checked) {
        if (ngx_chat_change_check(op) != NGX_OK) {
            ngx_chat_send_finish(op, "unavailable",
                                 "the database is unavailable, try again");
        }

        return;
    }

    user = &op->op.session->id.user;

    /*
     * KEYS: members, seq, generation, then per kind: SEND dedup and
     * history, READ reads and delivered, TYPING the limiter, a change
     * the history and the changes list
     */

    nkeys = (op->kind == NGX_CHAT_OP_TYPING) ? 4 : 5;

    if (op->keys[0].len == 0) {
        n = 5 * (sizeof(NGX_CHAT_KEY_DELIVERED) + NGX_CHAT_CONV_ID_MAX)
            + NGX_CHAT_USER_ID_MAX + NGX_CHAT_CLIENT_ID_MAX + 2;

        p = ngx_pnalloc(op->pool, n);
        if (p == NULL) {
            ngx_chat_send_finish(op, "unavailable", "out of memory");
            return;
        }

        for (i = 0; i < nkeys; i++) {
            op->keys[i].data = p;

            switch (i) {
            case 0:
                p = ngx_sprintf(p, NGX_CHAT_KEY_MEMBERS "%V"
                                NGX_CHAT_TAG_CLOSE, &op->conversation);
                break;

            case 1:
                p = ngx_sprintf(p, NGX_CHAT_KEY_SEQ "%V" NGX_CHAT_TAG_CLOSE,
                                &op->conversation);
                break;

            case 2:
                p = ngx_sprintf(p, NGX_CHAT_KEY_GEN "%V" NGX_CHAT_TAG_CLOSE,
                                &op->conversation);
                break;

            case 3:
                if (op->kind >= NGX_CHAT_OP_EDIT) {
                    p = ngx_sprintf(p, NGX_CHAT_KEY_HISTORY "%V"
                                    NGX_CHAT_TAG_CLOSE, &op->conversation);

                } else if (op->kind == NGX_CHAT_OP_READ) {
                    p = ngx_sprintf(p, NGX_CHAT_KEY_READ "%V"
                                    NGX_CHAT_TAG_CLOSE, &op->conversation);

                } else if (op->kind == NGX_CHAT_OP_TYPING) {
                    p = ngx_sprintf(p, NGX_CHAT_KEY_TYPING "%V"
                                    NGX_CHAT_TAG_CLOSE ":%V",
                                    &op->conversation, user);

                } else if (op->client_msg_id.len) {
                    p = ngx_sprintf(p, NGX_CHAT_KEY_DEDUP "%V"
                                    NGX_CHAT_TAG_CLOSE ":%V:%V",
                                    &op->conversation, user,
                                    &op->client_msg_id);

                } else {
                    /* no dedup key: the members key again (the slot of
                     * the others, for a cluster; the script knows it) */
                    p = ngx_sprintf(p, NGX_CHAT_KEY_MEMBERS "%V"
                                    NGX_CHAT_TAG_CLOSE, &op->conversation);
                }

                break;

            default:
                p = ngx_sprintf(p, "%s%V" NGX_CHAT_TAG_CLOSE,
                                op->kind == NGX_CHAT_OP_READ
                                ? NGX_CHAT_KEY_DELIVERED
                                : op->kind >= NGX_CHAT_OP_EDIT
                                ? NGX_CHAT_KEY_CHANGES : NGX_CHAT_KEY_HISTORY,
                                &op->conversation);
            }

            op->keys[i].len = p - op->keys[i].data;
        }
    }

    for (i = 0; i < nkeys; i++) {
        argv[i] = (char *) op->keys[i].data;
        argvlen[i] = op->keys[i].len;
    }

    if ((op->kind == NGX_CHAT_OP_SEND || op->kind >= NGX_CHAT_OP_EDIT)
        && ngx_chat_redis_is_cluster())
    {
        /* KEYS 6, 7: the slot's epoch and the counter's stamp (the epoch
         * it was last re-based in): differing, a failover happened since */

        argv[nkeys] = (char *) epoch;
        argvlen[nkeys++] = ngx_chat_messaging_epoch_key(
                               ngx_chat_redis_key_slot_of(op->keys[1].data,
                                                          op->keys[1].len),
                               epoch);
        argv[nkeys] = (char *) stamp;
        argvlen[nkeys++] = ngx_sprintf(stamp, NGX_CHAT_KEY_STAMP "%V"
                                       NGX_CHAT_TAG_CLOSE, &op->conversation)
                           - stamp;
    }

    argc = nkeys;
    argv[argc] = (char *) user->data;
    argvlen[argc++] = user->len;

    switch (op->kind) {

    case NGX_CHAT_OP_SEND:
        script = &ngx_chat_send_script;
        argv[argc] = (char *) op->route.data;
        argvlen[argc++] = op->route.len;
        argv[argc] = (char *) op->head.data;
        argvlen[argc++] = op->head.len;
        argv[argc] = (char *) op->tail.data;
        argvlen[argc++] = op->tail.len;
        argv[argc] = NGX_CHAT_DEDUP_TTL;
        argvlen[argc++] = sizeof(NGX_CHAT_DEDUP_TTL) - 1;
        argv[argc] = NGX_CHAT_HISTORY_LEN;
        argvlen[argc++] = sizeof(NGX_CHAT_HISTORY_LEN) - 1;
        argv[argc] = (char *) op->reply_to.data;
        argvlen[argc++] = op->reply_to.len;
        break;

    case NGX_CHAT_OP_EDIT:
    case NGX_CHAT_OP_DELETE:
    case NGX_CHAT_OP_REACT:
        script = &ngx_chat_change_script;
        argv[argc] = (char *) op->route.data;
        argvlen[argc++] = op->route.len;
        argv[argc] = (char *) op->head.data;
        argvlen[argc++] = op->head.len;
        argv[argc] = (char *) op->tail.data;
        argvlen[argc++] = op->tail.len;
        argv[argc] = op->kind == NGX_CHAT_OP_EDIT ? "message.edited"
                     : op->kind == NGX_CHAT_OP_DELETE ? "message.deleted"
                     : op->remove ? "reaction.removed" : "reaction.added";
        argvlen[argc] = ngx_strlen(argv[argc]);
        argc++;
        argv[argc] = (char *) op->target.data;
        argvlen[argc++] = op->target.len;
        argv[argc] = (char *) op->sender.data;
        argvlen[argc++] = op->sender.len;
        argv[argc] = op->state[1] ? "1" : "0";
        argvlen[argc++] = 1;
        argv[argc] = op->state[2] ? "1" : "0";
        argvlen[argc++] = 1;
        argv[argc] = op->state[3] ? "1" : "0";
        argvlen[argc++] = 1;
        argv[argc] = (char *) op->value.data;
        argvlen[argc++] = op->value.len;
        argv[argc] = (char *) op->at.data;
        argvlen[argc++] = op->at.len;
        argv[argc] = NGX_CHAT_HISTORY_LEN;
        argvlen[argc++] = sizeof(NGX_CHAT_HISTORY_LEN) - 1;
        break;

    case NGX_CHAT_OP_READ:
        script = &ngx_chat_read_script;
        argv[argc] = (char *) op->seq.data;
        argvlen[argc++] = op->seq.len;
        argv[argc] = (char *) op->head.data;
        argvlen[argc++] = op->head.len;
        argv[argc] = (char *) op->tail.data;
        argvlen[argc++] = op->tail.len;
        break;

    default: /* NGX_CHAT_OP_TYPING */
        script = &ngx_chat_relay_script;
        argv[argc] = (char *) op->head.data;
        argvlen[argc++] = op->head.len;
        argv[argc] = (char *) interval;
        argvlen[argc++] = ngx_sprintf(interval, "%M",
                                      op->op.session->lcf->typing_interval)
                          - interval;
        break;
    }

    op->redis = ngx_chat_redis_eval(script, ngx_chat_send_reply, op,
                                    (int) nkeys, (int) argc, argv, argvlen);

    if (op->redis == NULL) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message store is unavailable, "
                             "try again");
    }
}


static void
ngx_chat_send_reply(redisReply *reply, void *data)
{
    ngx_chat_send_t  *op = data;

    ngx_int_t     code;
    redisReply   *value;

    op->redis = NULL;

    if (reply == NULL) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message store is unavailable, try again");
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_INTEGER
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_log_error(NGX_LOG_ERR, op->op.session->log, 0,
                      "chat: unexpected reply from Redis (type %d%s%s)",
                      reply->type,
                      reply->type == REDIS_REPLY_ERROR ? ": " : "",
                      reply->type == REDIS_REPLY_ERROR ? reply->str : "");
        ngx_chat_send_finish(op, "unavailable",
                             "the message store failed, try again");
        return;
    }

    code = (ngx_int_t) reply->element[0]->integer;
    value = reply->element[1];

    switch (code) {

    case 1:
    case 2:
        if (op->kind == NGX_CHAT_OP_SEND) {
            ngx_chat_metric_observe(NGX_CHAT_H_SEND, NGX_CHAT_G_MAX,
                                    ngx_chat_metric_now_us() - op->started);
        }

        if ((op->kind == NGX_CHAT_OP_SEND || op->kind >= NGX_CHAT_OP_EDIT)
            && ngx_chat_kafka_enabled())
        {
            ngx_chat_send_accepted(op);
            ngx_chat_send_produce(op, code, value);
            return;
        }

        if (op->kind == NGX_CHAT_OP_READ && code == 1) {
            ngx_chat_read_produce(op, value);
        }

        ngx_chat_send_finish(op, NULL, NULL);
        return;

    case 3:
        ngx_chat_send_finish(op, NULL, NULL);
        return;

    case 5:
    case 6:
        ngx_chat_messaging_accept(op);

        if (code == 6) {
            ngx_chat_read_produce(op, value);
        }

        ngx_chat_send_finish(op, NULL, NULL);
        return;

    /* the lifecycle scripts (PROTOCOL.md section 10) */

    case 7:
        ngx_chat_send_finish(op, "bad_request",
                             op->kind == NGX_CHAT_OP_SEND
                             ? "replyTo must be the seq of an earlier "
                               "message of this conversation"
                             : "the target is not a message "
                               "(a change cannot be changed)");
        return;

    case 8:
        ngx_chat_send_finish(op, "not_found",
                             "no such message in this conversation, "
                             "or it was deleted");
        return;

    case 9:
        ngx_chat_send_finish(op, "forbidden",
                             op->kind == NGX_CHAT_OP_EDIT
                             ? "only its sender may edit a message"
                             : "only its sender, or the group's creator, "
                               "may delete a message");
        return;

    case 0:
        ngx_chat_send_finish(op, "not_member",
                             "you are not a member of this conversation");
        return;

    case 4:
        ngx_chat_send_finish(op, "blocked",
                             "a block stands between the members of this "
                             "direct conversation: nothing can be sent "
                             "in it");
        return;

    default:
        if (++op->tries > NGX_CHAT_REBUILD_TRIES) {
            ngx_chat_send_finish(op, "unavailable",
                                 "the membership of this conversation "
                                 "keeps changing, try again");
            return;
        }

        ngx_chat_send_rebuild(op, value);
        return;
    }
}


/* typing or reading in a request accepted it: PostgreSQL is told */

static void
ngx_chat_messaging_accept(ngx_chat_send_t *op)
{
    int          lengths[2];
    const char  *values[2];

    values[0] = (char *) op->conversation.data;
    lengths[0] = (int) op->conversation.len;
    values[1] = (char *) op->op.session->id.user.data;
    lengths[1] = (int) op->op.session->id.user.len;

    if (ngx_chat_pg_query(ngx_chat_accept_sql, 2, values, lengths,
                          ngx_chat_messaging_accepted, NULL)
        == NULL)
    {
        ngx_log_error(NGX_LOG_ERR, op->op.session->log, 0,
                      "chat: cannot record the acceptance of \"%V\"",
                      &op->conversation);
    }
}


static void
ngx_chat_messaging_accepted(PGresult *res, void *data)
{
    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: recording an acceptance failed: %s",
                      res ? PQresultErrorMessage(res) : "no database");
    }
}


static ngx_chat_rebuild_t *
ngx_chat_rebuild_find(ngx_str_t *conversation)
{
    uint32_t         hash;
    ngx_str_node_t  *sn;

    if (ngx_chat_rebuilds.root == ngx_chat_rebuilds.sentinel) {
        return NULL;
    }

    hash = ngx_crc32_short(conversation->data, conversation->len);

    sn = ngx_str_rbtree_lookup(&ngx_chat_rebuilds, conversation, hash);

    return (ngx_chat_rebuild_t *) sn;
}


/* a remembered "no such conversation" that has not expired; NULL if none */

static ngx_chat_not_found_t *
ngx_chat_not_found_find(ngx_str_t *conv)
{
    ngx_chat_not_found_t  *nf;

    if (ngx_chat_not_found.root == ngx_chat_not_found.sentinel) {
        return NULL;
    }

    nf = (ngx_chat_not_found_t *) ngx_str_rbtree_lookup(&ngx_chat_not_found,
                                      conv, ngx_crc32_short(conv->data,
                                                            conv->len));
    if (nf == NULL) {
        return NULL;
    }

    if ((ngx_msec_int_t) (nf->expires - ngx_current_msec) <= 0) {
        ngx_chat_not_found_del(nf);
        return NULL;
    }

    return nf;
}


/* remembers conv; the expired ones and, when full, the oldest go */

static void
ngx_chat_not_found_add(ngx_str_t *conv)
{
    ngx_queue_t           *q;
    ngx_chat_not_found_t  *nf;

    if (ngx_chat_not_found_find(conv) != NULL) {
        return;
    }

    while (!ngx_queue_empty(&ngx_chat_not_found_queue)) {
        q = ngx_queue_head(&ngx_chat_not_found_queue);
        nf = ngx_queue_data(q, ngx_chat_not_found_t, queue);

        if (ngx_chat_not_found_n < NGX_CHAT_NOT_FOUND_MAX
            && (ngx_msec_int_t) (nf->expires - ngx_current_msec) > 0)
        {
            break;
        }

        ngx_chat_not_found_del(nf);
    }

    /* not remembered when out of memory: the next SEND asks again */

    nf = ngx_alloc(sizeof(ngx_chat_not_found_t) + conv->len, ngx_cycle->log);
    if (nf == NULL) {
        return;
    }

    nf->sn.str.data = (u_char *) (nf + 1);
    nf->sn.str.len = conv->len;
    ngx_memcpy(nf->sn.str.data, conv->data, conv->len);
    nf->sn.node.key = ngx_crc32_short(conv->data, conv->len);
    nf->expires = ngx_current_msec + NGX_CHAT_NOT_FOUND_TTL;

    ngx_rbtree_insert(&ngx_chat_not_found, &nf->sn.node);
    ngx_queue_insert_tail(&ngx_chat_not_found_queue, &nf->queue);
    ngx_chat_not_found_n++;
}


static void
ngx_chat_not_found_del(ngx_chat_not_found_t *nf)
{
    ngx_rbtree_delete(&ngx_chat_not_found, &nf->sn.node);
    ngx_queue_remove(&nf->queue);
    ngx_chat_not_found_n--;
    ngx_free(nf);
}


static void
ngx_chat_rebuild_wait(ngx_chat_rebuild_t *rb, ngx_chat_send_t *op)
{
    ngx_queue_insert_tail(&rb->waiters, &op->wait);
    op->waiting = 1;
}


/*
 * The membership cache missed: ask PostgreSQL, once for all the ops of
 * this worker that miss it until the answer is in Redis.
 */

static void
ngx_chat_send_rebuild(ngx_chat_send_t *op, redisReply *gen)
{
    u_char              *p;
    size_t               n;
    ngx_uint_t           i;
    ngx_pool_t          *pool;
    const char          *values[1];
    int                  lengths[1];
    ngx_chat_rebuild_t  *rb;

    rb = ngx_chat_rebuild_find(&op->conversation);
    if (rb) {
        ngx_chat_rebuild_wait(rb, op);
        return;
    }

    pool = ngx_create_pool(512, ngx_cycle->log);
    if (pool == NULL) {
        ngx_chat_send_finish(op, "unavailable", "out of memory");
        return;
    }

    rb = ngx_pcalloc(pool, sizeof(ngx_chat_rebuild_t));
    if (rb == NULL) {
        goto failed;
    }

    n = op->conversation.len + gen->len;
    for (i = 0; i < 3; i++) {
        n += op->keys[i].len;
    }

    p = ngx_pnalloc(pool, n);
    if (p == NULL) {
        goto failed;
    }

    rb->pool = pool;
    ngx_queue_init(&rb->waiters);

    rb->sn.str.data = p;
    rb->sn.str.len = op->conversation.len;
    p = ngx_cpymem(p, op->conversation.data, op->conversation.len);

    for (i = 0; i < 3; i++) {
        rb->keys[i].data = p;
        rb->keys[i].len = op->keys[i].len;
        p = ngx_cpymem(p, op->keys[i].data, op->keys[i].len);
    }

    rb->gen.data = p;
    rb->gen.len = gen->len;
    ngx_memcpy(p, gen->str, gen->len);

    values[0] = (char *) rb->sn.str.data;
    lengths[0] = (int) rb->sn.str.len;

    rb->pg = ngx_chat_pg_query(ngx_chat_rebuild_sql, 1, values, lengths,
                               ngx_chat_send_rebuild_pg, rb);
    if (rb->pg == NULL) {
        goto failed;
    }

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                   "chat: membership rebuild of \"%V\"", &rb->sn.str);

    rb->sn.node.key = ngx_crc32_short(rb->sn.str.data, rb->sn.str.len);
    ngx_rbtree_insert(&ngx_chat_rebuilds, &rb->sn.node);

    ngx_chat_rebuild_wait(rb, op);

    return;

failed:

    ngx_destroy_pool(pool);
    ngx_chat_send_finish(op, "unavailable", "out of memory");
}


static void
ngx_chat_send_rebuild_pg(PGresult *res, void *data)
{
    ngx_chat_rebuild_t  *rb = data;

    u_char                *p, *end, *comma;
    char                  *floor, *members, *created;
    size_t                 n;
    ngx_uint_t             argc, nkeys;
    const char           **v;
    size_t                *vl;

    rb->pg = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "chat: membership query failed: %s",
                          PQresultErrorMessage(res));
        }

        ngx_chat_rebuild_done(rb, "unavailable",
                              "the database is unavailable, try again");
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_chat_not_found_add(&rb->sn.str);
        ngx_chat_rebuild_done(rb, "not_found", "no such conversation");
        return;
    }

    floor = PQgetvalue(res, 0, 0);
    members = PQgetvalue(res, 0, 1);
    created = PQgetvalue(res, 0, 2);

    n = 9 + ngx_strlen(members) / 2 + 1;

    v = ngx_palloc(rb->pool, n * sizeof(char *));
    vl = ngx_palloc(rb->pool, n * sizeof(size_t));

    if (v == NULL || vl == NULL) {
        ngx_chat_rebuild_done(rb, "unavailable", "out of memory");
        return;
    }

    v[0] = (char *) rb->keys[0].data;
    vl[0] = rb->keys[0].len;
    v[1] = (char *) rb->keys[1].data;
    vl[1] = rb->keys[1].len;
    v[2] = (char *) rb->keys[2].data;
    vl[2] = rb->keys[2].len;
    v[3] = NGX_CHAT_KEY_EPOCH;
    vl[3] = sizeof(NGX_CHAT_KEY_EPOCH) - 1;
    nkeys = 4;

    if (ngx_chat_redis_is_cluster()) {
        /* the epoch of the conversation's slot, and the counter's stamp */

        p = ngx_pnalloc(rb->pool, sizeof(NGX_CHAT_KEY_EPOCH_SLOT)
                                  + NGX_INT_T_LEN + sizeof(NGX_CHAT_KEY_STAMP)
                                  + rb->sn.str.len + 1);
        if (p == NULL) {
            ngx_chat_rebuild_done(rb, "unavailable", "out of memory");
            return;
        }

        v[3] = (char *) p;
        vl[3] = ngx_chat_messaging_epoch_key(
                    ngx_chat_redis_key_slot_of(rb->keys[0].data,
                                               rb->keys[0].len),
                    p);
        p += vl[3];

        v[4] = (char *) p;
        vl[4] = ngx_sprintf(p, NGX_CHAT_KEY_STAMP "%V" NGX_CHAT_TAG_CLOSE,
                            &rb->sn.str)
                - p;
        nkeys = 5;
    }

    argc = nkeys;
    v[argc] = (char *) rb->gen.data;
    vl[argc++] = rb->gen.len;
    v[argc] = floor;
    vl[argc++] = ngx_strlen(floor);
    v[argc] = created;
    vl[argc++] = ngx_strlen(created);
    v[argc] = NGX_CHAT_SEQ_JUMP;
    vl[argc++] = sizeof(NGX_CHAT_SEQ_JUMP) - 1;

    p = (u_char *) members;
    end = p + ngx_strlen(members);

    while (p < end && argc < n) {
        comma = ngx_strlchr(p, end, ',');
        if (comma == NULL) {
            comma = end;
        }

        v[argc] = (char *) p;
        vl[argc] = comma - p;
        argc++;

        p = comma + 1;
    }

    /* the values point into res, which the script call copies */

    rb->redis = ngx_chat_redis_eval(&ngx_chat_rebuild_script,
                                    ngx_chat_send_rebuild_reply, rb,
                                    (int) nkeys, (int) argc, v, vl);

    if (rb->redis == NULL) {
        ngx_chat_rebuild_done(rb, "unavailable",
                              "the message store is unavailable, try again");
    }
}


static void
ngx_chat_send_rebuild_reply(redisReply *reply, void *data)
{
    ngx_chat_rebuild_t  *rb = data;

    rb->redis = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        ngx_chat_rebuild_done(rb, "unavailable",
                              "the message store is unavailable, try again");
        return;
    }

    /* rebuilt, or the membership changed meanwhile: try again */
    ngx_chat_rebuild_done(rb, NULL, NULL);
}


/*
 * The rebuild is over: its waiters run again (or fail) in arrival order.
 * They move to a list of this frame first: an op that finishes may close
 * its session, which cancels that session's other ops, waiters of this
 * list included (ngx_chat_send_cancel takes them out of it), so the list
 * is only ever read at its head.
 */

static void
ngx_chat_rebuild_done(ngx_chat_rebuild_t *rb, const char *code,
    const char *message)
{
    ngx_queue_t       run, *q;
    ngx_chat_send_t  *op;

    ngx_rbtree_delete(&ngx_chat_rebuilds, &rb->sn.node);

    ngx_queue_init(&run);

    if (!ngx_queue_empty(&rb->waiters)) {
        ngx_queue_add(&run, &rb->waiters);
    }

    ngx_destroy_pool(rb->pool);

    while (!ngx_queue_empty(&run)) {
        q = ngx_queue_head(&run);
        ngx_queue_remove(q);

        op = ngx_queue_data(q, ngx_chat_send_t, wait);
        op->waiting = 0;

        if (code) {
            ngx_chat_send_finish(op, code, message);

        } else {
            ngx_chat_send_run(op);
        }
    }
}


/*
 * The message is accepted and live; its RECEIPT waits for Kafka to hold it
 * (acks=all). A retry of an accepted message (code 2) is produced again
 * with the JSON Redis kept: the persistence worker stores (conversation,
 * seq) once.
 */

static void
ngx_chat_send_produce(ngx_chat_send_t *op, ngx_int_t code, redisReply *value)
{
    u_char  *json, *p, *end;
    size_t   len;

    if (code == 1) {
        len = op->head.len + value->len + op->tail.len;

        json = ngx_pnalloc(op->pool, len);
        if (json == NULL) {
            ngx_chat_send_finish(op, "unavailable", "out of memory");
            return;
        }

        p = ngx_cpymem(json, op->head.data, op->head.len);
        p = ngx_cpymem(p, value->str, value->len);
        ngx_memcpy(p, op->tail.data, op->tail.len);

    } else {
        /* "<seq> <json>" */
        p = (u_char *) value->str;
        end = p + value->len;
        json = ngx_strlchr(p, end, ' ');

        if (json == NULL) {
            ngx_chat_send_finish(op, "unavailable",
                                 "the message store failed, try again");
            return;
        }

        json++;
        len = end - json;
    }

    op->kafka = ngx_chat_kafka_produce(
                    (char *) ngx_chat_worker.mcf->kafka_topic.data,
                    op->conversation.data, op->conversation.len,
                    json, len, ngx_chat_send_delivered, op);

    if (op->kafka == NULL) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message log is unavailable, try again");
    }
}


/* a read watermark that moved goes to Kafka: the JSON relayed, unrouted */

static void
ngx_chat_read_produce(ngx_chat_send_t *op, redisReply *value)
{
    u_char  *json, *p;
    size_t   skip, len;

    skip = sizeof("/user/queue/receipts\n\n") - 1;
    len = op->head.len - skip + value->len + op->tail.len;

    json = ngx_pnalloc(op->pool, len);
    if (json == NULL) {
        return;
    }

    p = ngx_cpymem(json, op->head.data + skip, op->head.len - skip);
    p = ngx_cpymem(p, value->str, value->len);
    ngx_memcpy(p, op->tail.data, op->tail.len);

    ngx_chat_receipts_produce(json, len);
}


static void
ngx_chat_send_delivered(ngx_int_t rc, void *data)
{
    ngx_chat_send_t  *op = data;

    op->kafka = NULL;

    if (rc != NGX_OK) {
        ngx_chat_send_finish(op, "unavailable",
                             "the message could not be stored in time, "
                             "try again with the same clientMsgId");
        return;
    }

    ngx_chat_send_finish(op, NULL, NULL);
}


/*
 * op has its answer. If it had no seq yet, the next op of the session on
 * its conversation may go to Redis now; if it failed, the ops queued
 * behind it fail the same way (none of them reached Redis: a retry in
 * order keeps the order). The answers go out in the order of the SENDs.
 */

void
ngx_chat_send_finish(ngx_chat_send_t *op, const char *code,
    const char *message)
{
    ngx_chat_send_t  *next;

    if (op->stage <= NGX_CHAT_STAGE_REDIS) {
        if (code == NULL) {
            ngx_chat_send_accepted(op);

        } else {
            next = ngx_chat_send_sibling(op, 0);

            while (next && next->stage == NGX_CHAT_STAGE_QUEUED) {
                next->stage = NGX_CHAT_STAGE_DONE;
                next->code = code;
                next->message = message;
                next = ngx_chat_send_sibling(next, 0);
            }
        }
    }

    op->stage = NGX_CHAT_STAGE_DONE;
    op->code = code;
    op->message = message;

    if (ngx_chat_send_sibling(op, 1) == NULL) {
        ngx_chat_send_answer(op);
    }
}


/* op has its seq: the next op of its session on its conversation runs */

static void
ngx_chat_send_accepted(ngx_chat_send_t *op)
{
    ngx_chat_send_t  *next;

    op->stage = NGX_CHAT_STAGE_LATER;

    next = ngx_chat_send_sibling(op, 0);

    if (next && next->stage == NGX_CHAT_STAGE_QUEUED) {
        next->stage = NGX_CHAT_STAGE_REDIS;
        ngx_chat_send_run(next);
    }
}


/*
 * Answers op, the first unanswered op of its session on its conversation,
 * and then the ops behind it that were only waiting for that. A session
 * closed meanwhile is only closing (ngx_chat_ws.h): its ops stay valid
 * until this returns.
 */

static void
ngx_chat_send_answer(ngx_chat_send_t *op)
{
    ngx_chat_send_t     *next;
    ngx_chat_session_t  *s;

    s = op->op.session;

    while (op) {
        next = ngx_chat_send_sibling(op, 0);

        if (op->code == NULL) {
            if (op->kind == NGX_CHAT_OP_SEND) {
                ngx_chat_metric_inc(NGX_CHAT_M_MESSAGES_IN, 1);
            }

            if (op->receipt.len) {
                ngx_chat_session_receipt(s, &op->receipt);
            }

        } else {
            if (op->kind != NGX_CHAT_OP_TYPING
                || ngx_strcmp(op->code, "unavailable") != 0)
            {
                ngx_chat_session_reject(s, op->code, op->message,
                                        &op->client_msg_id, &op->receipt);
            }
        }

        ngx_chat_session_op_done(s, &op->op);
        ngx_destroy_pool(op->pool);

        op = (next && next->stage == NGX_CHAT_STAGE_DONE) ? next : NULL;
    }
}


static void
ngx_chat_send_cancel(ngx_chat_op_t *o)
{
    ngx_chat_send_t  *op = (ngx_chat_send_t *) o;

    if (op->waiting) {
        ngx_queue_remove(&op->wait);
    }

    if (op->redis) {
        ngx_chat_redis_cancel(op->redis);
    }

    if (op->kafka) {
        ngx_chat_kafka_cancel(op->kafka);
    }

    if (op->pg) {
        ngx_chat_pg_cancel(op->pg);
    }

    ngx_destroy_pool(op->pool);
}

