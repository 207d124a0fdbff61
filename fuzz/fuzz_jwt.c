/* fuzz_jwt.c: HS256 token verification (what a client sends as its access
 * token), and what ngx_chat_jwt_sign() makes verified back.
 *
 * Input: byte 0 picks verify (even) or sign (odd); for sign the rest is
 * "sub NUL name".
 */

#include "fuzz.h"
#include "ngx_chat_jwt.h"
#include "ngx_chat_utf8.h"


#define FUZZ_JWT_NOW  1700000000


static const unsigned char  fuzz_jwt_key[] = "fuzz-secret";


static void
fuzz_jwt_claims_ok(const ngx_chat_jwt_claims_t *c)
{
    FUZZ_ASSERT(c->sub_len > 0 && c->sub_len <= NGX_CHAT_USER_ID_MAX);
    FUZZ_ASSERT(strlen(c->sub) == c->sub_len);
    FUZZ_ASSERT(ngx_chat_user_id_valid((unsigned char *) c->sub,
                                       c->sub_len));
    FUZZ_ASSERT(c->name_len <= NGX_CHAT_NAME_MAX);
    FUZZ_ASSERT(c->name[c->name_len] == '\0');
    FUZZ_ASSERT(ngx_chat_utf8_feed(NGX_CHAT_UTF8_ACCEPT,
                                   (unsigned char *) c->name, c->name_len)
                == NGX_CHAT_UTF8_ACCEPT);
    FUZZ_ASSERT(c->exp > FUZZ_JWT_NOW);
}


static void
fuzz_jwt_sign(const uint8_t *data, size_t size)
{
    char                   *sub, *name, *token;
    size_t                  n;
    const char             *err;
    ngx_chat_jwt_claims_t   c;

    sub = fuzz_strdup(data, size);
    n = strlen(sub);
    name = n < size ? sub + n + 1 : NULL;

    token = ngx_chat_jwt_sign(sub, name, FUZZ_JWT_NOW + 60, fuzz_jwt_key,
                              sizeof(fuzz_jwt_key) - 1);

    if (token == NULL) {
        free(sub);
        return;
    }

    if (!ngx_chat_user_id_valid((unsigned char *) sub, n)) {
        /* signed (a tool may), but no session may take it */
        FUZZ_ASSERT(ngx_chat_jwt_verify((unsigned char *) token,
                                        strlen(token), fuzz_jwt_key,
                                        sizeof(fuzz_jwt_key) - 1,
                                        FUZZ_JWT_NOW, &c, &err)
                    != 0);
        free(token);
        free(sub);
        return;
    }

    FUZZ_ASSERT(ngx_chat_jwt_verify((unsigned char *) token, strlen(token),
                                    fuzz_jwt_key, sizeof(fuzz_jwt_key) - 1,
                                    FUZZ_JWT_NOW, &c, &err)
                == 0);
    fuzz_jwt_claims_ok(&c);
    FUZZ_ASSERT(strcmp(c.sub, sub) == 0);

    /* the name, cut at a character boundary to NGX_CHAT_NAME_MAX bytes */
    if (name != NULL) {
        FUZZ_ASSERT(strncmp(c.name, name, c.name_len) == 0);
        FUZZ_ASSERT(c.name_len == strlen(name)
                    || (c.name_len > NGX_CHAT_NAME_MAX - 4
                        && strlen(name) > NGX_CHAT_NAME_MAX));
    }

    /* expired a second later */
    FUZZ_ASSERT(ngx_chat_jwt_verify((unsigned char *) token, strlen(token),
                                    fuzz_jwt_key, sizeof(fuzz_jwt_key) - 1,
                                    FUZZ_JWT_NOW + 60, &c, &err)
                != 0);

    free(token);
    free(sub);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char             *err;
    unsigned char          *token;
    ngx_chat_jwt_rules_t    rules;
    ngx_chat_jwt_claims_t   c;

    if (size < 1) {
        return 0;
    }

    if (data[0] & 1) {
        fuzz_jwt_sign(data + 1, size - 1);
        return 0;
    }

    token = fuzz_dup(data + 1, size - 1);
    err = NULL;

    if (ngx_chat_jwt_verify(token, size - 1, fuzz_jwt_key,
                            sizeof(fuzz_jwt_key) - 1, FUZZ_JWT_NOW, &c, &err)
        == 0)
    {
        fuzz_jwt_claims_ok(&c);

    } else {
        FUZZ_ASSERT(err != NULL);
    }

    /* with every rule: nbf, iat, aud (string or array), iss */

    rules.now = FUZZ_JWT_NOW;
    rules.leeway = 60;
    rules.audience = "chat";
    rules.audience_len = 4;
    rules.issuer = "https://id.example/";
    rules.issuer_len = sizeof("https://id.example/") - 1;
    err = NULL;

    if (ngx_chat_jwt_verify_rules(token, size - 1, fuzz_jwt_key,
                                  sizeof(fuzz_jwt_key) - 1, &rules, &c, &err)
        == 0)
    {
        fuzz_jwt_claims_ok(&c);

    } else {
        FUZZ_ASSERT(err != NULL);
    }

    free(token);

    return 0;
}
