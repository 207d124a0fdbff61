/* test_jwt.c: unit tests of HS256 JWT verification and signing. */

#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "unit.h"
#include "ngx_chat_jwt.h"


#define KEY      "unit-test-secret"
#define NOW      1700000000
#define FUTURE   "1800000000"


static const unsigned char  *key = (const unsigned char *) KEY;
static const size_t          key_len = sizeof(KEY) - 1;

static char                   tok[8192];
static ngx_chat_jwt_claims_t  cl;
static const char            *err;


/* base64url of the test's own, written plainly */
static size_t
b64url(const unsigned char *src, size_t n, char *dst)
{
    static const char  abc[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t    i, k, bits;
    unsigned  acc;

    k = 0;
    acc = 0;
    bits = 0;

    for (i = 0; i < n; i++) {
        acc = (acc << 8) | src[i];
        bits += 8;

        while (bits >= 6) {
            bits -= 6;
            dst[k++] = abc[(acc >> bits) & 0x3f];
        }
    }

    if (bits) {
        dst[k++] = abc[(acc << (6 - bits)) & 0x3f];
    }

    dst[k] = '\0';

    return k;
}


/* a token with any header and payload, signed with HMAC-SHA256(k) */
static const char *
make(const char *header, const char *payload, const char *k)
{
    size_t         n;
    unsigned int   md_len;
    unsigned char  md[EVP_MAX_MD_SIZE];

    n = b64url((const unsigned char *) header, strlen(header), tok);
    tok[n++] = '.';
    n += b64url((const unsigned char *) payload, strlen(payload), tok + n);

    HMAC(EVP_sha256(), k, (int) strlen(k), (unsigned char *) tok, n,
         md, &md_len);

    tok[n++] = '.';
    b64url(md, md_len, tok + n);

    return tok;
}


#define A32    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HS256  "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"


static int
verify(const char *t)
{
    memset(&cl, 0x5a, sizeof(cl));

    return ngx_chat_jwt_verify((const unsigned char *) t, strlen(t),
                               key, key_len, NOW, &cl, &err);
}


static void
test_valid(void)
{
    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":" FUTURE
                          ",\"name\":\"Alice A.\"}", KEY)), 0);
    CHECK_STR(cl.sub, "alice");
    CHECK_INT(cl.sub_len, 5);
    CHECK_STR(cl.name, "Alice A.");
    CHECK_INT(cl.name_len, 8);
    CHECK_INT(cl.exp, 1800000000LL);

    /* no name, no typ, extra claims, exp as a real */

    CHECK_INT(verify(make("{\"alg\":\"HS256\"}",
                          "{\"exp\":1700000001.5,\"sub\":\"b.o-b_@x\","
                          "\"iat\":1,\"roles\":[\"x\"]}", KEY)), 0);
    CHECK_STR(cl.sub, "b.o-b_@x");
    CHECK_STR(cl.name, "");
    CHECK_INT(cl.name_len, 0);
    CHECK_INT(cl.exp, 1700000001LL);
}


static void
test_expired(void)
{
    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":1600000000}",
                          KEY)), -1);
    CHECK(err != NULL);

    /* exp == now is expired already */

    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":1700000000}",
                          KEY)), -1);
    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":1700000001}",
                          KEY)), 0);
}


static void
test_missing_or_bad_exp(void)
{
    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\"}", KEY)), -1);
    CHECK(err != NULL);

    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":\"" FUTURE
                          "\"}", KEY)), -1);
    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":null}", KEY)),
              -1);
    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":true}", KEY)),
              -1);
    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":1e300}", KEY)),
              -1);
}


static void
test_alg_none(void)
{
    char  t[1024];

    /* unsigned, with and without the trailing dot */

    make("{\"alg\":\"none\"}", "{\"sub\":\"alice\",\"exp\":" FUTURE "}",
         KEY);
    *strrchr(tok, '.') = '\0';
    strcpy(t, tok);
    strcat(t, ".");
    CHECK_INT(verify(t), -1);
    CHECK_INT(verify(tok), -1);

    /* even with a valid HMAC */

    CHECK_INT(verify(make("{\"alg\":\"none\"}",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
    CHECK_INT(verify(make("{\"alg\":\"None\"}",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
}


static void
test_other_algs(void)
{
    CHECK_INT(verify(make("{\"alg\":\"HS512\"}",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
    CHECK(err != NULL);
    CHECK_INT(verify(make("{\"alg\":\"RS256\"}",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
    CHECK_INT(verify(make("{\"alg\":\"hs256\"}",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
    CHECK_INT(verify(make("{\"typ\":\"JWT\"}",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
    CHECK_INT(verify(make("{\"alg\":[\"HS256\"]}",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
    CHECK_INT(verify(make("[\"HS256\"]",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
    CHECK_INT(verify(make("{\"alg\":\"HS256\",\"crit\":[\"x\"]}",
                          "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY)),
              -1);
}


static void
test_bad_signature(void)
{
    size_t  n;

    /* another key */

    CHECK_INT(verify(make(HS256, "{\"sub\":\"alice\",\"exp\":" FUTURE "}",
                          "other-secret")), -1);
    CHECK_STR(err, "bad signature");

    /* one bit of the signature flipped ('A' <-> 'B' changes a bit) */

    make(HS256, "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY);
    n = strlen(tok);
    tok[n - 5] = (tok[n - 5] == 'A') ? 'B' : 'A';
    CHECK_INT(verify(tok), -1);

    /* signature truncated or too long */

    make(HS256, "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY);
    n = strlen(tok);
    tok[n - 4] = '\0';
    CHECK_INT(verify(tok), -1);

    make(HS256, "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY);
    strcat(tok, "AAAA");
    CHECK_INT(verify(tok), -1);
}


static void
test_tampered_payload(void)
{
    char    good[1024], evil[256];
    char   *dot1, *dot2;

    make(HS256, "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY);
    CHECK_INT(verify(tok), 0);
    strcpy(good, tok);

    /* swap in another payload, keep the signature */

    dot1 = strchr(good, '.');
    dot2 = strrchr(good, '.');
    b64url((const unsigned char *) "{\"sub\":\"mallory\",\"exp\":" FUTURE "}",
           strlen("{\"sub\":\"mallory\",\"exp\":" FUTURE "}"), evil);

    snprintf(tok, sizeof(tok), "%.*s.%s%s", (int) (dot1 - good), good, evil,
             dot2);
    CHECK_INT(verify(tok), -1);
    CHECK_STR(err, "bad signature");

    /* swap in another header */

    b64url((const unsigned char *) "{\"alg\":\"HS256\",\"x\":1}",
           strlen("{\"alg\":\"HS256\",\"x\":1}"), evil);
    snprintf(tok, sizeof(tok), "%s%s", evil, dot1);
    CHECK_INT(verify(tok), -1);
}


static void
test_bad_base64_and_shape(void)
{
    char  t[1024];
    size_t  n;

    make(HS256, "{\"sub\":\"alice\",\"exp\":" FUTURE "}", KEY);
    strcpy(t, tok);
    n = strlen(t);

    /* padding, standard base64 characters, spaces */

    strcpy(tok, t);
    strcat(tok, "=");
    CHECK_INT(verify(tok), -1);

    strcpy(tok, t);
    tok[3] = '+';
    CHECK_INT(verify(tok), -1);

    strcpy(tok, t);
    tok[n - 2] = '/';
    CHECK_INT(verify(tok), -1);

    strcpy(tok, t);
    tok[n - 10] = ' ';
    CHECK_INT(verify(tok), -1);

    /* non-canonical last character (unused bits set) */

    strcpy(tok, t);
    /* 43 characters for 32 bytes: the last one has 2 spare bits */
    CHECK(strchr("AEIMQUYcgkosw048", tok[n - 1]) != NULL);
    tok[n - 1] = (char) (tok[n - 1] + 1);
    CHECK_INT(verify(tok), -1);

    /* segments */

    CHECK_INT(verify(""), -1);
    CHECK_INT(verify("abc"), -1);
    CHECK_INT(verify("a.b"), -1);
    CHECK_INT(verify("a.b.c.d"), -1);
    CHECK_STR(err, "malformed token");
    CHECK_INT(verify(".."), -1);
    CHECK_INT(verify("abc.def.ghi"), -1);
    CHECK_STR(err, "malformed token");

    strcpy(tok, t);
    strcat(tok, ".");
    CHECK_INT(verify(tok), -1);

    /* header that is not JSON */

    snprintf(tok, sizeof(tok), "bm90IGpzb24%s", strchr(t, '.'));
    CHECK_INT(verify(tok), -1);
    CHECK_STR(err, "malformed token");
}


static void
test_bad_sub(void)
{
    static const char  *payloads[] = {
        "{\"exp\":" FUTURE "}",
        "{\"sub\":\"\",\"exp\":" FUTURE "}",
        "{\"sub\":\"has space\",\"exp\":" FUTURE "}",
        "{\"sub\":\"sl/ash\",\"exp\":" FUTURE "}",
        "{\"sub\":\"caf\\u00e9\",\"exp\":" FUTURE "}",
        "{\"sub\":42,\"exp\":" FUTURE "}",
        "{\"sub\":null,\"exp\":" FUTURE "}",
        "{\"sub\":\"a\\u0000b\",\"exp\":" FUTURE "}",
        "{\"sub\":\"" A32 A32 "1\",\"exp\":" FUTURE "}"      /* 65 */
    };
    size_t  i;

    for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        if (verify(make(HS256, payloads[i], KEY)) != -1) {
            fprintf(stderr, "#   accepted %s\n", payloads[i]);
            unit_checks_failed++;
        }
    }

    /* 64 characters is the maximum */

    CHECK_INT(verify(make(HS256,
        "{\"sub\":\"" A32 A32 "\",\"exp\":" FUTURE "}", KEY)), 0);
    CHECK_INT(cl.sub_len, 64);
}


static void
test_name_claim(void)
{
    char    payload[1024];
    char    name[300];
    size_t  i;

    /* not a string: refused */

    CHECK_INT(verify(make(HS256, "{\"sub\":\"a\",\"exp\":" FUTURE
                          ",\"name\":7}", KEY)), -1);

    /* UTF-8 passes through */

    CHECK_INT(verify(make(HS256, "{\"sub\":\"a\",\"exp\":" FUTURE
                          ",\"name\":\"Zo\\u00eb \xe2\x82\xac\"}", KEY)), 0);
    CHECK_STR(cl.name, "Zo\xc3\xab \xe2\x82\xac");

    /* longer than NGX_CHAT_NAME_MAX: cut on a character boundary */

    for (i = 0; i < 127; i++) {
        name[i] = 'n';
    }
    memcpy(name + 127, "\xe2\x82\xac" "tail", 8);

    snprintf(payload, sizeof(payload),
             "{\"sub\":\"a\",\"exp\":" FUTURE ",\"name\":\"%s\"}", name);
    CHECK_INT(verify(make(HS256, payload, KEY)), 0);
    CHECK_INT(cl.name_len, 127);
    CHECK_INT(strlen(cl.name), 127);

    memset(name, 'm', 200);
    name[200] = '\0';
    snprintf(payload, sizeof(payload),
             "{\"sub\":\"a\",\"exp\":" FUTURE ",\"name\":\"%s\"}", name);
    CHECK_INT(verify(make(HS256, payload, KEY)), 0);
    CHECK_INT(cl.name_len, NGX_CHAT_NAME_MAX);
}


static void
test_sign_round_trip(void)
{
    char  *t;

    t = ngx_chat_jwt_sign("carol@example.com", "Carol \xe2\x82\xac",
                          NOW + 60, key, key_len);
    CHECK(t != NULL);

    if (t == NULL) {
        return;
    }

    CHECK_INT(verify(t), 0);
    CHECK_STR(cl.sub, "carol@example.com");
    CHECK_STR(cl.name, "Carol \xe2\x82\xac");
    CHECK_INT(cl.exp, NOW + 60);

    /* another key does not verify it; expired at exp */

    CHECK_INT(ngx_chat_jwt_verify((unsigned char *) t, strlen(t),
                                  (const unsigned char *) "x", 1, NOW, &cl,
                                  &err), -1);
    CHECK_INT(ngx_chat_jwt_verify((unsigned char *) t, strlen(t), key,
                                  key_len, NOW + 60, &cl, &err), -1);

    free(t);

    /* no name */

    t = ngx_chat_jwt_sign("dave", NULL, NOW + 1, key, key_len);
    CHECK(t != NULL);
    if (t) {
        CHECK_INT(verify(t), 0);
        CHECK_STR(cl.name, "");
        free(t);
    }

    /* the same as the reference construction */

    t = ngx_chat_jwt_sign("erin", NULL, 1800000000, key, key_len);
    CHECK(t != NULL);
    if (t) {
        CHECK_STR(t, make(HS256, "{\"sub\":\"erin\",\"exp\":1800000000}",
                          KEY));
        free(t);
    }

    /* bad input */

    CHECK(ngx_chat_jwt_sign("bad user", NULL, NOW, key, key_len) == NULL);
    CHECK(ngx_chat_jwt_sign("", NULL, NOW, key, key_len) == NULL);
    CHECK(ngx_chat_jwt_sign(NULL, NULL, NOW, key, key_len) == NULL);
    CHECK(ngx_chat_jwt_sign("u", "\xff", NOW, key, key_len) == NULL);

    /* an empty key works both ways */

    t = ngx_chat_jwt_sign("frank", NULL, NOW + 5, NULL, 0);
    CHECK(t != NULL);
    if (t) {
        CHECK_INT(ngx_chat_jwt_verify((unsigned char *) t, strlen(t),
                                      NULL, 0, NOW, &cl, &err), 0);
        free(t);
    }
}


static int
verify_rules(const char *t, time_t leeway, const char *aud, const char *iss)
{
    ngx_chat_jwt_rules_t  r;

    memset(&cl, 0x5a, sizeof(cl));
    memset(&r, 0, sizeof(r));

    r.now = NOW;
    r.leeway = leeway;
    r.audience = aud;
    r.audience_len = aud ? strlen(aud) : 0;
    r.issuer = iss;
    r.issuer_len = iss ? strlen(iss) : 0;

    return ngx_chat_jwt_verify_rules((const unsigned char *) t, strlen(t),
                                     key, key_len, &r, &cl, &err);
}


#define CLAIMS(more)  "{\"sub\":\"al\",\"exp\":" FUTURE more "}"


static void
test_nbf_iat(void)
{
    /* nbf: up to now + leeway passes, one second more is refused */

    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"nbf\":1700000060"), KEY),
                           60, NULL, NULL), 0);
    CHECK_STR(cl.sub, "al");
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"nbf\":1700000061"), KEY),
                           60, NULL, NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_STR(err, "token not valid yet (nbf)");
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"nbf\":1700000001"), KEY),
                           0, NULL, NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"nbf\":1600000000.5"),
                                KEY), 0, NULL, NULL), 0);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"nbf\":\"soon\""), KEY),
                           60, NULL, NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_STR(err, "nbf is not a number");

    /* iat: in the past is fine, in the future beyond the leeway not */

    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iat\":1690000000"), KEY),
                           60, NULL, NULL), 0);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iat\":1700000060"), KEY),
                           60, NULL, NULL), 0);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iat\":1700000061"), KEY),
                           60, NULL, NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_STR(err, "token issued in the future (iat)");
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iat\":null"), KEY),
                           60, NULL, NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_STR(err, "iat is not a number");
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iat\":1e300"), KEY),
                           60, NULL, NULL), NGX_CHAT_JWT_REFUSED);

    /* exp has no leeway; the old entry point has none for nbf either */

    CHECK_INT(verify_rules(make(HS256, "{\"sub\":\"al\",\"exp\":1700000000}",
                                KEY), 60, NULL, NULL), -1);
    CHECK_STR(err, "token expired");
    CHECK_INT(verify(make(HS256, CLAIMS(",\"nbf\":1700000001"), KEY)),
              NGX_CHAT_JWT_REFUSED);

    /* a bad signature is still -1, whatever the claims */

    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"nbf\":1800000000"), "x"),
                           60, NULL, NULL), -1);
    CHECK_STR(err, "bad signature");
}


static void
test_aud_iss(void)
{
    /* not asked for: not checked */

    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"aud\":\"other\""), KEY),
                           60, NULL, NULL), 0);

    /* aud as a string or in an array */

    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"aud\":\"chat\""), KEY),
                           60, "chat", NULL), 0);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"aud\":[\"x\",7,\"chat\"]"),
                                KEY), 60, "chat", NULL), 0);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"aud\":[\"x\",\"chatx\"]"),
                                KEY), 60, "chat", NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_STR(err, "wrong audience (aud)");
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"aud\":\"cha\""), KEY),
                           60, "chat", NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"aud\":[]"), KEY),
                           60, "chat", NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"aud\":{\"chat\":1}"), KEY),
                           60, "chat", NULL), NGX_CHAT_JWT_REFUSED);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(""), KEY), 60, "chat", NULL),
              NGX_CHAT_JWT_REFUSED);
    CHECK_STR(err, "aud missing");

    /* iss exactly */

    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iss\":\"https://id/\""),
                                KEY), 60, NULL, "https://id/"), 0);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iss\":\"https://id\""),
                                KEY), 60, NULL, "https://id/"),
              NGX_CHAT_JWT_REFUSED);
    CHECK_STR(err, "wrong issuer (iss)");
    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iss\":[\"https://id/\"]"),
                                KEY), 60, NULL, "https://id/"),
              NGX_CHAT_JWT_REFUSED);
    CHECK_INT(verify_rules(make(HS256, CLAIMS(""), KEY), 60, NULL, "i"),
              NGX_CHAT_JWT_REFUSED);
    CHECK_STR(err, "iss missing");

    /* both */

    CHECK_INT(verify_rules(make(HS256, CLAIMS(",\"iss\":\"i\",\"aud\":\"a\""),
                                KEY), 60, "a", "i"), 0);
}


static void
test_user_id_valid(void)
{
    char  id[70];

    CHECK(ngx_chat_user_id_valid((const unsigned char *) "a", 1));
    CHECK(ngx_chat_user_id_valid((const unsigned char *) "A.Z_0-9@x", 9));
    CHECK(!ngx_chat_user_id_valid((const unsigned char *) "", 0));
    CHECK(!ngx_chat_user_id_valid((const unsigned char *) "a b", 3));
    CHECK(!ngx_chat_user_id_valid((const unsigned char *) "a/b", 3));
    CHECK(!ngx_chat_user_id_valid((const unsigned char *) "a:b", 3));
    CHECK(!ngx_chat_user_id_valid((const unsigned char *) "a\0b", 3));
    CHECK(!ngx_chat_user_id_valid((const unsigned char *) "\xc3\xa9", 2));

    memset(id, 'x', sizeof(id));
    CHECK(ngx_chat_user_id_valid((const unsigned char *) id, 64));
    CHECK(!ngx_chat_user_id_valid((const unsigned char *) id, 65));
}


int
main(void)
{
    RUN(test_valid);
    RUN(test_expired);
    RUN(test_missing_or_bad_exp);
    RUN(test_alg_none);
    RUN(test_other_algs);
    RUN(test_bad_signature);
    RUN(test_tampered_payload);
    RUN(test_bad_base64_and_shape);
    RUN(test_bad_sub);
    RUN(test_name_claim);
    RUN(test_sign_round_trip);
    RUN(test_user_id_valid);
    RUN(test_nbf_iat);
    RUN(test_aud_iss);

    UNIT_DONE("jwt");
}
