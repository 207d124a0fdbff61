/* ngx_chat_api_rate.h: per-user request rates of the REST API in one
 * worker process (chat_conversation_rate), in the manner of limit_req. */

#ifndef _NGX_CHAT_API_RATE_H_INCLUDED_
#define _NGX_CHAT_API_RATE_H_INCLUDED_

#include <ngx_config.h>
#include <ngx_core.h>


/*
 * Takes one request of user from its bucket: rate per 1000 s (0: no
 * limit), burst times 1000, as ngx_chat_loc_conf_t keeps them. NGX_OK, or
 * NGX_BUSY with *wait the milliseconds until one more would pass.
 */
ngx_int_t ngx_chat_api_rate_take(ngx_str_t *user, ngx_uint_t rate,
    ngx_uint_t burst, ngx_msec_t *wait);

#endif /* _NGX_CHAT_API_RATE_H_INCLUDED_ */
