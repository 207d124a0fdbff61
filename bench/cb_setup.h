/* cb_setup.h: what the load generator does before measuring: HS256 JWTs
 * and blocking REST calls that create the conversations. */

#ifndef _CB_SETUP_H_INCLUDED_
#define _CB_SETUP_H_INCLUDED_

#include <stddef.h>
#include <netinet/in.h>


/* an HS256 JWT for sub, valid ttl seconds; a malloc'ed string or NULL */
char *cb_jwt(const char *secret, const char *sub, long ttl);


typedef struct {
    struct sockaddr_in   addr;
    int                  fd;
} cb_http_t;


/* POST path with a JSON body as the token's user; returns the HTTP status
 * (or -1) and the response body in out (malloc'ed, NUL-terminated) */
int cb_http_post(cb_http_t *h, const char *path, const char *jwt,
    const char *body, char **out);

void cb_http_close(cb_http_t *h);

#endif /* _CB_SETUP_H_INCLUDED_ */
