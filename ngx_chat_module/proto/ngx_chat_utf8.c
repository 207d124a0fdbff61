/* ngx_chat_utf8.c: incremental, fail-fast UTF-8 validator (RFC 3629). */

#include "ngx_chat_utf8.h"


/*
 * States between bytes. ACCEPT (0) is a character boundary; every other
 * state says how many continuation bytes are still due and which range the
 * next one must fall in (the narrowed ranges exclude overlong forms,
 * surrogates and code points above U+10FFFF):
 *
 *   lead byte   next byte   state          then
 *   C2..DF      80..BF      NEED1          ACCEPT
 *   E0          A0..BF      NEED2_E0       NEED1   (no overlong 3-byte)
 *   E1..EC,EE,EF 80..BF     NEED2          NEED1
 *   ED          80..9F      NEED2_ED       NEED1   (no U+D800..DFFF)
 *   F0          90..BF      NEED3_F0       NEED2   (no overlong 4-byte)
 *   F1..F3      80..BF      NEED3          NEED2
 *   F4          80..8F      NEED3_F4       NEED2   (nothing > U+10FFFF)
 *
 * C0, C1 and F5..FF never appear in UTF-8; neither does a continuation
 * byte (80..BF) at a character boundary.
 */

#define NGX_CHAT_UTF8_NEED1     1
#define NGX_CHAT_UTF8_NEED2     2
#define NGX_CHAT_UTF8_NEED2_E0  3
#define NGX_CHAT_UTF8_NEED2_ED  4
#define NGX_CHAT_UTF8_NEED3     5
#define NGX_CHAT_UTF8_NEED3_F0  6
#define NGX_CHAT_UTF8_NEED3_F4  7


static uint32_t
ngx_chat_utf8_lead(unsigned char c)
{
    if (c < 0x80) {
        return NGX_CHAT_UTF8_ACCEPT;
    }

    if (c < 0xc2) {
        /* a stray continuation byte, or an overlong C0/C1 lead */
        return NGX_CHAT_UTF8_REJECT;
    }

    if (c < 0xe0) {
        return NGX_CHAT_UTF8_NEED1;
    }

    if (c == 0xe0) {
        return NGX_CHAT_UTF8_NEED2_E0;
    }

    if (c == 0xed) {
        return NGX_CHAT_UTF8_NEED2_ED;
    }

    if (c < 0xf0) {
        return NGX_CHAT_UTF8_NEED2;
    }

    if (c == 0xf0) {
        return NGX_CHAT_UTF8_NEED3_F0;
    }

    if (c < 0xf4) {
        return NGX_CHAT_UTF8_NEED3;
    }

    if (c == 0xf4) {
        return NGX_CHAT_UTF8_NEED3_F4;
    }

    return NGX_CHAT_UTF8_REJECT;
}


static uint32_t
ngx_chat_utf8_next(uint32_t state, unsigned char c)
{
    unsigned char  lo, hi;
    uint32_t       next;

    switch (state) {

    case NGX_CHAT_UTF8_ACCEPT:
        return ngx_chat_utf8_lead(c);

    case NGX_CHAT_UTF8_NEED1:
        lo = 0x80; hi = 0xbf; next = NGX_CHAT_UTF8_ACCEPT;
        break;

    case NGX_CHAT_UTF8_NEED2:
        lo = 0x80; hi = 0xbf; next = NGX_CHAT_UTF8_NEED1;
        break;

    case NGX_CHAT_UTF8_NEED2_E0:
        lo = 0xa0; hi = 0xbf; next = NGX_CHAT_UTF8_NEED1;
        break;

    case NGX_CHAT_UTF8_NEED2_ED:
        lo = 0x80; hi = 0x9f; next = NGX_CHAT_UTF8_NEED1;
        break;

    case NGX_CHAT_UTF8_NEED3:
        lo = 0x80; hi = 0xbf; next = NGX_CHAT_UTF8_NEED2;
        break;

    case NGX_CHAT_UTF8_NEED3_F0:
        lo = 0x90; hi = 0xbf; next = NGX_CHAT_UTF8_NEED2;
        break;

    case NGX_CHAT_UTF8_NEED3_F4:
        lo = 0x80; hi = 0x8f; next = NGX_CHAT_UTF8_NEED2;
        break;

    default:
        return NGX_CHAT_UTF8_REJECT;
    }

    if (c < lo || c > hi) {
        return NGX_CHAT_UTF8_REJECT;
    }

    return next;
}


uint32_t
ngx_chat_utf8_feed(uint32_t state, const unsigned char *p, size_t n)
{
    const unsigned char  *end;

    end = p + n;

    while (p < end) {

        if (state == NGX_CHAT_UTF8_ACCEPT) {
            /* fast path over ASCII runs */
            while (p < end && *p < 0x80) {
                p++;
            }

            if (p == end) {
                break;
            }
        }

        state = ngx_chat_utf8_next(state, *p++);

        if (state == NGX_CHAT_UTF8_REJECT) {
            break;
        }
    }

    return state;
}
