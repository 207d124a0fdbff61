/* ngx_chat_ws_parser.c: RFC 6455 client frame reader, server frame writer. */

#include <string.h>

#include "ngx_chat_ws_parser.h"
#include "ngx_chat_utf8.h"


#define NGX_CHAT_WS_CONTROL_MAX  125


static ngx_chat_ws_event_e ngx_chat_ws_error(ngx_chat_ws_reader_t *r,
    ngx_chat_ws_event_t *ev, uint16_t code, const char *reason);
static ngx_chat_ws_event_e ngx_chat_ws_payload(ngx_chat_ws_reader_t *r,
    unsigned char *p, size_t n, ngx_chat_ws_event_t *ev);
static ngx_chat_ws_event_e ngx_chat_ws_message_end(ngx_chat_ws_reader_t *r,
    ngx_chat_ws_event_t *ev);
static ngx_chat_ws_event_e ngx_chat_ws_control(ngx_chat_ws_reader_t *r,
    unsigned opcode, unsigned char *p, size_t n, ngx_chat_ws_event_t *ev);
static int ngx_chat_ws_close_code_valid(unsigned code);
static void ngx_chat_ws_unmask(ngx_chat_ws_reader_t *r, unsigned char *p,
    size_t n);


void
ngx_chat_ws_reader_init(ngx_chat_ws_reader_t *r, uint64_t max_message)
{
    memset(r, 0, sizeof(ngx_chat_ws_reader_t));

    r->max_message = max_message;
    r->utf8 = NGX_CHAT_UTF8_ACCEPT;
}


/*
 * A client frame (RFC 6455, section 5.2):
 *
 *   0                   1                   2                   3
 *   0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 *  +-+-+-+-+-------+-+-------------+-------------------------------+
 *  |F|R|R|R| opcode|M| Payload len |    Extended payload length    |
 *  |I|S|S|S|  (4)  |A|     (7)     |             (16/64)           |
 *  |N|V|V|V|       |S|             |   (if payload len==126/127)   |
 *  | |1|2|3|       |K|             |                               |
 *  +-+-+-+-+-------+-+-------------+ - - - - - - - - - - - - - - - +
 *  |     Extended payload length continued, if payload len == 127  |
 *  + - - - - - - - - - - - - - - - +-------------------------------+
 *  |                               |Masking-key, if MASK set to 1  |
 *  +-------------------------------+-------------------------------+
 *  | Masking-key (continued)       |          Payload Data         |
 *  +-------------------------------- - - - - - - - - - - - - - - - +
 *  :                     Payload Data continued ...                :
 *  + - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - - +
 *
 * Payload len 0-125 is the length; 126: a 16-bit length follows; 127: a
 * 64-bit length follows (most significant bit 0). All lengths are in
 * network byte order. Client frames are always masked: payload byte i is
 * XORed with masking-key[i % 4]. Opcodes: 0 continuation, 1 text,
 * 2 binary, 8 close, 9 ping, 10 pong; control frames (8-15) carry at most
 * 125 bytes and are never fragmented, but may come between the fragments
 * of a data message.
 *
 * The header is read only when it is complete (at most 14 bytes, the
 * caller keeps the tail), but the first two bytes are checked at once.
 * Data payload is handed out piece by piece as it arrives; a control frame
 * only once it is whole.
 */

ngx_chat_ws_event_e
ngx_chat_ws_read(ngx_chat_ws_reader_t *r, unsigned char *buf, size_t len,
    size_t *consumed, ngx_chat_ws_event_t *ev)
{
    unsigned        fin, opcode, lenbits, i;
    size_t          hlen, n, avail;
    uint64_t        plen;
    unsigned char  *p, *end;

    memset(ev, 0, sizeof(ngx_chat_ws_event_t));

    if (r->closed) {
        *consumed = len;
        ev->type = NGX_CHAT_WS_AGAIN;
        return NGX_CHAT_WS_AGAIN;
    }

    *consumed = 0;

    if (r->pending_end) {
        r->pending_end = 0;
        return ngx_chat_ws_message_end(r, ev);
    }

    p = buf;
    end = buf + len;

    for ( ;; ) {

        if (r->in_frame) {
            avail = (size_t) (end - p);

            if (avail == 0) {
                *consumed = (size_t) (p - buf);
                ev->type = NGX_CHAT_WS_AGAIN;
                return NGX_CHAT_WS_AGAIN;
            }

            n = (r->frame_left < avail) ? (size_t) r->frame_left : avail;

            *consumed = (size_t) (p - buf) + n;

            if (ngx_chat_ws_payload(r, p, n, ev) == NGX_CHAT_WS_ERROR) {
                *consumed = len;
            }

            return ev->type;
        }

        avail = (size_t) (end - p);

        if (avail < 2) {
            *consumed = (size_t) (p - buf);
            ev->type = NGX_CHAT_WS_AGAIN;
            return NGX_CHAT_WS_AGAIN;
        }

        /* the first two bytes: everything but the lengths and the key */

        fin = p[0] & 0x80;
        opcode = p[0] & 0x0f;
        lenbits = p[1] & 0x7f;

        if (p[0] & 0x70) {
            *consumed = len;
            return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                     "reserved bits set");
        }

        if (!(p[1] & 0x80)) {
            *consumed = len;
            return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                     "client frame not masked");
        }

        switch (opcode) {

        case NGX_CHAT_WS_OP_CONT:
            if (!r->in_message) {
                *consumed = len;
                return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                         "continuation without a message");
            }
            break;

        case NGX_CHAT_WS_OP_TEXT:
        case NGX_CHAT_WS_OP_BINARY:
            if (r->in_message) {
                *consumed = len;
                return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                         "new message inside a "
                                         "fragmented message");
            }
            break;

        case NGX_CHAT_WS_OP_CLOSE:
        case NGX_CHAT_WS_OP_PING:
        case NGX_CHAT_WS_OP_PONG:
            if (!fin) {
                *consumed = len;
                return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                         "fragmented control frame");
            }

            if (lenbits > NGX_CHAT_WS_CONTROL_MAX) {
                *consumed = len;
                return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                         "control frame too long");
            }
            break;

        default:
            *consumed = len;
            return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                     "unknown opcode");
        }

        /* the lengths and the masking key */

        hlen = 2 + 4;

        if (lenbits == 126) {
            hlen += 2;

        } else if (lenbits == 127) {
            hlen += 8;
        }

        if (avail < hlen) {
            *consumed = (size_t) (p - buf);
            ev->type = NGX_CHAT_WS_AGAIN;
            return NGX_CHAT_WS_AGAIN;
        }

        if (lenbits == 126) {
            plen = ((uint64_t) p[2] << 8) | p[3];

        } else if (lenbits == 127) {
            if (p[2] & 0x80) {
                *consumed = len;
                return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                         "64-bit length with the most "
                                         "significant bit set");
            }

            plen = 0;
            for (i = 0; i < 8; i++) {
                plen = (plen << 8) | p[2 + i];
            }

        } else {
            plen = lenbits;
        }

        /* control frames: only when complete */

        if (opcode & 0x08) {
            if (avail - hlen < plen) {
                *consumed = (size_t) (p - buf);
                ev->type = NGX_CHAT_WS_AGAIN;
                return NGX_CHAT_WS_AGAIN;
            }

            memcpy(r->mask, p + hlen - 4, 4);
            r->mask_pos = 0;

            *consumed = (size_t) (p - buf) + hlen + (size_t) plen;

            return ngx_chat_ws_control(r, opcode, p + hlen, (size_t) plen,
                                       ev);
        }

        /* data frames */

        if (r->max_message
            && (plen > r->max_message
                || r->message_len > r->max_message - plen))
        {
            *consumed = len;
            return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_TOO_BIG,
                                     "message too big");
        }

        if (opcode != NGX_CHAT_WS_OP_CONT) {
            r->in_message = 1;
            r->message_binary = (opcode == NGX_CHAT_WS_OP_BINARY);
            r->message_len = 0;
            r->utf8 = NGX_CHAT_UTF8_ACCEPT;
        }

        r->message_len += plen;
        r->frame_left = plen;
        r->frame_fin = fin ? 1 : 0;
        memcpy(r->mask, p + hlen - 4, 4);
        r->mask_pos = 0;

        p += hlen;

        if (plen) {
            r->in_frame = 1;
            continue;
        }

        if (fin) {
            *consumed = (size_t) (p - buf);
            return ngx_chat_ws_message_end(r, ev);
        }

        /* an empty non-final fragment: nothing to report */
    }
}


static ngx_chat_ws_event_e
ngx_chat_ws_payload(ngx_chat_ws_reader_t *r, unsigned char *p, size_t n,
    ngx_chat_ws_event_t *ev)
{
    ngx_chat_ws_unmask(r, p, n);

    r->frame_left -= n;

    if (!r->message_binary) {
        r->utf8 = ngx_chat_utf8_feed(r->utf8, p, n);

        if (r->utf8 == NGX_CHAT_UTF8_REJECT) {
            return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_INVALID_DATA,
                                     "invalid UTF-8 in a text message");
        }

        if (r->frame_left == 0 && r->frame_fin
            && r->utf8 != NGX_CHAT_UTF8_ACCEPT)
        {
            return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_INVALID_DATA,
                                     "text message ends inside a "
                                     "UTF-8 character");
        }
    }

    if (r->frame_left == 0) {
        r->in_frame = 0;

        if (r->frame_fin) {
            r->pending_end = 1;
        }
    }

    ev->type = NGX_CHAT_WS_DATA;
    ev->binary = r->message_binary;
    ev->data = p;
    ev->len = n;

    return NGX_CHAT_WS_DATA;
}


static ngx_chat_ws_event_e
ngx_chat_ws_message_end(ngx_chat_ws_reader_t *r, ngx_chat_ws_event_t *ev)
{
    if (!r->message_binary && r->utf8 != NGX_CHAT_UTF8_ACCEPT) {
        return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_INVALID_DATA,
                                 "text message ends inside a "
                                 "UTF-8 character");
    }

    r->in_message = 0;
    r->in_frame = 0;
    r->frame_left = 0;
    r->message_len = 0;
    r->utf8 = NGX_CHAT_UTF8_ACCEPT;

    ev->type = NGX_CHAT_WS_MESSAGE_END;
    ev->binary = r->message_binary;

    return NGX_CHAT_WS_MESSAGE_END;
}


static ngx_chat_ws_event_e
ngx_chat_ws_control(ngx_chat_ws_reader_t *r, unsigned opcode,
    unsigned char *p, size_t n, ngx_chat_ws_event_t *ev)
{
    unsigned  code;

    ngx_chat_ws_unmask(r, p, n);

    switch (opcode) {

    case NGX_CHAT_WS_OP_PING:
        ev->type = NGX_CHAT_WS_PING;
        ev->data = p;
        ev->len = n;
        return NGX_CHAT_WS_PING;

    case NGX_CHAT_WS_OP_PONG:
        ev->type = NGX_CHAT_WS_PONG;
        ev->data = p;
        ev->len = n;
        return NGX_CHAT_WS_PONG;

    default: /* NGX_CHAT_WS_OP_CLOSE */
        break;
    }

    if (n == 0) {
        r->closed = 1;
        ev->type = NGX_CHAT_WS_CLOSE;
        ev->code = NGX_CHAT_WS_CLOSE_NO_STATUS;
        ev->data = p;
        ev->len = 0;
        return NGX_CHAT_WS_CLOSE;
    }

    if (n == 1) {
        return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                 "close frame with a 1-byte payload");
    }

    code = ((unsigned) p[0] << 8) | p[1];

    if (!ngx_chat_ws_close_code_valid(code)) {
        return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_PROTOCOL,
                                 "invalid close code");
    }

    if (ngx_chat_utf8_feed(NGX_CHAT_UTF8_ACCEPT, p + 2, n - 2)
        != NGX_CHAT_UTF8_ACCEPT)
    {
        return ngx_chat_ws_error(r, ev, NGX_CHAT_WS_CLOSE_INVALID_DATA,
                                 "invalid UTF-8 in a close reason");
    }

    r->closed = 1;

    ev->type = NGX_CHAT_WS_CLOSE;
    ev->code = (uint16_t) code;
    ev->data = p + 2;
    ev->len = n - 2;

    return NGX_CHAT_WS_CLOSE;
}


/* RFC 6455 7.4 and the IANA registry (1012-1014 are registered since) */

static int
ngx_chat_ws_close_code_valid(unsigned code)
{
    if (code >= 1000 && code <= 1003) {
        return 1;
    }

    if (code >= 1007 && code <= 1014) {
        return 1;
    }

    if (code >= 3000 && code <= 4999) {
        return 1;
    }

    return 0;
}


static void
ngx_chat_ws_unmask(ngx_chat_ws_reader_t *r, unsigned char *p, size_t n)
{
    size_t    i;
    unsigned  pos;

    pos = r->mask_pos;

    for (i = 0; i < n; i++) {
        p[i] ^= r->mask[pos];
        pos = (pos + 1) & 3;
    }

    r->mask_pos = (uint8_t) pos;
}


static ngx_chat_ws_event_e
ngx_chat_ws_error(ngx_chat_ws_reader_t *r, ngx_chat_ws_event_t *ev,
    uint16_t code, const char *reason)
{
    r->closed = 1;

    ev->type = NGX_CHAT_WS_ERROR;
    ev->code = code;
    ev->reason = reason;
    ev->data = NULL;
    ev->len = 0;

    return NGX_CHAT_WS_ERROR;
}


size_t
ngx_chat_ws_frame_header(unsigned char *out, unsigned opcode, unsigned fin,
    uint64_t payload_len)
{
    unsigned  i;

    out[0] = (unsigned char) ((fin ? 0x80 : 0x00) | (opcode & 0x0f));

    if (payload_len < 126) {
        out[1] = (unsigned char) payload_len;
        return 2;
    }

    if (payload_len <= 0xffff) {
        out[1] = 126;
        out[2] = (unsigned char) (payload_len >> 8);
        out[3] = (unsigned char) payload_len;
        return 4;
    }

    out[1] = 127;

    for (i = 0; i < 8; i++) {
        out[2 + i] = (unsigned char) (payload_len >> (56 - 8 * i));
    }

    return 10;
}


size_t
ngx_chat_ws_close_payload(unsigned char *out, uint16_t code,
    const char *reason)
{
    size_t  n;

    out[0] = (unsigned char) (code >> 8);
    out[1] = (unsigned char) code;

    if (reason == NULL) {
        return 2;
    }

    n = strlen(reason);

    if (n > NGX_CHAT_WS_CONTROL_MAX - 2) {
        n = NGX_CHAT_WS_CONTROL_MAX - 2;

        /* do not cut a UTF-8 character in two */
        while (n > 0 && ((unsigned char) reason[n] & 0xc0) == 0x80) {
            n--;
        }
    }

    memcpy(out + 2, reason, n);

    return 2 + n;
}
