/* fcm_auth.h: a Google service-account key and its RS256 JWT assertion. */

#ifndef FCM_AUTH_H
#define FCM_AUTH_H


#include <time.h>

#include <openssl/evp.h>


#define FCM_AUTH_SCOPE  "https://www.googleapis.com/auth/firebase.messaging"
#define FCM_AUTH_GRANT  "urn:ietf:params:oauth:grant-type:jwt-bearer"


/* the fields of the standard key file that are used */
typedef struct {
    char       *client_email;
    char       *token_uri;
    char       *project_id;
    char       *private_key_id;     /* "kid" of the assertion, or NULL */
    EVP_PKEY   *pkey;
} fcm_account_t;


/* reads a key file; 0, or -1 (logged) */
int fcm_account_load(const char *path, fcm_account_t *acc);

void fcm_account_free(fcm_account_t *acc);

/*
 * The signed assertion header.claims.signature (base64url), for
 * FCM_AUTH_SCOPE, valid from now for ttl seconds; malloc()ed, NULL on
 * error (logged).
 */
char *fcm_assertion(const fcm_account_t *acc, time_t now, long ttl);

/* base64url without padding of len bytes; malloc()ed */
char *fcm_base64url(const unsigned char *data, size_t len);


#endif /* FCM_AUTH_H */
