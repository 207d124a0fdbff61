/* ngx_chat_stomp.h: STOMP 1.0/1.1/1.2 frame codec (pure, no I/O). */

#ifndef _NGX_CHAT_STOMP_H_INCLUDED_
#define _NGX_CHAT_STOMP_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>


typedef enum {
    NGX_CHAT_STOMP_UNKNOWN = 0,
    NGX_CHAT_STOMP_CONNECT,
    NGX_CHAT_STOMP_STOMP,
    NGX_CHAT_STOMP_SEND,
    NGX_CHAT_STOMP_SUBSCRIBE,
    NGX_CHAT_STOMP_UNSUBSCRIBE,
    NGX_CHAT_STOMP_ACK,
    NGX_CHAT_STOMP_NACK,
    NGX_CHAT_STOMP_BEGIN,
    NGX_CHAT_STOMP_COMMIT,
    NGX_CHAT_STOMP_ABORT,
    NGX_CHAT_STOMP_DISCONNECT,
    /* server frames (accepted by the parser too, for clients and tests) */
    NGX_CHAT_STOMP_CONNECTED,
    NGX_CHAT_STOMP_MESSAGE,
    NGX_CHAT_STOMP_RECEIPT,
    NGX_CHAT_STOMP_ERROR
} ngx_chat_stomp_command_e;

#define NGX_CHAT_STOMP_MAX_HEADERS  64   /* hard cap of the header array */

typedef struct {
    unsigned char        *name;     /* unescaped, in the input buffer */
    size_t                name_len;
    unsigned char        *value;
    size_t                value_len;
} ngx_chat_stomp_header_t;

typedef struct {
    ngx_chat_stomp_command_e  command;
    ngx_chat_stomp_header_t   headers[NGX_CHAT_STOMP_MAX_HEADERS];
    size_t                    nheaders;
    unsigned char            *body;     /* in the input buffer */
    size_t                    body_len;
} ngx_chat_stomp_frame_t;

typedef struct {
    size_t                max_frame;       /* whole frame, bytes */
    size_t                max_headers;     /* <= NGX_CHAT_STOMP_MAX_HEADERS */
    size_t                max_header_len;  /* one "name:value" line */
} ngx_chat_stomp_limits_t;

typedef enum {
    NGX_CHAT_STOMP_OK = 0,      /* a frame was parsed into *f */
    NGX_CHAT_STOMP_AGAIN,       /* need more bytes (frame incomplete) */
    NGX_CHAT_STOMP_HEARTBEAT,   /* one EOL ("\n" or "\r\n") consumed */
    NGX_CHAT_STOMP_INVALID      /* *err says why; the session must end */
} ngx_chat_stomp_rc_e;

/*
 * Parses one frame (or one heart-beat EOL) from buf[0..len). Header values
 * are unescaped in place (buf must be writable) unless version is 10 or the
 * command is CONNECT/STOMP/CONNECTED. A content-length header makes the body
 * exactly that many bytes (NULs allowed) followed by NUL; otherwise the body
 * ends at the first NUL. Trailing EOLs after the NUL are not consumed: they
 * are reported as heart-beats by the next calls. *consumed is set on OK and
 * HEARTBEAT. Limits give INVALID even while the frame is still incomplete,
 * as soon as it is certain to exceed them. version: 10, 11 or 12.
 */
ngx_chat_stomp_rc_e ngx_chat_stomp_parse(unsigned char *buf, size_t len,
    const ngx_chat_stomp_limits_t *lim, unsigned version,
    ngx_chat_stomp_frame_t *f, size_t *consumed, const char **err);

/* the first header with that name (STOMP 1.2: the first one wins) */
ngx_chat_stomp_header_t *ngx_chat_stomp_header(ngx_chat_stomp_frame_t *f,
    const char *name);

/* its value (in the frame): 0, or -1 and an empty value (NULL, 0) */
int ngx_chat_stomp_header_value(ngx_chat_stomp_frame_t *f, const char *name,
    unsigned char **value, size_t *len);

const char *ngx_chat_stomp_command_name(ngx_chat_stomp_command_e cmd);

/* bytes needed to write src escaped (\\ \n \r \c) */
size_t ngx_chat_stomp_escaped_len(const unsigned char *src, size_t n);

/* writes src escaped to dst; returns the end of what was written */
unsigned char *ngx_chat_stomp_escape(unsigned char *dst,
    const unsigned char *src, size_t n);

#endif /* _NGX_CHAT_STOMP_H_INCLUDED_ */
