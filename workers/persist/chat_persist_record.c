/* chat_persist_record.c: validates a chat.messages record (PROTOCOL.md
 * section 5) and turns it into the values of a messages row; validates a
 * chat.receipts record. The parsed records of a batch live in an arena of
 * their own, released at once when the last of them is freed. */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat_persist.h"


#define PST_CHUNK_SIZE    (1024 * 1024)
#define PST_CHUNKS_KEPT   16


typedef struct pst_chunk_s  pst_chunk_t;

struct pst_chunk_s {
    pst_chunk_t  *next;
    size_t        size;
    size_t        used;
    /* the memory follows, aligned */
};


struct pst_arena_s {
    pst_chunk_t  *head;
    pst_chunk_t  *cur;
    size_t        nchunks;
    size_t        rows;             /* rows using the arena */
    pst_arena_t  *next;             /* in the free list */
};


#define PST_CHUNK_HDR     ((sizeof(pst_chunk_t) + 15) & ~(size_t) 15)


static pst_arena_t  *pst_arena;         /* where new records go */
static pst_arena_t  *pst_arenas_free;


/* jansson's allocator: the current arena; memory is freed with the arena */
static void *
pst_arena_alloc(size_t size)
{
    char         *p;
    size_t        csize;
    pst_chunk_t  *c;

    size = (size + 15) & ~(size_t) 15;

    for (c = pst_arena->cur; c != NULL; c = c->next) {
        if (c->used + size <= c->size) {
            p = (char *) c + PST_CHUNK_HDR + c->used;
            c->used += size;
            pst_arena->cur = c;
            return p;
        }

        if (c->next != NULL) {
            c->next->used = 0;
        }
    }

    csize = size > PST_CHUNK_SIZE ? size : PST_CHUNK_SIZE;

    c = malloc(PST_CHUNK_HDR + csize);
    if (c == NULL) {
        return NULL;
    }

    c->size = csize;
    c->used = size;

    /* after the current chunk: those after it (all full) are skipped */
    if (pst_arena->cur != NULL) {
        c->next = pst_arena->cur->next;
        pst_arena->cur->next = c;

    } else {
        c->next = pst_arena->head;
        pst_arena->head = c;
    }

    pst_arena->cur = c;
    pst_arena->nchunks++;

    return (char *) c + PST_CHUNK_HDR;
}


static void
pst_arena_nofree(void *p)
{
    (void) p;
}


static pst_arena_t *
pst_arena_get(void)
{
    pst_arena_t  *a;

    a = pst_arenas_free;

    if (a != NULL) {
        pst_arenas_free = a->next;

    } else {
        a = calloc(1, sizeof(pst_arena_t));
        if (a == NULL) {
            return NULL;
        }
    }

    a->cur = a->head;

    if (a->head != NULL) {
        a->head->used = 0;
    }

    a->rows = 0;
    a->next = NULL;

    return a;
}


/* no row uses it any more: to the free list, most of its chunks kept */
static void
pst_arena_release(pst_arena_t *a)
{
    pst_chunk_t  *c, *next;

    if (a->nchunks > PST_CHUNKS_KEPT && a->head != NULL) {
        for (c = a->head->next; c != NULL; c = next) {
            next = c->next;
            free(c);
        }

        a->head->next = NULL;
        a->nchunks = 1;
    }

    a->next = pst_arenas_free;
    pst_arenas_free = a;
}


int
pst_records_init(void)
{
    pst_arena = pst_arena_get();
    if (pst_arena == NULL) {
        return -1;
    }

    json_set_alloc_funcs(pst_arena_alloc, pst_arena_nofree);

    return 0;
}


int
pst_records_next(void)
{
    pst_arena_t  *a;

    if (pst_arena->rows == 0) {
        return 0;                   /* empty: it goes on */
    }

    a = pst_arena_get();
    if (a == NULL) {
        return -1;                  /* the same one goes on */
    }

    pst_arena = a;

    return 0;
}


static void
pst_row_start(pst_row_t *row)
{
    row->arena = pst_arena;
    pst_arena->rows++;
}


/* RFC 3339: 2025-01-31T12:34:56[.fff]Z or with an offset +HH:MM */
static int
pst_rfc3339_ok(const char *s)
{
    const char  *p;
    int          i;

    static const char  pattern[] = "dddd-dd-ddTdd:dd:dd";

    for (i = 0; pattern[i]; i++) {
        if (pattern[i] == 'd') {
            if (!isdigit((unsigned char) s[i])) {
                return 0;
            }

        } else if (pattern[i] == 'T') {
            if (s[i] != 'T' && s[i] != 't') {
                return 0;
            }

        } else if (s[i] != pattern[i]) {
            return 0;
        }
    }

    p = s + i;

    if (*p == '.') {
        p++;

        for (i = 0; isdigit((unsigned char) p[i]); i++) { /* void */ }

        if (i == 0 || i > 9) {
            return 0;
        }

        p += i;
    }

    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        return 1;
    }

    return (*p == '+' || *p == '-')
           && isdigit((unsigned char) p[1]) && isdigit((unsigned char) p[2])
           && p[3] == ':'
           && isdigit((unsigned char) p[4]) && isdigit((unsigned char) p[5])
           && p[6] == '\0';
}


static const char *
pst_get_string(json_t *root, const char *name, int required)
{
    json_t  *v;

    v = json_object_get(root, name);

    if (v == NULL || json_is_null(v)) {
        return required ? NULL : "";
    }

    return json_is_string(v) ? json_string_value(v) : NULL;
}


const char *
pst_row_parse(pst_row_t *row, const rd_kafka_message_t *m)
{
    json_t       *root, *v;
    const char   *s;
    char         *end;
    json_int_t    n;
    long long     id;
    json_error_t  jerr;

    pst_row_start(row);

    root = json_loadb(m->payload, m->len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return "not valid JSON (or a string with a NUL)";
    }

    row->root = root;

    if (!json_is_object(root)) {
        return "not a JSON object";
    }

    /* a message, or a change of one (PROTOCOL.md section 10) */

    v = json_object_get(root, "type");
    row->kind = v == NULL ? "message"
                : json_is_string(v) ? json_string_value(v) : "";

    if (strcmp(row->kind, "message") != 0
        && strcmp(row->kind, "message.edited") != 0
        && strcmp(row->kind, "message.deleted") != 0
        && strcmp(row->kind, "reaction.added") != 0
        && strcmp(row->kind, "reaction.removed") != 0)
    {
        return "\"type\" is not \"message\" or a change of one";
    }

    v = json_object_get(root, "messageId");

    if (json_is_string(v)) {
        s = json_string_value(v);
        errno = 0;
        id = strtoll(s, &end, 10);

        if (!isdigit((unsigned char) *s) || *end != '\0' || errno || id < 0) {
            return "\"messageId\" is not a decimal 64-bit integer";
        }

    } else if (json_is_integer(v) && json_integer_value(v) >= 0) {
        id = (long long) json_integer_value(v);

    } else {
        return "no valid \"messageId\"";
    }

    snprintf(row->id, sizeof(row->id), "%lld", id);

    v = json_object_get(root, "seq");
    n = json_is_integer(v) ? json_integer_value(v) : 0;

    if (n < 1) {
        return "\"seq\" is not a positive integer";
    }

    snprintf(row->seq, sizeof(row->seq), "%" JSON_INTEGER_FORMAT, n);

    row->conversation_id = pst_get_string(root, "conversationId", 1);
    if (row->conversation_id == NULL || *row->conversation_id == '\0') {
        return "no \"conversationId\" string";
    }

    row->sender_id = pst_get_string(root, "senderId", 1);
    if (row->sender_id == NULL || *row->sender_id == '\0') {
        return "no \"senderId\" string";
    }

    if (strcmp(row->kind, "message") == 0) {
        v = json_object_get(root, "replyTo");

        if (v != NULL && !json_is_null(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 1) {
                return "\"replyTo\" is not a positive integer";
            }

            snprintf(row->reply_buf, sizeof(row->reply_buf),
                     "%" JSON_INTEGER_FORMAT, json_integer_value(v));
            row->reply_to = row->reply_buf;
        }

    } else {
        v = json_object_get(root, "target");

        if (!json_is_integer(v) || json_integer_value(v) < 1
            || json_integer_value(v) >= n)
        {
            return "\"target\" is not an earlier seq";
        }

        snprintf(row->target_buf, sizeof(row->target_buf),
                 "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        row->target = row->target_buf;
    }

    /* a reaction's emoji is stored as its content; a delete has none */

    if (strcmp(row->kind, "message.deleted") == 0) {
        row->content = "";

    } else {
        row->content = pst_get_string(root,
                                      strncmp(row->kind, "reaction.", 9) == 0
                                      ? "emoji" : "content", 1);
    }

    if (row->content == NULL) {
        return "no \"content\" (or \"emoji\") string";
    }

    row->client_msg_id = pst_get_string(root, "clientMsgId", 0);
    if (row->client_msg_id == NULL) {
        return "\"clientMsgId\" is not a string";
    }

    if (*row->client_msg_id == '\0') {
        row->client_msg_id = NULL;
    }

    row->created_at = pst_get_string(root, "createdAt", 1);
    if (row->created_at == NULL || !pst_rfc3339_ok(row->created_at)) {
        return "\"createdAt\" is not an RFC 3339 time";
    }

    v = json_object_get(root, "metadata");

    if (v == NULL || json_is_null(v)) {
        row->metadata = "{}";

    } else if (json_is_object(v)) {
        row->metadata = json_dumps(v, JSON_COMPACT);     /* in the arena */

    } else {
        return "\"metadata\" is not an object";
    }

    if (row->metadata == NULL) {
        return "out of memory";
    }

    return NULL;
}


const char *
pst_receipt_parse(pst_row_t *row, const rd_kafka_message_t *m)
{
    json_t       *root, *v;
    const char   *s;
    json_int_t    n;
    json_error_t  jerr;

    row->receipt = 1;

    pst_row_start(row);

    root = json_loadb(m->payload, m->len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        return "not valid JSON (or a string with a NUL)";
    }

    row->root = root;

    if (!json_is_object(root)) {
        return "not a JSON object";
    }

    s = pst_get_string(root, "type", 1);

    if (s != NULL && strcmp(s, "read") == 0) {
        row->read = 1;

    } else if (s == NULL || strcmp(s, "delivered") != 0) {
        return "\"type\" is not \"delivered\" or \"read\"";
    }

    /* a watermark of 0 is valid and changes nothing */
    v = json_object_get(root, "seq");

    if (!json_is_integer(v) || (n = json_integer_value(v)) < 0) {
        return "\"seq\" is not a non-negative integer";
    }

    snprintf(row->seq, sizeof(row->seq), "%" JSON_INTEGER_FORMAT, n);

    row->conversation_id = pst_get_string(root, "conversationId", 1);
    if (row->conversation_id == NULL || *row->conversation_id == '\0') {
        return "no \"conversationId\" string";
    }

    row->user_id = pst_get_string(root, "userId", 1);
    if (row->user_id == NULL || *row->user_id == '\0') {
        return "no \"userId\" string";
    }

    row->at = pst_get_string(root, "at", 1);
    if (row->at == NULL || !pst_rfc3339_ok(row->at)) {
        return "\"at\" is not an RFC 3339 time";
    }

    return NULL;
}


/* the JSON values are not freed one by one: their arena is, at once */
void
pst_row_free(pst_row_t *row)
{
    pst_arena_t  *a;

    a = row->arena;

    row->root = NULL;
    row->metadata = NULL;
    row->arena = NULL;

    if (a == NULL || --a->rows != 0) {
        return;
    }

    if (a != pst_arena) {
        pst_arena_release(a);
        return;
    }

    /* the current arena, unused: filled again from its start */
    a->cur = a->head;

    if (a->head != NULL) {
        a->head->used = 0;
    }
}
