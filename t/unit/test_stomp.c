/* test_stomp.c: unit tests of the STOMP frame parser and header escaping. */

#include <stdint.h>

#include "unit.h"
#include "ngx_chat_stomp.h"


static unsigned char           buf[65536];
static size_t                  buf_len;
static ngx_chat_stomp_frame_t  fr;
static size_t                  used;
static const char             *err;

static ngx_chat_stomp_limits_t  lim = { 65536, 32, 1024 };


static void
set(const char *s, size_t n)
{
    memcpy(buf, s, n);
    buf_len = n;
}


#define SET(lit)  set(lit, sizeof(lit) - 1)


static ngx_chat_stomp_rc_e
parse_at(size_t off, size_t n, unsigned version)
{
    return ngx_chat_stomp_parse(buf + off, n, &lim, version, &fr, &used,
                                &err);
}


static ngx_chat_stomp_rc_e
parse(unsigned version)
{
    return parse_at(0, buf_len, version);
}


static int
header_is(const char *name, const char *value)
{
    ngx_chat_stomp_header_t  *h;

    h = ngx_chat_stomp_header(&fr, name);

    if (h == NULL) {
        fprintf(stderr, "#   no header \"%s\"\n", name);
        return 0;
    }

    if (h->value_len != strlen(value)
        || memcmp(h->value, value, h->value_len) != 0)
    {
        fprintf(stderr, "#   header \"%s\" is \"%.*s\", expected \"%s\"\n",
                name, (int) h->value_len, h->value, value);
        return 0;
    }

    return 1;
}


static void
test_simple_send(void)
{
    SET("SEND\ndestination:/app/chat.send\ncontent-type:text/plain\n\n"
        "hello\0");

    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK(fr.command == NGX_CHAT_STOMP_SEND);
    CHECK_INT(fr.nheaders, 2);
    CHECK(header_is("destination", "/app/chat.send"));
    CHECK(header_is("content-type", "text/plain"));
    CHECK(ngx_chat_stomp_header(&fr, "receipt") == NULL);
    CHECK_MEM(fr.body, fr.body_len, "hello");
    CHECK_INT(used, buf_len);
    CHECK(err == NULL);
}


static void
test_all_commands(void)
{
    size_t       i;
    char         frame[64];
    static const struct {
        const char                *name;
        ngx_chat_stomp_command_e   cmd;
    } cmds[] = {
        { "CONNECT", NGX_CHAT_STOMP_CONNECT },
        { "STOMP", NGX_CHAT_STOMP_STOMP },
        { "SEND", NGX_CHAT_STOMP_SEND },
        { "SUBSCRIBE", NGX_CHAT_STOMP_SUBSCRIBE },
        { "UNSUBSCRIBE", NGX_CHAT_STOMP_UNSUBSCRIBE },
        { "ACK", NGX_CHAT_STOMP_ACK },
        { "NACK", NGX_CHAT_STOMP_NACK },
        { "BEGIN", NGX_CHAT_STOMP_BEGIN },
        { "COMMIT", NGX_CHAT_STOMP_COMMIT },
        { "ABORT", NGX_CHAT_STOMP_ABORT },
        { "DISCONNECT", NGX_CHAT_STOMP_DISCONNECT },
        { "CONNECTED", NGX_CHAT_STOMP_CONNECTED },
        { "MESSAGE", NGX_CHAT_STOMP_MESSAGE },
        { "RECEIPT", NGX_CHAT_STOMP_RECEIPT },
        { "ERROR", NGX_CHAT_STOMP_ERROR }
    };

    for (i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        snprintf(frame, sizeof(frame), "%s\n\n", cmds[i].name);
        set(frame, strlen(frame) + 1);

        CHECK(parse(12) == NGX_CHAT_STOMP_OK);
        CHECK(fr.command == cmds[i].cmd);
        CHECK_STR(ngx_chat_stomp_command_name(cmds[i].cmd), cmds[i].name);
        CHECK_INT(fr.body_len, 0);
    }

    CHECK_STR(ngx_chat_stomp_command_name(NGX_CHAT_STOMP_UNKNOWN),
              "UNKNOWN");
}


static void
test_unknown_command(void)
{
    SET("SENDX\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    CHECK_STR(err, "unknown command");

    /* case-sensitive */

    SET("send\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    CHECK_STR(err, "unknown command");

    SET("Connect\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    /* trailing space is not allowed */

    SET("SEND \n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    /* detected before the line is complete */

    SET("GET / HTTP/1.1");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    CHECK_STR(err, "unknown command");

    /* but a prefix of a command waits */

    SET("SUBSCR");
    CHECK(parse(12) == NGX_CHAT_STOMP_AGAIN);

    SET("SEND\r");
    CHECK(parse(12) == NGX_CHAT_STOMP_AGAIN);
}


static void
test_crlf(void)
{
    SET("SUBSCRIBE\r\nid:0\r\ndestination:/user/queue/messages\r\n"
        "ack:client\r\n\r\n\0");

    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK(fr.command == NGX_CHAT_STOMP_SUBSCRIBE);
    CHECK_INT(fr.nheaders, 3);
    CHECK(header_is("id", "0"));
    CHECK(header_is("destination", "/user/queue/messages"));
    CHECK(header_is("ack", "client"));
    CHECK_INT(fr.body_len, 0);
    CHECK_INT(used, buf_len);

    /* mixed */

    SET("SEND\r\ndestination:/a\n\r\nbody\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("destination", "/a"));
    CHECK_MEM(fr.body, fr.body_len, "body");
}


static void
test_heartbeats(void)
{
    SET("\n\r\n\r\nSEND\n\n\0\n");

    CHECK(parse_at(0, buf_len, 12) == NGX_CHAT_STOMP_HEARTBEAT);
    CHECK_INT(used, 1);
    CHECK(parse_at(1, buf_len - 1, 12) == NGX_CHAT_STOMP_HEARTBEAT);
    CHECK_INT(used, 2);
    CHECK(parse_at(3, buf_len - 3, 12) == NGX_CHAT_STOMP_HEARTBEAT);
    CHECK_INT(used, 2);
    CHECK(parse_at(5, buf_len - 5, 12) == NGX_CHAT_STOMP_OK);
    CHECK_INT(used, 7);

    /* the EOL after the NUL is left for the next call */
    CHECK(parse_at(12, buf_len - 12, 12) == NGX_CHAT_STOMP_HEARTBEAT);
    CHECK_INT(used, 1);
    CHECK(parse_at(13, 0, 12) == NGX_CHAT_STOMP_AGAIN);

    /* a lone CR waits for its LF; CR then something else is invalid */

    SET("\r");
    CHECK(parse(12) == NGX_CHAT_STOMP_AGAIN);
    SET("\rX");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
}


static void
test_two_frames_in_one_buffer(void)
{
    size_t  off;

    SET("SEND\ndestination:/a\n\nfirst\0"
        "SEND\ndestination:/b\ncontent-length:6\n\nsec\0nd\0");

    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("destination", "/a"));
    CHECK_MEM(fr.body, fr.body_len, "first");

    off = used;
    CHECK(parse_at(off, buf_len - off, 12) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("destination", "/b"));
    CHECK_MEM(fr.body, fr.body_len, "sec\0nd");
    CHECK_INT(off + used, buf_len);
}


/* every prefix of a frame is AGAIN (and leaves the buffer alone) */
static void
test_frame_over_several_calls(void)
{
    size_t         n;
    unsigned char  copy[256];
    static const char  frame[] =
        "SEND\r\ndestination:/app/a\\cb\r\nk\\\\ey:v\\nal\r\n"
        "content-length:3\r\n\r\na\0b\0";

    set(frame, sizeof(frame) - 1);
    memcpy(copy, buf, buf_len);

    for (n = 0; n < buf_len; n++) {
        if (parse_at(0, n, 12) != NGX_CHAT_STOMP_AGAIN) {
            fprintf(stderr, "#   prefix of %zu bytes not AGAIN\n", n);
            unit_checks_failed++;
        }

        if (memcmp(copy, buf, buf_len) != 0) {
            fprintf(stderr, "#   prefix of %zu bytes changed the buffer\n",
                    n);
            unit_checks_failed++;
            memcpy(buf, copy, buf_len);
        }
    }

    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK_INT(used, buf_len);
    CHECK(header_is("destination", "/app/a:b"));
    CHECK(header_is("k\\ey", "v\nal"));
    CHECK_MEM(fr.body, fr.body_len, "a\0b");
}


static void
test_escaping_round_trip(void)
{
    size_t          n;
    unsigned char   out[128], *p, *end;
    static const unsigned char  raw[] = "a:b\\c\nd\re:\\";

    n = ngx_chat_stomp_escaped_len(raw, sizeof(raw) - 1);
    end = ngx_chat_stomp_escape(out, raw, sizeof(raw) - 1);
    CHECK_INT((size_t) (end - out), n);
    CHECK_MEM(out, n, "a\\cb\\\\c\\nd\\re\\c\\\\");

    CHECK_INT(ngx_chat_stomp_escaped_len((const unsigned char *) "plain", 5),
              5);

    /* write a MESSAGE with the escaped value, parse it back */

    p = buf;
    memcpy(p, "MESSAGE\nx:", 10);
    p += 10;
    p = ngx_chat_stomp_escape(p, raw, sizeof(raw) - 1);
    memcpy(p, "\n\n\0", 3);
    p += 3;
    buf_len = (size_t) (p - buf);

    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK_INT(fr.headers[0].value_len, sizeof(raw) - 1);
    CHECK(memcmp(fr.headers[0].value, raw, sizeof(raw) - 1) == 0);

    /* STOMP 1.1 decodes the same way */

    SET("MESSAGE\nx:a\\cb\\nc\\\\\n\n\0");
    CHECK(parse(11) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("x", "a:b\nc\\"));
}


static void
test_no_unescaping(void)
{
    /* STOMP 1.0: values as they are */

    SET("SEND\ndestination:/a\\cb\\t\n\n\0");
    CHECK(parse(10) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("destination", "/a\\cb\\t"));

    /* CONNECT, STOMP and CONNECTED frames are never unescaped */

    SET("CONNECT\naccept-version:1.2\npasscode:a\\cb\\t\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("passcode", "a\\cb\\t"));

    SET("STOMP\nlogin:x\\n\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("login", "x\\n"));

    SET("CONNECTED\nserver:a\\c\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("server", "a\\c"));
}


static void
test_bad_escape(void)
{
    SET("SEND\ndestination:/a\\tb\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    CHECK(err != NULL);

    SET("SEND\ndestination:/a\\\n\n\0");       /* backslash at the end */
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    SET("SEND\nna\\me:v\n\n\0");               /* in a name too */
    CHECK(parse(11) == NGX_CHAT_STOMP_INVALID);

    /* found while the frame is still incomplete */

    SET("SEND\ndestination:/a\\tb\nmore");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
}


static void
test_repeated_header_first_wins(void)
{
    SET("MESSAGE\nfoo:World\nfoo:Hello\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK_INT(fr.nheaders, 2);
    CHECK(header_is("foo", "World"));

    /* the first content-length counts too */

    SET("SEND\ncontent-length:2\ncontent-length:5\n\nab\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK_MEM(fr.body, fr.body_len, "ab");
}


static void
test_header_forms(void)
{
    /* empty value, colons in the value, empty name */

    SET("SEND\nempty:\nurl:http://x:80/\n\n\0");
    CHECK(parse(10) == NGX_CHAT_STOMP_OK);
    CHECK(header_is("empty", ""));
    CHECK(header_is("url", "http://x:80/"));

    SET("SEND\nno colon here\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    CHECK(err != NULL);

    SET("SEND\n:value\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    /* a NUL before the blank line */

    SET("SEND\ndestination:/a\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
}


static void
test_content_length(void)
{
    /* NULs inside the body */

    SET("SEND\ndestination:/a\ncontent-length:5\n\n\0a\0b\0\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK_MEM(fr.body, fr.body_len, "\0a\0b\0");
    CHECK_INT(used, buf_len);

    /* zero */

    SET("SEND\ncontent-length:0\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK_INT(fr.body_len, 0);

    /* no NUL right after the announced body */

    SET("SEND\ncontent-length:2\n\nabc\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    /* body shorter than announced: wait */

    SET("SEND\ncontent-length:10\n\nabc\0de");
    CHECK(parse(12) == NGX_CHAT_STOMP_AGAIN);

    /* not a decimal number */

    SET("SEND\ncontent-length:abc\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    SET("SEND\ncontent-length:-1\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    SET("SEND\ncontent-length: 3\n\nabc\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    SET("SEND\ncontent-length:\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    SET("SEND\ncontent-length:99999999999999999999999999\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
}


static void
test_limits(void)
{
    size_t                   i, n;
    ngx_chat_stomp_limits_t  saved;
    char                     frame[4096];

    saved = lim;

    /* max_frame: exactly at the limit is fine, one more is not */

    SET("SEND\n\n12345\0");                     /* 12 bytes */
    lim.max_frame = 12;
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    lim.max_frame = 11;
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    CHECK(err != NULL);

    /* early: the buffered part of an incomplete frame already too big */

    memset(buf, 'x', 200);
    memcpy(buf, "SEND\n\n", 6);
    buf_len = 200;
    lim.max_frame = 100;
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    lim.max_frame = 300;
    CHECK(parse(12) == NGX_CHAT_STOMP_AGAIN);

    /* early: a content-length that announces too much */

    SET("SEND\ncontent-length:1000\n\nab");
    lim.max_frame = 500;
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    /* early: a header section that never ends */

    memset(buf, 'h', 200);
    memcpy(buf, "SEND\nh:", 7);
    buf_len = 200;
    lim.max_frame = 150;
    lim.max_header_len = 1000;
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    lim = saved;

    /* max_headers */

    lim.max_headers = 3;
    SET("SEND\na:1\nb:2\nc:3\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    SET("SEND\na:1\nb:2\nc:3\nd:4\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    SET("SEND\na:1\nb:2\nc:3\nd");             /* early */
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    /* the hard cap of the array holds whatever the limit says */

    lim.max_headers = 1000;
    n = (size_t) sprintf(frame, "SEND\n");
    for (i = 0; i < NGX_CHAT_STOMP_MAX_HEADERS + 1; i++) {
        n += (size_t) sprintf(frame + n, "h%zu:v\n", i);
    }
    n += (size_t) sprintf(frame + n, "\n");
    set(frame, n + 1);
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    lim = saved;

    /* max_header_len: "name:value" without the EOL */

    lim.max_header_len = 7;
    SET("SEND\nabc:def\r\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    SET("SEND\nabc:defg\n\n\0");
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);
    SET("SEND\nabc:defgh");                     /* early */
    CHECK(parse(12) == NGX_CHAT_STOMP_INVALID);

    lim = saved;
}


static void
test_body_without_content_length(void)
{
    SET("SEND\ndestination:/a\n\nno end yet");
    CHECK(parse(12) == NGX_CHAT_STOMP_AGAIN);

    SET("SEND\ndestination:/a\n\n{\"content\":\"hi\"}\0\n\n");
    CHECK(parse(12) == NGX_CHAT_STOMP_OK);
    CHECK_MEM(fr.body, fr.body_len, "{\"content\":\"hi\"}");
    CHECK_INT(used, buf_len - 2);
}


int
main(void)
{
    RUN(test_simple_send);
    RUN(test_all_commands);
    RUN(test_unknown_command);
    RUN(test_crlf);
    RUN(test_heartbeats);
    RUN(test_two_frames_in_one_buffer);
    RUN(test_frame_over_several_calls);
    RUN(test_escaping_round_trip);
    RUN(test_no_unescaping);
    RUN(test_bad_escape);
    RUN(test_repeated_header_first_wins);
    RUN(test_header_forms);
    RUN(test_content_length);
    RUN(test_limits);
    RUN(test_body_without_content_length);

    UNIT_DONE("stomp");
}
