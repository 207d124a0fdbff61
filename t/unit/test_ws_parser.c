/* test_ws_parser.c: unit tests of the RFC 6455 frame reader and writer. */

#include <stdint.h>

#include "unit.h"
#include "ngx_chat_ws_parser.h"


#define BUF_SIZE  (1 << 20)


static unsigned char  wire[BUF_SIZE];     /* the client's bytes */
static size_t         wire_len;

static unsigned char  rbuf[BUF_SIZE];     /* the server's receive buffer */
static char           log_buf[BUF_SIZE];  /* what came out, as text */
static unsigned char  msg[BUF_SIZE];      /* the data message so far */
static size_t         msg_len;
static unsigned       data_events;


static const unsigned char  mask_key[4] = { 0x37, 0xfa, 0x21, 0x3d };


static void
wire_reset(void)
{
    wire_len = 0;
}


/* appends a client frame; lenform 0: minimal, 126 or 127: forced */
static void
frame_ex(unsigned b0, int masked, unsigned lenform, const void *payload,
    size_t n)
{
    size_t               i;
    unsigned char       *p;
    const unsigned char *src;

    p = wire + wire_len;
    src = payload;

    *p++ = (unsigned char) b0;

    if (lenform == 0) {
        lenform = (n < 126) ? 0 : (n <= 0xffff ? 126 : 127);
    }

    if (lenform == 0) {
        *p++ = (unsigned char) ((masked ? 0x80 : 0) | n);

    } else if (lenform == 126) {
        *p++ = (unsigned char) ((masked ? 0x80 : 0) | 126);
        *p++ = (unsigned char) (n >> 8);
        *p++ = (unsigned char) n;

    } else {
        *p++ = (unsigned char) ((masked ? 0x80 : 0) | 127);
        for (i = 0; i < 8; i++) {
            *p++ = (unsigned char) ((uint64_t) n >> (56 - 8 * i));
        }
    }

    if (masked) {
        memcpy(p, mask_key, 4);
        p += 4;
    }

    for (i = 0; i < n; i++) {
        *p++ = masked ? (unsigned char) (src[i] ^ mask_key[i % 4]) : src[i];
    }

    wire_len = (size_t) (p - wire);
}


static void
frame(unsigned fin, unsigned opcode, const char *payload, size_t n)
{
    frame_ex((fin ? 0x80 : 0) | opcode, 1, 0, payload, n);
}


#define FRAME(fin, op, lit)  frame(fin, op, lit, sizeof(lit) - 1)


static void
log_add(const char *s, const unsigned char *data, size_t n)
{
    size_t  len, i;

    len = strlen(log_buf);

    snprintf(log_buf + len, sizeof(log_buf) - len, "%s", s);
    len = strlen(log_buf);

    for (i = 0; i < n && len + 5 < sizeof(log_buf); i++) {
        if (data[i] >= 0x20 && data[i] < 0x7f && data[i] != '|') {
            log_buf[len++] = (char) data[i];

        } else {
            len += (size_t) sprintf(log_buf + len, "\\x%02x", data[i]);
        }
    }

    log_buf[len] = '\0';
}


/*
 * Feeds the wire bytes in chunks of "chunk" bytes (0: all at once) the way
 * the gateway does: append to the receive buffer, call until AGAIN, keep
 * the unconsumed tail. Consecutive DATA pieces are joined, so every
 * chunking must give the same log. Returns the log.
 */
static const char *
run(uint64_t max_message, size_t chunk)
{
    char                  tmp[64];
    size_t                off, n, have, consumed, guard;
    ngx_chat_ws_event_e   rc;
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_reader_t  r;

    ngx_chat_ws_reader_init(&r, max_message);

    log_buf[0] = '\0';
    msg_len = 0;
    data_events = 0;
    have = 0;

    if (chunk == 0) {
        chunk = wire_len ? wire_len : 1;
    }

    for (off = 0; off < wire_len; off += n) {
        n = wire_len - off < chunk ? wire_len - off : chunk;

        memcpy(rbuf + have, wire + off, n);
        have += n;

        for (guard = 0; guard < 100000; guard++) {
            rc = ngx_chat_ws_read(&r, rbuf, have, &consumed, &ev);

            if (consumed > have) {
                log_add("[consumed too much]", NULL, 0);
                return log_buf;
            }

            if (rc != ev.type) {
                log_add("[rc != ev.type]", NULL, 0);
            }

            switch (rc) {

            case NGX_CHAT_WS_DATA:
                data_events++;
                memcpy(msg + msg_len, ev.data, ev.len);
                msg_len += ev.len;
                break;

            case NGX_CHAT_WS_MESSAGE_END:
                log_add(ev.binary ? "B:" : "T:", msg, msg_len);
                log_add("|", NULL, 0);
                msg_len = 0;
                break;

            case NGX_CHAT_WS_PING:
                log_add("PING:", ev.data, ev.len);
                log_add("|", NULL, 0);
                break;

            case NGX_CHAT_WS_PONG:
                log_add("PONG:", ev.data, ev.len);
                log_add("|", NULL, 0);
                break;

            case NGX_CHAT_WS_CLOSE:
                snprintf(tmp, sizeof(tmp), "CLOSE:%u:", ev.code);
                log_add(tmp, ev.data, ev.len);
                log_add("|", NULL, 0);
                break;

            case NGX_CHAT_WS_ERROR:
                snprintf(tmp, sizeof(tmp), "ERROR:%u|", ev.code);
                log_add(tmp, NULL, 0);
                if (ev.reason == NULL) {
                    log_add("[no reason]", NULL, 0);
                }

                /* how much valid data came before depends on chunking */
                msg_len = 0;
                break;

            default:
                break;
            }

            memmove(rbuf, rbuf + consumed, have - consumed);
            have -= consumed;

            if (rc == NGX_CHAT_WS_AGAIN) {
                break;
            }
        }
    }

    if (msg_len) {
        log_add("partial:", msg, msg_len);
        log_add("|", NULL, 0);
    }

    if (have > 131) {
        log_add("[tail too long]", NULL, 0);
    }

    return log_buf;
}


/* runs whole, byte by byte and in 3- and 7-byte chunks: all must agree */
static void
check_all_chunkings(uint64_t max_message, const char *expect)
{
    static const size_t  chunks[] = { 0, 1, 2, 3, 7, 64 };
    size_t               i;
    char                 what[32];

    for (i = 0; i < sizeof(chunks) / sizeof(chunks[0]); i++) {
        snprintf(what, sizeof(what), "chunk %zu", chunks[i]);
        run(max_message, chunks[i]);

        if (strcmp(log_buf, expect) != 0) {
            fprintf(stderr, "#   %s: got      \"%s\"\n"
                            "#   %*s  expected \"%s\"\n",
                    what, log_buf, (int) strlen(what), "", expect);
            unit_checks_failed++;
        }
    }
}


static void
test_single_text(void)
{
    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "Hello");
    check_all_chunkings(0, "T:Hello|");
}


static void
test_binary_and_empty(void)
{
    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_BINARY, "\x00\xff\x80");
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "");
    FRAME(1, NGX_CHAT_WS_OP_BINARY, "");
    check_all_chunkings(0, "B:\\x00\\xff\\x80|T:|B:|");
}


static void
test_fragmented_with_ping(void)
{
    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "frag");
    FRAME(1, NGX_CHAT_WS_OP_PING, "p1");
    FRAME(0, NGX_CHAT_WS_OP_CONT, "men");
    FRAME(1, NGX_CHAT_WS_OP_PONG, "");
    FRAME(0, NGX_CHAT_WS_OP_CONT, "");
    FRAME(1, NGX_CHAT_WS_OP_PING, "p2");
    FRAME(1, NGX_CHAT_WS_OP_CONT, "ted");
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "next");
    check_all_chunkings(0, "PING:p1|PONG:|PING:p2|T:fragmented|T:next|");
}


static void
test_byte_at_a_time_events(void)
{
    size_t  n;
    char    payload[300];

    /* data comes out as it arrives, not only at the end */

    memset(payload, 'x', sizeof(payload));
    wire_reset();
    frame(1, NGX_CHAT_WS_OP_TEXT, payload, sizeof(payload));

    run(0, 1);
    CHECK_INT(data_events, sizeof(payload));

    run(0, 0);
    CHECK_INT(data_events, 1);

    /* every split point of a two-frame stream */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_BINARY, "ab");
    FRAME(1, NGX_CHAT_WS_OP_PING, "hi");
    FRAME(1, NGX_CHAT_WS_OP_CONT, "cd");

    for (n = 1; n <= wire_len; n++) {
        run(0, n);
        CHECK_STR(log_buf, "PING:hi|B:abcd|");
    }
}


static void
test_length_forms(void)
{
    static char  big[70000];
    char         expect[80];

    memset(big, 'a', sizeof(big));

    /* 16-bit and 64-bit lengths */

    wire_reset();
    frame(1, NGX_CHAT_WS_OP_BINARY, big, 126);
    run(0, 0);
    CHECK_INT(msg_len, 0);
    CHECK(strlen(log_buf) == 2 + 126 + 1);

    wire_reset();
    frame(1, NGX_CHAT_WS_OP_BINARY, big, 65535);
    frame(1, NGX_CHAT_WS_OP_BINARY, big, 65536);
    frame(1, NGX_CHAT_WS_OP_BINARY, big, sizeof(big));
    run(0, 1000);
    CHECK(strlen(log_buf) == 3 * 3 + 65535 + 65536 + sizeof(big));

    /* non-minimal length encodings are accepted */

    wire_reset();
    frame_ex(0x80 | NGX_CHAT_WS_OP_TEXT, 1, 126, "abc", 3);
    frame_ex(0x80 | NGX_CHAT_WS_OP_TEXT, 1, 127, "defg", 4);
    frame_ex(0x80 | NGX_CHAT_WS_OP_PING, 1, 0, "x", 1);
    snprintf(expect, sizeof(expect), "T:abc|T:defg|PING:x|");
    check_all_chunkings(0, expect);
}


static void
test_bad_opcodes(void)
{
    unsigned  op;

    for (op = 3; op <= 0xf; op++) {
        if (op >= 8 && op <= 0xa) {
            continue;
        }

        wire_reset();
        frame(1, op, "x", 1);
        FRAME(1, NGX_CHAT_WS_OP_TEXT, "after");
        check_all_chunkings(0, "ERROR:1002|");
    }
}


static void
test_rsv_bits(void)
{
    unsigned  rsv;

    for (rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
        wire_reset();
        frame_ex(0x80 | rsv | NGX_CHAT_WS_OP_TEXT, 1, 0, "x", 1);
        check_all_chunkings(0, "ERROR:1002|");

        wire_reset();
        frame_ex(0x80 | rsv | NGX_CHAT_WS_OP_PING, 1, 0, "", 0);
        check_all_chunkings(0, "ERROR:1002|");
    }
}


static void
test_unmasked(void)
{
    wire_reset();
    frame_ex(0x80 | NGX_CHAT_WS_OP_TEXT, 0, 0, "Hello", 5);
    check_all_chunkings(0, "ERROR:1002|");

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "ok");
    frame_ex(0x80 | NGX_CHAT_WS_OP_PING, 0, 0, "", 0);
    check_all_chunkings(0, "T:ok|ERROR:1002|");
}


static void
test_control_frame_rules(void)
{
    char  payload[126];

    memset(payload, 'p', sizeof(payload));

    /* 125 is fine, 126 is not, whatever the length form */

    wire_reset();
    frame(1, NGX_CHAT_WS_OP_PING, payload, 125);
    run(0, 1);
    CHECK(strncmp(log_buf, "PING:ppp", 8) == 0);
    CHECK(strlen(log_buf) == 5 + 125 + 1);

    wire_reset();
    frame(1, NGX_CHAT_WS_OP_PING, payload, 126);
    check_all_chunkings(0, "ERROR:1002|");

    wire_reset();
    frame_ex(0x80 | NGX_CHAT_WS_OP_PONG, 1, 127, "x", 1);
    check_all_chunkings(0, "ERROR:1002|");

    /* fragmented control frames */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_PING, "x");
    check_all_chunkings(0, "ERROR:1002|");

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_CLOSE, "");
    check_all_chunkings(0, "ERROR:1002|");
}


static void
test_continuation_rules(void)
{
    /* a continuation with no message open */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_CONT, "x");
    check_all_chunkings(0, "ERROR:1002|");

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "done");
    FRAME(0, NGX_CHAT_WS_OP_CONT, "x");
    check_all_chunkings(0, "T:done|ERROR:1002|");

    /* a new message while a fragmented one is open */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "a");
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "b");
    check_all_chunkings(0, "ERROR:1002|");

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_BINARY, "a");
    FRAME(0, NGX_CHAT_WS_OP_BINARY, "b");
    check_all_chunkings(0, "ERROR:1002|");
}


static void
test_message_too_big(void)
{
    /* exactly at the limit is fine, across fragments too */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "12345");
    FRAME(1, NGX_CHAT_WS_OP_CONT, "67890");
    check_all_chunkings(10, "T:1234567890|");

    /* one byte over: refused at the header of the second fragment */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "12345");
    FRAME(1, NGX_CHAT_WS_OP_CONT, "678901");
    check_all_chunkings(10, "ERROR:1009|");

    /* the limit is per message */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "1234567890");
    FRAME(1, NGX_CHAT_WS_OP_BINARY, "1234567890");
    check_all_chunkings(10, "T:1234567890|B:1234567890|");

    /* refused as soon as the header announces it: no payload sent */

    wire_reset();
    wire[0] = 0x80 | NGX_CHAT_WS_OP_BINARY;
    wire[1] = 0x80 | 127;
    memset(wire + 2, 0, 8);
    wire[4] = 0x01;                  /* 2^40 bytes */
    memcpy(wire + 10, mask_key, 4);
    wire_len = 14;
    check_all_chunkings(1 << 20, "ERROR:1009|");

    /* a 64-bit length with its most significant bit set */

    wire[4] = 0;
    wire[2] = 0x80;
    check_all_chunkings(0, "ERROR:1002|");
}


static void
test_utf8_fail_fast(void)
{
    /* invalid bytes in a first fragment; the message never ends */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "ok \xc0\xaf");
    check_all_chunkings(0, "ERROR:1007|");

    /* the second fragment is bad, the final one never comes */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83");
    FRAME(0, NGX_CHAT_WS_OP_CONT, "\xce\xbc\xce\xb5\xed\xa0\x80");
    FRAME(0, NGX_CHAT_WS_OP_CONT, "more");
    check_all_chunkings(0, "ERROR:1007|");

    /* within one frame whose end has not arrived yet */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "abc\xf4\x90\x80\x80 and much more");
    wire_len -= 10;
    check_all_chunkings(0, "ERROR:1007|");

    /* binary messages are not checked */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_BINARY, "\xc0\xaf");
    check_all_chunkings(0, "B:\\xc0\\xaf|");
}


static void
test_utf8_across_fragments(void)
{
    /* U+20AC split 1+2, U+1F600 split 2+1+1 over fragments */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "A\xe2");
    FRAME(0, NGX_CHAT_WS_OP_CONT, "\x82\xac" "B\xf0\x9f");
    FRAME(1, NGX_CHAT_WS_OP_PING, "");
    FRAME(0, NGX_CHAT_WS_OP_CONT, "\x98");
    FRAME(1, NGX_CHAT_WS_OP_CONT, "\x80");
    check_all_chunkings(0, "PING:|T:A\\xe2\\x82\\xacB\\xf0\\x9f\\x98\\x80|");

    /* a message that ends inside a character */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "A\xe2");
    FRAME(1, NGX_CHAT_WS_OP_CONT, "\x82");
    check_all_chunkings(0, "ERROR:1007|");

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "A\xe2\x82");
    FRAME(1, NGX_CHAT_WS_OP_CONT, "");
    check_all_chunkings(0, "ERROR:1007|");

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "\xf0\x9f\x98");
    check_all_chunkings(0, "ERROR:1007|");
}


static void
close_with_code(unsigned code, const char *reason)
{
    unsigned char  p[125];
    size_t         n;

    p[0] = (unsigned char) (code >> 8);
    p[1] = (unsigned char) code;
    n = strlen(reason);
    memcpy(p + 2, reason, n);

    wire_reset();
    frame(1, NGX_CHAT_WS_OP_CLOSE, (const char *) p, 2 + n);
}


static void
test_close_codes(void)
{
    size_t           i;
    char             expect[64];
    static const unsigned  valid[] = {
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
        1014, 3000, 3999, 4000, 4999
    };
    static const unsigned  invalid[] = {
        0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000,
        65535
    };

    for (i = 0; i < sizeof(valid) / sizeof(valid[0]); i++) {
        close_with_code(valid[i], "bye");
        snprintf(expect, sizeof(expect), "CLOSE:%u:bye|", valid[i]);
        check_all_chunkings(0, expect);
    }

    for (i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        close_with_code(invalid[i], "");
        check_all_chunkings(0, "ERROR:1002|");
    }
}


static void
test_close_payloads(void)
{
    /* empty: no status */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_CLOSE, "");
    check_all_chunkings(0, "CLOSE:1005:|");

    /* one byte */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_CLOSE, "\x03");
    check_all_chunkings(0, "ERROR:1002|");

    /* a UTF-8 reason, and an invalid one */

    close_with_code(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");
    check_all_chunkings(0, "CLOSE:1000:\\xce\\xba\\xe1\\xbd\\xb9\\xcf\\x83"
                           "\\xce\\xbc\\xce\\xb5|");

    close_with_code(1000, "bad \xce");
    check_all_chunkings(0, "ERROR:1007|");

    close_with_code(1000, "\xed\xa0\x80");
    check_all_chunkings(0, "ERROR:1007|");

    /* a close inside a fragmented message ends everything */

    wire_reset();
    FRAME(0, NGX_CHAT_WS_OP_TEXT, "half");
    FRAME(1, NGX_CHAT_WS_OP_CLOSE, "\x03\xe8");
    FRAME(1, NGX_CHAT_WS_OP_CONT, "rest");
    check_all_chunkings(0, "CLOSE:1000:|partial:half|");
}


static void
test_nothing_after_close_or_error(void)
{
    size_t                consumed;
    unsigned char         junk[] = "\x81\x85garbage that is not a frame";
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_reader_t  r;

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_CLOSE, "");
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "after");
    FRAME(1, NGX_CHAT_WS_OP_PING, "after");
    check_all_chunkings(0, "CLOSE:1005:|");

    wire_reset();
    frame(1, 0x3, "", 0);
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "after");
    check_all_chunkings(0, "ERROR:1002|");

    /* directly: AGAIN and everything consumed */

    ngx_chat_ws_reader_init(&r, 0);
    junk[0] = 0xf1;   /* RSV bits */
    CHECK(ngx_chat_ws_read(&r, junk, 5, &consumed, &ev) == NGX_CHAT_WS_ERROR);
    CHECK_INT(ev.code, 1002);
    CHECK(ev.reason != NULL);

    CHECK(ngx_chat_ws_read(&r, junk, sizeof(junk) - 1, &consumed, &ev)
          == NGX_CHAT_WS_AGAIN);
    CHECK_INT(consumed, sizeof(junk) - 1);
    CHECK(ev.type == NGX_CHAT_WS_AGAIN);
}


static void
test_again_keeps_tail(void)
{
    size_t                consumed;
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_reader_t  r;

    ngx_chat_ws_reader_init(&r, 0);

    /* empty input */

    CHECK(ngx_chat_ws_read(&r, rbuf, 0, &consumed, &ev) == NGX_CHAT_WS_AGAIN);
    CHECK_INT(consumed, 0);

    /* an incomplete header is not consumed */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_PING, "abc");
    memcpy(rbuf, wire, wire_len);

    CHECK(ngx_chat_ws_read(&r, rbuf, 5, &consumed, &ev) == NGX_CHAT_WS_AGAIN);
    CHECK_INT(consumed, 0);

    /* a whole header but an incomplete control payload neither */

    CHECK(ngx_chat_ws_read(&r, rbuf, 8, &consumed, &ev) == NGX_CHAT_WS_AGAIN);
    CHECK_INT(consumed, 0);

    CHECK(ngx_chat_ws_read(&r, rbuf, wire_len, &consumed, &ev)
          == NGX_CHAT_WS_PING);
    CHECK_INT(consumed, wire_len);
    CHECK_MEM(ev.data, ev.len, "abc");

    /* a data frame header alone is consumed; the payload comes as DATA */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "hello");
    memcpy(rbuf, wire, wire_len);

    CHECK(ngx_chat_ws_read(&r, rbuf, 6, &consumed, &ev) == NGX_CHAT_WS_AGAIN);
    CHECK_INT(consumed, 6);

    CHECK(ngx_chat_ws_read(&r, rbuf + 6, 3, &consumed, &ev)
          == NGX_CHAT_WS_DATA);
    CHECK_INT(consumed, 3);
    CHECK_MEM(ev.data, ev.len, "hel");
    CHECK(ev.binary == 0);

    CHECK(ngx_chat_ws_read(&r, rbuf + 9, 2, &consumed, &ev)
          == NGX_CHAT_WS_DATA);
    CHECK_MEM(ev.data, ev.len, "lo");

    CHECK(ngx_chat_ws_read(&r, rbuf + 11, 0, &consumed, &ev)
          == NGX_CHAT_WS_MESSAGE_END);
    CHECK_INT(consumed, 0);

    CHECK(ngx_chat_ws_read(&r, rbuf + 11, 0, &consumed, &ev)
          == NGX_CHAT_WS_AGAIN);
}


/* cases the chunked log cannot tell apart, checked call by call */
static void
test_direct_edge_cases(void)
{
    size_t                consumed;
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_reader_t  r;

    /*
     * a 1-byte close payload followed by a byte that would complete a
     * valid code (0x03 0xe8 = 1000): the reader must not look past it
     */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_CLOSE, "\x03");
    wire[wire_len++] = 0xe8;
    memcpy(rbuf, wire, wire_len);

    ngx_chat_ws_reader_init(&r, 0);
    CHECK(ngx_chat_ws_read(&r, rbuf, wire_len, &consumed, &ev)
          == NGX_CHAT_WS_ERROR);
    CHECK_INT(ev.code, 1002);

    /*
     * the last piece of a text message ending inside a character is not
     * handed out as DATA: the error comes instead
     */

    wire_reset();
    FRAME(1, NGX_CHAT_WS_OP_TEXT, "ab\xe2\x82");
    memcpy(rbuf, wire, wire_len);

    ngx_chat_ws_reader_init(&r, 0);
    CHECK(ngx_chat_ws_read(&r, rbuf, wire_len - 1, &consumed, &ev)
          == NGX_CHAT_WS_DATA);
    CHECK_MEM(ev.data, ev.len, "ab\xe2");
    CHECK(ngx_chat_ws_read(&r, rbuf + consumed, 1, &consumed, &ev)
          == NGX_CHAT_WS_ERROR);
    CHECK_INT(ev.code, 1007);
}


static void
test_writer(void)
{
    size_t          n;
    unsigned char   out[10], payload[125];
    char            reason[200];

    n = ngx_chat_ws_frame_header(out, NGX_CHAT_WS_OP_TEXT, 1, 0);
    CHECK_MEM(out, n, "\x81\x00");

    n = ngx_chat_ws_frame_header(out, NGX_CHAT_WS_OP_BINARY, 0, 125);
    CHECK_MEM(out, n, "\x02\x7d");

    n = ngx_chat_ws_frame_header(out, NGX_CHAT_WS_OP_TEXT, 1, 126);
    CHECK_MEM(out, n, "\x81\x7e\x00\x7e");

    n = ngx_chat_ws_frame_header(out, NGX_CHAT_WS_OP_CLOSE, 1, 65535);
    CHECK_MEM(out, n, "\x88\x7e\xff\xff");

    n = ngx_chat_ws_frame_header(out, NGX_CHAT_WS_OP_TEXT, 1, 65536);
    CHECK_MEM(out, n, "\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00");

    n = ngx_chat_ws_frame_header(out, NGX_CHAT_WS_OP_PONG, 1,
                                 0x0102030405060708ULL);
    CHECK_MEM(out, n, "\x8a\x7f\x01\x02\x03\x04\x05\x06\x07\x08");

    n = ngx_chat_ws_close_payload(payload, 1001, NULL);
    CHECK_MEM(payload, n, "\x03\xe9");

    n = ngx_chat_ws_close_payload(payload, 1009, "too big");
    CHECK_MEM(payload, n, "\x03\xf1too big");

    /* a long reason is cut to 123 bytes, on a character boundary */

    memset(reason, 'r', sizeof(reason));
    reason[sizeof(reason) - 1] = '\0';
    n = ngx_chat_ws_close_payload(payload, 1000, reason);
    CHECK_INT(n, 125);

    reason[121] = '\xe2';
    reason[122] = '\x82';
    reason[123] = '\xac';
    n = ngx_chat_ws_close_payload(payload, 1000, reason);
    CHECK_INT(n, 2 + 121);
}


/* what the writer makes (masked by us) reads back the same */
static void
test_writer_round_trip(void)
{
    size_t  n;
    char    reason[] = "going away";

    wire_reset();
    n = ngx_chat_ws_close_payload(wire + 200, 1001, reason);
    memcpy(msg, wire + 200, n);
    frame(1, NGX_CHAT_WS_OP_CLOSE, (const char *) msg, n);
    check_all_chunkings(0, "CLOSE:1001:going away|");
}


int
main(void)
{
    RUN(test_single_text);
    RUN(test_binary_and_empty);
    RUN(test_fragmented_with_ping);
    RUN(test_byte_at_a_time_events);
    RUN(test_length_forms);
    RUN(test_bad_opcodes);
    RUN(test_rsv_bits);
    RUN(test_unmasked);
    RUN(test_control_frame_rules);
    RUN(test_continuation_rules);
    RUN(test_message_too_big);
    RUN(test_utf8_fail_fast);
    RUN(test_utf8_across_fragments);
    RUN(test_close_codes);
    RUN(test_close_payloads);
    RUN(test_nothing_after_close_or_error);
    RUN(test_again_keeps_tail);
    RUN(test_direct_edge_cases);
    RUN(test_writer);
    RUN(test_writer_round_trip);

    UNIT_DONE("ws_parser");
}
