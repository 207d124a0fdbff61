/* ngx_chat_stomp.c: STOMP 1.0/1.1/1.2 frame parser and header escaping. */

#include <string.h>

#include "ngx_chat_stomp.h"


typedef struct {
    const char                *name;
    size_t                     len;
    ngx_chat_stomp_command_e   command;
} ngx_chat_stomp_command_t;


#define ngx_chat_stomp_cmd(name, cmd)  { name, sizeof(name) - 1, cmd }

static const ngx_chat_stomp_command_t  ngx_chat_stomp_commands[] = {
    ngx_chat_stomp_cmd("CONNECT", NGX_CHAT_STOMP_CONNECT),
    ngx_chat_stomp_cmd("STOMP", NGX_CHAT_STOMP_STOMP),
    ngx_chat_stomp_cmd("SEND", NGX_CHAT_STOMP_SEND),
    ngx_chat_stomp_cmd("SUBSCRIBE", NGX_CHAT_STOMP_SUBSCRIBE),
    ngx_chat_stomp_cmd("UNSUBSCRIBE", NGX_CHAT_STOMP_UNSUBSCRIBE),
    ngx_chat_stomp_cmd("ACK", NGX_CHAT_STOMP_ACK),
    ngx_chat_stomp_cmd("NACK", NGX_CHAT_STOMP_NACK),
    ngx_chat_stomp_cmd("BEGIN", NGX_CHAT_STOMP_BEGIN),
    ngx_chat_stomp_cmd("COMMIT", NGX_CHAT_STOMP_COMMIT),
    ngx_chat_stomp_cmd("ABORT", NGX_CHAT_STOMP_ABORT),
    ngx_chat_stomp_cmd("DISCONNECT", NGX_CHAT_STOMP_DISCONNECT),
    ngx_chat_stomp_cmd("CONNECTED", NGX_CHAT_STOMP_CONNECTED),
    ngx_chat_stomp_cmd("MESSAGE", NGX_CHAT_STOMP_MESSAGE),
    ngx_chat_stomp_cmd("RECEIPT", NGX_CHAT_STOMP_RECEIPT),
    ngx_chat_stomp_cmd("ERROR", NGX_CHAT_STOMP_ERROR)
};

#define NGX_CHAT_STOMP_NCOMMANDS                                              \
    (sizeof(ngx_chat_stomp_commands) / sizeof(ngx_chat_stomp_commands[0]))


static ngx_chat_stomp_command_e ngx_chat_stomp_command(
    const unsigned char *p, size_t n);
static int ngx_chat_stomp_command_prefix(const unsigned char *p, size_t n);
static int ngx_chat_stomp_escapes_valid(const unsigned char *p, size_t n);
static size_t ngx_chat_stomp_unescape(unsigned char *p, size_t n);
static int ngx_chat_stomp_content_length(const unsigned char *p, size_t n,
    size_t *value);


/*
 * A frame (STOMP 1.2, "Augmented BNF"):
 *
 *   frame   = command EOL *( header EOL ) EOL *OCTET NULL *( EOL )
 *   command = "SEND" / "SUBSCRIBE" / ... / "ERROR"   (case-sensitive)
 *   header  = header-name ":" header-value
 *   EOL     = [ CR ] LF
 *
 * The parser first checks the whole frame without touching the buffer
 * (so that an incomplete frame can be parsed again from its start when
 * more bytes come), then unescapes the headers in place once it is whole.
 * The trailing EOLs are left to the next calls, which report them as
 * heart-beats, as are EOLs before a frame.
 *
 * Limits: 0 in max_frame or max_header_len means "no limit"; max_headers
 * is capped at NGX_CHAT_STOMP_MAX_HEADERS (0 means the cap).
 */

ngx_chat_stomp_rc_e
ngx_chat_stomp_parse(unsigned char *buf, size_t len,
    const ngx_chat_stomp_limits_t *lim, unsigned version,
    ngx_chat_stomp_frame_t *f, size_t *consumed, const char **err)
{
    int                       unescape;
    size_t                    n, max_headers, cl, total, i;
    unsigned char            *p, *end, *eol, *colon, *body, *nul;
    ngx_chat_stomp_header_t  *h, *clh;

    *consumed = 0;
    *err = NULL;

    if (len == 0) {
        return NGX_CHAT_STOMP_AGAIN;
    }

    /* heart-beats */

    if (buf[0] == '\n') {
        *consumed = 1;
        return NGX_CHAT_STOMP_HEARTBEAT;
    }

    if (buf[0] == '\r') {
        if (len < 2) {
            return NGX_CHAT_STOMP_AGAIN;
        }

        if (buf[1] == '\n') {
            *consumed = 2;
            return NGX_CHAT_STOMP_HEARTBEAT;
        }

        *err = "CR without LF";
        return NGX_CHAT_STOMP_INVALID;
    }

    max_headers = lim->max_headers;
    if (max_headers == 0 || max_headers > NGX_CHAT_STOMP_MAX_HEADERS) {
        max_headers = NGX_CHAT_STOMP_MAX_HEADERS;
    }

    end = buf + len;

    /* the command line */

    eol = memchr(buf, '\n', len);

    if (eol == NULL) {
        n = len;
        if (buf[n - 1] == '\r') {
            n--;
        }

        if (!ngx_chat_stomp_command_prefix(buf, n)) {
            *err = "unknown command";
            return NGX_CHAT_STOMP_INVALID;
        }

        goto again;
    }

    n = (size_t) (eol - buf);
    if (n && buf[n - 1] == '\r') {
        n--;
    }

    f->command = ngx_chat_stomp_command(buf, n);
    f->nheaders = 0;
    f->body = NULL;
    f->body_len = 0;

    if (f->command == NGX_CHAT_STOMP_UNKNOWN) {
        *err = "unknown command";
        return NGX_CHAT_STOMP_INVALID;
    }

    unescape = (version >= 11
                && f->command != NGX_CHAT_STOMP_CONNECT
                && f->command != NGX_CHAT_STOMP_STOMP
                && f->command != NGX_CHAT_STOMP_CONNECTED);

    /* the headers, up to the blank line */

    p = eol + 1;

    for ( ;; ) {

        if (p == end) {
            goto again;
        }

        eol = memchr(p, '\n', (size_t) (end - p));

        if (eol == NULL) {
            /* an incomplete line: check what can be checked already */

            n = (size_t) (end - p);
            if (p[n - 1] == '\r') {
                n--;
            }

            if (n == 0) {
                goto again;
            }

            if (lim->max_header_len && n > lim->max_header_len) {
                *err = "header line too long";
                return NGX_CHAT_STOMP_INVALID;
            }

            if (f->nheaders >= max_headers) {
                *err = "too many headers";
                return NGX_CHAT_STOMP_INVALID;
            }

            if (memchr(p, '\0', n) != NULL) {
                *err = "NUL in the headers";
                return NGX_CHAT_STOMP_INVALID;
            }

            goto again;
        }

        n = (size_t) (eol - p);
        if (n && p[n - 1] == '\r') {
            n--;
        }

        if (n == 0) {
            p = eol + 1;
            break;
        }

        if (lim->max_header_len && n > lim->max_header_len) {
            *err = "header line too long";
            return NGX_CHAT_STOMP_INVALID;
        }

        if (f->nheaders >= max_headers) {
            *err = "too many headers";
            return NGX_CHAT_STOMP_INVALID;
        }

        if (memchr(p, '\0', n) != NULL) {
            *err = "NUL in the headers";
            return NGX_CHAT_STOMP_INVALID;
        }

        colon = memchr(p, ':', n);

        if (colon == NULL) {
            *err = "header without ':'";
            return NGX_CHAT_STOMP_INVALID;
        }

        if (colon == p) {
            *err = "empty header name";
            return NGX_CHAT_STOMP_INVALID;
        }

        h = &f->headers[f->nheaders++];
        h->name = p;
        h->name_len = (size_t) (colon - p);
        h->value = colon + 1;
        h->value_len = n - h->name_len - 1;

        if (unescape
            && (!ngx_chat_stomp_escapes_valid(h->name, h->name_len)
                || !ngx_chat_stomp_escapes_valid(h->value, h->value_len)))
        {
            *err = "invalid escape sequence in a header";
            return NGX_CHAT_STOMP_INVALID;
        }

        p = eol + 1;
    }

    /* the body */

    body = p;

    clh = NULL;

    /* the raw name is final: "content-length" has nothing to escape */

    for (i = 0; i < f->nheaders; i++) {
        h = &f->headers[i];

        if (h->name_len == sizeof("content-length") - 1
            && memcmp(h->name, "content-length", h->name_len) == 0)
        {
            clh = h;
            break;
        }
    }

    if (clh) {
        if (!ngx_chat_stomp_content_length(clh->value, clh->value_len, &cl)) {
            *err = "invalid content-length";
            return NGX_CHAT_STOMP_INVALID;
        }

        if (lim->max_frame
            && (cl >= lim->max_frame
                || (size_t) (body - buf) + cl + 1 > lim->max_frame))
        {
            *err = "frame too big";
            return NGX_CHAT_STOMP_INVALID;
        }

        if ((size_t) (end - body) <= cl) {
            goto again;
        }

        if (body[cl] != '\0') {
            *err = "no NUL after the content-length body";
            return NGX_CHAT_STOMP_INVALID;
        }

        f->body_len = cl;

    } else {
        nul = memchr(body, '\0', (size_t) (end - body));

        if (nul == NULL) {
            goto again;
        }

        f->body_len = (size_t) (nul - body);
    }

    total = (size_t) (body - buf) + f->body_len + 1;

    if (lim->max_frame && total > lim->max_frame) {
        *err = "frame too big";
        return NGX_CHAT_STOMP_INVALID;
    }

    f->body = body;

    if (unescape) {
        for (i = 0; i < f->nheaders; i++) {
            h = &f->headers[i];
            h->name_len = ngx_chat_stomp_unescape(h->name, h->name_len);
            h->value_len = ngx_chat_stomp_unescape(h->value, h->value_len);
        }
    }

    *consumed = total;

    return NGX_CHAT_STOMP_OK;

again:

    /* an incomplete frame of len bytes needs at least one more byte */

    if (lim->max_frame && len >= lim->max_frame) {
        *err = "frame too big";
        return NGX_CHAT_STOMP_INVALID;
    }

    return NGX_CHAT_STOMP_AGAIN;
}


static ngx_chat_stomp_command_e
ngx_chat_stomp_command(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < NGX_CHAT_STOMP_NCOMMANDS; i++) {
        if (ngx_chat_stomp_commands[i].len == n
            && memcmp(ngx_chat_stomp_commands[i].name, p, n) == 0)
        {
            return ngx_chat_stomp_commands[i].command;
        }
    }

    return NGX_CHAT_STOMP_UNKNOWN;
}


static int
ngx_chat_stomp_command_prefix(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < NGX_CHAT_STOMP_NCOMMANDS; i++) {
        if (ngx_chat_stomp_commands[i].len >= n
            && memcmp(ngx_chat_stomp_commands[i].name, p, n) == 0)
        {
            return 1;
        }
    }

    return 0;
}


static int
ngx_chat_stomp_escapes_valid(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i] != '\\') {
            continue;
        }

        if (++i == n) {
            return 0;
        }

        switch (p[i]) {
        case 'r':
        case 'n':
        case 'c':
        case '\\':
            break;

        default:
            return 0;
        }
    }

    return 1;
}


/* escapes were checked by ngx_chat_stomp_escapes_valid() */

static size_t
ngx_chat_stomp_unescape(unsigned char *p, size_t n)
{
    size_t  i, j;

    for (i = 0, j = 0; i < n; i++, j++) {
        if (p[i] != '\\' || i + 1 == n) {
            p[j] = p[i];
            continue;
        }

        switch (p[++i]) {
        case 'r':
            p[j] = '\r';
            break;

        case 'n':
            p[j] = '\n';
            break;

        case 'c':
            p[j] = ':';
            break;

        default:
            p[j] = p[i];
            break;
        }
    }

    return j;
}


static int
ngx_chat_stomp_content_length(const unsigned char *p, size_t n,
    size_t *value)
{
    size_t  i, v;

    if (n == 0) {
        return 0;
    }

    v = 0;

    for (i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }

        if (v > ((size_t) -1 - 9) / 10) {
            return 0;
        }

        v = v * 10 + (size_t) (p[i] - '0');
    }

    *value = v;

    return 1;
}


ngx_chat_stomp_header_t *
ngx_chat_stomp_header(ngx_chat_stomp_frame_t *f, const char *name)
{
    size_t  i, n;

    n = strlen(name);

    for (i = 0; i < f->nheaders; i++) {
        if (f->headers[i].name_len == n
            && memcmp(f->headers[i].name, name, n) == 0)
        {
            return &f->headers[i];
        }
    }

    return NULL;
}


int
ngx_chat_stomp_header_value(ngx_chat_stomp_frame_t *f, const char *name,
    unsigned char **value, size_t *len)
{
    ngx_chat_stomp_header_t  *h;

    h = ngx_chat_stomp_header(f, name);

    if (h == NULL) {
        *value = NULL;
        *len = 0;
        return -1;
    }

    *value = h->value;
    *len = h->value_len;

    return 0;
}


const char *
ngx_chat_stomp_command_name(ngx_chat_stomp_command_e cmd)
{
    size_t  i;

    for (i = 0; i < NGX_CHAT_STOMP_NCOMMANDS; i++) {
        if (ngx_chat_stomp_commands[i].command == cmd) {
            return ngx_chat_stomp_commands[i].name;
        }
    }

    return "UNKNOWN";
}


size_t
ngx_chat_stomp_escaped_len(const unsigned char *src, size_t n)
{
    size_t  i, len;

    len = n;

    for (i = 0; i < n; i++) {
        switch (src[i]) {
        case '\\':
        case '\n':
        case '\r':
        case ':':
            len++;
            break;

        default:
            break;
        }
    }

    return len;
}


unsigned char *
ngx_chat_stomp_escape(unsigned char *dst, const unsigned char *src, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        switch (src[i]) {
        case '\\':
            *dst++ = '\\';
            *dst++ = '\\';
            break;

        case '\n':
            *dst++ = '\\';
            *dst++ = 'n';
            break;

        case '\r':
            *dst++ = '\\';
            *dst++ = 'r';
            break;

        case ':':
            *dst++ = '\\';
            *dst++ = 'c';
            break;

        default:
            *dst++ = src[i];
            break;
        }
    }

    return dst;
}
