/* chat_persist.h: a record of chat.messages or chat.receipts as
 * chat-persist stores it, and the PostgreSQL side of chat-persist. */

#ifndef CHAT_PERSIST_H
#define CHAT_PERSIST_H


#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>


typedef struct pst_arena_s  pst_arena_t;


/*
 * One consumed record; root == NULL: a record skipped as malformed.
 * A receipt (receipt == 1) uses seq, conversation_id, user_id, at, read.
 */
typedef struct {
    int32_t      partition;
    int64_t      offset;
    unsigned     receipt:1;
    unsigned     read:1;
    json_t      *root;
    char         id[24];
    char         seq[24];
    const char  *conversation_id;
    const char  *user_id;
    const char  *at;
    const char  *sender_id;
    const char  *content;
    const char  *client_msg_id;
    const char  *created_at;
    const char  *metadata;
    const char  *kind;          /* "message" or a change (PROTOCOL.md 9) */
    const char  *target;        /* a change: its message's seq, else NULL */
    const char  *reply_to;      /* a message's replyTo, or NULL */
    char         target_buf[24];
    char         reply_buf[24];
    pst_arena_t *arena;
} pst_row_t;


/*
 * Fills a row from a record (PROTOCOL.md section 5); returns why the
 * record cannot be stored, or NULL when it can. Free with pst_row_free().
 */
const char *pst_row_parse(pst_row_t *row, const rd_kafka_message_t *m);

/*
 * The same for a receipt of the receipts topic:
 * {"type":"delivered"|"read","conversationId","userId","seq","at"}.
 */
const char *pst_receipt_parse(pst_row_t *row, const rd_kafka_message_t *m);

void pst_row_free(pst_row_t *row);

/*
 * jansson allocates in arenas: pst_records_init() before any record,
 * pst_records_next() when the records parsed so far form a batch (the
 * next ones go to a new arena).
 */
int pst_records_init(void);
int pst_records_next(void);


/* chat_persist_pg.c */

typedef enum {
    PST_OK = 0,
    PST_ERR_CONN,       /* connection lost: reconnect, retry */
    PST_ERR_DATA,       /* a value PostgreSQL rejects (SQLSTATE class 22) */
    PST_ERR_OTHER,      /* anything else: retry with backoff, never skip */
    PST_PENDING         /* a sent batch is not answered yet */
} pst_err_e;


/* called for each record PostgreSQL rejects (then skipped) */
typedef void (*pst_skip_pt)(const pst_row_t *row);


/* connects (if not connected) and prepares the statements */
int pst_pg_connect(const char *database);
void pst_pg_close(void);

/*
 * Writes rows (skipped ones have root == NULL) in one transaction and
 * waits for it; after a data error, the records of that kind are written
 * one by one and the rejected ones skipped.
 */
pst_err_e pst_pg_write(pst_row_t *rows, size_t n, uint64_t *inserted,
    uint64_t *receipts, pst_skip_pt skip);

/*
 * Sends the same transaction without waiting (pipeline mode: no round trip
 * of its own), while at most one other is in flight; pst_pg_result()
 * answers for the oldest, PST_PENDING until it is done. On any error the
 * connection is closed, and the caller writes the rows of all the
 * transactions that were in flight again, with pst_pg_write().
 */
pst_err_e pst_pg_send(pst_row_t *rows, size_t n);
pst_err_e pst_pg_result(int wait_ms, uint64_t *inserted,
    uint64_t *receipts);
int pst_pg_inflight(void);

/* monthly partitions ahead, and retention (0: keep all) */
int pst_pg_maintenance(long long ahead, long long retention_months);


#endif /* CHAT_PERSIST_H */
