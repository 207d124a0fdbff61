/* ngx_chat_utf8.h: incremental UTF-8 validation (pure, no I/O). */

#ifndef _NGX_CHAT_UTF8_H_INCLUDED_
#define _NGX_CHAT_UTF8_H_INCLUDED_

#include <stddef.h>
#include <stdint.h>


#define NGX_CHAT_UTF8_ACCEPT  0
#define NGX_CHAT_UTF8_REJECT  0xffffffff

/*
 * Feeds n bytes to a validator whose state starts at NGX_CHAT_UTF8_ACCEPT.
 * Returns the new state: NGX_CHAT_UTF8_ACCEPT at a character boundary,
 * NGX_CHAT_UTF8_REJECT as soon as the input can no longer be valid UTF-8
 * (overlong forms, surrogates, > U+10FFFF, bad continuation), or another
 * value in the middle of a character. REJECT is sticky.
 */
uint32_t ngx_chat_utf8_feed(uint32_t state, const unsigned char *p, size_t n);

#endif /* _NGX_CHAT_UTF8_H_INCLUDED_ */
