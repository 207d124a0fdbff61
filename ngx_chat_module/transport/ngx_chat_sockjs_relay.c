/* ngx_chat_sockjs_relay.c: SockJS HTTP sessions across nginx workers: the
 * owner registry in Redis and the relay on the workers' channels. */

#include "ngx_chat.h"
#include "ngx_chat_sockjs_int.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_keys.h"
#include "ngx_chat_lua.h"

#include <openssl/rand.h>


/*
 * An HTTP session lives in one worker, its owner; chat:sj:<id> names the
 * owner's route (SET NX by the worker that creates the session, refreshed
 * while it lives, deleted at its end). A worker that gets a request for a
 * session it does not hold forwards it on chat:sjw:<owner>:
 *
 *   A <from> <rid> <kind> <id>        a receiving request: attach it
 *   D <from> <rid> <id>               it ended (client gone, timeout)
 *   S <from> <rid> <id>\n<body>       an xhr_send's body
 *
 * and the owner answers on chat:sjw:<from>:
 *
 *   F <rid> <last>\n<frame>           a frame to write; last: then end
 *   R <rid> <status>\n<text>          the xhr_send's answer
 *
 * rid numbers the forwarder's requests. A PUBLISH that reaches nobody
 * means the owner is gone, and its sessions with it: an xhr_send gets 404;
 * a receiving request takes the id over (sockjs_claim.lua) and opens a
 * new session, as SockJS does for an unknown id (a client that had the
 * old one sees "o" again and closes: "Server lost session").
 */

/*
 * chat:sj:<id> outlives its session's quiet times: refreshed at every
 * receiving request and heartbeat; gone at most this long after a crash
 */
#define NGX_CHAT_SOCKJS_OWNER_TTL     600000

#define ngx_chat_sockjs_owner_ttl(lcf)                                       \
    ngx_max(NGX_CHAT_SOCKJS_OWNER_TTL, 2 * (lcf)->sockjs_disconnect)

/* how long a forwarder waits for the owner: an xhr_send's answer; any
 * frame of a receiving request */
/* the owner key of a session: "chat:sj:<id>" */
#define NGX_CHAT_SOCKJS_KEY_LEN(id)                                          \
    (sizeof(NGX_CHAT_KEY_SOCKJS) - 1 + (id)->len)

#define NGX_CHAT_SOCKJS_SEND_WAIT     10000
#define NGX_CHAT_SOCKJS_RECV_WAIT     60000    /* > two heartbeats */


typedef struct {
    ngx_rbtree_node_t      node;        /* key: rid (0 once deleted) */
    uint64_t               rid;
    ngx_http_request_t    *r;
    ngx_chat_loc_conf_t   *lcf;
    ngx_str_t              id;
    ngx_uint_t             kind;        /* 0: an xhr_send */
    u_char                *body;
    size_t                 body_len;
    u_char                 owner[NGX_CHAT_SOCKJS_ROUTE_LEN];
    ngx_chat_redis_req_t  *req;
    ngx_event_t            timer;
    unsigned               attached:1;  /* the owner has it: D at the end */
    unsigned               started:1;   /* the response header is out */
    unsigned               done:1;
} ngx_chat_sockjs_fwd_t;


/* a frame the owner sent to a forwarder: if nobody heard it, detach */
typedef struct {
    uint64_t               rid;
    u_char                 from[NGX_CHAT_SOCKJS_ROUTE_LEN];
    size_t                 id_len;
    u_char                 id[NGX_CHAT_SOCKJS_ID_MAX];
} ngx_chat_sockjs_sent_t;


static ngx_chat_sockjs_fwd_t *ngx_chat_sockjs_fwd_create(ngx_http_request_t *r,
    ngx_str_t *id, ngx_uint_t kind);
static ngx_chat_sockjs_fwd_t *ngx_chat_sockjs_fwd_lookup(uint64_t rid);
static void ngx_chat_sockjs_fwd_end(ngx_chat_sockjs_fwd_t *fwd);
static void ngx_chat_sockjs_fwd_cleanup(void *data);
static void ngx_chat_sockjs_fwd_timeout(ngx_event_t *ev);
static void ngx_chat_sockjs_fwd_write(ngx_chat_sockjs_fwd_t *fwd,
    ngx_uint_t last, u_char *f, size_t len);
static ngx_int_t ngx_chat_sockjs_fwd_start(ngx_chat_sockjs_fwd_t *fwd);
static void ngx_chat_sockjs_relay_claimed(redisReply *reply, void *data);
static void ngx_chat_sockjs_relay_taken(redisReply *reply, void *data);
static void ngx_chat_sockjs_relay_owner(redisReply *reply, void *data);
static void ngx_chat_sockjs_relay_published(redisReply *reply, void *data);
static void ngx_chat_sockjs_relay_delivered(redisReply *reply, void *data);
static ngx_int_t ngx_chat_sockjs_relay_publish(u_char *to, u_char *head,
    size_t head_len, u_char *body, size_t len,
    ngx_chat_redis_reply_pt handler, void *data);
static size_t ngx_chat_sockjs_owner_key(u_char *key, ngx_str_t *id);
static u_char *ngx_chat_sockjs_relay_field(u_char *p, u_char *end,
    ngx_str_t *field);


/* "chat:sjw:<route>" */
static u_char         ngx_chat_sockjs_channel[sizeof(NGX_CHAT_CHANNEL_SOCKJS)
                                              - 1
                                              + NGX_CHAT_SOCKJS_ROUTE_LEN];
static u_char        *ngx_chat_sockjs_route;
static ngx_uint_t     ngx_chat_sockjs_relay_on;
static uint64_t       ngx_chat_sockjs_rid;

static ngx_chat_redis_script_t  ngx_chat_sockjs_claim_script = {
    NGX_CHAT_LUA_SOCKJS_CLAIM,
    ""
};

static ngx_rbtree_t       ngx_chat_sockjs_fwds;
static ngx_rbtree_node_t  ngx_chat_sockjs_fwds_sentinel;


ngx_int_t
ngx_chat_sockjs_relay_init(void)
{
    u_char  rnd[NGX_CHAT_SOCKJS_ROUTE_LEN / 2];

    ngx_rbtree_init(&ngx_chat_sockjs_fwds, &ngx_chat_sockjs_fwds_sentinel,
                    ngx_rbtree_insert_value);

    if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "chat: RAND_bytes() failed for the SockJS relay");
        return NGX_ERROR;
    }

    if (ngx_chat_redis_script(&ngx_chat_sockjs_claim_script) != NGX_OK) {
        return NGX_ERROR;
    }

    ngx_chat_sockjs_route = ngx_cpymem(ngx_chat_sockjs_channel,
                                       NGX_CHAT_CHANNEL_SOCKJS,
                                       sizeof(NGX_CHAT_CHANNEL_SOCKJS) - 1);
    (void) ngx_hex_dump(ngx_chat_sockjs_route, rnd, sizeof(rnd));

    if (ngx_chat_redis_subscribe(ngx_chat_sockjs_channel,
                                 sizeof(ngx_chat_sockjs_channel))
        != NGX_OK)
    {
        return NGX_ERROR;
    }

    ngx_chat_sockjs_relay_on = 1;

    return NGX_OK;
}


ngx_uint_t
ngx_chat_sockjs_relay_channel(u_char *channel, size_t len)
{
    return ngx_chat_sockjs_relay_on
           && len == sizeof(ngx_chat_sockjs_channel)
           && ngx_memcmp(channel, ngx_chat_sockjs_channel, len) == 0;
}


ngx_uint_t
ngx_chat_sockjs_relay_ready(ngx_str_t *id)
{
    u_char  *p;

    if (!ngx_chat_sockjs_relay_on || !ngx_chat_redis_ready()
        || id->len == 0)
    {
        return 0;
    }

    /* the id travels in a line of space-separated fields */

    for (p = id->data; p < id->data + id->len; p++) {
        if (*p <= ' ') {
            return 0;
        }
    }

    return 1;
}


/* a receiving request of a session not in this worker */

ngx_int_t
ngx_chat_sockjs_relay_receive(ngx_http_request_t *r, ngx_chat_loc_conf_t *lcf,
    ngx_str_t *id, ngx_uint_t kind)
{
    u_char                 *key;
    size_t                  argvlen[7];
    const char             *argv[7];
    ngx_chat_sockjs_fwd_t  *fwd;
    u_char                  ttl[NGX_INT_T_LEN];

    if (!ngx_chat_sockjs_relay_ready(id)) {
        return NGX_DECLINED;
    }

    fwd = ngx_chat_sockjs_fwd_create(r, id, kind);
    if (fwd == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    fwd->lcf = lcf;

    key = ngx_pnalloc(r->pool, NGX_CHAT_SOCKJS_KEY_LEN(id));
    if (key == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    /* ours if nobody's (the reply: nil), else the owner's route */

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (char *) key;
    argvlen[1] = ngx_chat_sockjs_owner_key(key, id);
    argv[2] = (char *) ngx_chat_sockjs_route;
    argvlen[2] = NGX_CHAT_SOCKJS_ROUTE_LEN;
    argv[3] = "NX";
    argvlen[3] = 2;
    argv[4] = "GET";
    argvlen[4] = 3;
    argv[5] = "PX";
    argvlen[5] = 2;
    argv[6] = (char *) ttl;
    argvlen[6] = ngx_sprintf(ttl, "%M", ngx_chat_sockjs_owner_ttl(lcf)) - ttl;

    fwd->req = ngx_chat_redis_command(ngx_chat_sockjs_relay_claimed, fwd,
                                      7, argv, argvlen);
    if (fwd->req == NULL) {
        ngx_chat_sockjs_fwd_end(fwd);
        return NGX_DECLINED;
    }

    r->main->count++;

    return NGX_DONE;
}


static void
ngx_chat_sockjs_relay_claimed(redisReply *reply, void *data)
{
    ngx_chat_sockjs_fwd_t *fwd = data;

    ngx_uint_t           owned;
    ngx_http_request_t  *r;
    u_char               head[64 + NGX_CHAT_SOCKJS_ID_MAX];

    fwd->req = NULL;
    r = fwd->r;

    owned = 0;

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "SockJS session \"%V\": Redis failed, "
                      "it stays in this worker", &fwd->id);

    } else if (reply->type == REDIS_REPLY_NIL) {
        owned = 1;

    } else if (reply->type == REDIS_REPLY_STRING
               && reply->len == NGX_CHAT_SOCKJS_ROUTE_LEN)
    {
        if (ngx_memcmp(reply->str, ngx_chat_sockjs_route,
                       NGX_CHAT_SOCKJS_ROUTE_LEN) == 0)
        {
            owned = 1;

        } else {
            /* another worker's: this request becomes its receiver */

            ngx_memcpy(fwd->owner, reply->str, NGX_CHAT_SOCKJS_ROUTE_LEN);

            ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "SockJS session \"%V\" forwarded", &fwd->id);

            fwd->attached = 1;
            ngx_add_timer(&fwd->timer, NGX_CHAT_SOCKJS_RECV_WAIT);

            (void) ngx_chat_sockjs_relay_publish(fwd->owner, head,
                      ngx_sprintf(head, "A %*s %uL %ui %V",
                                  (size_t) NGX_CHAT_SOCKJS_ROUTE_LEN,
                                  ngx_chat_sockjs_route,
                                  fwd->rid, fwd->kind,
                                  &fwd->id)
                      - head, NULL, 0, ngx_chat_sockjs_relay_published,
                      (void *) (uintptr_t) fwd->rid);
            return;
        }
    }

    ngx_chat_sockjs_fwd_end(fwd);

    ngx_http_finalize_request(r, ngx_chat_sockjs_receive_local(r, fwd->lcf,
                                                   &fwd->id, fwd->kind, owned));
}


/* an xhr_send's body for a session not in this worker */

void
ngx_chat_sockjs_relay_send(ngx_http_request_t *r, ngx_str_t *id, u_char *p,
    size_t len)
{
    u_char                 *key;
    size_t                  argvlen[2];
    const char             *argv[2];
    ngx_chat_sockjs_fwd_t  *fwd;

    if (!ngx_chat_sockjs_relay_ready(id)) {
        ngx_http_finalize_request(r, NGX_HTTP_NOT_FOUND);
        return;
    }

    fwd = ngx_chat_sockjs_fwd_create(r, id, 0);
    if (fwd == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    fwd->body = p;
    fwd->body_len = len;

    key = ngx_pnalloc(r->pool, NGX_CHAT_SOCKJS_KEY_LEN(id));
    if (key == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    argv[0] = "GET";
    argvlen[0] = 3;
    argv[1] = (char *) key;
    argvlen[1] = ngx_chat_sockjs_owner_key(key, id);

    fwd->req = ngx_chat_redis_command(ngx_chat_sockjs_relay_owner, fwd,
                                      2, argv, argvlen);
    if (fwd->req == NULL) {
        ngx_http_finalize_request(r, NGX_HTTP_NOT_FOUND);
        return;
    }

    ngx_add_timer(&fwd->timer, NGX_CHAT_SOCKJS_SEND_WAIT);
}


static void
ngx_chat_sockjs_relay_owner(redisReply *reply, void *data)
{
    ngx_chat_sockjs_fwd_t *fwd = data;

    ngx_http_request_t  *r;
    u_char               head[64 + NGX_CHAT_SOCKJS_ID_MAX];

    fwd->req = NULL;
    r = fwd->r;

    if (reply == NULL || reply->type != REDIS_REPLY_STRING
        || reply->len != NGX_CHAT_SOCKJS_ROUTE_LEN
        || ngx_memcmp(reply->str, ngx_chat_sockjs_route,
                      NGX_CHAT_SOCKJS_ROUTE_LEN) == 0)
    {
        /* nobody's, or ours and gone since */
        ngx_chat_sockjs_fwd_end(fwd);
        ngx_http_finalize_request(r, NGX_HTTP_NOT_FOUND);
        return;
    }

    ngx_memcpy(fwd->owner, reply->str, NGX_CHAT_SOCKJS_ROUTE_LEN);

    if (ngx_chat_sockjs_relay_publish(fwd->owner, head,
            ngx_sprintf(head, "S %*s %uL %V\n",
                        (size_t) NGX_CHAT_SOCKJS_ROUTE_LEN,
                        ngx_chat_sockjs_route, fwd->rid,
                        &fwd->id)
            - head, fwd->body, fwd->body_len,
            ngx_chat_sockjs_relay_published, (void *) (uintptr_t) fwd->rid)
        != NGX_OK)
    {
        ngx_chat_sockjs_fwd_end(fwd);
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
    }
}


/*
 * The PUBLISH of a forwarded request: heard (a receiving request's
 * response starts, if no frame started it), or not: the owner is gone.
 */

static void
ngx_chat_sockjs_relay_published(redisReply *reply, void *data)
{
    u_char                 *key;
    size_t                  argvlen[4];
    const char             *argv[4];
    ngx_chat_sockjs_fwd_t  *fwd;
    u_char                  ttl[NGX_INT_T_LEN];

    fwd = ngx_chat_sockjs_fwd_lookup((uintptr_t) data);

    if (fwd == NULL || reply == NULL || reply->type != REDIS_REPLY_INTEGER) {
        return;
    }

    if (reply->integer != 0) {
        if (fwd->kind != 0 && !fwd->started) {
            (void) ngx_chat_sockjs_fwd_start(fwd);
        }

        return;
    }

    ngx_log_error(NGX_LOG_INFO, fwd->r->connection->log, 0,
                  "SockJS session \"%V\": its worker is gone", &fwd->id);

    fwd->attached = 0;

    if (fwd->kind == 0 || fwd->started) {
        /* (started: frames came, then the owner went) */
        ngx_chat_sockjs_fwd_end(fwd);
        ngx_http_finalize_request(fwd->r, fwd->kind == 0 ? NGX_HTTP_NOT_FOUND
                                                         : NGX_ERROR);
        return;
    }

    /* the id is nobody's: ours, if no other worker took it meanwhile */

    if (fwd->timer.timer_set) {
        ngx_del_timer(&fwd->timer);
    }

    key = ngx_pnalloc(fwd->r->pool, NGX_CHAT_SOCKJS_KEY_LEN(&fwd->id));
    if (key == NULL) {
        goto failed;
    }

    argv[0] = (char *) key;
    argvlen[0] = ngx_chat_sockjs_owner_key(key, &fwd->id);
    argv[1] = (char *) ngx_chat_sockjs_route;
    argvlen[1] = NGX_CHAT_SOCKJS_ROUTE_LEN;
    argv[2] = (char *) fwd->owner;
    argvlen[2] = NGX_CHAT_SOCKJS_ROUTE_LEN;
    argv[3] = (char *) ttl;
    argvlen[3] = ngx_sprintf(ttl, "%M", ngx_chat_sockjs_owner_ttl(fwd->lcf))
                 - ttl;

    fwd->req = ngx_chat_redis_eval(&ngx_chat_sockjs_claim_script,
                                   ngx_chat_sockjs_relay_taken, fwd, 1, 4,
                                   argv, argvlen);
    if (fwd->req != NULL) {
        return;
    }

failed:

    ngx_chat_sockjs_fwd_end(fwd);
    ngx_http_finalize_request(fwd->r, NGX_HTTP_INTERNAL_SERVER_ERROR);
}


/* the id of a gone owner's session is ours now (nil), or another's */

static void
ngx_chat_sockjs_relay_taken(redisReply *reply, void *data)
{
    ngx_chat_sockjs_fwd_t *fwd = data;

    u_char              *p;
    ngx_http_request_t  *r;
    u_char               frame[64];

    fwd->req = NULL;
    r = fwd->r;

    ngx_chat_sockjs_fwd_end(fwd);

    if (reply != NULL && reply->type == REDIS_REPLY_NIL) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "SockJS session \"%V\" taken over", &fwd->id);

        ngx_http_finalize_request(r, ngx_chat_sockjs_receive_local(r,
                                       fwd->lcf, &fwd->id, fwd->kind, 1));
        return;
    }

    /* Redis failed, or a race with another worker: the client retries */

    p = ngx_chat_sockjs_close_frame(frame, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                                    "Session lost");
    *p++ = '\n';

    ngx_http_finalize_request(r,
        ngx_chat_sockjs_receive_answer(r, fwd->kind, frame, p - frame));
}


/* a forwarded receiving request's header and prelude */

static ngx_int_t
ngx_chat_sockjs_fwd_start(ngx_chat_sockjs_fwd_t *fwd)
{
    ngx_int_t            rc;
    ngx_http_request_t  *r;

    r = fwd->r;
    fwd->started = 1;

    rc = ngx_chat_sockjs_start(r, fwd->kind);

    /* held already, since ngx_chat_sockjs_relay_receive() */
    r->main->count--;

    if (rc != NGX_OK) {
        ngx_chat_sockjs_fwd_end(fwd);
        ngx_http_finalize_request(r, rc);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the owner's frame for the client of a forwarded receiving request */

static void
ngx_chat_sockjs_fwd_write(ngx_chat_sockjs_fwd_t *fwd, ngx_uint_t last,
    u_char *f, size_t len)
{
    ngx_int_t            rc;
    ngx_buf_t           *b;
    ngx_uint_t           end;
    ngx_chain_t          cl;
    ngx_http_request_t  *r;

    r = fwd->r;

    /* an exiting worker ends it: the client opens the next one elsewhere */
    end = last || ngx_exiting;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "SockJS relay: frame for %uL, last:%ui", fwd->rid, last);

    if (!fwd->started && ngx_chat_sockjs_fwd_start(fwd) != NGX_OK) {
        return;
    }

    if (fwd->timer.timer_set) {
        ngx_del_timer(&fwd->timer);
    }

    b = ngx_create_temp_buf(r->pool, len + 16);
    if (b == NULL) {
        rc = NGX_ERROR;
        goto done;
    }

    if (fwd->kind == NGX_CHAT_SOCKJS_EVENTSOURCE) {
        b->last = ngx_cpymem(b->last, "data: ", 6);
        b->last = ngx_cpymem(b->last, f, len);
        b->last = ngx_cpymem(b->last, "\r\n\r\n", 4);

    } else {
        b->last = ngx_cpymem(b->last, f, len);
        *b->last++ = '\n';
    }

    b->flush = 1;
    b->last_buf = end;
    b->last_in_chain = 1;
    cl.buf = b;
    cl.next = NULL;

    rc = ngx_http_output_filter(r, &cl);

    if (rc != NGX_ERROR && !end) {
        ngx_add_timer(&fwd->timer, NGX_CHAT_SOCKJS_RECV_WAIT);
        return;
    }

done:

    if (last) {
        /* the owner ended it; else D tells it */
        fwd->attached = 0;
    }

    ngx_chat_sockjs_fwd_end(fwd);

    if (r->read_event_handler == ngx_chat_sockjs_test_reading) {
        r->read_event_handler = ngx_http_block_reading;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    ngx_http_finalize_request(r, rc);
}


/* a message on this worker's relay channel */

void
ngx_chat_sockjs_relay_message(u_char *payload, size_t len)
{
    u_char                 *p, *end, *nl;
    uint64_t                rid;
    ngx_int_t               n, status;
    ngx_str_t               type, from, num, arg, id;
    const char             *err;
    ngx_chat_sockjs_fwd_t  *fwd;
    u_char                  head[64];

    end = payload + len;
    nl = ngx_strlchr(payload, end, '\n');

    if (nl == NULL) {
        nl = end;
    }

    p = ngx_chat_sockjs_relay_field(payload, nl, &type);

    if (type.len != 1) {
        goto invalid;
    }

    if (type.data[0] == 'F' || type.data[0] == 'R') {
        /* an owner's answer to one of our requests */

        p = ngx_chat_sockjs_relay_field(p, nl, &num);
        p = ngx_chat_sockjs_relay_field(p, nl, &arg);

        n = ngx_atoi(arg.data, arg.len);

        if (num.len == 0 || n == NGX_ERROR || nl == end) {
            goto invalid;
        }

        rid = (uint64_t) ngx_atoof(num.data, num.len);
        fwd = ngx_chat_sockjs_fwd_lookup(rid);

        if (fwd == NULL) {
            /* ended meanwhile: the owner got (or gets) its D */
            return;
        }

        if (type.data[0] == 'F') {
            if (fwd->kind == 0) {
                goto invalid;
            }

            ngx_chat_sockjs_fwd_write(fwd, n != 0, nl + 1, end - nl - 1);
            return;
        }

        if (fwd->kind != 0) {
            goto invalid;
        }

        p = ngx_pnalloc(fwd->r->pool, end - nl);
        if (p == NULL) {
            n = NGX_HTTP_INTERNAL_SERVER_ERROR;

        } else {
            *ngx_cpymem(p, nl + 1, end - nl - 1) = '\0';
        }

        ngx_chat_sockjs_fwd_end(fwd);
        ngx_http_finalize_request(fwd->r,
            ngx_chat_sockjs_send_answer(fwd->r, n,
                                        p && p[0] ? (char *) p : NULL));
        return;
    }

    /* a forwarder's request for one of our sessions */

    p = ngx_chat_sockjs_relay_field(p, nl, &from);
    p = ngx_chat_sockjs_relay_field(p, nl, &num);

    if (from.len != NGX_CHAT_SOCKJS_ROUTE_LEN || num.len == 0) {
        goto invalid;
    }

    rid = (uint64_t) ngx_atoof(num.data, num.len);

    switch (type.data[0]) {

    case 'A':
        p = ngx_chat_sockjs_relay_field(p, nl, &arg);
        p = ngx_chat_sockjs_relay_field(p, nl, &id);

        n = ngx_atoi(arg.data, arg.len);

        if (id.len == 0 || (n != NGX_CHAT_SOCKJS_XHR
                            && n != NGX_CHAT_SOCKJS_XHR_STREAMING
                            && n != NGX_CHAT_SOCKJS_EVENTSOURCE))
        {
            goto invalid;
        }

        ngx_chat_sockjs_remote_attach(&id, from.data, rid, n);
        return;

    case 'D':
        p = ngx_chat_sockjs_relay_field(p, nl, &id);
        ngx_chat_sockjs_remote_detach(&id, from.data, rid);
        return;

    case 'S':
        p = ngx_chat_sockjs_relay_field(p, nl, &id);

        if (id.len == 0 || nl == end) {
            goto invalid;
        }

        status = ngx_chat_sockjs_remote_send(&id, nl + 1, end - nl - 1,
                                             &err);

        (void) ngx_chat_sockjs_relay_publish(from.data, head,
                  ngx_sprintf(head, "R %uL %i\n", rid, status) - head,
                  (u_char *) err, err ? ngx_strlen(err) : 0,
                  ngx_chat_redis_log_reply, NULL);
        return;
    }

invalid:

    ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                  "chat: invalid SockJS relay message \"%*s\"",
                  ngx_min((size_t) (nl - payload), 80), payload);
}


/* the owner's frame for a forwarder's request */

ngx_int_t
ngx_chat_sockjs_relay_frame(ngx_str_t *id, u_char *from, uint64_t rid,
    ngx_uint_t last, u_char *f, size_t len)
{
    ngx_chat_sockjs_sent_t  *sent;
    u_char                   head[64];

    sent = ngx_alloc(sizeof(ngx_chat_sockjs_sent_t), ngx_cycle->log);
    if (sent == NULL) {
        return NGX_ERROR;
    }

    sent->rid = rid;
    ngx_memcpy(sent->from, from, NGX_CHAT_SOCKJS_ROUTE_LEN);
    sent->id_len = ngx_min(id->len, NGX_CHAT_SOCKJS_ID_MAX);
    ngx_memcpy(sent->id, id->data, sent->id_len);

    if (ngx_chat_sockjs_relay_publish(from, head,
                      ngx_sprintf(head, "F %uL %ui\n", rid, last) - head,
                      f, len, ngx_chat_sockjs_relay_delivered, sent)
        != NGX_OK)
    {
        ngx_free(sent);
        return NGX_ERROR;
    }

    return NGX_OK;
}


/* the forwarding worker is gone (it heard nothing): its receiver too */

static void
ngx_chat_sockjs_relay_delivered(redisReply *reply, void *data)
{
    ngx_chat_sockjs_sent_t *sent = data;

    ngx_str_t  id;

    if (reply != NULL && reply->type == REDIS_REPLY_INTEGER
        && reply->integer == 0)
    {
        id.data = sent->id;
        id.len = sent->id_len;

        ngx_log_error(NGX_LOG_INFO, ngx_cycle->log, 0,
                      "SockJS session \"%V\": the worker of its receiving "
                      "request is gone", &id);

        ngx_chat_sockjs_remote_detach(&id, sent->from, sent->rid);
    }

    ngx_free(sent);
}


void
ngx_chat_sockjs_relay_refresh(ngx_str_t *id, ngx_chat_loc_conf_t *lcf,
    ngx_uint_t owned)
{
    u_char      *key;
    size_t       argvlen[3];
    const char  *argv[3];
    u_char       ttl[NGX_INT_T_LEN];

    if (!owned || !ngx_chat_sockjs_relay_ready(id)) {
        return;
    }

    key = ngx_alloc(NGX_CHAT_SOCKJS_KEY_LEN(id),
                    ngx_cycle->log);
    if (key == NULL) {
        return;
    }

    argv[0] = "PEXPIRE";
    argvlen[0] = 7;
    argv[1] = (char *) key;
    argvlen[1] = ngx_chat_sockjs_owner_key(key, id);
    argv[2] = (char *) ttl;
    argvlen[2] = ngx_sprintf(ttl, "%M", ngx_chat_sockjs_owner_ttl(lcf)) - ttl;

    (void) ngx_chat_redis_command(ngx_chat_redis_log_reply, NULL, 3, argv,
                                  argvlen);
    ngx_free(key);
}


void
ngx_chat_sockjs_relay_disown(ngx_str_t *id)
{
    u_char      *key;
    size_t       argvlen[2];
    const char  *argv[2];

    if (!ngx_chat_sockjs_relay_ready(id)) {
        /* the key expires */
        return;
    }

    key = ngx_alloc(NGX_CHAT_SOCKJS_KEY_LEN(id),
                    ngx_cycle->log);
    if (key == NULL) {
        return;
    }

    argv[0] = "DEL";
    argvlen[0] = 3;
    argv[1] = (char *) key;
    argvlen[1] = ngx_chat_sockjs_owner_key(key, id);

    (void) ngx_chat_redis_command(ngx_chat_redis_log_reply, NULL, 2, argv,
                                  argvlen);
    ngx_free(key);
}


/* writes the owner key of session id into key (NGX_CHAT_SOCKJS_KEY_LEN
 * bytes); its length */

static size_t
ngx_chat_sockjs_owner_key(u_char *key, ngx_str_t *id)
{
    return ngx_cpymem(ngx_cpymem(key, NGX_CHAT_KEY_SOCKJS,
                                 sizeof(NGX_CHAT_KEY_SOCKJS) - 1),
                      id->data, id->len)
           - key;
}


/* PUBLISH chat:sjw:<to> <head><body>; handler(reply, data) unless
 * NGX_ERROR */

static ngx_int_t
ngx_chat_sockjs_relay_publish(u_char *to, u_char *head, size_t head_len,
    u_char *body, size_t len, ngx_chat_redis_reply_pt handler, void *data)
{
    u_char                *msg;
    size_t                 argvlen[3];
    const char            *argv[3];
    ngx_chat_redis_req_t  *req;
    u_char                 channel[sizeof(ngx_chat_sockjs_channel)];

    msg = ngx_alloc(head_len + len, ngx_cycle->log);
    if (msg == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(msg, head, head_len);

    if (len) {
        ngx_memcpy(msg + head_len, body, len);
    }

    ngx_memcpy(ngx_cpymem(channel, NGX_CHAT_CHANNEL_SOCKJS,
                          sizeof(NGX_CHAT_CHANNEL_SOCKJS) - 1),
               to, NGX_CHAT_SOCKJS_ROUTE_LEN);

    argv[0] = "PUBLISH";
    argvlen[0] = 7;
    argv[1] = (char *) channel;
    argvlen[1] = sizeof(channel);
    argv[2] = (char *) msg;
    argvlen[2] = head_len + len;

    req = ngx_chat_redis_command(handler, data, 3, argv, argvlen);
    ngx_free(msg);

    return req ? NGX_OK : NGX_ERROR;
}


/* the next space-separated field before end */

static u_char *
ngx_chat_sockjs_relay_field(u_char *p, u_char *end, ngx_str_t *field)
{
    field->data = p;

    while (p < end && *p != ' ') {
        p++;
    }

    field->len = p - field->data;

    return p < end ? p + 1 : p;
}


/* the forwarded requests of this worker */

static ngx_chat_sockjs_fwd_t *
ngx_chat_sockjs_fwd_create(ngx_http_request_t *r, ngx_str_t *id,
    ngx_uint_t kind)
{
    ngx_pool_cleanup_t     *cln;
    ngx_chat_sockjs_fwd_t  *fwd;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_chat_sockjs_fwd_t));
    if (cln == NULL) {
        return NULL;
    }

    fwd = cln->data;
    ngx_memzero(fwd, sizeof(ngx_chat_sockjs_fwd_t));

    fwd->id.data = ngx_pstrdup(r->pool, id);
    if (fwd->id.data == NULL) {
        fwd->done = 1;
        return NULL;
    }

    fwd->id.len = id->len;
    fwd->r = r;
    fwd->kind = kind;
    fwd->rid = ++ngx_chat_sockjs_rid;
    fwd->node.key = (ngx_rbtree_key_t) fwd->rid;

    fwd->timer.handler = ngx_chat_sockjs_fwd_timeout;
    fwd->timer.data = fwd;
    fwd->timer.log = r->connection->log;
    fwd->timer.cancelable = 1;

    ngx_rbtree_insert(&ngx_chat_sockjs_fwds, &fwd->node);

    cln->handler = ngx_chat_sockjs_fwd_cleanup;

    return fwd;
}


static ngx_chat_sockjs_fwd_t *
ngx_chat_sockjs_fwd_lookup(uint64_t rid)
{
    ngx_rbtree_node_t  *node, *sentinel;

    node = ngx_chat_sockjs_fwds.root;
    sentinel = ngx_chat_sockjs_fwds.sentinel;

    while (node != sentinel) {
        if ((ngx_rbtree_key_t) rid == node->key) {
            return (ngx_chat_sockjs_fwd_t *) node;
        }

        node = ((ngx_rbtree_key_t) rid < node->key) ? node->left
                                                     : node->right;
    }

    return NULL;
}


/* the request no longer waits for the owner; D if the owner still has it */

static void
ngx_chat_sockjs_fwd_end(ngx_chat_sockjs_fwd_t *fwd)
{
    u_char  head[64 + NGX_CHAT_SOCKJS_ID_MAX];

    if (fwd->done) {
        return;
    }

    fwd->done = 1;

    ngx_rbtree_delete(&ngx_chat_sockjs_fwds, &fwd->node);

    if (fwd->req) {
        ngx_chat_redis_cancel(fwd->req);
        fwd->req = NULL;
    }

    if (fwd->timer.timer_set) {
        ngx_del_timer(&fwd->timer);
    }

    if (fwd->attached) {
        fwd->attached = 0;

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, fwd->r->connection->log, 0,
                       "SockJS relay: detach %uL", fwd->rid);

        (void) ngx_chat_sockjs_relay_publish(fwd->owner, head,
                  ngx_sprintf(head, "D %*s %uL %V",
                              (size_t) NGX_CHAT_SOCKJS_ROUTE_LEN,
                              ngx_chat_sockjs_route, fwd->rid,
                              &fwd->id)
                  - head, NULL, 0, ngx_chat_redis_log_reply, NULL);
    }
}


static void
ngx_chat_sockjs_fwd_cleanup(void *data)
{
    ngx_chat_sockjs_fwd_end(data);
}


/* the owner did not answer in time */

static void
ngx_chat_sockjs_fwd_timeout(ngx_event_t *ev)
{
    ngx_chat_sockjs_fwd_t *fwd = ev->data;

    u_char              *p;
    ngx_http_request_t  *r;
    u_char               frame[64];

    r = fwd->r;

    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "SockJS session \"%V\": no answer from its worker",
                  &fwd->id);

    if (fwd->kind != 0 && !fwd->started) {
        p = ngx_chat_sockjs_close_frame(frame, NGX_CHAT_WS_CLOSE_GOING_AWAY,
                                        "Session lost");
        ngx_chat_sockjs_fwd_write(fwd, 1, frame, p - frame);
        return;
    }

    ngx_chat_sockjs_fwd_end(fwd);

    if (fwd->kind == 0) {
        ngx_http_finalize_request(r, NGX_HTTP_GATEWAY_TIME_OUT);
        return;
    }

    if (r->read_event_handler == ngx_chat_sockjs_test_reading) {
        r->read_event_handler = ngx_http_block_reading;
    }

    r->write_event_handler = ngx_http_request_empty_handler;

    /* mid-response: the connection closes, the client opens the next */
    ngx_http_finalize_request(r, NGX_ERROR);
}
