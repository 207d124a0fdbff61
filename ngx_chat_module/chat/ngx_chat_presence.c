/* ngx_chat_presence.c: presence: sessions in Redis with a TTL, renewed per
 * worker, expiry scans for dead gateways, /topic/presence.<userId>. */

#include "ngx_chat_presence.h"
#include "ngx_chat_pg.h"
#include "ngx_chat_keys.h"
#include "ngx_chat_lua.h"
#include "ngx_chat_fanout.h"


/*
 * Redis keys (all times are Redis's TIME, in ms):
 *
 *   chat:p:{<user>}    sorted set: the user's session ids, scored by expiry
 *   chat:p:expiry      sorted set: users scored by their latest expiry
 *   chat:ls:{<user>}   when the user was last seen (ms)
 *
 * and the channel chat:presence:<user>, whose payloads are the bodies of
 * /topic/presence.<user>. A session registers at CONNECT, every worker
 * renews its own sessions every TTL/3 in one script call, a clean end
 * removes it at once. Sessions of a gateway that died expire: every
 * worker scans chat:p:expiry every few seconds and the first to see a
 * user whose sessions all expired publishes that it went offline (the
 * scan is one script, so it happens once).
 *
 * In a Redis Cluster the expiry set is one per slot,
 * chat:p:expiry:{<tag of the slot>}, beside the users of that slot: a
 * session's scripts touch one slot, a renewal is one script per session,
 * and each scan covers the next NGX_CHAT_PRESENCE_SLOTS slots (a worker
 * goes round all of them in 16 scans; the workers start at random slots).
 */


#define NGX_CHAT_PRESENCE_BATCH    256     /* sessions per renewal call */
#define NGX_CHAT_PRESENCE_SLOTS    1024    /* a cluster: slots per scan */
#define NGX_CHAT_PRESENCE_SCAN_MAX "100"   /* users per scan call */


/* a session of this worker, registered in Redis */
typedef struct {
    ngx_queue_t               link;
    ngx_str_t                 user;
    ngx_str_t                 sid;
} ngx_chat_presence_reg_t;


/* a user some session of this worker follows */
typedef struct {
    ngx_str_node_t            sn;          /* key: userId */
    ngx_queue_t               watches;
    ngx_str_t                 channel;     /* chat:presence:<user> */
    ngx_str_t                 destination; /* /topic/presence.<user> */
    ngx_queue_t               checks;      /* waiting for the channel */
    unsigned                  subscribed:1; /* Redis confirmed its
                                               SUBSCRIBE */
} ngx_chat_presence_node_t;


/* the subscriptions of one session to one user */
typedef struct {
    ngx_queue_t               link;
    ngx_chat_session_t       *session;
    ngx_uint_t                refs;
} ngx_chat_presence_watch_t;


/* the check of a new subscription */
typedef struct {
    ngx_chat_op_t             op;          /* first */
    ngx_chat_pg_req_t        *pg;
    ngx_chat_redis_req_t     *redis;
    ngx_event_t               ev;          /* an answer known at once */
    ngx_event_t               timer;       /* waiting for the channel */
    ngx_queue_t               link;        /* in node->checks */
    unsigned                  waiting:1;
    ngx_int_t                 rc;
    ngx_chat_blob_t          *body;
    ngx_str_t                 sub_id;
    ngx_str_t                 user;
    ngx_str_t                 receipt;
} ngx_chat_presence_check_t;


static ngx_int_t ngx_chat_presence_online(ngx_chat_session_t *s);
static void ngx_chat_presence_offline(ngx_chat_session_t *s);
static ngx_int_t ngx_chat_presence_subscribe(ngx_chat_session_t *s,
    ngx_chat_sub_t *sub, ngx_str_t *user, ngx_str_t *receipt);
static void ngx_chat_presence_unsubscribe(ngx_chat_session_t *s,
    ngx_chat_sub_t *sub, ngx_str_t *user);
static ngx_int_t ngx_chat_presence_watch(ngx_chat_session_t *s,
    ngx_str_t *user);
static void ngx_chat_presence_unwatch(ngx_chat_session_t *s,
    ngx_str_t *user);
static ngx_int_t ngx_chat_presence_check(ngx_chat_session_t *s,
    ngx_str_t *sub_id, ngx_str_t *user, ngx_str_t *receipt);
static void ngx_chat_presence_timer_handler(ngx_event_t *ev);
static void ngx_chat_presence_renew(void);
static void ngx_chat_presence_scan(void);
static void ngx_chat_presence_check_pg(PGresult *res, void *data);
static ngx_int_t ngx_chat_presence_check_snap(ngx_chat_presence_check_t *ck);
static void ngx_chat_presence_check_timeout(ngx_event_t *ev);
static void ngx_chat_presence_check_snapshot(redisReply *reply, void *data);
static void ngx_chat_presence_check_later(ngx_event_t *ev);
static void ngx_chat_presence_check_finish(ngx_chat_presence_check_t *ck,
    ngx_int_t rc, ngx_chat_blob_t *body);
static void ngx_chat_presence_check_cancel(ngx_chat_op_t *op);
static ngx_chat_blob_t *ngx_chat_presence_self(ngx_str_t *user);
static void ngx_chat_presence_reply(redisReply *reply, void *data);
static ngx_int_t ngx_chat_presence_unbrace(ngx_str_t *user);
static ngx_int_t ngx_chat_presence_cut_sharded(const char **users,
    size_t *lens);
static void ngx_chat_presence_on_cut(ngx_chat_presence_node_t *node,
    u_char *user, size_t len);


/* /topic/presence.<userId>: who may read it is checked at SUBSCRIBE */
static ngx_chat_dest_t  ngx_chat_presence_dest = {
    ngx_string(NGX_CHAT_PRESENCE_TOPIC), NGX_CHAT_USER_ID_MAX, NULL,
    ngx_chat_presence_subscribe, ngx_chat_presence_unsubscribe,
    "presence is unavailable, subscribe again", 0, 1, 0
};


static ngx_chat_session_hooks_t  ngx_chat_presence_hooks = {
    ngx_chat_presence_online,
    ngx_chat_presence_offline,
    NULL
};


static ngx_queue_t         ngx_chat_presence_regs;
static ngx_uint_t          ngx_chat_presence_nregs;
static ngx_rbtree_t        ngx_chat_presence_tree;
static ngx_rbtree_node_t   ngx_chat_presence_sentinel;
static ngx_event_t         ngx_chat_presence_timer;
static ngx_connection_t    ngx_chat_presence_dummy;  /* for the timer's debug
                                                   log: fd -1 */
static ngx_msec_t          ngx_chat_presence_renewed;
static uint64_t            ngx_chat_presence_counter;
static ngx_uint_t          ngx_chat_presence_ready;


/*
 * Every script starts with what they share: publish() of route.lua (in a
 * cluster route_cluster.lua's, ngx_chat_fanout_script(): the user's sharded
 * channel "chat:presence:{<user>}", the keys of each script being in that
 * user's slot), Redis's clock, RFC 3339 (now_iso.lua) and the body of an
 * event (presence.lua).
 */


/*
 * A session comes: the first live one of its user publishes online.
 * KEYS: chat:p:{<user>}, chat:p:expiry. ARGV: session id, ttl, user.
 */
static ngx_chat_redis_script_t  ngx_chat_presence_online_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_NOW_ISO NGX_CHAT_LUA_PRESENCE
    NGX_CHAT_LUA_PRESENCE_ONLINE,
    ""
};


/*
 * A worker's sessions live on (one call for many). A session that Redis
 * had let go (Redis was away or lost its data) comes back.
 * KEYS: chat:p:expiry. ARGV: ttl, then user, session id, user, ...
 */
static ngx_chat_redis_script_t  ngx_chat_presence_renew_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_NOW_ISO NGX_CHAT_LUA_PRESENCE
    NGX_CHAT_LUA_PRESENCE_RENEW,
    ""
};


/*
 * A session ended cleanly: the last live one of its user publishes
 * offline, lastSeen now.
 * KEYS: chat:p:{<user>}, chat:p:expiry, chat:ls:{<user>}. ARGV: session id,
 * user.
 */
static ngx_chat_redis_script_t  ngx_chat_presence_offline_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_NOW_ISO NGX_CHAT_LUA_PRESENCE
    NGX_CHAT_LUA_PRESENCE_OFFLINE,
    ""
};


/*
 * Users whose sessions all expired (their gateway died): offline, last
 * seen at their last renewal.
 * KEYS: chat:p:expiry. ARGV: ttl, most users per call.
 */
static ngx_chat_redis_script_t  ngx_chat_presence_scan_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_NOW_ISO NGX_CHAT_LUA_PRESENCE
    NGX_CHAT_LUA_PRESENCE_SCAN,
    ""
};


/*
 * The snapshot of a subscription: the body.
 * KEYS: chat:p:{<user>}, chat:ls:{<user>}. ARGV: user.
 */
static ngx_chat_redis_script_t  ngx_chat_presence_snapshot_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_NOW_ISO NGX_CHAT_LUA_PRESENCE
    NGX_CHAT_LUA_PRESENCE_SNAPSHOT,
    ""
};


/* A block: ARGV: the two users. "cut <other>" on each one's channel. */
static ngx_chat_redis_script_t  ngx_chat_presence_cut_script = {
    NGX_CHAT_LUA_PRESENCE_CUT,
    ""
};


/* GET /presence: ARGV: users. {"userId","online","lastSeen"} each. */
static ngx_chat_redis_script_t  ngx_chat_presence_query_script = {
    NGX_CHAT_LUA_ROUTE NGX_CHAT_LUA_NOW_ISO NGX_CHAT_LUA_PRESENCE
    NGX_CHAT_LUA_PRESENCE_QUERY,
    ""
};


/* may $1 watch $2: consent and blocks (sql/007_consent.sql) */
static const char  ngx_chat_presence_sql[] =
    "SELECT 1 FROM chat_presence_allowed($1, $2)";


ngx_int_t
ngx_chat_presence_init_process(ngx_cycle_t *cycle)
{
    ngx_queue_init(&ngx_chat_presence_regs);
    ngx_chat_presence_nregs = 0;

    ngx_rbtree_init(&ngx_chat_presence_tree, &ngx_chat_presence_sentinel,
                    ngx_str_rbtree_insert_value);

    if (ngx_chat_fanout_script(&ngx_chat_presence_online_script)
           != NGX_OK
        || ngx_chat_fanout_script(&ngx_chat_presence_renew_script)
           != NGX_OK
        || ngx_chat_fanout_script(&ngx_chat_presence_offline_script)
           != NGX_OK
        || ngx_chat_fanout_script(&ngx_chat_presence_scan_script) != NGX_OK
        || ngx_chat_fanout_script(&ngx_chat_presence_snapshot_script)
           != NGX_OK
        || ngx_chat_fanout_script(&ngx_chat_presence_query_script)
           != NGX_OK
        || ngx_chat_redis_script(&ngx_chat_presence_cut_script) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_chat_presence_timer.handler = ngx_chat_presence_timer_handler;
    ngx_chat_presence_timer.log = cycle->log;
    ngx_chat_presence_dummy.fd = (ngx_socket_t) -1;
    ngx_chat_presence_timer.data = &ngx_chat_presence_dummy;
    ngx_chat_presence_timer.cancelable = 1;

    if (ngx_chat_session_add_dest(&ngx_chat_presence_dest) == NGX_ERROR
        || ngx_chat_session_add_hooks(&ngx_chat_presence_hooks) != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_chat_presence_renewed = ngx_current_msec;
    ngx_chat_presence_ready = 1;

    /* the workers of a server do not all scan at the same moment */
    ngx_add_timer(&ngx_chat_presence_timer,
                  NGX_CHAT_PRESENCE_SCAN / 2
                  + (ngx_msec_t) ngx_random() % NGX_CHAT_PRESENCE_SCAN);

    return NGX_OK;
}


void
ngx_chat_presence_exit_process(ngx_cycle_t *cycle)
{
    if (ngx_chat_presence_timer.timer_set) {
        ngx_del_timer(&ngx_chat_presence_timer);
    }

    ngx_chat_presence_ready = 0;
}


static void
ngx_chat_presence_timer_handler(ngx_event_t *ev)
{
    if (ngx_exiting || ngx_terminate || ngx_quit) {
        return;
    }

    if (ngx_current_msec - ngx_chat_presence_renewed
        >= ngx_chat_worker.mcf->presence_ttl / 3)
    {
        ngx_chat_presence_renewed = ngx_current_msec;
        ngx_chat_presence_renew();
    }

    ngx_chat_presence_scan();

    ngx_add_timer(ev, ngx_min(NGX_CHAT_PRESENCE_SCAN,
                              ngx_chat_worker.mcf->presence_ttl / 3));
}


/* the expiry set of a user's presence key: the one set, or in a cluster
 * the set of the key's slot; buf: NGX_CHAT_PRESENCE_EXPIRY_LEN bytes */

#define NGX_CHAT_PRESENCE_EXPIRY_LEN                                         \
    (sizeof(NGX_CHAT_KEY_EXPIRY) + sizeof(NGX_CHAT_TAG_OPEN)                  \
     + sizeof(NGX_CHAT_TAG_CLOSE) + NGX_INT_T_LEN + 1)

static size_t
ngx_chat_presence_expiry(ngx_uint_t slot, u_char *buf)
{
    u_char  *p;

    p = ngx_cpymem(buf, NGX_CHAT_KEY_EXPIRY, sizeof(NGX_CHAT_KEY_EXPIRY) - 1);

    if (ngx_chat_redis_is_cluster()) {
        *p++ = ':';
        p = ngx_cpymem(p, NGX_CHAT_TAG_OPEN, sizeof(NGX_CHAT_TAG_OPEN) - 1);
        p += ngx_chat_redis_slot_tag(slot, p);
        p = ngx_cpymem(p, NGX_CHAT_TAG_CLOSE, sizeof(NGX_CHAT_TAG_CLOSE) - 1);
    }

    return p - buf;
}


/*
 * a cluster: the sessions grouped by the slot of their user's keys (a
 * user's sessions, and users whose keys share a slot), one renewal script
 * per slot (up to NGX_CHAT_PRESENCE_BATCH sessions each) with the slot's
 * expiry set as its key
 */

typedef struct {
    ngx_uint_t                slot;
    ngx_chat_presence_reg_t  *reg;
} ngx_chat_presence_by_slot_t;


static int ngx_libc_cdecl
ngx_chat_presence_slot_cmp(const void *one, const void *two)
{
    const ngx_chat_presence_by_slot_t  *a = one, *b = two;

    return (a->slot > b->slot) - (a->slot < b->slot);
}


static void
ngx_chat_presence_renew_cluster(u_char *ttl, size_t ttl_len)
{
    size_t                        *lens;
    ngx_uint_t                     i, n, argc;
    ngx_queue_t                   *q;
    const char                   **argv;
    ngx_chat_presence_by_slot_t   *all;
    u_char                         exp[NGX_CHAT_PRESENCE_EXPIRY_LEN];

    n = ngx_chat_presence_nregs;

    all = ngx_alloc(n * sizeof(ngx_chat_presence_by_slot_t), ngx_cycle->log);
    if (all == NULL) {
        return;
    }

    argv = ngx_alloc((2 + 2 * NGX_CHAT_PRESENCE_BATCH)
                     * (sizeof(char *) + sizeof(size_t)), ngx_cycle->log);
    if (argv == NULL) {
        ngx_free(all);
        return;
    }

    lens = (size_t *) (argv + 2 + 2 * NGX_CHAT_PRESENCE_BATCH);

    i = 0;

    for (q = ngx_queue_head(&ngx_chat_presence_regs);
         q != ngx_queue_sentinel(&ngx_chat_presence_regs) && i < n;
         q = ngx_queue_next(q))
    {
        all[i].reg = ngx_queue_data(q, ngx_chat_presence_reg_t, link);
        all[i].slot = ngx_chat_presence_slot(&all[i].reg->user);
        i++;
    }

    n = i;

    ngx_qsort(all, n, sizeof(ngx_chat_presence_by_slot_t),
              ngx_chat_presence_slot_cmp);

    argv[0] = (char *) exp;
    argv[1] = (char *) ttl;
    lens[1] = ttl_len;
    argc = 2;

    for (i = 0; i < n; i++) {
        if (all[i].slot == NGX_CHAT_REDIS_SLOT_COUNT) {
            continue;       /* not a user's id: never registered */
        }

        argv[argc] = (char *) all[i].reg->user.data;
        lens[argc++] = all[i].reg->user.len;
        argv[argc] = (char *) all[i].reg->sid.data;
        lens[argc++] = all[i].reg->sid.len;

        if (argc < 2 + 2 * NGX_CHAT_PRESENCE_BATCH && i + 1 < n
            && all[i + 1].slot == all[i].slot)
        {
            continue;
        }

        lens[0] = ngx_chat_presence_expiry(all[i].slot, exp);

        if (ngx_chat_redis_eval_bg(&ngx_chat_presence_renew_script,
                                   ngx_chat_presence_reply, NULL, 1,
                                   (int) argc, argv, lens)
            == NULL)
        {
            break;
        }

        argc = 2;
    }

    ngx_free(argv);
    ngx_free(all);
}


/* every session of this worker, NGX_CHAT_PRESENCE_BATCH per call */

static void
ngx_chat_presence_renew(void)
{
    size_t                    *lens;
    ngx_uint_t                 n, argc;
    ngx_queue_t               *q;
    const char               **argv;
    ngx_chat_presence_reg_t   *reg;
    u_char                     ttl[NGX_INT_T_LEN];

    if (ngx_chat_presence_nregs == 0 || !ngx_chat_redis_ready()) {
        return;
    }

    n = ngx_min(ngx_chat_presence_nregs, NGX_CHAT_PRESENCE_BATCH);

    argv = ngx_alloc((3 + 2 * n) * (sizeof(char *) + sizeof(size_t)),
                     ngx_cycle->log);
    if (argv == NULL) {
        return;
    }

    lens = (size_t *) (argv + 3 + 2 * n);

    argv[0] = NGX_CHAT_KEY_EXPIRY;
    lens[0] = sizeof(NGX_CHAT_KEY_EXPIRY) - 1;
    argv[1] = (char *) ttl;
    lens[1] = ngx_sprintf(ttl, "%M", ngx_chat_worker.mcf->presence_ttl)
              - ttl;
    argc = 2;

    if (ngx_chat_redis_is_cluster()) {
        ngx_chat_presence_renew_cluster(ttl, lens[1]);
        ngx_free(argv);
        return;
    }

    for (q = ngx_queue_head(&ngx_chat_presence_regs);
         q != ngx_queue_sentinel(&ngx_chat_presence_regs);
         q = ngx_queue_next(q))
    {
        reg = ngx_queue_data(q, ngx_chat_presence_reg_t, link);

        argv[argc] = (char *) reg->user.data;
        lens[argc++] = reg->user.len;
        argv[argc] = (char *) reg->sid.data;
        lens[argc++] = reg->sid.len;

        if (argc == 2 + 2 * n
            || ngx_queue_next(q) == ngx_queue_sentinel(&ngx_chat_presence_regs))
        {
            if (ngx_chat_redis_eval(&ngx_chat_presence_renew_script,
                                    ngx_chat_presence_reply, NULL, 1,
                                    (int) argc, argv, lens)
                == NULL)
            {
                break;
            }

            argc = 2;
        }
    }

    ngx_free(argv);
}


static void
ngx_chat_presence_scan(void)
{
    ngx_uint_t   i;
    const char  *argv[3];
    size_t       lens[3];
    u_char       ttl[NGX_INT_T_LEN];
    u_char       exp[NGX_CHAT_PRESENCE_EXPIRY_LEN];

    static ngx_uint_t  slot = NGX_CHAT_REDIS_SLOT_COUNT;

    if (!ngx_chat_redis_ready()) {
        return;
    }

    argv[0] = NGX_CHAT_KEY_EXPIRY;
    lens[0] = sizeof(NGX_CHAT_KEY_EXPIRY) - 1;
    argv[1] = (char *) ttl;
    lens[1] = ngx_sprintf(ttl, "%M", ngx_chat_worker.mcf->presence_ttl)
              - ttl;
    argv[2] = NGX_CHAT_PRESENCE_SCAN_MAX;
    lens[2] = sizeof(NGX_CHAT_PRESENCE_SCAN_MAX) - 1;

    if (!ngx_chat_redis_is_cluster()) {
        (void) ngx_chat_redis_eval(&ngx_chat_presence_scan_script,
                                   ngx_chat_presence_reply, NULL, 1, 3, argv,
                                   lens);
        return;
    }

    /* the next share of the slots, from a random one at first */

    if (slot == NGX_CHAT_REDIS_SLOT_COUNT) {
        slot = (ngx_uint_t) ngx_random() % NGX_CHAT_REDIS_SLOT_COUNT;
    }

    argv[0] = (char *) exp;

    for (i = 0; i < NGX_CHAT_PRESENCE_SLOTS; i++) {
        lens[0] = ngx_chat_presence_expiry(slot, exp);
        slot = (slot + 1) % NGX_CHAT_REDIS_SLOT_COUNT;

        if (ngx_chat_redis_eval_bg(&ngx_chat_presence_scan_script,
                                   ngx_chat_presence_reply, NULL, 1, 3, argv,
                                   lens)
            == NULL)
        {
            return;
        }
    }
}


/* sessions */

static ngx_int_t
ngx_chat_presence_online(ngx_chat_session_t *s)
{
    u_char                   *p;
    const char               *argv[5];
    size_t                    lens[5];
    ngx_chat_presence_reg_t  *reg;
    u_char                    key[sizeof(NGX_CHAT_KEY_PRESENCE)
                                  + NGX_CHAT_USER_ID_MAX];
    u_char                    ttl[NGX_INT_T_LEN];
    u_char                    exp[NGX_CHAT_PRESENCE_EXPIRY_LEN];
    size_t                    sid_len;
    u_char                    sid[3 * NGX_INT64_LEN + 3];

    if (!ngx_chat_presence_ready || s->id.user.len > NGX_CHAT_USER_ID_MAX) {
        return NGX_OK;
    }

    /* unique among the gateways: node, process, counter */
    sid_len = ngx_sprintf(sid, "%ui-%P-%uL", ngx_chat_worker.mcf->node_id,
                          ngx_pid, ++ngx_chat_presence_counter)
              - sid;

    /* of its exact size: every idle session holds one */
    reg = ngx_alloc(sizeof(ngx_chat_presence_reg_t) + s->id.user.len
                    + sid_len, s->log);
    if (reg == NULL) {
        return NGX_ERROR;
    }

    reg->user.data = (u_char *) (reg + 1);
    reg->user.len = s->id.user.len;
    p = ngx_cpymem(reg->user.data, s->id.user.data, s->id.user.len);

    reg->sid.data = p;
    reg->sid.len = sid_len;
    ngx_memcpy(p, sid, sid_len);

    ngx_queue_insert_tail(&ngx_chat_presence_regs, &reg->link);
    ngx_chat_presence_nregs++;
    s->presence = reg;

    argv[0] = (char *) key;
    lens[0] = ngx_sprintf(key, NGX_CHAT_KEY_PRESENCE "%V" NGX_CHAT_TAG_CLOSE,
                          &reg->user)
              - key;
    argv[1] = (char *) exp;
    lens[1] = ngx_chat_presence_expiry(
                  ngx_chat_redis_key_slot_of(key, lens[0]), exp);
    argv[2] = (char *) reg->sid.data;
    lens[2] = reg->sid.len;
    argv[3] = (char *) ttl;
    lens[3] = ngx_sprintf(ttl, "%M", ngx_chat_worker.mcf->presence_ttl)
              - ttl;
    argv[4] = (char *) reg->user.data;
    lens[4] = reg->user.len;

    /* Redis down: the next renewal registers it */
    (void) ngx_chat_redis_eval(&ngx_chat_presence_online_script,
                               ngx_chat_presence_reply, NULL, 2, 5, argv,
                               lens);

    return NGX_OK;
}


static void
ngx_chat_presence_offline(ngx_chat_session_t *s)
{
    const char               *argv[5];
    size_t                    lens[5];
    ngx_chat_presence_reg_t  *reg;
    u_char                    key[sizeof(NGX_CHAT_KEY_PRESENCE)
                                  + NGX_CHAT_USER_ID_MAX];
    u_char                    ls[sizeof(NGX_CHAT_KEY_LAST_SEEN)
                                 + NGX_CHAT_USER_ID_MAX];
    u_char                    exp[NGX_CHAT_PRESENCE_EXPIRY_LEN];

    reg = s->presence;

    if (reg == NULL) {
        return;
    }

    s->presence = NULL;
    ngx_queue_remove(&reg->link);
    ngx_chat_presence_nregs--;

    argv[0] = (char *) key;
    lens[0] = ngx_sprintf(key, NGX_CHAT_KEY_PRESENCE "%V" NGX_CHAT_TAG_CLOSE,
                          &reg->user)
              - key;
    argv[1] = (char *) exp;
    lens[1] = ngx_chat_presence_expiry(
                  ngx_chat_redis_key_slot_of(key, lens[0]), exp);
    argv[2] = (char *) ls;
    lens[2] = ngx_sprintf(ls, NGX_CHAT_KEY_LAST_SEEN "%V" NGX_CHAT_TAG_CLOSE,
                          &reg->user)
              - ls;
    argv[3] = (char *) reg->sid.data;
    lens[3] = reg->sid.len;
    argv[4] = (char *) reg->user.data;
    lens[4] = reg->user.len;

    /* Redis down: the session expires and a scan says so */
    (void) ngx_chat_redis_eval(&ngx_chat_presence_offline_script,
                               ngx_chat_presence_reply, NULL, 3, 5, argv,
                               lens);

    ngx_free(reg);
}


static void
ngx_chat_presence_reply(redisReply *reply, void *data)
{
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "chat: presence script failed: %*s",
                      (size_t) reply->len, reply->str);
    }
}


/* subscriptions: the channel is followed at once, the check follows */

static ngx_int_t
ngx_chat_presence_subscribe(ngx_chat_session_t *s, ngx_chat_sub_t *sub,
    ngx_str_t *user, ngx_str_t *receipt)
{
    if (ngx_chat_presence_watch(s, user) != NGX_OK) {
        return NGX_ERROR;
    }

    if (ngx_chat_presence_check(s, &sub->id, user, receipt) != NGX_OK) {
        ngx_chat_presence_unwatch(s, user);
        return NGX_ERROR;
    }

    return NGX_AGAIN;
}


static void
ngx_chat_presence_unsubscribe(ngx_chat_session_t *s, ngx_chat_sub_t *sub,
    ngx_str_t *user)
{
    ngx_chat_presence_unwatch(s, user);
}


/* watchers */

static ngx_int_t
ngx_chat_presence_watch(ngx_chat_session_t *s, ngx_str_t *user)
{
    u_char                     *p;
    uint32_t                    hash;
    ngx_queue_t                *q;
    ngx_chat_presence_node_t   *node;
    ngx_chat_presence_watch_t  *w;

    hash = ngx_crc32_short(user->data, user->len);

    node = (ngx_chat_presence_node_t *)
               ngx_str_rbtree_lookup(&ngx_chat_presence_tree, user, hash);

    if (node == NULL) {
        node = ngx_alloc(sizeof(ngx_chat_presence_node_t)
                         + sizeof(NGX_CHAT_CHANNEL_PRESENCE) + 1
                         + sizeof(NGX_CHAT_PRESENCE_TOPIC) - 1
                         + 2 * user->len, s->log);
        if (node == NULL) {
            return NGX_ERROR;
        }

        p = (u_char *) (node + 1);
        node->channel.data = p;
        p = ngx_chat_redis_is_cluster()
            ? ngx_sprintf(p, NGX_CHAT_CHANNEL_PRESENCE "{%V}", user)
            : ngx_sprintf(p, NGX_CHAT_CHANNEL_PRESENCE "%V", user);
        node->channel.len = p - node->channel.data;

        node->destination.data = p;
        p = ngx_sprintf(p, NGX_CHAT_PRESENCE_TOPIC "%V", user);
        node->destination.len = p - node->destination.data;

        node->sn.str.data = node->channel.data
                            + sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1
                            + (ngx_chat_redis_is_cluster() ? 1 : 0);
        node->sn.str.len = user->len;
        node->sn.node.key = hash;

        if (ngx_chat_redis_subscribe(node->channel.data, node->channel.len)
            != NGX_OK)
        {
            ngx_free(node);
            return NGX_ERROR;
        }

        ngx_queue_init(&node->watches);
        ngx_queue_init(&node->checks);
        node->subscribed = 0;
        ngx_rbtree_insert(&ngx_chat_presence_tree, &node->sn.node);
    }

    for (q = ngx_queue_head(&node->watches);
         q != ngx_queue_sentinel(&node->watches);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_chat_presence_watch_t, link);

        if (w->session == s) {
            w->refs++;
            return NGX_OK;
        }
    }

    w = ngx_alloc(sizeof(ngx_chat_presence_watch_t), s->log);
    if (w == NULL) {
        if (ngx_queue_empty(&node->watches)) {
            ngx_chat_redis_unsubscribe(node->channel.data, node->channel.len);
            ngx_rbtree_delete(&ngx_chat_presence_tree, &node->sn.node);
            ngx_free(node);
        }

        return NGX_ERROR;
    }

    w->session = s;
    w->refs = 1;
    ngx_queue_insert_tail(&node->watches, &w->link);

    return NGX_OK;
}


static void
ngx_chat_presence_unwatch(ngx_chat_session_t *s, ngx_str_t *user)
{
    uint32_t                    hash;
    ngx_queue_t                *q;
    ngx_chat_presence_node_t   *node;
    ngx_chat_presence_watch_t  *w;

    hash = ngx_crc32_short(user->data, user->len);

    node = (ngx_chat_presence_node_t *)
               ngx_str_rbtree_lookup(&ngx_chat_presence_tree, user, hash);

    if (node == NULL) {
        return;
    }

    for (q = ngx_queue_head(&node->watches);
         q != ngx_queue_sentinel(&node->watches);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_chat_presence_watch_t, link);

        if (w->session != s) {
            continue;
        }

        if (--w->refs == 0) {
            ngx_queue_remove(&w->link);
            ngx_free(w);
        }

        break;
    }

    if (ngx_queue_empty(&node->watches)) {
        ngx_chat_redis_unsubscribe(node->channel.data, node->channel.len);
        ngx_rbtree_delete(&ngx_chat_presence_tree, &node->sn.node);
        ngx_free(node);
    }
}


/*
 * The channel of a user is subscribed: the checks that wait for it take
 * their snapshots now, so that every change after a snapshot reaches the
 * subscription. A snapshot that cannot be asked answers from the event
 * loop: a check's end may end its session, and with it this node.
 */

/* a cluster: the user of a channel is "{<user>}" */

static ngx_int_t
ngx_chat_presence_unbrace(ngx_str_t *user)
{
    if (!ngx_chat_redis_is_cluster()) {
        return NGX_OK;
    }

    if (user->len < 3 || user->data[0] != '{'
        || user->data[user->len - 1] != '}')
    {
        return NGX_DECLINED;
    }

    user->data++;
    user->len -= 2;

    return NGX_OK;
}


void
ngx_chat_presence_on_subscribed(u_char *channel, size_t len)
{
    uint32_t                    hash;
    ngx_str_t                   user;
    ngx_queue_t                *q;
    ngx_chat_presence_node_t   *node;
    ngx_chat_presence_check_t  *ck;

    if (len <= sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1
        || ngx_strncmp(channel, NGX_CHAT_CHANNEL_PRESENCE,
                       sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1) != 0)
    {
        return;
    }

    user.data = channel + sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1;
    user.len = len - (sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1);

    if (ngx_chat_presence_unbrace(&user) != NGX_OK) {
        return;
    }

    hash = ngx_crc32_short(user.data, user.len);

    node = (ngx_chat_presence_node_t *)
               ngx_str_rbtree_lookup(&ngx_chat_presence_tree, &user, hash);

    if (node == NULL) {
        return;
    }

    node->subscribed = 1;

    while (!ngx_queue_empty(&node->checks)) {
        q = ngx_queue_head(&node->checks);
        ngx_queue_remove(q);

        ck = ngx_queue_data(q, ngx_chat_presence_check_t, link);
        ck->waiting = 0;

        if (ck->timer.timer_set) {
            ngx_del_timer(&ck->timer);
        }

        if (ngx_chat_presence_check_snap(ck) != NGX_OK) {
            ck->rc = NGX_ERROR;
            ngx_post_event(&ck->ev, &ngx_posted_events);
        }
    }
}


void
ngx_chat_presence_on_message(u_char *channel, size_t channel_len,
    u_char *payload, size_t len)
{
    uint32_t                    hash;
    ngx_str_t                   user;
    ngx_queue_t                *q, *next;
    ngx_chat_blob_t            *b;
    ngx_chat_presence_node_t   *node;
    ngx_chat_presence_watch_t  *w;

    if (channel_len <= sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1
        || ngx_strncmp(channel, NGX_CHAT_CHANNEL_PRESENCE,
                       sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1) != 0)
    {
        return;
    }

    user.data = channel + sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1;
    user.len = channel_len - (sizeof(NGX_CHAT_CHANNEL_PRESENCE) - 1);

    if (ngx_chat_presence_unbrace(&user) != NGX_OK) {
        return;
    }

    hash = ngx_crc32_short(user.data, user.len);

    node = (ngx_chat_presence_node_t *)
               ngx_str_rbtree_lookup(&ngx_chat_presence_tree, &user, hash);

    if (node == NULL) {
        return;
    }

    if (len > sizeof("cut ") - 1
        && ngx_strncmp(payload, "cut ", sizeof("cut ") - 1) == 0)
    {
        ngx_chat_presence_on_cut(node, payload + sizeof("cut ") - 1,
                                 len - (sizeof("cut ") - 1));
        return;
    }

    /* the JSON and the NUL that ends the STOMP frame */
    b = ngx_chat_blob_create(len + 1);
    if (b == NULL) {
        return;
    }

    ngx_memcpy(b->data, payload, len);
    b->data[len] = '\0';

    /* a delivery may not end a session here (on_closed comes later) */

    for (q = ngx_queue_head(&node->watches);
         q != ngx_queue_sentinel(&node->watches);
         q = next)
    {
        next = ngx_queue_next(q);
        w = ngx_queue_data(q, ngx_chat_presence_watch_t, link);

        ngx_chat_session_deliver_topic(w->session, ngx_chat_presence_dest.id,
                                       &node->destination, NULL, b);
    }

    ngx_chat_blob_release(b);
}


/*
 * "cut <user>" on node's channel: the sessions of user watching node's
 * user stop. Ending a subscription may free the watch and the node, so
 * the sessions are found first and the destination copied.
 */
static void
ngx_chat_presence_on_cut(ngx_chat_presence_node_t *node, u_char *user,
    size_t len)
{
    ngx_str_t                   dst;
    ngx_uint_t                  i, n;
    ngx_queue_t                *q;
    ngx_chat_session_t        **ss;
    ngx_chat_presence_watch_t  *w;
    u_char                      buf[sizeof(NGX_CHAT_PRESENCE_TOPIC)
                                    + NGX_CHAT_USER_ID_MAX];

    if (node->destination.len > sizeof(buf)) {
        return;
    }

    n = 0;

    for (q = ngx_queue_head(&node->watches);
         q != ngx_queue_sentinel(&node->watches);
         q = ngx_queue_next(q))
    {
        n++;
    }

    ss = ngx_alloc(n * sizeof(ngx_chat_session_t *), ngx_cycle->log);
    if (ss == NULL) {
        return;
    }

    n = 0;

    for (q = ngx_queue_head(&node->watches);
         q != ngx_queue_sentinel(&node->watches);
         q = ngx_queue_next(q))
    {
        w = ngx_queue_data(q, ngx_chat_presence_watch_t, link);

        if (w->session->id.user.len == len
            && ngx_strncmp(w->session->id.user.data, user, len) == 0)
        {
            ss[n++] = w->session;
        }
    }

    dst.data = buf;
    dst.len = node->destination.len;
    ngx_memcpy(buf, node->destination.data, dst.len);

    for (i = 0; i < n; i++) {
        ngx_log_error(NGX_LOG_INFO, ss[i]->log, 0,
                      "chat: a block ends the subscriptions to \"%V\"",
                      &dst);

        (void) ngx_chat_session_end_topic(ss[i], ngx_chat_presence_dest.id,
                                          &dst, "blocked",
                                          "a block ended a presence "
                                          "subscription");
    }

    ngx_free(ss);
}


/* "cut <other>" on each one's sharded channel: SPUBLISH twice */

static ngx_int_t
ngx_chat_presence_cut_sharded(const char **users, size_t *lens)
{
    u_char      *p;
    size_t       argvlen[3];
    ngx_uint_t   i;
    const char  *argv[3];
    u_char       chan[sizeof(NGX_CHAT_CHANNEL_PRESENCE) + 2
                      + NGX_CHAT_USER_ID_MAX];
    u_char       msg[sizeof("cut ") + NGX_CHAT_USER_ID_MAX];

    for (i = 0; i < 2; i++) {
        if (lens[i] > NGX_CHAT_USER_ID_MAX
            || lens[1 - i] > NGX_CHAT_USER_ID_MAX)
        {
            return NGX_ERROR;
        }

        argv[0] = "SPUBLISH";
        argvlen[0] = sizeof("SPUBLISH") - 1;

        p = ngx_sprintf(chan, NGX_CHAT_CHANNEL_PRESENCE "{%*s}",
                        lens[i], users[i]);
        argv[1] = (const char *) chan;
        argvlen[1] = p - chan;

        p = ngx_sprintf(msg, "cut %*s", lens[1 - i], users[1 - i]);
        argv[2] = (const char *) msg;
        argvlen[2] = p - msg;

        if (ngx_chat_redis_command(ngx_chat_presence_reply, NULL, 3, argv,
                                   argvlen)
            == NULL)
        {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}


ngx_int_t
ngx_chat_presence_cut(u_char *pair, size_t len)
{
    u_char      *sp;
    size_t       lens[2];
    const char  *argv[2];

    sp = ngx_strlchr(pair, pair + len, ' ');

    if (sp == NULL
        || !ngx_chat_user_id_valid(pair, sp - pair)
        || !ngx_chat_user_id_valid(sp + 1, pair + len - sp - 1))
    {
        return NGX_ERROR;
    }

    argv[0] = (char *) pair;
    lens[0] = sp - pair;
    argv[1] = (char *) sp + 1;
    lens[1] = pair + len - sp - 1;

    if (ngx_chat_redis_is_cluster()) {
        /* the two users' channels are in their own slots */
        return ngx_chat_presence_cut_sharded(argv, lens);
    }

    if (ngx_chat_redis_eval(&ngx_chat_presence_cut_script,
                            ngx_chat_presence_reply, NULL, 0, 2, argv, lens)
        == NULL)
    {
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the check of a new subscription: authorization, then the snapshot */

static ngx_int_t
ngx_chat_presence_check(ngx_chat_session_t *s, ngx_str_t *sub_id,
    ngx_str_t *user, ngx_str_t *receipt)
{
    u_char                     *p;
    int                         lengths[2];
    const char                 *values[2];
    ngx_chat_presence_check_t  *ck;

    ck = ngx_calloc(sizeof(ngx_chat_presence_check_t) + sub_id->len
                    + user->len + receipt->len, s->log);
    if (ck == NULL) {
        return NGX_ERROR;
    }

    p = (u_char *) (ck + 1);

    ck->sub_id.data = p;
    ck->sub_id.len = sub_id->len;
    p = ngx_cpymem(p, sub_id->data, sub_id->len);

    ck->user.data = p;
    ck->user.len = user->len;
    p = ngx_cpymem(p, user->data, user->len);

    ck->receipt.data = p;
    ck->receipt.len = receipt->len;
    ngx_memcpy(p, receipt->data, receipt->len);

    ck->ev.handler = ngx_chat_presence_check_later;
    ck->ev.data = ck;
    ck->ev.log = s->log;

    if (user->len == s->id.user.len
        && ngx_strncmp(user->data, s->id.user.data, user->len) == 0)
    {
        /* oneself, and online: this session is */
        ck->rc = NGX_OK;
        ck->body = ngx_chat_presence_self(user);

        if (ck->body == NULL) {
            ngx_free(ck);
            return NGX_ERROR;
        }

        ngx_chat_session_op_start(s, &ck->op, ngx_chat_presence_check_cancel);
        ngx_post_event(&ck->ev, &ngx_posted_events);

        return NGX_OK;
    }

    ngx_chat_session_op_start(s, &ck->op, ngx_chat_presence_check_cancel);

    values[0] = (char *) s->id.user.data;
    lengths[0] = (int) s->id.user.len;
    values[1] = (char *) ck->user.data;
    lengths[1] = (int) ck->user.len;

    ck->pg = ngx_chat_pg_query(ngx_chat_presence_sql, 2, values, lengths,
                               ngx_chat_presence_check_pg, ck);

    if (ck->pg == NULL) {
        ck->rc = NGX_ERROR;
        ngx_post_event(&ck->ev, &ngx_posted_events);
    }

    return NGX_OK;
}


static void
ngx_chat_presence_check_pg(PGresult *res, void *data)
{
    ngx_chat_presence_check_t  *ck = data;

    uint32_t                   hash;
    ngx_chat_presence_node_t  *node;

    ck->pg = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK) {
        if (res) {
            ngx_log_error(NGX_LOG_ERR, ck->op.session->log, 0,
                          "chat: presence authorization query failed: %s",
                          PQresultErrorMessage(res));
        }

        ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_chat_presence_check_finish(ck, NGX_DECLINED, NULL);
        return;
    }

    /*
     * A snapshot taken before the channel is subscribed would miss the
     * changes between the two: it waits for the channel (while Redis is
     * up), at most chat_redis_timeout, then the subscription is refused as
     * unavailable.
     */

    hash = ngx_crc32_short(ck->user.data, ck->user.len);

    node = (ngx_chat_presence_node_t *)
               ngx_str_rbtree_lookup(&ngx_chat_presence_tree, &ck->user,
                                     hash);

    if (node && !node->subscribed && ngx_chat_redis_ready()) {
        ngx_queue_insert_tail(&node->checks, &ck->link);
        ck->waiting = 1;

        ck->timer.handler = ngx_chat_presence_check_timeout;
        ck->timer.data = ck;
        ck->timer.log = ck->op.session->log;
        ck->timer.cancelable = 1;
        ngx_add_timer(&ck->timer, ngx_chat_worker.mcf->redis_timeout);

        return;
    }

    if (ngx_chat_presence_check_snap(ck) != NGX_OK) {
        ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
    }
}


static void
ngx_chat_presence_check_timeout(ngx_event_t *ev)
{
    ngx_chat_presence_check_t  *ck = ev->data;

    ngx_log_error(NGX_LOG_WARN, ck->op.session->log, 0,
                  "chat: presence of \"%V\": the channel was not subscribed "
                  "within %M ms (chat_redis_timeout)", &ck->user,
                  ngx_chat_worker.mcf->redis_timeout);

    ngx_queue_remove(&ck->link);
    ck->waiting = 0;

    ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
}


/* the snapshot of the user's presence, asked of Redis */

static ngx_int_t
ngx_chat_presence_check_snap(ngx_chat_presence_check_t *ck)
{
    const char  *argv[3];
    size_t       lens[3];
    u_char       key[sizeof(NGX_CHAT_KEY_PRESENCE) + NGX_CHAT_USER_ID_MAX];
    u_char       ls[sizeof(NGX_CHAT_KEY_LAST_SEEN) + NGX_CHAT_USER_ID_MAX];

    argv[0] = (char *) key;
    lens[0] = ngx_sprintf(key, NGX_CHAT_KEY_PRESENCE "%V" NGX_CHAT_TAG_CLOSE,
                          &ck->user)
              - key;
    argv[1] = (char *) ls;
    lens[1] = ngx_sprintf(ls, NGX_CHAT_KEY_LAST_SEEN "%V" NGX_CHAT_TAG_CLOSE,
                          &ck->user)
              - ls;
    argv[2] = (char *) ck->user.data;
    lens[2] = ck->user.len;

    ck->redis = ngx_chat_redis_eval(&ngx_chat_presence_snapshot_script,
                                    ngx_chat_presence_check_snapshot, ck, 2,
                                    3, argv, lens);

    return ck->redis ? NGX_OK : NGX_ERROR;
}


static void
ngx_chat_presence_check_snapshot(redisReply *reply, void *data)
{
    ngx_chat_presence_check_t  *ck = data;

    ngx_chat_blob_t  *b;

    ck->redis = NULL;

    if (reply == NULL || reply->type != REDIS_REPLY_STRING) {
        if (reply && reply->type == REDIS_REPLY_ERROR) {
            ngx_log_error(NGX_LOG_ERR, ck->op.session->log, 0,
                          "chat: presence snapshot failed: %*s",
                          (size_t) reply->len, reply->str);
        }

        ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
        return;
    }

    b = ngx_chat_blob_create(reply->len + 1);
    if (b == NULL) {
        ngx_chat_presence_check_finish(ck, NGX_ERROR, NULL);
        return;
    }

    ngx_memcpy(b->data, reply->str, reply->len);
    b->data[reply->len] = '\0';

    ngx_chat_presence_check_finish(ck, NGX_OK, b);
}


static void
ngx_chat_presence_check_later(ngx_event_t *ev)
{
    ngx_chat_presence_check_t  *ck = ev->data;

    ngx_chat_presence_check_finish(ck, ck->rc, ck->body);
}


static void
ngx_chat_presence_check_finish(ngx_chat_presence_check_t *ck, ngx_int_t rc,
    ngx_chat_blob_t *body)
{
    ngx_chat_session_t  *s = ck->op.session;

    ck->body = NULL;

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: presence of \"%V\": not visible to this user",
                      &ck->user);
    }

    ngx_chat_session_op_done(s, &ck->op);
    ngx_chat_session_subscribed(s, &ck->sub_id, rc, body, &ck->receipt);

    ngx_chat_blob_release(body);
    ngx_free(ck);
}


static void
ngx_chat_presence_check_cancel(ngx_chat_op_t *op)
{
    ngx_chat_presence_check_t  *ck = (ngx_chat_presence_check_t *) op;

    if (ck->pg) {
        ngx_chat_pg_cancel(ck->pg);
    }

    if (ck->redis) {
        ngx_chat_redis_cancel(ck->redis);
    }

    if (ck->ev.posted) {
        ngx_delete_posted_event(&ck->ev);
    }

    if (ck->waiting) {
        ngx_queue_remove(&ck->link);
    }

    if (ck->timer.timer_set) {
        ngx_del_timer(&ck->timer);
    }

    ngx_chat_blob_release(ck->body);
    ngx_free(ck);
}


/* oneself: online, seen now */

static ngx_chat_blob_t *
ngx_chat_presence_self(ngx_str_t *user)
{
    u_char           *p;
    size_t            len;
    ngx_tm_t          tm;
    ngx_time_t       *tp;
    ngx_chat_blob_t  *b;

    len = sizeof("{\"type\":\"presence\",\"userId\":\"\",\"online\":true,"
                 "\"lastSeen\":\"2024-01-01T00:00:00.000Z\"}")
          + user->len + ngx_escape_json(NULL, user->data, user->len);

    b = ngx_chat_blob_create(len);
    if (b == NULL) {
        return NULL;
    }

    tp = ngx_timeofday();
    ngx_gmtime(tp->sec, &tm);

    p = ngx_cpymem(b->data, "{\"type\":\"presence\",\"userId\":\"", 29);
    p = (u_char *) ngx_escape_json(p, user->data, user->len);
    p = ngx_sprintf(p, "\",\"online\":true,\"lastSeen\":"
                    "\"%4d-%02d-%02dT%02d:%02d:%02d.%03dZ\"}",
                    tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                    tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                    (int) tp->msec);
    *p++ = '\0';
    b->len = p - b->data;

    return b;
}


/* a cluster: the slot of a user's presence keys (its hash tag), or
 * NGX_CHAT_REDIS_SLOT_COUNT for an id too long to be a user's */

ngx_uint_t
ngx_chat_presence_slot(ngx_str_t *user)
{
    u_char  key[sizeof(NGX_CHAT_KEY_PRESENCE) + NGX_CHAT_USER_ID_MAX];

    if (user->len > NGX_CHAT_USER_ID_MAX) {
        return NGX_CHAT_REDIS_SLOT_COUNT;
    }

    return ngx_chat_redis_key_slot_of(key,
               ngx_sprintf(key, NGX_CHAT_KEY_PRESENCE "%V" NGX_CHAT_TAG_CLOSE,
                           user)
               - key);
}


ngx_chat_redis_req_t *
ngx_chat_presence_query(ngx_str_t *users, ngx_uint_t n,
    ngx_chat_redis_reply_pt handler, void *data)
{
    size_t                *lens;
    ngx_uint_t             i, slot;
    const char           **argv;
    ngx_chat_redis_req_t  *req;
    u_char                 key[sizeof(NGX_CHAT_KEY_PRESENCE)
                               + NGX_CHAT_USER_ID_MAX];

    argv = ngx_alloc((n + 2) * (sizeof(char *) + sizeof(size_t)),
                     ngx_cycle->log);
    if (argv == NULL) {
        return NULL;
    }

    lens = (size_t *) (argv + n + 2);

    for (i = 0; i < n; i++) {
        argv[i] = (char *) users[i].data;
        lens[i] = users[i].len;
    }

    if (ngx_chat_redis_is_cluster()) {
        /*
         * the users' keys are in their own slots: users of one slot in a
         * call, with the first one's presence key as the script's key
         * (the script reads ARGV; the others' keys are in the same slot);
         * ngx_chat_presence_slot() groups them (GET /presence)
         */

        slot = ngx_chat_presence_slot(&users[0]);

        for (i = 1; i < n; i++) {
            if (ngx_chat_presence_slot(&users[i]) != slot) {
                slot = NGX_CHAT_REDIS_SLOT_COUNT;
            }
        }

        if (slot == NGX_CHAT_REDIS_SLOT_COUNT) {
            ngx_free(argv);
            return NULL;
        }

        for (i = n; i > 0; i--) {
            argv[i] = argv[i - 1];
            lens[i] = lens[i - 1];
        }

        argv[0] = (char *) key;
        lens[0] = ngx_sprintf(key, NGX_CHAT_KEY_PRESENCE "%V"
                              NGX_CHAT_TAG_CLOSE, &users[0])
                  - key;

        req = ngx_chat_redis_eval(&ngx_chat_presence_query_script, handler,
                                  data, 1, (int) n + 1, argv, lens);
        ngx_free(argv);

        return req;
    }

    req = ngx_chat_redis_eval(&ngx_chat_presence_query_script, handler, data,
                              0, (int) n, argv, lens);
    ngx_free(argv);

    return req;
}
