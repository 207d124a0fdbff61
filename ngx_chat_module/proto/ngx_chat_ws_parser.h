/* ngx_chat_ws_parser.h: RFC 6455 frame reader and writer (pure, no I/O). */

#ifndef _NGX_CHAT_WS_PARSER_H_INCLUDED_
#define _NGX_CHAT_WS_PARSER_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>


#define NGX_CHAT_WS_OP_CONT    0x0
#define NGX_CHAT_WS_OP_TEXT    0x1
#define NGX_CHAT_WS_OP_BINARY  0x2
#define NGX_CHAT_WS_OP_CLOSE   0x8
#define NGX_CHAT_WS_OP_PING    0x9
#define NGX_CHAT_WS_OP_PONG    0xa

#define NGX_CHAT_WS_CLOSE_NORMAL        1000
#define NGX_CHAT_WS_CLOSE_GOING_AWAY    1001
#define NGX_CHAT_WS_CLOSE_PROTOCOL      1002
#define NGX_CHAT_WS_CLOSE_UNSUPPORTED   1003
#define NGX_CHAT_WS_CLOSE_NO_STATUS     1005
#define NGX_CHAT_WS_CLOSE_INVALID_DATA  1007
#define NGX_CHAT_WS_CLOSE_POLICY        1008
#define NGX_CHAT_WS_CLOSE_TOO_BIG       1009
#define NGX_CHAT_WS_CLOSE_INTERNAL      1011

/* what one call of ngx_chat_ws_read() produced */
typedef enum {
    NGX_CHAT_WS_AGAIN = 0,   /* all input consumed, nothing to report */
    NGX_CHAT_WS_DATA,        /* ev->data/len: unmasked payload of a text or
                                binary message (a piece; more may follow) */
    NGX_CHAT_WS_MESSAGE_END, /* the current data message is complete */
    NGX_CHAT_WS_PING,        /* ev->data/len: ping payload (<= 125) */
    NGX_CHAT_WS_PONG,        /* ev->data/len: pong payload */
    NGX_CHAT_WS_CLOSE,       /* ev->code (1005 if none), ev->data/len:
                                reason (valid UTF-8) */
    NGX_CHAT_WS_ERROR        /* ev->code: close code to send (1002, 1007,
                                1009); ev->reason: a C string for logs */
} ngx_chat_ws_event_e;

typedef struct {
    ngx_chat_ws_event_e   type;
    unsigned              binary:1;   /* DATA: the message is binary */
    uint16_t              code;
    unsigned char        *data;
    size_t                len;
    const char           *reason;
} ngx_chat_ws_event_t;

typedef struct {
    /* limits, set before the first call */
    uint64_t              max_message;     /* whole data message, bytes */

    /* state, zeroed by ngx_chat_ws_reader_init() */
    unsigned              in_frame:1;      /* inside a data frame payload */
    unsigned              in_message:1;    /* a fragmented message is open */
    unsigned              message_binary:1;
    unsigned              frame_fin:1;
    unsigned              closed:1;        /* CLOSE or ERROR was reported */
    uint64_t              frame_left;      /* payload bytes still to come */
    uint64_t              message_len;
    uint8_t               mask[4];
    uint8_t               mask_pos;
    uint32_t              utf8;
    unsigned              pending_end:1;
} ngx_chat_ws_reader_t;

void ngx_chat_ws_reader_init(ngx_chat_ws_reader_t *r, uint64_t max_message);

/*
 * Reads client frames from buf[0..len). Unmasks payload in place (so buf
 * must be writable). Sets *consumed to the bytes used; the caller keeps the
 * unconsumed tail (at most one incomplete frame header, or an incomplete
 * control frame of at most 131 bytes) and calls again with more bytes.
 * Call repeatedly until NGX_CHAT_WS_AGAIN. Enforces: masking, reserved bits,
 * known opcodes, control frames <= 125 bytes and never fragmented,
 * continuation rules, UTF-8 of text messages (fail fast, across fragments)
 * and of close reasons, close codes, max_message (1009).
 */
ngx_chat_ws_event_e ngx_chat_ws_read(ngx_chat_ws_reader_t *r,
    unsigned char *buf, size_t len, size_t *consumed,
    ngx_chat_ws_event_t *ev);

/* server frame header (unmasked); out needs 10 bytes; returns its length */
size_t ngx_chat_ws_frame_header(unsigned char *out, unsigned opcode,
    unsigned fin, uint64_t payload_len);

/* close frame payload: 2-byte code and reason; returns its length (<=125) */
size_t ngx_chat_ws_close_payload(unsigned char *out, uint16_t code,
    const char *reason);

#endif /* _NGX_CHAT_WS_PARSER_H_INCLUDED_ */
