/* fuzz_ws_parser.c: the RFC 6455 frame reader fed as ngx_chat_ws.c feeds
 * it (pieces of any size, the unconsumed tail kept), and the frame writer.
 *
 * Input: byte 0 picks max_message, byte 1 the piece sizes, the rest is
 * what the client sends.
 */

#include "fuzz.h"
#include "ngx_chat_ws_parser.h"
#include "ngx_chat_utf8.h"


#define FUZZ_WS_TAIL_MAX  131   /* the header's promise: what may be left */


static const uint64_t  fuzz_ws_limits[] = { 0, 1, 125, 126, 1000, 65535,
                                            65536, 1 << 20 };


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int                   done;
    size_t                off, piece, tail, kept, len, consumed, i, n;
    uint32_t              utf8;
    uint64_t              max, message;
    unsigned              step, in_message, binary;
    unsigned char        *buf, *nbuf, out[FUZZ_WS_TAIL_MAX + 10];
    ngx_chat_ws_event_t   ev;
    ngx_chat_ws_event_e   rc;
    ngx_chat_ws_reader_t  r;

    if (size < 2) {
        return 0;
    }

    max = fuzz_ws_limits[data[0] % 8];
    step = data[1];
    data += 2;
    size -= 2;

    ngx_chat_ws_reader_init(&r, max);

    tail = 0;
    kept = 0;
    buf = NULL;
    done = 0;
    in_message = 0;
    binary = 0;
    message = 0;
    utf8 = NGX_CHAT_UTF8_ACCEPT;

    for (off = 0; off < size && !done; off += piece) {

        /* 0: all at once; else 1 to 255 bytes a time */
        piece = step ? step : size;
        piece = piece > size - off ? size - off : piece;

        /* a fresh buffer of exactly the kept tail and the new bytes */
        len = tail + piece;
        nbuf = malloc(len);
        FUZZ_ASSERT(nbuf != NULL);

        if (tail) {
            memcpy(nbuf, buf + kept, tail);
        }

        memcpy(nbuf + tail, data + off, piece);
        free(buf);
        buf = nbuf;

        i = 0;

        for ( ;; ) {
            rc = ngx_chat_ws_read(&r, buf + i, len - i, &consumed, &ev);

            FUZZ_ASSERT(consumed <= len - i);
            i += consumed;

            if (rc == NGX_CHAT_WS_AGAIN) {
                break;
            }

            switch (rc) {

            case NGX_CHAT_WS_DATA:
                FUZZ_ASSERT(ev.data >= buf && ev.data + ev.len <= buf + len);

                if (!in_message) {
                    in_message = 1;
                    binary = ev.binary;
                }

                FUZZ_ASSERT(ev.binary == binary);

                message += ev.len;
                FUZZ_ASSERT(max == 0 || message <= max);   /* 0: none */

                if (!binary) {
                    utf8 = ngx_chat_utf8_feed(utf8, ev.data, ev.len);
                    FUZZ_ASSERT(utf8 != NGX_CHAT_UTF8_REJECT);
                }

                break;

            case NGX_CHAT_WS_MESSAGE_END:
                FUZZ_ASSERT(binary || utf8 == NGX_CHAT_UTF8_ACCEPT);
                in_message = 0;
                message = 0;
                utf8 = NGX_CHAT_UTF8_ACCEPT;
                break;

            case NGX_CHAT_WS_PING:
            case NGX_CHAT_WS_PONG:
                FUZZ_ASSERT(ev.len <= 125);
                FUZZ_ASSERT(ev.len == 0
                            || (ev.data >= buf
                                && ev.data + ev.len <= buf + len));
                break;

            case NGX_CHAT_WS_CLOSE:
                FUZZ_ASSERT(ev.len <= 123);
                FUZZ_ASSERT(ngx_chat_utf8_feed(NGX_CHAT_UTF8_ACCEPT, ev.data,
                                               ev.len)
                            == NGX_CHAT_UTF8_ACCEPT);
                FUZZ_ASSERT(ev.code == NGX_CHAT_WS_CLOSE_NO_STATUS
                            || (ev.code >= 1000 && ev.code < 5000));

                /* the close frame the server answers with */
                n = ngx_chat_ws_frame_header(out, NGX_CHAT_WS_OP_CLOSE, 1,
                                             ev.len + 2);
                FUZZ_ASSERT(n == 2);
                done = 1;
                break;

            case NGX_CHAT_WS_ERROR:
                FUZZ_ASSERT(ev.code == NGX_CHAT_WS_CLOSE_PROTOCOL
                            || ev.code == NGX_CHAT_WS_CLOSE_INVALID_DATA
                            || ev.code == NGX_CHAT_WS_CLOSE_TOO_BIG);
                FUZZ_ASSERT(ev.reason != NULL);

                n = ngx_chat_ws_close_payload(out, ev.code, ev.reason);
                FUZZ_ASSERT(n >= 2 && n <= 125);
                done = 1;
                break;

            default:
                FUZZ_ASSERT(0);
            }

            if (done) {
                break;
            }
        }

        if (done) {
            break;
        }

        /* what ngx_chat_ws.c keeps for the next read */
        tail = len - i;
        kept = i;
        FUZZ_ASSERT(tail <= FUZZ_WS_TAIL_MAX);
    }

    free(buf);

    return 0;
}
