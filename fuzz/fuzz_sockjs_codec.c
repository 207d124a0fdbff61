/* fuzz_sockjs_codec.c: SockJS framing (ngx_chat_sockjs_codec.c): a client's
 * message decoded as the transports decode it, and every string of it
 * quoted as the server quotes frames, which must read back the same;
 * valid UTF-8 input, quoted whole, must read back the same too.
 */

#include "fuzz.h"
#include "ngx_chat_sockjs_codec.h"
#include "ngx_chat_utf8.h"


/* quote p, wrap it in [ ], decode: the one string is p again */
static void
fuzz_sockjs_round_trip(const unsigned char *p, size_t len)
{
    size_t          qlen;
    json_t         *a, *s;
    const char     *err;
    unsigned char  *buf, *end;

    qlen = ngx_chat_sockjs_quote_len(p, len);
    FUZZ_ASSERT(qlen >= len + 2);

    buf = malloc(qlen + 2);
    FUZZ_ASSERT(buf != NULL);

    buf[0] = '[';
    buf[1] = '"';
    end = ngx_chat_sockjs_quote(buf + 2, p, len);
    *end++ = '"';
    FUZZ_ASSERT((size_t) (end - buf) == qlen + 1);
    *end++ = ']';

    /* no raw control character or separator left in the frame */
    FUZZ_ASSERT(memchr(buf, '\n', end - buf) == NULL);
    FUZZ_ASSERT(memchr(buf, '\0', end - buf) == NULL);

    err = NULL;
    a = ngx_chat_sockjs_decode(buf, end - buf, &err);
    FUZZ_ASSERT(a != NULL);

    s = json_array_get(a, 0);
    FUZZ_ASSERT(json_array_size(a) == 1 && json_is_string(s));
    FUZZ_ASSERT(json_string_length(s) == len);
    FUZZ_ASSERT(len == 0 || memcmp(json_string_value(s), p, len) == 0);

    json_decref(a);
    free(buf);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          i;
    json_t         *a, *s;
    const char     *err;
    unsigned char  *p;

    p = fuzz_dup(data, size);

    err = NULL;
    a = ngx_chat_sockjs_decode(p, size, &err);

    if (a == NULL) {
        FUZZ_ASSERT(err != NULL);
        FUZZ_ASSERT(size > 0 || strcmp(err, "Payload expected.") == 0);

    } else {
        FUZZ_ASSERT(json_is_array(a));

        for (i = 0; i < json_array_size(a); i++) {
            s = json_array_get(a, i);
            FUZZ_ASSERT(json_is_string(s));
            fuzz_sockjs_round_trip((const unsigned char *)
                                   json_string_value(s),
                                   json_string_length(s));
        }

        json_decref(a);
    }

    if (ngx_chat_utf8_feed(NGX_CHAT_UTF8_ACCEPT, p, size)
        == NGX_CHAT_UTF8_ACCEPT)
    {
        fuzz_sockjs_round_trip(p, size);
    }

    free(p);

    return 0;
}
