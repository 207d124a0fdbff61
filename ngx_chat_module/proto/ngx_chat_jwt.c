/* ngx_chat_jwt.c: HS256 JSON Web Token verification and signing. */

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "ngx_chat_jwt.h"


#define NGX_CHAT_JWT_SIG_LEN  32                /* SHA-256 */
#define NGX_CHAT_JWT_MAX_LEN  8192              /* a whole token, bytes */
#define NGX_CHAT_JWT_HEADER   "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"


static int ngx_chat_jwt_b64_value(unsigned char c);
static int ngx_chat_jwt_b64_decode(const unsigned char *src, size_t n,
    unsigned char *dst, size_t *out_len);
static size_t ngx_chat_jwt_b64_encode(const unsigned char *src, size_t n,
    char *dst);
static int ngx_chat_jwt_hmac(const unsigned char *key, size_t key_len,
    const unsigned char *data, size_t n, unsigned char *md);
static json_t *ngx_chat_jwt_json(const unsigned char *src, size_t n,
    const char **err);
static int ngx_chat_jwt_check_header(json_t *hdr, const char **err);
static int ngx_chat_jwt_number(json_t *v, int64_t *out);
static int ngx_chat_jwt_check_rules(json_t *claims,
    const ngx_chat_jwt_rules_t *rules, const char **err);
static int ngx_chat_jwt_check_claims(json_t *claims, time_t now,
    ngx_chat_jwt_claims_t *out, const char **err);
static size_t ngx_chat_jwt_utf8_cut(const char *s, size_t n, size_t max);


static const char  ngx_chat_jwt_b64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";


int
ngx_chat_user_id_valid(const unsigned char *s, size_t n)
{
    size_t         i;
    unsigned char  c;

    if (n == 0 || n > NGX_CHAT_USER_ID_MAX) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        c = s[i];

        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
            || (c >= '0' && c <= '9')
            || c == '.' || c == '_' || c == '@' || c == '-')
        {
            continue;
        }

        return 0;
    }

    return 1;
}


/*
 * A compact JWS: BASE64URL(header) "." BASE64URL(payload) "."
 * BASE64URL(HMAC-SHA256(key, first two parts)), no padding.
 *
 * The order matters: the header is read first only to refuse any "alg"
 * but HS256, the signature is checked before the payload is parsed at all.
 */

int
ngx_chat_jwt_verify(const unsigned char *token, size_t len,
    const unsigned char *key, size_t key_len, time_t now,
    ngx_chat_jwt_claims_t *claims, const char **err)
{
    ngx_chat_jwt_rules_t  rules;

    memset(&rules, 0, sizeof(rules));
    rules.now = now;

    return ngx_chat_jwt_verify_rules(token, len, key, key_len, &rules,
                                     claims, err);
}


int
ngx_chat_jwt_verify_rules(const unsigned char *token, size_t len,
    const unsigned char *key, size_t key_len,
    const ngx_chat_jwt_rules_t *rules, ngx_chat_jwt_claims_t *claims,
    const char **err)
{
    int                   rc;
    json_t               *json;
    size_t                i, dot1, dot2, ndots, sig_len;
    unsigned char         md[EVP_MAX_MD_SIZE];
    unsigned char         sig[NGX_CHAT_JWT_MAX_LEN];
    const unsigned char  *sig_b64;

    *err = "invalid token";

    if (len == 0 || len > NGX_CHAT_JWT_MAX_LEN) {
        *err = "token empty or too long";
        return -1;
    }

    dot1 = 0;
    dot2 = 0;
    ndots = 0;

    for (i = 0; i < len; i++) {
        if (token[i] != '.') {
            continue;
        }

        if (ndots == 0) {
            dot1 = i;

        } else if (ndots == 1) {
            dot2 = i;
        }

        ndots++;
    }

    if (ndots != 2 || dot1 == 0 || dot2 == dot1 + 1 || dot2 + 1 == len) {
        *err = "malformed token";
        return -1;
    }

    /* the header */

    json = ngx_chat_jwt_json(token, dot1, err);
    if (json == NULL) {
        return -1;
    }

    rc = ngx_chat_jwt_check_header(json, err);
    json_decref(json);

    if (rc != 0) {
        return -1;
    }

    /* the signature */

    sig_b64 = token + dot2 + 1;

    if (ngx_chat_jwt_b64_decode(sig_b64, len - dot2 - 1, sig, &sig_len)
        != 0)
    {
        *err = "malformed token";
        return -1;
    }

    if (sig_len != NGX_CHAT_JWT_SIG_LEN) {
        *err = "malformed token";
        return -1;
    }

    if (ngx_chat_jwt_hmac(key, key_len, token, dot2, md) != 0) {
        *err = "HMAC failed";
        return -1;
    }

    if (CRYPTO_memcmp(md, sig, NGX_CHAT_JWT_SIG_LEN) != 0) {
        *err = "bad signature";
        return -1;
    }

    /* the claims */

    json = ngx_chat_jwt_json(token + dot1 + 1, dot2 - dot1 - 1, err);
    if (json == NULL) {
        return -1;
    }

    rc = ngx_chat_jwt_check_claims(json, rules->now, claims, err);

    if (rc == 0) {
        rc = ngx_chat_jwt_check_rules(json, rules, err);
    }

    json_decref(json);

    return rc;
}


/* a NumericDate: an integer, or a finite real truncated; -1 if neither */

static int
ngx_chat_jwt_number(json_t *v, int64_t *out)
{
    double  d;

    if (json_is_integer(v)) {
        *out = (int64_t) json_integer_value(v);
        return 0;
    }

    if (json_is_real(v)) {
        d = json_real_value(v);

        if (!isfinite(d) || d > 9.0e18 || d < -9.0e18) {
            return -1;
        }

        *out = (int64_t) d;
        return 0;
    }

    return -1;
}


static int
ngx_chat_jwt_check_rules(json_t *claims, const ngx_chat_jwt_rules_t *rules,
    const char **err)
{
    size_t    i;
    json_t   *v, *a;
    int64_t   t, latest;

    latest = (int64_t) rules->now + (int64_t) rules->leeway;

    v = json_object_get(claims, "nbf");

    if (v != NULL) {
        if (ngx_chat_jwt_number(v, &t) != 0) {
            *err = "nbf is not a number";
            return NGX_CHAT_JWT_REFUSED;
        }

        if (t > latest) {
            *err = "token not valid yet (nbf)";
            return NGX_CHAT_JWT_REFUSED;
        }
    }

    v = json_object_get(claims, "iat");

    if (v != NULL) {
        if (ngx_chat_jwt_number(v, &t) != 0) {
            *err = "iat is not a number";
            return NGX_CHAT_JWT_REFUSED;
        }

        if (t > latest) {
            *err = "token issued in the future (iat)";
            return NGX_CHAT_JWT_REFUSED;
        }
    }

    if (rules->issuer != NULL) {
        v = json_object_get(claims, "iss");

        if (!json_is_string(v)
            || json_string_length(v) != rules->issuer_len
            || memcmp(json_string_value(v), rules->issuer,
                      rules->issuer_len) != 0)
        {
            *err = v == NULL ? "iss missing" : "wrong issuer (iss)";
            return NGX_CHAT_JWT_REFUSED;
        }
    }

    if (rules->audience != NULL) {
        v = json_object_get(claims, "aud");

        if (v == NULL) {
            *err = "aud missing";
            return NGX_CHAT_JWT_REFUSED;
        }

        /* "aud" is one string or an array of them (RFC 7519, 4.1.3) */

        for (i = 0; json_is_array(v) ? i < json_array_size(v) : i < 1; i++) {
            a = json_is_array(v) ? json_array_get(v, i) : v;

            if (json_is_string(a)
                && json_string_length(a) == rules->audience_len
                && memcmp(json_string_value(a), rules->audience,
                          rules->audience_len) == 0)
            {
                return 0;
            }
        }

        *err = "wrong audience (aud)";
        return NGX_CHAT_JWT_REFUSED;
    }

    return 0;
}


static json_t *
ngx_chat_jwt_json(const unsigned char *src, size_t n, const char **err)
{
    size_t         len;
    json_t        *json;
    unsigned char  buf[NGX_CHAT_JWT_MAX_LEN];

    if (ngx_chat_jwt_b64_decode(src, n, buf, &len) != 0) {
        *err = "malformed token";
        return NULL;
    }

    json = json_loadb((const char *) buf, len, JSON_REJECT_DUPLICATES, NULL);

    if (json == NULL) {
        *err = "malformed token";
        return NULL;
    }

    if (!json_is_object(json)) {
        json_decref(json);
        *err = "malformed token";
        return NULL;
    }

    return json;
}


static int
ngx_chat_jwt_check_header(json_t *hdr, const char **err)
{
    json_t  *alg;

    alg = json_object_get(hdr, "alg");

    if (alg == NULL || !json_is_string(alg)
        || strcmp(json_string_value(alg), "HS256") != 0)
    {
        *err = "alg is not HS256";
        return -1;
    }

    /* RFC 7515 4.1.11: extensions we do not understand must be refused */

    if (json_object_get(hdr, "crit") != NULL) {
        *err = "unsupported crit header";
        return -1;
    }

    return 0;
}


/*
 * "name" is optional; a longer name than NGX_CHAT_NAME_MAX bytes is
 * truncated at a UTF-8 character boundary (jansson guarantees valid UTF-8
 * without NULs).
 */

static int
ngx_chat_jwt_check_claims(json_t *claims, time_t now,
    ngx_chat_jwt_claims_t *out, const char **err)
{
    size_t       n;
    json_t      *v;
    int64_t      exp;
    const char  *s;

    v = json_object_get(claims, "exp");

    if (v == NULL) {
        *err = "exp missing";
        return -1;
    }

    /* a real is truncated: a fraction of a second does not matter */

    if (ngx_chat_jwt_number(v, &exp) != 0) {
        *err = json_is_real(v) ? "exp out of range" : "exp is not a number";
        return -1;
    }

    if (exp <= (int64_t) now) {
        *err = "token expired";
        return -1;
    }

    v = json_object_get(claims, "sub");

    if (v == NULL || !json_is_string(v)) {
        *err = "sub missing or not a string";
        return -1;
    }

    s = json_string_value(v);
    n = json_string_length(v);

    if (!ngx_chat_user_id_valid((const unsigned char *) s, n)) {
        *err = "sub is not a valid userId";
        return -1;
    }

    memcpy(out->sub, s, n);
    out->sub[n] = '\0';
    out->sub_len = n;
    out->exp = exp;

    out->name[0] = '\0';
    out->name_len = 0;

    v = json_object_get(claims, "name");

    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v)) {
            *err = "name is not a string";
            return -1;
        }

        s = json_string_value(v);
        n = ngx_chat_jwt_utf8_cut(s, json_string_length(v),
                                  NGX_CHAT_NAME_MAX);

        memcpy(out->name, s, n);
        out->name[n] = '\0';
        out->name_len = n;
    }

    return 0;
}


static size_t
ngx_chat_jwt_utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max) {
        return n;
    }

    n = max;

    /* s[n] is the first byte left out: back off to a character start */

    while (n > 0 && ((unsigned char) s[n] & 0xc0) == 0x80) {
        n--;
    }

    return n;
}


char *
ngx_chat_jwt_sign(const char *sub, const char *name, int64_t exp,
    const unsigned char *key, size_t key_len)
{
    char           *payload, *token, *t;
    size_t          hlen, plen, n;
    json_t         *claims;
    unsigned char   md[EVP_MAX_MD_SIZE];

    if (sub == NULL
        || !ngx_chat_user_id_valid((const unsigned char *) sub, strlen(sub)))
    {
        return NULL;
    }

    claims = json_object();
    if (claims == NULL) {
        return NULL;
    }

    if (json_object_set_new(claims, "sub", json_string(sub)) != 0
        || json_object_set_new(claims, "exp",
                               json_integer((json_int_t) exp)) != 0
        || (name != NULL
            && json_object_set_new(claims, "name", json_string(name)) != 0))
    {
        json_decref(claims);
        return NULL;
    }

    payload = json_dumps(claims, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(claims);

    if (payload == NULL) {
        return NULL;
    }

    hlen = sizeof(NGX_CHAT_JWT_HEADER) - 1;
    plen = strlen(payload);

    n = (hlen + 2) / 3 * 4 + 1 + (plen + 2) / 3 * 4 + 1
        + (NGX_CHAT_JWT_SIG_LEN + 2) / 3 * 4 + 1;

    token = malloc(n);
    if (token == NULL) {
        free(payload);
        return NULL;
    }

    t = token;
    t += ngx_chat_jwt_b64_encode((const unsigned char *) NGX_CHAT_JWT_HEADER,
                                 hlen, t);
    *t++ = '.';
    t += ngx_chat_jwt_b64_encode((const unsigned char *) payload, plen, t);

    free(payload);

    if (ngx_chat_jwt_hmac(key, key_len, (const unsigned char *) token,
                          (size_t) (t - token), md)
        != 0)
    {
        free(token);
        return NULL;
    }

    *t++ = '.';
    t += ngx_chat_jwt_b64_encode(md, NGX_CHAT_JWT_SIG_LEN, t);
    *t = '\0';

    return token;
}


static int
ngx_chat_jwt_hmac(const unsigned char *key, size_t key_len,
    const unsigned char *data, size_t n, unsigned char *md)
{
    unsigned int  md_len;

    /* OpenSSL may refuse a NULL key even when its length is 0 */

    if (key == NULL || key_len == 0) {
        key = (const unsigned char *) "";
        key_len = 0;
    }

    if (key_len > 0x7fffffff) {
        return -1;
    }

    md_len = 0;

    if (HMAC(EVP_sha256(), key, (int) key_len, data, n, md, &md_len) == NULL
        || md_len != NGX_CHAT_JWT_SIG_LEN)
    {
        return -1;
    }

    return 0;
}


static int
ngx_chat_jwt_b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '-') {
        return 62;
    }

    if (c == '_') {
        return 63;
    }

    return -1;
}


/*
 * base64url without padding (RFC 7515 section 2). Refuses '=', characters
 * outside the alphabet, an impossible length (n % 4 == 1) and non-zero
 * unused bits in the last character, so each byte string has exactly one
 * accepted encoding. dst needs n * 3 / 4 bytes.
 */

static int
ngx_chat_jwt_b64_decode(const unsigned char *src, size_t n,
    unsigned char *dst, size_t *out_len)
{
    int       v;
    size_t    i, len;
    uint32_t  acc;
    unsigned  bits;

    if (n % 4 == 1) {
        return -1;
    }

    acc = 0;
    bits = 0;
    len = 0;

    for (i = 0; i < n; i++) {
        v = ngx_chat_jwt_b64_value(src[i]);
        if (v < 0) {
            return -1;
        }

        acc = (acc << 6) | (uint32_t) v;
        bits += 6;

        if (bits >= 8) {
            bits -= 8;
            dst[len++] = (unsigned char) (acc >> bits);
            acc &= ((uint32_t) 1 << bits) - 1;
        }
    }

    if (acc != 0) {
        /* the leftover bits of the last character must be zero */
        return -1;
    }

    *out_len = len;

    return 0;
}


static size_t
ngx_chat_jwt_b64_encode(const unsigned char *src, size_t n, char *dst)
{
    char      *d;
    size_t     i;
    uint32_t   v;

    d = dst;

    for (i = 0; i + 2 < n; i += 3) {
        v = ((uint32_t) src[i] << 16) | ((uint32_t) src[i + 1] << 8)
            | src[i + 2];
        *d++ = ngx_chat_jwt_b64_chars[(v >> 18) & 0x3f];
        *d++ = ngx_chat_jwt_b64_chars[(v >> 12) & 0x3f];
        *d++ = ngx_chat_jwt_b64_chars[(v >> 6) & 0x3f];
        *d++ = ngx_chat_jwt_b64_chars[v & 0x3f];
    }

    if (n - i == 1) {
        v = (uint32_t) src[i] << 16;
        *d++ = ngx_chat_jwt_b64_chars[(v >> 18) & 0x3f];
        *d++ = ngx_chat_jwt_b64_chars[(v >> 12) & 0x3f];

    } else if (n - i == 2) {
        v = ((uint32_t) src[i] << 16) | ((uint32_t) src[i + 1] << 8);
        *d++ = ngx_chat_jwt_b64_chars[(v >> 18) & 0x3f];
        *d++ = ngx_chat_jwt_b64_chars[(v >> 12) & 0x3f];
        *d++ = ngx_chat_jwt_b64_chars[(v >> 6) & 0x3f];
    }

    return (size_t) (d - dst);
}
