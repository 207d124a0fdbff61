/* ngx_chat_attachments.h: chat_attachments: files uploaded to a
 * conversation and served to its members (PROTOCOL.md section 11). */

#ifndef _NGX_CHAT_ATTACHMENTS_H_INCLUDED_
#define _NGX_CHAT_ATTACHMENTS_H_INCLUDED_

#include "ngx_chat.h"


/* chat_attachments <dir> <internal-uri-prefix>: the location's handler */
char *ngx_chat_attachments_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* chat_attachment_types <type>...: what may be uploaded */
char *ngx_chat_attachment_types_set(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

ngx_int_t ngx_chat_attachments_handler(ngx_http_request_t *r);

#endif /* _NGX_CHAT_ATTACHMENTS_H_INCLUDED_ */
