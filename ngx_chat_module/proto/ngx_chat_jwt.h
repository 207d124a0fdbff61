/* ngx_chat_jwt.h: JWT HS256 verification and signing with OpenSSL (pure). */

#ifndef _NGX_CHAT_JWT_H_INCLUDED_
#define _NGX_CHAT_JWT_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>
#include <time.h>


#define NGX_CHAT_USER_ID_MAX  64
#define NGX_CHAT_NAME_MAX     128

typedef struct {
    char     sub[NGX_CHAT_USER_ID_MAX + 1];   /* NUL-terminated, validated */
    size_t   sub_len;
    char     name[NGX_CHAT_NAME_MAX + 1];     /* "" when absent */
    size_t   name_len;
    int64_t  exp;
} ngx_chat_jwt_claims_t;

/*
 * Verifies a compact JWS: header alg must be "HS256" (anything else,
 * "none" included, is refused), the HMAC-SHA256 signature is compared in
 * constant time, "exp" is required (a number) and must be > now, "sub" is
 * required and must be a valid userId (1-64 of [A-Za-z0-9._@-]).
 * Returns 0 and fills *claims, or -1 with *err set to a static reason.
 */
int ngx_chat_jwt_verify(const unsigned char *token, size_t len,
    const unsigned char *key, size_t key_len, time_t now,
    ngx_chat_jwt_claims_t *claims, const char **err);

/*
 * What ngx_chat_jwt_verify_rules() asks of the claims besides exp and sub:
 * "nbf" (not before) and "iat" (issued at), when present, must be numbers
 * not later than now + leeway; with audience set, "aud" (a string or an
 * array of strings) must be it or hold it; with issuer set, "iss" must be
 * it. exp has no leeway.
 */
typedef struct {
    time_t        now;
    time_t        leeway;                     /* seconds */
    const char   *audience;                   /* NULL: aud not checked */
    size_t        audience_len;
    const char   *issuer;                     /* NULL: iss not checked */
    size_t        issuer_len;
} ngx_chat_jwt_rules_t;

#define NGX_CHAT_JWT_REFUSED  -2

/*
 * ngx_chat_jwt_verify() and the rules: 0, -1 (as there), or
 * NGX_CHAT_JWT_REFUSED when a valid token fails a rule (nbf, iat, aud,
 * iss), with *err set to a static reason.
 */
int ngx_chat_jwt_verify_rules(const unsigned char *token, size_t len,
    const unsigned char *key, size_t key_len,
    const ngx_chat_jwt_rules_t *rules, ngx_chat_jwt_claims_t *claims,
    const char **err);

/*
 * Signs {"sub":sub,"exp":exp[,"name":name]} with HS256. Returns a malloc()ed
 * NUL-terminated token, or NULL on failure. For tools and tests.
 */
char *ngx_chat_jwt_sign(const char *sub, const char *name, int64_t exp,
    const unsigned char *key, size_t key_len);

/* 1 if s[0..n) is a valid userId (PROTOCOL.md section 1), else 0 */
int ngx_chat_user_id_valid(const unsigned char *s, size_t n);

#endif /* _NGX_CHAT_JWT_H_INCLUDED_ */
