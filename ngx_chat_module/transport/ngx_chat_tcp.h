/* ngx_chat_tcp.h: STOMP over a plain TCP or TLS connection of nginx's
 * stream module (chat_stomp): NUL-terminated frames, EOL heart-beats. */

#ifndef _NGX_CHAT_TCP_H_INCLUDED_
#define _NGX_CHAT_TCP_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_transport.h"

#include <ngx_stream.h>


/*
 * Takes over the stream session's connection (its content handler) and
 * hands it to the session layer (ngx_chat_transport_open) with lcf's
 * settings; user (may be empty, copied) is the userId the server's
 * chat_stomp_user gave. Bytes the stream module read ahead (c->buffer) are
 * handed over first. The stream session is finalized when the connection
 * ends.
 */
void ngx_chat_tcp_start(ngx_stream_session_t *ss, ngx_chat_loc_conf_t *lcf,
    ngx_str_t *user);

#endif /* _NGX_CHAT_TCP_H_INCLUDED_ */
