/* ngx_chat_session_tx.c: STOMP transactions and the COMMIT receipt. */

#include "ngx_chat_session_int.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_MAX_TRANSACTIONS  8
#define NGX_CHAT_MAX_TX_FRAMES     128


/* a frame held back by a transaction until COMMIT */
typedef struct {
    ngx_chat_stomp_command_e  command;
    ngx_str_t                 destination;   /* SEND */
    ngx_str_t                 receipt;
    ngx_str_t                 id;            /* ACK/NACK: ack id */
    ngx_str_t                 subscription;
    ngx_str_t                 body;
} ngx_chat_tx_frame_t;

typedef struct {
    ngx_queue_t               link;
    ngx_str_t                 name;
    ngx_array_t               frames;        /* ngx_chat_tx_frame_t */
    ngx_pool_t               *pool;
    size_t                    bytes;         /* counted in s->tx_bytes */
} ngx_chat_tx_t;


/* a RECEIPT waiting for the requests before it (COMMIT) */
typedef struct {
    ngx_chat_op_t             op;            /* first */
    ngx_str_t                 receipt;
} ngx_chat_barrier_t;


static ngx_int_t ngx_chat_session_tx_add(ngx_chat_session_t *s,
    ngx_chat_tx_t *tx, ngx_chat_stomp_frame_t *f);
static ngx_int_t ngx_chat_session_barrier(ngx_chat_session_t *s,
    ngx_str_t *receipt);
static void ngx_chat_session_barrier_cancel(ngx_chat_op_t *op);
static ngx_chat_tx_t *ngx_chat_session_tx_find(ngx_chat_session_t *s,
    ngx_str_t *name);
static void ngx_chat_session_tx_free(ngx_chat_session_t *s,
    ngx_chat_tx_t *tx);


ngx_int_t
ngx_chat_session_begin(ngx_chat_session_t *s, ngx_str_t *name,
    ngx_str_t *receipt)
{
    ngx_pool_t     *pool;
    ngx_chat_tx_t  *tx;

    if (ngx_chat_session_tx_find(s, name) != NULL) {
        ngx_chat_session_error(s, "transaction already begun", NULL,
                               receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    if (s->ntransactions == NGX_CHAT_MAX_TRANSACTIONS) {
        ngx_chat_session_error(s, "too many transactions", NULL, receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    pool = ngx_create_pool(1024, s->log);
    if (pool == NULL) {
        goto failed;
    }

    tx = ngx_palloc(pool, sizeof(ngx_chat_tx_t));
    if (tx == NULL) {
        goto failed;
    }

    tx->pool = pool;
    tx->bytes = 0;
    tx->name.data = ngx_pstrdup(pool, name);
    tx->name.len = name->len;

    if (tx->name.data == NULL
        || ngx_array_init(&tx->frames, pool, 4, sizeof(ngx_chat_tx_frame_t))
           != NGX_OK)
    {
        goto failed;
    }

    ngx_queue_insert_tail(&s->transactions, &tx->link);
    s->ntransactions++;

    return NGX_OK;

failed:

    if (pool) {
        ngx_destroy_pool(pool);
    }

    ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
    return NGX_ERROR;
}


ngx_int_t
ngx_chat_session_tx_hold(ngx_chat_session_t *s, ngx_str_t *name,
    ngx_chat_stomp_frame_t *f, ngx_str_t *receipt)
{
    ngx_chat_tx_t  *tx;

    tx = ngx_chat_session_tx_find(s, name);
    if (tx == NULL) {
        ngx_chat_session_error(s, "unknown transaction", NULL, receipt,
                               NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    return ngx_chat_session_tx_add(s, tx, f);
}


ngx_int_t
ngx_chat_session_commit(ngx_chat_session_t *s, ngx_str_t *name,
    ngx_str_t *receipt)
{
    ngx_int_t             rc;
    ngx_str_t             none;
    ngx_uint_t            i, n;
    ngx_chat_tx_t        *tx;
    ngx_chat_tx_frame_t  *tf;

    tx = ngx_chat_session_tx_find(s, name);
    if (tx == NULL) {
        ngx_chat_session_error(s, "unknown transaction", NULL, receipt,
                               NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    /*
     * chat_max_requests_in_flight: a COMMIT is refused whole while the
     * limit is reached (its SENDs may pass it by a transaction's frames)
     */
    if (s->lcf->max_in_flight && s->nops >= s->lcf->max_in_flight) {
        ngx_chat_session_tx_free(s, tx);
        ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_IN_FLIGHT, 1);
        ngx_chat_session_reject(s, "rate_limited",
                                "too many requests in flight, the "
                                "transaction is aborted "
                                "(chat_max_requests_in_flight)",
                                NULL, receipt);
        return s->closing ? NGX_ERROR : NGX_OK;
    }

    /* the transaction leaves the list first: a frame may end the session */
    ngx_queue_remove(&tx->link);
    ngx_queue_init(&tx->link);
    s->ntransactions--;
    s->tx_bytes -= tx->bytes;

    ngx_str_null(&none);
    tf = tx->frames.elts;
    rc = NGX_OK;

    n = tx->frames.nelts;

    for (i = 0; i < n && rc == NGX_OK && !s->closing; i++) {

        if (tf[i].command == NGX_CHAT_STOMP_SEND) {
            rc = ngx_chat_session_send(s, &tf[i].destination, tf[i].body.data,
                                       tf[i].body.len, &none);

        } else {
            rc = ngx_chat_session_ack(s, tf[i].command, &tf[i].id,
                                      &tf[i].subscription);
        }
    }

    ngx_destroy_pool(tx->pool);

    if (rc != NGX_OK || s->closing) {
        return NGX_ERROR;
    }

    /* the COMMIT is done when its SENDs are */

    if (receipt->len) {
        if (s->nops == 0) {
            ngx_chat_session_receipt(s, receipt);

        } else if (ngx_chat_session_barrier(s, receipt) != NGX_OK) {
            ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }
    }

    return s->closing ? NGX_ERROR : NGX_OK;
}


ngx_int_t
ngx_chat_session_abort(ngx_chat_session_t *s, ngx_str_t *name,
    ngx_str_t *receipt)
{
    ngx_chat_tx_t  *tx;

    tx = ngx_chat_session_tx_find(s, name);
    if (tx == NULL) {
        ngx_chat_session_error(s, "unknown transaction", NULL, receipt,
                               NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    ngx_chat_session_tx_free(s, tx);

    return NGX_OK;
}


static ngx_int_t
ngx_chat_session_tx_add(ngx_chat_session_t *s, ngx_chat_tx_t *tx,
    ngx_chat_stomp_frame_t *f)
{
    u_char               *p;
    size_t                len;
    ngx_str_t             v, receipt;
    ngx_chat_tx_frame_t  *tf;
    u_char                detail[128];

    ngx_chat_stomp_header_value(f, "receipt", &receipt.data, &receipt.len);

    if (tx->frames.nelts == NGX_CHAT_MAX_TX_FRAMES) {
        ngx_chat_session_error(s, "transaction too large", NULL, &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    if (f->command == NGX_CHAT_STOMP_SEND
        && ngx_chat_stomp_header_value(f, "destination", &v.data,
                                       &v.len) != 0)
    {
        ngx_chat_session_error(s, "SEND without destination", NULL,
                               &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    if (f->command != NGX_CHAT_STOMP_SEND
        && ngx_chat_stomp_header_value(f, "id", &v.data, &v.len) != 0
        && ngx_chat_stomp_header_value(f, "message-id", &v.data,
                                       &v.len) != 0)
    {
        ngx_chat_session_error(s, "ACK without id", NULL, &receipt,
                               NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    /* chat_max_transaction_size: what all of the session's hold */

    len = (f->command == NGX_CHAT_STOMP_SEND) ? v.len + f->body_len : 0;

    if (s->lcf->max_tx_bytes && s->tx_bytes + len > s->lcf->max_tx_bytes) {
        p = ngx_snprintf(detail, sizeof(detail) - 1,
                         "at most %uz bytes held by the transactions of a "
                         "session (chat_max_transaction_size)",
                         s->lcf->max_tx_bytes);
        *p = '\0';
        ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_TX_BYTES, 1);
        ngx_chat_session_error(s, "transaction too large", (char *) detail,
                               &receipt, NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    tf = ngx_array_push(&tx->frames);
    if (tf == NULL) {
        goto failed;
    }

    tx->bytes += len;
    s->tx_bytes += len;

    ngx_memzero(tf, sizeof(ngx_chat_tx_frame_t));
    tf->command = f->command;

    if (f->command == NGX_CHAT_STOMP_SEND) {
        tf->destination.len = v.len;
        tf->destination.data = ngx_pstrdup(tx->pool, &v);

        tf->body.len = f->body_len;
        tf->body.data = ngx_pnalloc(tx->pool, f->body_len + 1);

        if (tf->destination.data == NULL || tf->body.data == NULL) {
            goto failed;
        }

        ngx_memcpy(tf->body.data, f->body, f->body_len);

    } else {
        tf->id.len = v.len;
        tf->id.data = ngx_pstrdup(tx->pool, &v);

        if (tf->id.data == NULL) {
            goto failed;
        }

        if (ngx_chat_stomp_header_value(f, "subscription", &v.data,
                                        &v.len) == 0)
        {
            tf->subscription.len = v.len;
            tf->subscription.data = ngx_pstrdup(tx->pool, &v);

            if (tf->subscription.data == NULL) {
                goto failed;
            }
        }
    }

    return NGX_OK;

failed:

    ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
    return NGX_ERROR;
}


/*
 * A RECEIPT that waits for the requests in flight before it: an op of its
 * own at the tail of s->ops, answered once every op before it is done.
 */

static ngx_int_t
ngx_chat_session_barrier(ngx_chat_session_t *s, ngx_str_t *receipt)
{
    ngx_chat_barrier_t  *b;

    b = ngx_alloc(sizeof(ngx_chat_barrier_t) + receipt->len, s->log);
    if (b == NULL) {
        return NGX_ERROR;
    }

    b->receipt.data = (u_char *) (b + 1);
    b->receipt.len = receipt->len;
    ngx_memcpy(b->receipt.data, receipt->data, receipt->len);

    ngx_chat_session_op_start(s, &b->op, ngx_chat_session_barrier_cancel);

    return NGX_OK;
}


static void
ngx_chat_session_barrier_cancel(ngx_chat_op_t *op)
{
    ngx_free(op);
}


static ngx_chat_tx_t *
ngx_chat_session_tx_find(ngx_chat_session_t *s, ngx_str_t *name)
{
    ngx_queue_t    *q;
    ngx_chat_tx_t  *tx;

    for (q = ngx_queue_head(&s->transactions);
         q != ngx_queue_sentinel(&s->transactions);
         q = ngx_queue_next(q))
    {
        tx = ngx_queue_data(q, ngx_chat_tx_t, link);

        if (tx->name.len == name->len
            && ngx_strncmp(tx->name.data, name->data, name->len) == 0)
        {
            return tx;
        }
    }

    return NULL;
}


static void
ngx_chat_session_tx_free(ngx_chat_session_t *s, ngx_chat_tx_t *tx)
{
    ngx_queue_remove(&tx->link);
    s->ntransactions--;
    s->tx_bytes -= tx->bytes;
    ngx_destroy_pool(tx->pool);
}


void
ngx_chat_session_tx_free_all(ngx_chat_session_t *s)
{
    ngx_queue_t  *q;

    while (!ngx_queue_empty(&s->transactions)) {
        q = ngx_queue_head(&s->transactions);
        ngx_chat_session_tx_free(s, ngx_queue_data(q, ngx_chat_tx_t, link));
    }
}


void
ngx_chat_session_barriers_done(ngx_chat_session_t *s)
{
    ngx_queue_t         *q;
    ngx_chat_op_t       *op;
    ngx_chat_barrier_t  *b;

    while (!ngx_queue_empty(&s->ops)) {
        q = ngx_queue_head(&s->ops);
        op = ngx_queue_data(q, ngx_chat_op_t, link);

        if (op->cancel != ngx_chat_session_barrier_cancel) {
            break;
        }

        ngx_queue_remove(q);
        s->nops--;

        b = (ngx_chat_barrier_t *) op;

        if (!s->closing) {
            ngx_chat_session_receipt(s, &b->receipt);
        }

        ngx_free(b);
    }
}
