/* ngx_chat_devtoken.h: development tokens for loopback clients. */

#ifndef _NGX_CHAT_DEVTOKEN_H_INCLUDED_
#define _NGX_CHAT_DEVTOKEN_H_INCLUDED_

#include "ngx_chat.h"


/* content handler of "chat_dev_token" locations */
ngx_int_t ngx_chat_devtoken_handler(ngx_http_request_t *r);

#endif /* _NGX_CHAT_DEVTOKEN_H_INCLUDED_ */
