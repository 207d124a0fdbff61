/* cb_setup.c: what the load generator does before measuring: HS256 JWTs
 * and blocking REST calls that create the conversations. */

#include "cb_bench.h"
#include "cb_setup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>


static size_t
cb_b64url(char *dst, const unsigned char *src, size_t len)
{
    static const char  tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                               "abcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t             i, n;
    unsigned           v;

    n = 0;

    for (i = 0; i + 2 < len; i += 3) {
        v = (unsigned) src[i] << 16 | (unsigned) src[i + 1] << 8 | src[i + 2];
        dst[n++] = tbl[v >> 18 & 63];
        dst[n++] = tbl[v >> 12 & 63];
        dst[n++] = tbl[v >> 6 & 63];
        dst[n++] = tbl[v & 63];
    }

    if (len - i == 1) {
        v = (unsigned) src[i] << 16;
        dst[n++] = tbl[v >> 18 & 63];
        dst[n++] = tbl[v >> 12 & 63];

    } else if (len - i == 2) {
        v = (unsigned) src[i] << 16 | (unsigned) src[i + 1] << 8;
        dst[n++] = tbl[v >> 18 & 63];
        dst[n++] = tbl[v >> 12 & 63];
        dst[n++] = tbl[v >> 6 & 63];
    }

    dst[n] = '\0';

    return n;
}


char *
cb_jwt(const char *secret, const char *sub, long ttl)
{
    char            payload[256], *jwt;
    size_t          n, plen;
    unsigned int    maclen;
    unsigned char   mac[EVP_MAX_MD_SIZE];
    static const char  header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";

    plen = (size_t) snprintf(payload, sizeof(payload),
                             "{\"sub\":\"%s\",\"exp\":%ld}", sub,
                             (long) time(NULL) + ttl);
    if (plen >= sizeof(payload)) {
        return NULL;
    }

    jwt = malloc(((sizeof(header) + plen) * 4) / 3 + 80);
    if (jwt == NULL) {
        return NULL;
    }

    n = cb_b64url(jwt, (const unsigned char *) header, sizeof(header) - 1);
    jwt[n++] = '.';
    n += cb_b64url(jwt + n, (const unsigned char *) payload, plen);

    if (HMAC(EVP_sha256(), secret, (int) strlen(secret),
             (const unsigned char *) jwt, n, mac, &maclen) == NULL)
    {
        free(jwt);
        return NULL;
    }

    jwt[n++] = '.';
    cb_b64url(jwt + n, mac, maclen);

    return jwt;
}


static int
cb_http_connect(cb_http_t *h)
{
    int             one;
    struct timeval  tv;

    h->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (h->fd == -1) {
        return -1;
    }

    one = 1;
    tv.tv_sec = 30;
    tv.tv_usec = 0;

    (void) setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    (void) setsockopt(h->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    (void) setsockopt(h->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));

    if (connect(h->fd, (struct sockaddr *) &h->addr, sizeof(h->addr)) == -1)
    {
        close(h->fd);
        h->fd = -1;
        return -1;
    }

    return 0;
}


static int
cb_write_all(int fd, const char *p, size_t len)
{
    ssize_t  n;

    while (len) {
        n = write(fd, p, len);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            return -1;
        }

        p += n;
        len -= (size_t) n;
    }

    return 0;
}


/* one request and its answer on a kept-alive connection */
static int
cb_http_once(cb_http_t *h, const char *req, size_t reqlen, char **out)
{
    int      status;
    char    *buf, *end, *p, *nb;
    size_t   len, cap, want;
    ssize_t  n;
    long     clen;

    if (cb_write_all(h->fd, req, reqlen) == -1) {
        return -1;
    }

    cap = 4096;
    len = 0;
    want = 0;
    end = NULL;
    clen = -1;

    buf = malloc(cap);
    if (buf == NULL) {
        return -1;
    }

    for ( ;; ) {
        if (len + 1 >= cap) {
            cap *= 2;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                return -1;
            }
            buf = nb;
        }

        n = read(h->fd, buf + len, cap - len - 1);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0) {
            free(buf);
            return -1;
        }

        len += (size_t) n;
        buf[len] = '\0';

        if (end == NULL) {
            end = strstr(buf, "\r\n\r\n");
            if (end == NULL) {
                continue;
            }

            for (p = buf; p < end; p++) {
                if (*p == '\n'
                    && strncasecmp(p + 1, "content-length:", 15) == 0)
                {
                    clen = strtol(p + 16, NULL, 10);
                }
            }

            if (clen < 0) {
                free(buf);
                return -1;
            }

            want = (size_t) (end - buf) + 4 + (size_t) clen;
        }

        if (len >= want) {
            break;
        }
    }

    if (sscanf(buf, "HTTP/1.%*d %d", &status) != 1) {
        free(buf);
        return -1;
    }

    p = end + 4;
    memmove(buf, p, (size_t) clen);
    buf[clen] = '\0';
    *out = buf;

    return status;
}


int
cb_http_post(cb_http_t *h, const char *path, const char *jwt,
    const char *body, char **out)
{
    int      tries, rc;
    char    *req;
    size_t   blen, rlen;

    blen = strlen(body);
    rlen = strlen(path) + strlen(jwt) + blen + 256;

    req = malloc(rlen);
    if (req == NULL) {
        return -1;
    }

    rlen = (size_t) snprintf(req, rlen,
                             "POST %s HTTP/1.1\r\nHost: localhost\r\n"
                             "Authorization: Bearer %s\r\n"
                             "Content-Type: application/json\r\n"
                             "Content-Length: %zu\r\n\r\n%s",
                             path, jwt, blen, body);

    rc = -1;

    for (tries = 0; tries < 2; tries++) {
        if (h->fd == -1 && cb_http_connect(h) == -1) {
            break;
        }

        rc = cb_http_once(h, req, rlen, out);
        if (rc != -1) {
            break;
        }

        /* the server closed a kept-alive connection: once more */
        cb_http_close(h);
    }

    free(req);

    return rc;
}


void
cb_http_close(cb_http_t *h)
{
    if (h->fd != -1) {
        close(h->fd);
        h->fd = -1;
    }
}


/* the conversations of direct (pairs) and fan-out (groups) on ngx_chat:
 * POST {api}/conversations as the first member of each group */
void
cb_create_conversations(void)
{
    int         status;
    char       *body, *resp, *p, *q, user[128], path[256];
    size_t      cap, len;
    uint32_t    g, i;
    cb_http_t   h;
    int64_t     t0;

    memset(&h, 0, sizeof(h));
    h.fd = -1;
    h.addr.sin_family = AF_INET;
    h.addr.sin_port = htons((uint16_t) cf.port);
    (void) inet_pton(AF_INET, cf.host, &h.addr.sin_addr);

    cap = 64 + (size_t) cf.group * 80;
    body = malloc(cap);
    if (body == NULL) {
        cb_die("out of memory");
    }

    snprintf(path, sizeof(path), "%s/conversations", cf.api_path);

    t0 = cb_now();

    for (g = 0; g < n_groups; g++) {
        len = (size_t) snprintf(body, cap, "{\"type\":\"%s\",\"members\":[",
                                cf.group == 2 ? "direct" : "group");

        for (i = 1; i < cf.group; i++) {
            snprintf(user, sizeof(user), "%s-u%u", cf.prefix,
                     g * cf.group + i);
            len += (size_t) snprintf(body + len, cap - len, "%s\"%s\"",
                                     i > 1 ? "," : "", user);
        }
        snprintf(body + len, cap - len, "]}");

        resp = NULL;
        status = cb_http_post(&h, path, jwts[g * cf.group], body, &resp);

        if (status != 200 && status != 201) {
            cb_die("POST %s: status %d: %s", path, status,
                   resp ? resp : "(no answer)");
        }

        p = strstr(resp, "\"conversationId\"");
        if (p == NULL) {
            cb_die("POST %s: no conversationId in %s", path, resp);
        }
        p += 16;
        p += strspn(p, " \t:");
        p += *p == '"';
        q = strchr(p, '"');
        if (q == NULL) {
            cb_die("POST %s: bad answer %s", path, resp);
        }

        convs[g] = strndup(p, (size_t) (q - p));
        if (convs[g] == NULL) {
            cb_die("out of memory");
        }

        free(resp);
    }

    cb_http_close(&h);
    free(body);

    fprintf(stderr, "chat_bench: %u conversations created in %.1f s\n",
            n_groups, (double) (cb_now() - t0) / 1e9);
}
