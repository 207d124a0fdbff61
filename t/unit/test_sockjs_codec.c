/* test_sockjs_codec.c: SockJS quoting (what jansson reads back), the close
 * frame, and the decoding of a client's message. */

#include "unit.h"
#include "ngx_chat_sockjs_codec.h"


/* quotes s (n bytes), checks the length said, returns it NUL-terminated */
static char *
quoted(const char *s, size_t n)
{
    size_t          want;
    unsigned char  *buf, *end;

    want = ngx_chat_sockjs_quote_len((const unsigned char *) s, n);
    buf = malloc(want + 1);
    if (buf == NULL) {
        abort();
    }

    buf[0] = '"';
    end = ngx_chat_sockjs_quote(buf + 1, (const unsigned char *) s, n);
    *end++ = '"';
    CHECK_INT(end - buf, want);
    *end = '\0';

    return (char *) buf;
}


static void
test_quote_escapes(void)
{
    char  *q;

    q = quoted("SEND\ndestination:/a\n\n{\"x\":\"\\\\\"}\0",
               sizeof("SEND\ndestination:/a\n\n{\"x\":\"\\\\\"}\0") - 1);
    CHECK_STR(q, "\"SEND\\ndestination:/a\\n\\n{\\\"x\\\":\\\"\\\\\\\\\\\"}"
                 "\\u0000\"");
    free(q);

    q = quoted("\t\r\x1f", 3);
    CHECK_STR(q, "\"\\u0009\\u000d\\u001f\"");
    free(q);

    /* U+2028, U+2029 escaped; other UTF-8 as it is */
    q = quoted("a\xe2\x80\xa8" "b\xe2\x80\xa9" "\xc3\xa9", 10);
    CHECK_STR(q, "\"a\\u2028b\\u2029\xc3\xa9\"");
    free(q);

    /* a lone E2 at the end is not a separator */
    q = quoted("x\xe2", 2);
    CHECK_STR(q, "\"x\xe2\"");
    free(q);

    q = quoted("", 0);
    CHECK_STR(q, "\"\"");
    free(q);
}


/* every byte value, quoted, reads back the same through a JSON parser */
static void
test_quote_round_trip(void)
{
    char          *q, *frame;
    size_t         i, len;
    json_t        *a;
    const char    *err;
    unsigned char  all[256];

    for (i = 0; i < 128; i++) {
        all[i] = (unsigned char) i;
    }

    /* valid UTF-8 after the ASCII: é, €, U+2028 */
    memcpy(all + 128, "\xc3\xa9\xe2\x82\xac\xe2\x80\xa8", 8);
    len = 136;

    q = quoted((char *) all, len);
    frame = malloc(strlen(q) + 3);
    if (frame == NULL) {
        abort();
    }

    sprintf(frame, "[%s]", q);

    a = ngx_chat_sockjs_decode((unsigned char *) frame, strlen(frame), &err);
    CHECK(a != NULL);

    if (a) {
        CHECK_INT(json_string_length(json_array_get(a, 0)), len);
        CHECK(memcmp(json_string_value(json_array_get(a, 0)), all, len)
              == 0);
        json_decref(a);
    }

    free(frame);
    free(q);
}


static void
test_close_frame(void)
{
    unsigned char  buf[64], *end;

    end = ngx_chat_sockjs_close_frame(buf, 3000, "Go away!");
    CHECK_MEM(buf, end - buf, "c[3000,\"Go away!\"]");

    end = ngx_chat_sockjs_close_frame(buf, 1008, "a \"b\"");
    CHECK_MEM(buf, end - buf, "c[1008,\"a \\\"b\\\"\"]");

    end = ngx_chat_sockjs_close_frame(buf, 1011, NULL);
    CHECK_MEM(buf, end - buf, "c[1011,\"\"]");
}


static void
test_decode(void)
{
    json_t      *a;
    const char  *err;

#define DECODE(s)  ngx_chat_sockjs_decode((unsigned char *) s,                \
                                          sizeof(s) - 1, &err)

    a = DECODE("[\"CONNECT\\n\\n\\u0000\",\"\\n\"]");
    CHECK(a != NULL);

    if (a) {
        CHECK_INT(json_array_size(a), 2);
        CHECK_INT(json_string_length(json_array_get(a, 0)), 10);
        CHECK(memcmp(json_string_value(json_array_get(a, 0)),
                     "CONNECT\n\n\0", 10) == 0);
        json_decref(a);
    }

    a = DECODE("[]");
    CHECK(a != NULL && json_array_size(a) == 0);
    json_decref(a);

    err = NULL;
    CHECK(ngx_chat_sockjs_decode((unsigned char *) "", 0, &err) == NULL);
    CHECK_STR(err, "Payload expected.");

    err = NULL;
    CHECK(DECODE("[\"x\"") == NULL);
    CHECK_STR(err, "Broken JSON encoding.");

    err = NULL;
    CHECK(DECODE("\"x\"") == NULL);
    CHECK_STR(err, "Broken JSON encoding.");

    err = NULL;
    CHECK(DECODE("[\"x\",1]") == NULL);
    CHECK_STR(err, "Broken JSON encoding.");

    err = NULL;
    CHECK(DECODE("{\"a\":\"b\"}") == NULL);
    CHECK_STR(err, "Broken JSON encoding.");

#undef DECODE
}


int
main(void)
{
    RUN(test_quote_escapes);
    RUN(test_quote_round_trip);
    RUN(test_close_frame);
    RUN(test_decode);

    UNIT_DONE("sockjs_codec");
}
