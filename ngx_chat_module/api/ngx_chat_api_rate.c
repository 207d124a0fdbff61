/* ngx_chat_api_rate.c: the buckets of chat_conversation_rate, one per user
 * in each worker process, remembered for the most recent 4096 users. */

#include "ngx_chat_api_rate.h"


#define NGX_CHAT_API_RATE_USERS   4096


typedef struct {
    ngx_str_node_t            sn;          /* the userId */
    ngx_queue_t               queue;       /* the most recent last */
    ngx_uint_t                excess;      /* times 1000, as limit_req */
    ngx_msec_t                last;
} ngx_chat_api_bucket_t;


static ngx_rbtree_t           ngx_chat_api_rate_tree;
static ngx_rbtree_node_t      ngx_chat_api_rate_sentinel;
static ngx_queue_t            ngx_chat_api_rate_lru;
static ngx_uint_t             ngx_chat_api_rate_n;
static ngx_uint_t             ngx_chat_api_rate_ready;


/*
 * The bucket of limit_req (ngx_http_limit_req_module.c): excess grows by
 * 1000 a request and drains at the rate; over the burst the request is
 * refused and leaves the bucket as it was. A user forgotten (the least
 * recently seen of more than 4096) starts again with a full burst: a
 * drained bucket is all that is lost unless 4096 other users of the
 * worker created conversations since.
 */

ngx_int_t
ngx_chat_api_rate_take(ngx_str_t *user, ngx_uint_t rate, ngx_uint_t burst,
    ngx_msec_t *wait)
{
    uint32_t                hash;
    ngx_int_t               excess;
    ngx_queue_t            *q;
    ngx_msec_int_t          ms;
    ngx_chat_api_bucket_t  *b;

    *wait = 0;

    if (rate == 0) {
        return NGX_OK;
    }

    if (!ngx_chat_api_rate_ready) {
        ngx_rbtree_init(&ngx_chat_api_rate_tree, &ngx_chat_api_rate_sentinel,
                        ngx_str_rbtree_insert_value);
        ngx_queue_init(&ngx_chat_api_rate_lru);
        ngx_chat_api_rate_ready = 1;
    }

    hash = ngx_crc32_short(user->data, user->len);

    b = (ngx_chat_api_bucket_t *)
            ngx_str_rbtree_lookup(&ngx_chat_api_rate_tree, user, hash);

    if (b == NULL) {
        while (ngx_chat_api_rate_n >= NGX_CHAT_API_RATE_USERS) {
            q = ngx_queue_head(&ngx_chat_api_rate_lru);
            b = ngx_queue_data(q, ngx_chat_api_bucket_t, queue);

            ngx_queue_remove(q);
            ngx_rbtree_delete(&ngx_chat_api_rate_tree, &b->sn.node);
            ngx_free(b);
            ngx_chat_api_rate_n--;
        }

        /* not remembered when out of memory: this request passes */

        b = ngx_alloc(sizeof(ngx_chat_api_bucket_t) + user->len,
                      ngx_cycle->log);
        if (b == NULL) {
            return NGX_OK;
        }

        b->sn.str.data = (u_char *) (b + 1);
        b->sn.str.len = user->len;
        ngx_memcpy(b->sn.str.data, user->data, user->len);
        b->sn.node.key = hash;
        b->excess = 0;
        b->last = ngx_current_msec;

        ngx_rbtree_insert(&ngx_chat_api_rate_tree, &b->sn.node);
        ngx_queue_insert_tail(&ngx_chat_api_rate_lru, &b->queue);
        ngx_chat_api_rate_n++;

        return NGX_OK;
    }

    ngx_queue_remove(&b->queue);
    ngx_queue_insert_tail(&ngx_chat_api_rate_lru, &b->queue);

    ms = (ngx_msec_int_t) (ngx_current_msec - b->last);

    if (ms < 0) {
        ms = 0;
    }

    excess = (ngx_int_t) b->excess - (ngx_int_t) (rate * ms / 1000) + 1000;

    if (excess < 0) {
        excess = 0;
    }

    if ((ngx_uint_t) excess > burst) {
        *wait = (ngx_msec_t) (((ngx_uint_t) excess - burst) * 1000 / rate);
        return NGX_BUSY;
    }

    b->excess = excess;
    b->last = ngx_current_msec;

    return NGX_OK;
}
