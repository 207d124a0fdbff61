/* ngx_chat_kafka.h: the worker's Kafka producer (librdkafka), driven by
 * nginx events. */

#ifndef _NGX_CHAT_KAFKA_H_INCLUDED_
#define _NGX_CHAT_KAFKA_H_INCLUDED_

#include "ngx_chat.h"


typedef struct ngx_chat_kafka_req_s  ngx_chat_kafka_req_t;

/*
 * Called exactly once per produced message (unless cancelled), never from
 * inside ngx_chat_kafka_produce(): NGX_OK when the brokers acknowledged it
 * (acks=all, idempotent), NGX_ERROR when it could not be made durable within
 * the message timeout or the producer shut down first. After NGX_ERROR the
 * message may still have been written ("possibly persisted"): consumers must
 * be idempotent.
 */
typedef void (*ngx_chat_kafka_handler_pt)(ngx_int_t rc, void *data);

/*
 * While the chat_kafka_option line is read (in the master): checks one
 * "name=value" against librdkafka so that "nginx -t" reports a bad one at
 * its line. NGX_CONF_OK or NGX_CONF_ERROR (logged).
 */
char *ngx_chat_kafka_check_option(ngx_conf_t *cf, ngx_str_t *option);

/*
 * At the end of the http block (init_main_conf): checks the whole producer
 * configuration; a failure is logged at where (chat_kafka's line). Creates
 * no handle and no thread. NGX_CONF_OK or NGX_CONF_ERROR (logged).
 */
char *ngx_chat_kafka_check_conf(ngx_conf_t *cf, ngx_chat_kafka_conf_t *conf,
    ngx_chat_conf_where_t *where);

/*
 * In init_process (never in the master): creates this worker's producer
 * and hooks its main queue to the event loop. Empty brokers: Kafka is
 * disabled, NGX_OK. NGX_ERROR when the producer cannot be created.
 */
ngx_int_t ngx_chat_kafka_init(ngx_cycle_t *cycle,
    ngx_chat_kafka_conf_t *conf);

/*
 * In exit_process: flushes for at most 2 s (the one blocking call, at
 * worker exit only), then destroys the producer; handlers still pending
 * get NGX_ERROR.
 */
void ngx_chat_kafka_exit(ngx_cycle_t *cycle);

/* 1 when this worker has a producer */
ngx_uint_t ngx_chat_kafka_enabled(void);

/* 1 while the producer reaches a broker: 0 from "all brokers down" or a
 * failed delivery until a delivery succeeds or the statistics (every
 * second) show a broker up */
ngx_uint_t ngx_chat_kafka_up(void);

/*
 * Produces value (copied) to topic (the handle is cached per name), keyed
 * by key (partitioning: the conversationId). Never blocks. Returns NULL,
 * and the handler is never called, when Kafka is disabled or shutting
 * down, the local queue is full, or on any error: answer "unavailable".
 *
 * While handlers wait, a graceful shutdown of the worker waits for them
 * (at most the message timeout), so senders hear how their message ended.
 */
ngx_chat_kafka_req_t *ngx_chat_kafka_produce(const char *topic,
    u_char *key, size_t key_len, u_char *value, size_t len,
    ngx_chat_kafka_handler_pt handler, void *data);

/*
 * Only before the handler was called (e.g. the session closed): the
 * handler will not be called; the message may still be delivered.
 */
void ngx_chat_kafka_cancel(ngx_chat_kafka_req_t *req);

/* messages not yet acknowledged or reported (rd_kafka_outq_len) */
ngx_uint_t ngx_chat_kafka_queue_depth(void);


#endif /* _NGX_CHAT_KAFKA_H_INCLUDED_ */
