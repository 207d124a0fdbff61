/* ngx_chat_blob.h: a reference-counted byte string, encoded once and
 * written to many sockets. */

#ifndef _NGX_CHAT_BLOB_H_INCLUDED_
#define _NGX_CHAT_BLOB_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>


/*
 * A published message is shared by every session it goes to. A message's
 * conversationId and seq are read from it once (conv points into data).
 */
typedef struct {
    ngx_uint_t                 refs;
    size_t                     len;
    uint64_t                   seq;            /* 0: none */
    ngx_str_t                  conv;
    unsigned                   parsed:1;
    u_char                     data[1];
} ngx_chat_blob_t;


/* refs 1, room for len bytes and a NUL; NULL on memory failure */
ngx_chat_blob_t *ngx_chat_blob_create(size_t len);

/* refs - 1, freed at 0; NULL is ignored */
void ngx_chat_blob_release(ngx_chat_blob_t *b);

/*
 * conversationId and seq of a message JSON (what /user/queue/messages
 * carries): conv points into json. NGX_DECLINED: not found.
 */
ngx_int_t ngx_chat_blob_message_ids(u_char *json, size_t len,
    ngx_str_t *conv, uint64_t *seq);

#endif /* _NGX_CHAT_BLOB_H_INCLUDED_ */
