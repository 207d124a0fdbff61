/* test_utf8.c: unit tests of the incremental UTF-8 validator. */

#include <stdint.h>

#include "unit.h"
#include "ngx_chat_utf8.h"


#define ACCEPT  NGX_CHAT_UTF8_ACCEPT
#define REJECT  NGX_CHAT_UTF8_REJECT


static uint32_t
feed(const char *s, size_t n)
{
    return ngx_chat_utf8_feed(ACCEPT, (const unsigned char *) s, n);
}


#define FEED(lit)  feed(lit, sizeof(lit) - 1)


/* the same bytes one at a time must give the same final state */
static uint32_t
feed_bytewise(const char *s, size_t n)
{
    size_t    i;
    uint32_t  st;

    st = ACCEPT;

    for (i = 0; i < n; i++) {
        st = ngx_chat_utf8_feed(st, (const unsigned char *) s + i, 1);
    }

    return st;
}


/*
 * A reference written differently: decode the code point, then check the
 * shortest form, the surrogates and the maximum. 1: valid, 0: invalid,
 * -1: valid so far but truncated.
 */
static int
ref_valid(const unsigned char *p, size_t n)
{
    size_t    i, k, need;
    uint32_t  cp, min, lo, hi;

    for (i = 0; i < n; ) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }

        if ((p[i] & 0xe0) == 0xc0) {
            need = 1; cp = p[i] & 0x1f; min = 0x80;

        } else if ((p[i] & 0xf0) == 0xe0) {
            need = 2; cp = p[i] & 0x0f; min = 0x800;

        } else if ((p[i] & 0xf8) == 0xf0) {
            need = 3; cp = p[i] & 0x07; min = 0x10000;

        } else {
            return 0;
        }

        for (k = 1; k <= need; k++) {
            if (i + k == n) {
                /* truncated: can some continuation still be valid? */
                lo = cp << (6 * (need - k + 1));
                hi = lo | ((1u << (6 * (need - k + 1))) - 1);

                if (hi < min || lo > 0x10ffff
                    || (lo >= 0xd800 && hi <= 0xdfff))
                {
                    return 0;
                }

                return -1;
            }

            if ((p[i + k] & 0xc0) != 0x80) {
                return 0;
            }

            cp = (cp << 6) | (p[i + k] & 0x3f);
        }

        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
            return 0;
        }

        i += need + 1;
    }

    return 1;
}


static void
test_ascii_and_empty(void)
{
    CHECK(feed("", 0) == ACCEPT);
    CHECK(FEED("hello, world") == ACCEPT);
    CHECK(FEED("\x00\x7f") == ACCEPT);
}


static void
test_valid_multibyte(void)
{
    CHECK(FEED("\xc2\x80") == ACCEPT);                  /* U+0080 */
    CHECK(FEED("\xdf\xbf") == ACCEPT);                  /* U+07FF */
    CHECK(FEED("\xe0\xa0\x80") == ACCEPT);              /* U+0800 */
    CHECK(FEED("\xe2\x82\xac") == ACCEPT);              /* euro */
    CHECK(FEED("\xed\x9f\xbf") == ACCEPT);              /* U+D7FF */
    CHECK(FEED("\xee\x80\x80") == ACCEPT);              /* U+E000 */
    CHECK(FEED("\xef\xbf\xbf") == ACCEPT);              /* U+FFFF */
    CHECK(FEED("\xf0\x90\x80\x80") == ACCEPT);          /* U+10000 */
    CHECK(FEED("\xf0\x9f\x98\x80") == ACCEPT);          /* emoji */
    CHECK(FEED("\xf3\xbf\xbf\xbf") == ACCEPT);          /* U+FFFFF */
    CHECK(FEED("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5") == ACCEPT);
}


static void
test_max_code_point(void)
{
    CHECK(FEED("\xf4\x8f\xbf\xbf") == ACCEPT);          /* U+10FFFF */
    CHECK(FEED("\xf4\x90\x80\x80") == REJECT);          /* U+110000 */
    CHECK(FEED("\xf4\x90") == REJECT);                  /* fail fast */
    CHECK(FEED("\xf5") == REJECT);
    CHECK(FEED("\xf7\xbf\xbf\xbf") == REJECT);
    CHECK(FEED("\xf8\x88\x80\x80\x80") == REJECT);      /* 5-byte form */
    CHECK(FEED("\xfc\x84\x80\x80\x80\x80") == REJECT);  /* 6-byte form */
    CHECK(FEED("\xfe") == REJECT);
    CHECK(FEED("\xff") == REJECT);
}


static void
test_overlong(void)
{
    CHECK(FEED("\xc0\x80") == REJECT);                  /* NUL, 2 bytes */
    CHECK(FEED("\xc0\xaf") == REJECT);                  /* '/' */
    CHECK(FEED("\xc1\xbf") == REJECT);
    CHECK(FEED("\xc0") == REJECT);                      /* fail fast */
    CHECK(FEED("\xe0\x80\x80") == REJECT);
    CHECK(FEED("\xe0\x80\xaf") == REJECT);
    CHECK(FEED("\xe0\x9f\xbf") == REJECT);              /* U+07FF long */
    CHECK(FEED("\xe0\x9f") == REJECT);                  /* fail fast */
    CHECK(FEED("\xf0\x80\x80\x80") == REJECT);
    CHECK(FEED("\xf0\x80\x80\xaf") == REJECT);
    CHECK(FEED("\xf0\x8f\xbf\xbf") == REJECT);          /* U+FFFF long */
    CHECK(FEED("\xf0\x8f") == REJECT);                  /* fail fast */
}


static void
test_surrogates(void)
{
    CHECK(FEED("\xed\xa0\x80") == REJECT);              /* U+D800 */
    CHECK(FEED("\xed\xad\xbf") == REJECT);              /* U+DB7F */
    CHECK(FEED("\xed\xb0\x80") == REJECT);              /* U+DC00 */
    CHECK(FEED("\xed\xbf\xbf") == REJECT);              /* U+DFFF */
    CHECK(FEED("\xed\xa0\x80\xed\xb0\x80") == REJECT);  /* a pair */
    CHECK(FEED("\xed\xa0") == REJECT);                  /* fail fast */
}


static void
test_bad_continuation(void)
{
    CHECK(FEED("\x80") == REJECT);
    CHECK(FEED("\xbf") == REJECT);
    CHECK(FEED("a\x80z") == REJECT);
    CHECK(FEED("\xc2\x41") == REJECT);
    CHECK(FEED("\xe2\x82\x41") == REJECT);
    CHECK(FEED("\xf0\x9f\x98\x41") == REJECT);
    CHECK(FEED("\xc2\xc2\x80") == REJECT);
    CHECK(FEED("\xe2\x82\xac\x80") == REJECT);          /* one too many */
}


static void
test_truncated_states(void)
{
    uint32_t  st;

    /* in the middle of a character: neither ACCEPT nor REJECT */

    st = FEED("\xc2");
    CHECK(st != ACCEPT && st != REJECT);
    st = FEED("\xe2");
    CHECK(st != ACCEPT && st != REJECT);
    st = FEED("\xe2\x82");
    CHECK(st != ACCEPT && st != REJECT);
    st = FEED("\xf0\x9f");
    CHECK(st != ACCEPT && st != REJECT);
    st = FEED("\xf0\x9f\x98");
    CHECK(st != ACCEPT && st != REJECT);
    st = FEED("abc\xf4\x8f\xbf");
    CHECK(st != ACCEPT && st != REJECT);

    /* and it goes on from that state */

    st = FEED("\xf0\x9f");
    st = ngx_chat_utf8_feed(st, (const unsigned char *) "\x98", 1);
    CHECK(st != ACCEPT && st != REJECT);
    st = ngx_chat_utf8_feed(st, (const unsigned char *) "\x80", 1);
    CHECK(st == ACCEPT);

    /* a truncated character followed by ASCII */

    st = FEED("\xe2\x82");
    st = ngx_chat_utf8_feed(st, (const unsigned char *) "a", 1);
    CHECK(st == REJECT);

    /* the narrowed second-byte ranges survive a split */

    st = FEED("\xed");
    CHECK(ngx_chat_utf8_feed(st, (const unsigned char *) "\xa0\x80", 2)
          == REJECT);
    st = FEED("\xe0");
    CHECK(ngx_chat_utf8_feed(st, (const unsigned char *) "\x80", 1)
          == REJECT);
    st = FEED("\xf4");
    CHECK(ngx_chat_utf8_feed(st, (const unsigned char *) "\x90", 1)
          == REJECT);
    st = FEED("\xf0");
    CHECK(ngx_chat_utf8_feed(st, (const unsigned char *) "\x8f", 1)
          == REJECT);
}


static void
test_reject_is_sticky(void)
{
    uint32_t  st;

    st = FEED("\xff");
    CHECK(st == REJECT);
    CHECK(ngx_chat_utf8_feed(st, (const unsigned char *) "abc", 3)
          == REJECT);
    CHECK(ngx_chat_utf8_feed(st, (const unsigned char *) "", 0) == REJECT);
    CHECK(ngx_chat_utf8_feed(st, (const unsigned char *) "\xc2\x80", 2)
          == REJECT);
}


static void
test_bytewise_same_as_whole(void)
{
    size_t       i;
    static const char  *samples[] = {
        "plain", "\xc2\x80", "\xe2\x82\xac", "\xf0\x9f\x98\x80x",
        "\xf4\x8f\xbf\xbf", "\xed\xa0\x80", "\xe2\x82", "\xc0\x80",
        "a\xce\xbaz\xe1\xbd\xb9", "\xf4\x90\x80\x80"
    };

    for (i = 0; i < sizeof(samples) / sizeof(samples[0]); i++) {
        CHECK(feed(samples[i], strlen(samples[i]))
              == feed_bytewise(samples[i], strlen(samples[i])));
    }
}


/* every code point, encoded by hand: accepted iff not a surrogate */
static void
test_every_code_point(void)
{
    size_t         n;
    uint32_t       cp, st;
    unsigned       bad;
    unsigned char  b[4];

    bad = 0;

    for (cp = 0; cp <= 0x10ffff; cp++) {
        if (cp < 0x80) {
            b[0] = (unsigned char) cp; n = 1;

        } else if (cp < 0x800) {
            b[0] = (unsigned char) (0xc0 | (cp >> 6));
            b[1] = (unsigned char) (0x80 | (cp & 0x3f)); n = 2;

        } else if (cp < 0x10000) {
            b[0] = (unsigned char) (0xe0 | (cp >> 12));
            b[1] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            b[2] = (unsigned char) (0x80 | (cp & 0x3f)); n = 3;

        } else {
            b[0] = (unsigned char) (0xf0 | (cp >> 18));
            b[1] = (unsigned char) (0x80 | ((cp >> 12) & 0x3f));
            b[2] = (unsigned char) (0x80 | ((cp >> 6) & 0x3f));
            b[3] = (unsigned char) (0x80 | (cp & 0x3f)); n = 4;
        }

        st = ngx_chat_utf8_feed(ACCEPT, b, n);

        if ((cp >= 0xd800 && cp <= 0xdfff) ? st != REJECT : st != ACCEPT) {
            if (bad++ < 5) {
                fprintf(stderr, "#   code point U+%04X wrong\n",
                        (unsigned) cp);
            }
        }
    }

    CHECK(bad == 0);
}


/* all sequences of up to three bytes against the reference */
static void
test_exhaustive_three_bytes(void)
{
    int            ref;
    uint32_t       st, i;
    unsigned       bad;
    unsigned char  b[3];

    bad = 0;

    for (i = 0; i < (1u << 24); i++) {
        b[0] = (unsigned char) (i >> 16);
        b[1] = (unsigned char) (i >> 8);
        b[2] = (unsigned char) i;

        st = ngx_chat_utf8_feed(ACCEPT, b, 3);
        ref = ref_valid(b, 3);

        if ((ref == 1 && st != ACCEPT) || (ref == 0 && st != REJECT)
            || (ref == -1 && (st == ACCEPT || st == REJECT)))
        {
            if (bad++ < 5) {
                fprintf(stderr, "#   %02x %02x %02x: state %u, ref %d\n",
                        b[0], b[1], b[2], (unsigned) st, ref);
            }
        }
    }

    CHECK(bad == 0);
}


/* four-byte sequences with a lead F0-FF and interesting tails */
static void
test_four_byte_leads(void)
{
    int            ref;
    unsigned       lead, b1, b2, b3, bad;
    uint32_t       st;
    unsigned char  b[4];
    static const unsigned char  tails[] = {
        0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff
    };

    bad = 0;

    for (lead = 0xf0; lead <= 0xff; lead++) {
        for (b1 = 0; b1 < sizeof(tails); b1++) {
            for (b2 = 0; b2 < sizeof(tails); b2++) {
                for (b3 = 0; b3 < sizeof(tails); b3++) {
                    b[0] = (unsigned char) lead;
                    b[1] = tails[b1];
                    b[2] = tails[b2];
                    b[3] = tails[b3];

                    st = ngx_chat_utf8_feed(ACCEPT, b, 4);
                    ref = ref_valid(b, 4);

                    if ((ref == 1 && st != ACCEPT)
                        || (ref == 0 && st != REJECT)
                        || (ref == -1 && (st == ACCEPT || st == REJECT)))
                    {
                        bad++;
                    }
                }
            }
        }
    }

    CHECK(bad == 0);
}


int
main(void)
{
    RUN(test_ascii_and_empty);
    RUN(test_valid_multibyte);
    RUN(test_max_code_point);
    RUN(test_overlong);
    RUN(test_surrogates);
    RUN(test_bad_continuation);
    RUN(test_truncated_states);
    RUN(test_reject_is_sticky);
    RUN(test_bytewise_same_as_whole);
    RUN(test_every_code_point);
    RUN(test_exhaustive_three_bytes);
    RUN(test_four_byte_leads);

    UNIT_DONE("utf8");
}
