/* chat_persist.h: a record of chat.messages or chat.receipts as
 * chat-persist stores it. */

#ifndef CHAT_PERSIST_H
#define CHAT_PERSIST_H


#include <stdint.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>


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
    char        *metadata;
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


#endif /* CHAT_PERSIST_H */
