/* chat_persist.h: a record of chat.messages as chat-persist stores it. */

#ifndef CHAT_PERSIST_H
#define CHAT_PERSIST_H


#include <stdint.h>

#include <jansson.h>
#include <librdkafka/rdkafka.h>


/* one consumed record; root == NULL: a record skipped as malformed */
typedef struct {
    int32_t      partition;
    int64_t      offset;
    json_t      *root;
    char         id[24];
    char         seq[24];
    const char  *conversation_id;
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

void pst_row_free(pst_row_t *row);


#endif /* CHAT_PERSIST_H */
