/* fuzz_stomp.c: the STOMP frame codec fed as ngx_chat_session.c feeds it
 * (frames and heart-beats one after the other from one buffer), and the
 * header escaping written by the server read back by the parser.
 *
 * Input: byte 0 picks the version and the limits, the rest is the stream.
 */

#include "fuzz.h"
#include "ngx_chat_stomp.h"


static const unsigned  fuzz_stomp_versions[] = { 10, 11, 12, 12 };


/* a SEND whose "k" header is value, escaped; parsed back, it is value */
static void
fuzz_stomp_roundtrip(const unsigned char *value, size_t n)
{
    size_t                    len, elen, consumed;
    const char               *err;
    unsigned char            *frame, *p;
    ngx_chat_stomp_rc_e       rc;
    ngx_chat_stomp_frame_t    f;
    ngx_chat_stomp_header_t  *h;
    ngx_chat_stomp_limits_t   lim = { 1 << 20, 64, 1 << 20 };

    elen = ngx_chat_stomp_escaped_len(value, n);
    FUZZ_ASSERT(elen >= n && elen <= 2 * n);

    len = sizeof("SEND\nk:") - 1 + elen + sizeof("\n\n") - 1 + 1;
    frame = malloc(len);
    FUZZ_ASSERT(frame != NULL);

    p = frame;
    memcpy(p, "SEND\nk:", 7);
    p += 7;
    p = ngx_chat_stomp_escape(p, value, n);
    FUZZ_ASSERT(p == frame + 7 + elen);
    memcpy(p, "\n\n", 3);          /* and the NUL */

    rc = ngx_chat_stomp_parse(frame, len, &lim, 12, &f, &consumed, &err);

    FUZZ_ASSERT(rc == NGX_CHAT_STOMP_OK);
    FUZZ_ASSERT(consumed == len);
    FUZZ_ASSERT(f.command == NGX_CHAT_STOMP_SEND);

    h = ngx_chat_stomp_header(&f, "k");
    FUZZ_ASSERT(h != NULL);
    FUZZ_ASSERT(h->value_len == n);
    FUZZ_ASSERT(n == 0 || memcmp(h->value, value, n) == 0);

    free(frame);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t                    off, consumed, i;
    unsigned                  version;
    const char               *err;
    unsigned char            *buf, *end;
    ngx_chat_stomp_rc_e       rc;
    ngx_chat_stomp_frame_t    f;
    ngx_chat_stomp_header_t  *h;
    ngx_chat_stomp_limits_t   lim;

    if (size < 1) {
        return 0;
    }

    version = fuzz_stomp_versions[data[0] & 3];

    if (data[0] & 4) {
        /* the defaults of chat_max_frame_size and friends */
        lim.max_frame = 64 * 1024;
        lim.max_headers = 32;
        lim.max_header_len = 4096;

    } else {
        lim.max_frame = 64 + (data[0] >> 3) * 8;
        lim.max_headers = 1 + (data[0] >> 3) % 64;
        lim.max_header_len = 8 + (data[0] >> 3);
    }

    buf = fuzz_dup(data + 1, size - 1);
    end = buf + size - 1;

    for (off = 0; off < size - 1; off += consumed) {
        rc = ngx_chat_stomp_parse(buf + off, size - 1 - off, &lim, version,
                                  &f, &consumed, &err);

        if (rc == NGX_CHAT_STOMP_AGAIN) {
            break;
        }

        if (rc == NGX_CHAT_STOMP_INVALID) {
            FUZZ_ASSERT(err != NULL);
            break;
        }

        FUZZ_ASSERT(consumed > 0 && consumed <= size - 1 - off);

        if (rc == NGX_CHAT_STOMP_HEARTBEAT) {
            FUZZ_ASSERT(consumed <= 2);
            continue;
        }

        FUZZ_ASSERT(rc == NGX_CHAT_STOMP_OK);
        FUZZ_ASSERT(consumed <= lim.max_frame);
        FUZZ_ASSERT(f.nheaders <= lim.max_headers);
        FUZZ_ASSERT(ngx_chat_stomp_command_name(f.command) != NULL);

        for (i = 0; i < f.nheaders; i++) {
            h = &f.headers[i];

            FUZZ_ASSERT(h->name >= buf + off && h->name + h->name_len <= end);
            FUZZ_ASSERT(h->value >= buf + off
                        && h->value + h->value_len <= end);
            FUZZ_ASSERT(h->name_len + 1 + h->value_len <= lim.max_header_len);

            /* what the server writes back (MESSAGE headers) reads back */
            fuzz_stomp_roundtrip(h->value, h->value_len);
        }

        FUZZ_ASSERT(f.body_len == 0
                    || (f.body >= buf + off && f.body + f.body_len < end));

        (void) ngx_chat_stomp_header(&f, "destination");
        (void) ngx_chat_stomp_header(&f, "content-length");
    }

    free(buf);

    return 0;
}
