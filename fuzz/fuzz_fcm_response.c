/* fuzz_fcm_response.c: chat-push's reading of FCM's answers: the body
 * gathered by the write callback, the Retry-After header, the error body
 * that tells an unregistered or invalid token from a failure. The source
 * is included (FUZZ_FCM_CLIENT_C, set by fuzz/fuzz.mk) to reach its static
 * functions as they are.
 *
 * Input: byte 0 picks the piece sizes; the rest is either a header line
 * (when it starts with "Retry-After:", any case) or a response body.
 */

#include FUZZ_FCM_CLIENT_C    /* first: it defines _GNU_SOURCE */
#include "fuzz.h"


static void
fuzz_fcm_header(const uint8_t *data, size_t n)
{
    char       *line;
    fcm_req_t   req;

    memset(&req, 0, sizeof(fcm_req_t));
    req.retry_after = -1;

    line = (char *) fuzz_dup(data, n);

    FUZZ_ASSERT(fcm_header_cb(line, 1, n, &req) == n);
    FUZZ_ASSERT(req.retry_after >= -1
                && req.retry_after <= FCM_RETRY_AFTER_MAX);

    free(line);
}


static void
fuzz_fcm_body(const uint8_t *data, size_t n, unsigned step)
{
    size_t        off, piece, want;
    json_t       *root, *err;
    const char   *code, *st;
    fcm_buf_t     b;
    json_error_t  jerr;

    memset(&b, 0, sizeof(fcm_buf_t));

    /* as libcurl delivers it: in pieces */
    for (off = 0; off < n; off += piece) {
        piece = step ? step : n;
        piece = piece > n - off ? n - off : piece;

        FUZZ_ASSERT(fcm_write_cb((char *) data + off, 1, piece, &b) == piece);
    }

    want = n < FCM_RESPONSE_MAX ? n : FCM_RESPONSE_MAX - 1;

    if (n == 0) {
        FUZZ_ASSERT(b.len == 0);

    } else {
        FUZZ_ASSERT(b.len == want && b.len < b.cap);
        FUZZ_ASSERT(b.data[b.len] == '\0');
        FUZZ_ASSERT(memcmp(b.data, data, b.len) == 0);
    }

    /* what fcm_req_done() reads from an answer other than 200 */
    if (b.len) {
        root = json_loadb(b.data, b.len, 0, &jerr);
        err = json_object_get(root, "error");
        code = fcm_error_code(err);
        st = json_string_value(json_object_get(err, "status"));

        FUZZ_ASSERT(code == NULL || strlen(code) < b.len);
        FUZZ_ASSERT(st == NULL || strlen(st) < b.len);

        (void) fcm_token_invalid(err);

        json_decref(root);
    }

    fcm_buf_reset(&b);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) {
        return 0;
    }

    if (size > 12 && strncasecmp((const char *) data + 1, "Retry-After:", 12)
                     == 0)
    {
        fuzz_fcm_header(data + 1, size - 1);
        return 0;
    }

    fuzz_fcm_body(data + 1, size - 1, data[0]);

    return 0;
}
