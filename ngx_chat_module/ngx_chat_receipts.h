/* ngx_chat_receipts.h: delivered watermarks: coalesced per worker,
 * recorded in Redis and relayed to the other members. */

#ifndef _NGX_CHAT_RECEIPTS_H_INCLUDED_
#define _NGX_CHAT_RECEIPTS_H_INCLUDED_

#include "ngx_chat.h"


#define NGX_CHAT_RECEIPTS_FLUSH    1000    /* ms: at most this late */
#define NGX_CHAT_RECEIPTS_BATCH    256     /* users per script call */


ngx_int_t ngx_chat_receipts_init_process(ngx_cycle_t *cycle);

/* flushes what is left (best effort) */
void ngx_chat_receipts_exit_process(ngx_cycle_t *cycle);

/* user has received everything of conv up to seq (coalesced) */
void ngx_chat_receipts_delivered(ngx_str_t *user, u_char *conv,
    size_t conv_len, uint64_t seq);

/*
 * conversationId and seq of a message body (the JSON that
 * /user/queue/messages carries). NGX_DECLINED: not found.
 */
ngx_int_t ngx_chat_receipts_parse(u_char *json, size_t len, ngx_str_t *conv,
    uint64_t *seq);

/* a receipt JSON to the Kafka receipts topic (if Kafka is on) */
void ngx_chat_receipts_produce(u_char *json, size_t len);

#endif /* _NGX_CHAT_RECEIPTS_H_INCLUDED_ */
