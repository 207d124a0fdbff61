/* fcm_auth.c: a Google service-account key and its RS256 JWT assertion. */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "common/wk_log.h"
#include "fcm_auth.h"


static char *
fcm_auth_dup(json_t *root, const char *name, int required, const char *path)
{
    char    *s;
    json_t  *v;

    v = json_object_get(root, name);

    if (!json_is_string(v) || json_string_length(v) == 0) {
        if (required) {
            wk_error("%s: \"%s\" is missing", path, name);
        }

        return NULL;
    }

    s = strdup(json_string_value(v));
    if (s == NULL) {
        wk_error("out of memory");
    }

    return s;
}


int
fcm_account_load(const char *path, fcm_account_t *acc)
{
    BIO           *bio;
    json_t        *root;
    const char    *pem;
    json_error_t   jerr;

    memset(acc, 0, sizeof(fcm_account_t));

    root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        wk_error("%s: %s (line %d)", path, jerr.text, jerr.line);
        return -1;
    }

    acc->client_email = fcm_auth_dup(root, "client_email", 1, path);
    acc->token_uri = fcm_auth_dup(root, "token_uri", 1, path);
    acc->project_id = fcm_auth_dup(root, "project_id", 0, path);
    acc->private_key_id = fcm_auth_dup(root, "private_key_id", 0, path);

    pem = json_string_value(json_object_get(root, "private_key"));

    if (pem == NULL) {
        wk_error("%s: \"private_key\" is missing", path);
        goto failed;
    }

    if (acc->client_email == NULL || acc->token_uri == NULL) {
        goto failed;
    }

    bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL) {
        wk_error("out of memory");
        goto failed;
    }

    acc->pkey = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);

    if (acc->pkey == NULL || EVP_PKEY_base_id(acc->pkey) != EVP_PKEY_RSA) {
        wk_error("%s: \"private_key\" is not an RSA private key in PEM",
                 path);
        goto failed;
    }

    json_decref(root);

    return 0;

failed:

    json_decref(root);
    fcm_account_free(acc);

    return -1;
}


void
fcm_account_free(fcm_account_t *acc)
{
    free(acc->client_email);
    free(acc->token_uri);
    free(acc->project_id);
    free(acc->private_key_id);

    if (acc->pkey != NULL) {
        EVP_PKEY_free(acc->pkey);
    }

    memset(acc, 0, sizeof(fcm_account_t));
}


char *
fcm_base64url(const unsigned char *data, size_t len)
{
    char    *out, *p;
    size_t   n, i;

    out = malloc(4 * ((len + 2) / 3) + 1);
    if (out == NULL) {
        return NULL;
    }

    n = (size_t) EVP_EncodeBlock((unsigned char *) out, data, (int) len);

    while (n > 0 && out[n - 1] == '=') {
        n--;
    }

    out[n] = '\0';

    for (i = 0, p = out; i < n; i++, p++) {
        if (*p == '+') {
            *p = '-';

        } else if (*p == '/') {
            *p = '_';
        }
    }

    return out;
}


static char *
fcm_auth_part(json_t *obj)
{
    char  *s, *b;

    if (obj == NULL) {
        return NULL;
    }

    s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);

    if (s == NULL) {
        return NULL;
    }

    b = fcm_base64url((unsigned char *) s, strlen(s));
    free(s);

    return b;
}


char *
fcm_assertion(const fcm_account_t *acc, time_t now, long ttl)
{
    char           *head, *claims, *input, *sig64, *jwt;
    size_t          siglen, len;
    json_t         *h;
    EVP_MD_CTX     *md;
    unsigned char  *sig;

    head = NULL;
    claims = NULL;
    input = NULL;
    sig = NULL;
    sig64 = NULL;
    jwt = NULL;
    md = NULL;

    h = json_pack("{s:s, s:s}", "alg", "RS256", "typ", "JWT");

    if (h != NULL && acc->private_key_id != NULL) {
        json_object_set_new(h, "kid", json_string(acc->private_key_id));
    }

    head = fcm_auth_part(h);
    claims = fcm_auth_part(json_pack("{s:s, s:s, s:s, s:I, s:I}",
                                     "iss", acc->client_email,
                                     "scope", FCM_AUTH_SCOPE,
                                     "aud", acc->token_uri,
                                     "iat", (json_int_t) now,
                                     "exp", (json_int_t) (now + ttl)));

    if (head == NULL || claims == NULL) {
        wk_error("out of memory");
        goto done;
    }

    len = strlen(head) + 1 + strlen(claims);

    input = malloc(len + 1);
    if (input == NULL) {
        wk_error("out of memory");
        goto done;
    }

    snprintf(input, len + 1, "%s.%s", head, claims);

    md = EVP_MD_CTX_new();

    if (md == NULL
        || EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, acc->pkey) != 1
        || EVP_DigestSign(md, NULL, &siglen, (unsigned char *) input, len)
           != 1)
    {
        wk_error("cannot sign the JWT assertion");
        goto done;
    }

    sig = malloc(siglen);
    if (sig == NULL) {
        wk_error("out of memory");
        goto done;
    }

    if (EVP_DigestSign(md, sig, &siglen, (unsigned char *) input, len) != 1) {
        wk_error("cannot sign the JWT assertion");
        goto done;
    }

    sig64 = fcm_base64url(sig, siglen);
    if (sig64 == NULL) {
        wk_error("out of memory");
        goto done;
    }

    jwt = malloc(len + 1 + strlen(sig64) + 1);
    if (jwt == NULL) {
        wk_error("out of memory");
        goto done;
    }

    sprintf(jwt, "%s.%s", input, sig64);

done:

    EVP_MD_CTX_free(md);
    free(head);
    free(claims);
    free(input);
    free(sig);
    free(sig64);

    return jwt;
}
