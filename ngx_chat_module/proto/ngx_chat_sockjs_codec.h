/* ngx_chat_sockjs_codec.h: SockJS 0.3 framing: the JSON strings of "a"
 * frames out, the JSON array of strings a client sends in. Pure: no I/O,
 * no nginx. */

#ifndef _NGX_CHAT_SOCKJS_CODEC_H_INCLUDED_
#define _NGX_CHAT_SOCKJS_CODEC_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>


/*
 *   server -> client      o                     open
 *                         h                     heartbeat
 *                         a["msg","msg",...]    messages (JSON strings)
 *                         c[code,"reason"]      close
 *   client -> server      ["msg","msg",...]
 *
 * A STOMP frame is one msg: its NUL is \u0000 in JSON.
 */

/* bytes of the quoted JSON string of p (with its quotes) */
size_t ngx_chat_sockjs_quote_len(const unsigned char *p, size_t len);

/*
 * appends p's characters, escaped, without quotes: '"', '\\', the
 * control characters and U+2028/U+2029 (which JavaScript parsers of some
 * proxies choke on) as \u escapes; returns the end
 */
unsigned char *ngx_chat_sockjs_quote(unsigned char *dst,
    const unsigned char *p, size_t len);

/*
 * A client's message: a JSON array of strings (NULs allowed). The array
 * (json_decref() it) or NULL and *err: "Payload expected." (empty),
 * "Broken JSON encoding." (anything else), as SockJS servers say.
 */
json_t *ngx_chat_sockjs_decode(const unsigned char *p, size_t len,
    const char **err);

/* c[code,"reason"] into buf (>= 32 + 6 * strlen(reason)); the end */
unsigned char *ngx_chat_sockjs_close_frame(unsigned char *buf,
    unsigned code, const char *reason);

#endif /* _NGX_CHAT_SOCKJS_CODEC_H_INCLUDED_ */
