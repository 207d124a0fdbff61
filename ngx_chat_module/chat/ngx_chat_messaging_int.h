/* ngx_chat_messaging_int.h: what the files of messaging share (private):
 * an op of a session in flight, and the checks of its body. */

#ifndef _NGX_CHAT_MESSAGING_INT_H_INCLUDED_
#define _NGX_CHAT_MESSAGING_INT_H_INCLUDED_

#include <jansson.h>

#include "ngx_chat_messaging.h"
#include "ngx_chat_redis.h"
#include "ngx_chat_kafka.h"
#include "ngx_chat_pg.h"


#define NGX_CHAT_ID_EPOCH        1704067200000ULL  /* 2024-01-01T00:00Z */
#define NGX_CHAT_CONV_ID_MAX     36
#define NGX_CHAT_CLIENT_ID_MAX   64

#define NGX_CHAT_OP_SEND         0
#define NGX_CHAT_OP_TYPING       1
#define NGX_CHAT_OP_READ         2
#define NGX_CHAT_OP_EDIT         3      /* the changes (PROTOCOL.md 10) */
#define NGX_CHAT_OP_DELETE       4
#define NGX_CHAT_OP_REACT        5

#define NGX_CHAT_EMOJI_MAX       32

/*
 * Where an op is in its session's FIFO for its conversation: the ops of
 * one session on one conversation go to Redis one at a time, in the order
 * the session sent them (QUEUED until the one before has its answer), and
 * are answered in that order too (DONE until the ones before are answered).
 */
#define NGX_CHAT_STAGE_QUEUED    0      /* behind an earlier op in REDIS */
#define NGX_CHAT_STAGE_REDIS     1      /* its script (or a rebuild) runs */
#define NGX_CHAT_STAGE_LATER     2      /* accepted: Kafka holds it next */
#define NGX_CHAT_STAGE_DONE      3      /* its answer waits for earlier ops */


/* a SEND to /app/... in flight */
typedef struct {
    ngx_chat_op_t             op;
    ngx_pool_t               *pool;
    ngx_uint_t                kind;
    ngx_uint_t                tries;
    ngx_chat_redis_req_t     *redis;
    ngx_chat_kafka_req_t     *kafka;
    ngx_str_t                 conversation;
    ngx_str_t                 client_msg_id;
    ngx_str_t                 receipt;
    ngx_str_t                 keys[5];     /* members, seq, gen, dedup
                                              (SEND) or reads (READ) or
                                              history (a change), history
                                              (SEND) or delivered (READ)
                                              or changes (a change) */
    ngx_str_t                 route;       /* SEND: "<destination>\n<id>\n" */
    ngx_str_t                 seq;         /* READ: the seq read */
    ngx_str_t                 head;        /* JSON up to the seq */
    ngx_str_t                 tail;        /* JSON after the seq */
    ngx_str_t                 reply_to;    /* SEND: replyTo, or empty */
    ngx_str_t                 target;      /* a change: its message's seq */
    ngx_str_t                 value;       /* EDIT: content, REACT: emoji */
    ngx_str_t                 at;          /* a change: its time */
    ngx_chat_pg_req_t        *pg;          /* a change: the target's state */
    u_char                    state[4];    /* PostgreSQL's: the target's
                                              sender known, deleted, may
                                              delete any, has the reaction */
    ngx_str_t                 sender;      /* the target's, from PostgreSQL */
    ngx_queue_t               wait;        /* in a rebuild's waiters */
    const char               *code;        /* DONE: the answer held, */
    const char               *message;     /* NULL code: success */
    unsigned                  waiting:1;
    unsigned                  remove:1;    /* REACT: "remove":true */
    unsigned                  checked:1;   /* a change: PostgreSQL asked */
    unsigned                  stage:2;     /* NGX_CHAT_STAGE_* */
    uint64_t                  started;     /* us, the SEND's parse */
} ngx_chat_send_t;


/* ngx_chat_messaging_body.c: a body checked into op; NGX_DECLINED: it was
 * rejected (the session was told), NGX_ERROR: out of memory */
ngx_int_t ngx_chat_send_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len);
ngx_int_t ngx_chat_typing_prepare(ngx_chat_session_t *s,
    ngx_chat_send_t *op, u_char *body, size_t len);
ngx_int_t ngx_chat_read_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len);

/* ngx_chat_messaging_change.c: chat.edit, chat.delete, chat.react */
ngx_int_t ngx_chat_change_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len);

/*
 * Asks PostgreSQL for the state of op's target (op->sender, op->state),
 * then runs op again (ngx_chat_send_run) or finishes it with the error;
 * NGX_ERROR: the query could not be queued.
 */
ngx_int_t ngx_chat_change_check(ngx_chat_send_t *op);

/* ngx_chat_messaging.c: op to Redis (again); op answered (code NULL: ok) */
void ngx_chat_send_run(ngx_chat_send_t *op);
void ngx_chat_send_finish(ngx_chat_send_t *op, const char *code,
    const char *message);

/*
 * The conversationId of a body, into op and as a JSON string (NGX_DECLINED:
 * missing or not an id); what is wrong with a body that is not a JSON
 * object (NULL: out of memory).
 */
ngx_int_t ngx_chat_op_conversation(ngx_chat_send_t *op, json_t *root,
    ngx_str_t *jconv);
const char *ngx_chat_body_error(ngx_pool_t *pool, json_t *root,
    u_char *body, size_t len, json_error_t *jerr);

/* s as a JSON string (quoted, escaped) in pool */
ngx_int_t ngx_chat_json_string(ngx_pool_t *pool, ngx_str_t *out,
    const char *s, size_t len);

/* ms since the epoch; a message id (and its ms); RFC 3339 with ms */
uint64_t ngx_chat_now_ms(void);
uint64_t ngx_chat_next_id(uint64_t *ms);
u_char *ngx_chat_format_time(u_char *p, uint64_t ms);

#endif /* _NGX_CHAT_MESSAGING_INT_H_INCLUDED_ */
