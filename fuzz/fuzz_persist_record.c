/* fuzz_persist_record.c: chat-persist's parsers of chat.messages and
 * chat.receipts records, and the per-batch arenas their values live in,
 * used as chat_persist.c uses them: a batch parsed, sent, the next one
 * parsed while the first is in flight, then both released.
 *
 * Input: byte 0 picks messages or receipts; the rest is records, one a
 * line.
 */

#include <librdkafka/rdkafka.h>

#include "fuzz.h"
#include "chat_persist.h"


#define FUZZ_PST_ROWS  32


typedef struct {
    pst_row_t      row;
    unsigned char *payload;
    int            ok;
    uint64_t       hash;
} fuzz_pst_t;


static uint64_t
fuzz_pst_hash(uint64_t h, const char *s)
{
    if (s == NULL) {
        return h * 31 + 1;
    }

    for ( /* void */ ; *s; s++) {
        h = (h ^ (unsigned char) *s) * 1099511628211ULL;
    }

    return h * 31;
}


/* every value of a row: what must stay put while the row lives */
static uint64_t
fuzz_pst_row_hash(const pst_row_t *r)
{
    uint64_t  h;

    h = 14695981039346656037ULL;
    h = fuzz_pst_hash(h, r->id);
    h = fuzz_pst_hash(h, r->seq);
    h = fuzz_pst_hash(h, r->conversation_id);
    h = fuzz_pst_hash(h, r->user_id);
    h = fuzz_pst_hash(h, r->at);
    h = fuzz_pst_hash(h, r->sender_id);
    h = fuzz_pst_hash(h, r->content);
    h = fuzz_pst_hash(h, r->client_msg_id);
    h = fuzz_pst_hash(h, r->created_at);
    h = fuzz_pst_hash(h, r->metadata);

    return h;
}


static void
fuzz_pst_parse(fuzz_pst_t *f, const uint8_t *data, size_t n, int receipt)
{
    const char          *bad;
    rd_kafka_message_t   m;

    memset(f, 0, sizeof(fuzz_pst_t));
    memset(&m, 0, sizeof(rd_kafka_message_t));

    f->payload = fuzz_dup(data, n);
    m.payload = f->payload;
    m.len = n;

    bad = receipt ? pst_receipt_parse(&f->row, &m)
                  : pst_row_parse(&f->row, &m);

    if (bad != NULL) {
        /* chat_persist.c logs and frees a skipped record at once */
        pst_row_free(&f->row);
        return;
    }

    f->ok = 1;
    f->hash = fuzz_pst_row_hash(&f->row);

    FUZZ_ASSERT(f->row.conversation_id && *f->row.conversation_id);
    FUZZ_ASSERT(f->row.seq[0] >= '0' && f->row.seq[0] <= '9');

    if (receipt) {
        FUZZ_ASSERT(f->row.receipt && f->row.user_id && f->row.at);

    } else {
        FUZZ_ASSERT(f->row.id[0] >= '0' && f->row.id[0] <= '9');
        FUZZ_ASSERT(f->row.sender_id && *f->row.sender_id);
        FUZZ_ASSERT(f->row.content && f->row.created_at);
        FUZZ_ASSERT(f->row.metadata && f->row.metadata[0] == '{');
    }
}


static void
fuzz_pst_check(fuzz_pst_t *rows, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (rows[i].ok) {
            FUZZ_ASSERT(fuzz_pst_row_hash(&rows[i].row) == rows[i].hash);
        }
    }
}


static void
fuzz_pst_release(fuzz_pst_t *rows, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (rows[i].ok) {
            pst_row_free(&rows[i].row);
        }

        free(rows[i].payload);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                 receipt;
    size_t              n, half, len;
    const uint8_t      *p, *end, *nl;
    static int          init;
    static fuzz_pst_t   rows[FUZZ_PST_ROWS];

    if (!init) {
        FUZZ_ASSERT(pst_records_init() == 0);
        init = 1;
    }

    if (size < 1) {
        return 0;
    }

    receipt = data[0] & 1;
    p = data + 1;
    end = data + size;

    for (n = 0; p < end && n < FUZZ_PST_ROWS; n++) {
        nl = memchr(p, '\n', end - p);
        len = (nl ? nl : end) - p;

        fuzz_pst_parse(&rows[n], p, len, receipt);

        p += len + (nl ? 1 : 0);

        /* the first half is a batch sent to PostgreSQL; a new arena */
        if (n + 1 == (FUZZ_PST_ROWS / 2)) {
            FUZZ_ASSERT(pst_records_next() == 0);
        }
    }

    half = n < FUZZ_PST_ROWS / 2 ? n : FUZZ_PST_ROWS / 2;

    /* the first batch is written while the second one fills */
    fuzz_pst_check(rows, n);
    fuzz_pst_release(rows, half);
    fuzz_pst_check(rows + half, n - half);
    FUZZ_ASSERT(pst_records_next() == 0);
    fuzz_pst_release(rows + half, n - half);

    return 0;
}
