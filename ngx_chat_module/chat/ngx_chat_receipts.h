/* ngx_chat_receipts.h: delivered watermarks: coalesced per worker,
 * recorded in Redis and relayed to the other members. */

#ifndef _NGX_CHAT_RECEIPTS_H_INCLUDED_
#define _NGX_CHAT_RECEIPTS_H_INCLUDED_

#include "ngx_chat.h"


#define NGX_CHAT_RECEIPTS_FLUSH    1000    /* ms: at most this late */
/*
 * The flush is paced: each watermark goes when it is FLUSH old, together
 * with those due within the next TICK, so the work of a second (a script
 * per conversation, the relayed receipts' writes) is spread over it
 * instead of one burst that every SEND behind it waits for.
 */
#define NGX_CHAT_RECEIPTS_TICK     20      /* ms */
#define NGX_CHAT_RECEIPTS_BATCH    256     /* users per script call */


ngx_int_t ngx_chat_receipts_init_process(ngx_cycle_t *cycle);

/* flushes what is left (best effort) */
void ngx_chat_receipts_exit_process(ngx_cycle_t *cycle);

/* a receipt JSON to the Kafka receipts topic (if Kafka is on) */
void ngx_chat_receipts_produce(u_char *json, size_t len);

#endif /* _NGX_CHAT_RECEIPTS_H_INCLUDED_ */
