/* ngx_chat_session_sub.c: what features register (destinations, hooks)
 * and the subscriptions of a session: SUBSCRIBE, a topic's check,
 * UNSUBSCRIBE, ACK and NACK. */

#include "ngx_chat_session_int.h"
#include "ngx_chat_metrics.h"


#define NGX_CHAT_SUBS_INITIAL      2      /* subscriptions allocated first;
                                             doubled up to the limit */


/* the session's own destination, the first of the table */
static ngx_chat_dest_t  ngx_chat_session_errors = {
    ngx_string("/user/queue/errors"), 0, NULL, NULL, NULL, NULL,
    NGX_CHAT_DEST_ERRORS, 1, 0
};


ngx_chat_dest_t  *ngx_chat_session_dests[NGX_CHAT_DEST_MAX] = {
    &ngx_chat_session_errors
};

static ngx_uint_t        ngx_chat_session_ndests = 1;

#define NGX_CHAT_SESSION_HOOKS    8

static ngx_chat_session_hooks_t
                        *ngx_chat_session_hooks[NGX_CHAT_SESSION_HOOKS];
static ngx_uint_t        ngx_chat_session_nhooks;


ngx_int_t
ngx_chat_session_add_dest(ngx_chat_dest_t *d)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_chat_session_ndests; i++) {
        if (ngx_chat_session_dests[i] == d) {
            return d->id;
        }
    }

    if (ngx_chat_session_ndests == NGX_CHAT_DEST_MAX) {
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "chat: too many destinations");
        return NGX_ERROR;
    }

    d->id = ngx_chat_session_ndests;
    ngx_chat_session_dests[ngx_chat_session_ndests++] = d;

    return d->id;
}


ngx_int_t
ngx_chat_session_add_hooks(ngx_chat_session_hooks_t *h)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_chat_session_nhooks; i++) {
        if (ngx_chat_session_hooks[i] == h) {
            return NGX_OK;
        }
    }

    if (ngx_chat_session_nhooks == NGX_CHAT_SESSION_HOOKS) {
        ngx_log_error(NGX_LOG_EMERG, ngx_cycle->log, 0,
                      "chat: too many session hooks");
        return NGX_ERROR;
    }

    ngx_chat_session_hooks[ngx_chat_session_nhooks++] = h;

    return NGX_OK;
}


void
ngx_chat_session_delivered(ngx_chat_session_t *s, u_char *conv,
    size_t conv_len, uint64_t seq)
{
    ngx_uint_t  i;

    for (i = 0; i < ngx_chat_session_nhooks; i++) {
        if (ngx_chat_session_hooks[i]->delivered) {
            ngx_chat_session_hooks[i]->delivered(s, conv, conv_len, seq);
        }
    }
}


ngx_int_t
ngx_chat_session_connected(ngx_chat_session_t *s)
{
    ngx_int_t   rc;
    ngx_uint_t  i;

    for (i = 0; i < ngx_chat_session_nhooks; i++) {
        if (ngx_chat_session_hooks[i]->connected == NULL) {
            continue;
        }

        rc = ngx_chat_session_hooks[i]->connected(s);

        if (rc == NGX_AGAIN) {
            s->connect_waits++;
            continue;
        }

        if (rc != NGX_OK) {
            return (rc == NGX_DECLINED) ? NGX_DECLINED : NGX_ERROR;
        }
    }

    return s->connect_waits ? NGX_AGAIN : NGX_OK;
}


void
ngx_chat_session_ready(ngx_chat_session_t *s)
{
    if (!s->connecting || s->closing || s->connect_waits == 0) {
        return;
    }

    if (--s->connect_waits == 0) {
        /* the timer handler sends CONNECTED, from the event loop */

        if (s->timer.timer_set) {
            ngx_del_timer(&s->timer);
        }

        ngx_add_timer(&s->timer, 0);
    }
}


void
ngx_chat_session_closed(ngx_chat_session_t *s)
{
    ngx_uint_t  i;

    for (i = ngx_chat_session_nhooks; i-- > 0; /* void */) {
        if (ngx_chat_session_hooks[i]->closed) {
            ngx_chat_session_hooks[i]->closed(s);
        }
    }
}


ngx_int_t
ngx_chat_session_subscribe(ngx_chat_session_t *s, ngx_chat_stomp_frame_t *f)
{
    ngx_int_t                rc;
    ngx_str_t                destination, id, ack, receipt, arg;
    ngx_uint_t               i, n, mode;
    ngx_chat_sub_t          *sub;
    ngx_chat_dest_t         *d;
    u_char                   detail[64];

    ngx_chat_stomp_header_value(f, "receipt", &receipt.data, &receipt.len);

    if (ngx_chat_stomp_header_value(f, "destination", &destination.data,
                                    &destination.len) != 0)
    {
        ngx_chat_session_error(s, "SUBSCRIBE without destination", NULL,
                               &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    if (ngx_chat_stomp_header_value(f, "id", &id.data, &id.len) != 0) {
        if (s->version >= 11) {
            ngx_chat_session_error(s, "SUBSCRIBE without id", NULL,
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }

        id = destination;     /* STOMP 1.0: the destination names it */
    }

    /* its MESSAGE frames carry it: a head of bounded size (session_out) */

    if (id.len > s->lcf->max_sub_id) {
        ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_SUB_ID, 1);
        *ngx_snprintf(detail, sizeof(detail) - 1,
                      "at most %uz bytes (chat_max_subscription_id)",
                      s->lcf->max_sub_id) = '\0';
        ngx_chat_session_error(s, "subscription id too long",
                               (char *) detail, &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    mode = NGX_CHAT_ACK_AUTO;

    if (ngx_chat_stomp_header_value(f, "ack", &ack.data, &ack.len) == 0) {
        if (ack.len == 4 && ngx_strncmp(ack.data, "auto", 4) == 0) {
            mode = NGX_CHAT_ACK_AUTO;

        } else if (ack.len == 6 && ngx_strncmp(ack.data, "client", 6) == 0) {
            mode = NGX_CHAT_ACK_CLIENT;

        } else if (ack.len == 17
                   && ngx_strncmp(ack.data, "client-individual", 17) == 0)
        {
            mode = NGX_CHAT_ACK_INDIVIDUAL;

        } else {
            ngx_chat_session_error(s, "invalid ack mode", NULL, &receipt,
                                   NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }
    }

    /* a topic's feature checks below who may read it */

    d = ngx_chat_session_find_dest(&destination, &arg);

    if (d == NULL || !d->readable) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: SUBSCRIBE to forbidden destination \"%V\"",
                      &destination);
        ngx_chat_session_error(s, "forbidden destination",
                               "this destination does not exist or may not "
                               "be read by this user", &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    for (i = 0; i < s->nsubs; i++) {
        if (s->subs[i].id.len == id.len
            && ngx_strncmp(s->subs[i].id.data, id.data, id.len) == 0)
        {
            ngx_chat_session_error(s, "duplicate subscription id", NULL,
                                   &receipt, NGX_CHAT_WS_CLOSE_PROTOCOL);
            return NGX_ERROR;
        }
    }

    if (s->nsubs >= ngx_min(s->lcf->max_subscriptions, NGX_CHAT_SUBS_MAX)) {
        ngx_chat_session_error(s, "too many subscriptions", NULL, &receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return NGX_ERROR;
    }

    if (s->nsubs == s->subs_size) {
        /* the array grows: nothing keeps pointers to its elements */

        n = s->subs_size ? s->subs_size * 2 : NGX_CHAT_SUBS_INITIAL;
        n = ngx_min(n, s->lcf->max_subscriptions);
        n = ngx_min(n, NGX_CHAT_SUBS_MAX);

        sub = ngx_alloc(n * sizeof(ngx_chat_sub_t), s->log);
        if (sub == NULL) {
            ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }

        if (s->subs) {
            ngx_memcpy(sub, s->subs, s->nsubs * sizeof(ngx_chat_sub_t));
            ngx_free(s->subs);
        }

        s->subs = sub;
        s->subs_size = n;
    }

    sub = &s->subs[s->nsubs];
    ngx_memzero(sub, sizeof(ngx_chat_sub_t));

    /* id and destination live in a small allocation of their own */
    sub->id.data = ngx_alloc(id.len + destination.len + 1, s->log);
    if (sub->id.data == NULL) {
        ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    sub->id.len = id.len;
    ngx_memcpy(sub->id.data, id.data, id.len);
    sub->destination.data = sub->id.data + id.len;
    sub->destination.len = destination.len;
    ngx_memcpy(sub->destination.data, destination.data, destination.len);
    sub->dest = (uint8_t) d->id;
    sub->ack = mode;

    if (mode != NGX_CHAT_ACK_AUTO) {
        sub->pending = ngx_alloc(NGX_CHAT_PENDING_ACKS
                                 * sizeof(ngx_chat_pending_t), s->log);
        if (sub->pending == NULL) {
            ngx_free(sub->id.data);
            ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
            return NGX_ERROR;
        }
    }

    s->nsubs++;
    s->dest_subs[d->id]++;
    ngx_chat_metric_gauge_add(NGX_CHAT_G_SUBSCRIPTIONS, 1);

    if (d->subscribe == NULL) {
        return NGX_OK;
    }

    /*
     * Events wait for the check (and its snapshot); so do the session's
     * next frames.
     */

    sub->waiting = 1;

    rc = d->subscribe(s, sub, &arg, &receipt);

    if (rc == NGX_OK) {
        sub->waiting = 0;
        return NGX_OK;
    }

    if (rc == NGX_ERROR) {
        s->dest_subs[d->id]--;
        s->nsubs--;
        ngx_chat_metric_gauge_add(NGX_CHAT_G_SUBSCRIPTIONS, -1);
        ngx_free(sub->pending);
        ngx_free(sub->id.data);
        ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return NGX_ERROR;
    }

    s->paused = 1;

    return NGX_AGAIN;
}


/*
 * The destination a client names: a name, or a prefix and its argument;
 * NULL if none
 */

ngx_chat_dest_t *
ngx_chat_session_find_dest(ngx_str_t *destination, ngx_str_t *arg)
{
    ngx_uint_t        i;
    ngx_chat_dest_t  *d;

    for (i = 0; i < ngx_chat_session_ndests; i++) {
        d = ngx_chat_session_dests[i];

        if (d->max_arg == 0) {
            if (destination->len == d->name.len
                && ngx_strncmp(destination->data, d->name.data,
                               d->name.len) == 0)
            {
                ngx_str_null(arg);
                return d;
            }

            continue;
        }

        if (destination->len > d->name.len
            && destination->len <= d->name.len + d->max_arg
            && ngx_strncmp(destination->data, d->name.data, d->name.len)
               == 0)
        {
            arg->data = destination->data + d->name.len;
            arg->len = destination->len - d->name.len;
            return d;
        }
    }

    return NULL;
}


/* drops a subscription (which then is replaced by the last one) */

void
ngx_chat_session_sub_free(ngx_chat_session_t *s, ngx_chat_sub_t *sub)
{
    ngx_str_t         arg;
    ngx_chat_dest_t  *d;

    d = ngx_chat_session_dests[sub->dest];

    if (d->unsubscribe) {
        arg.data = sub->destination.data + d->name.len;
        arg.len = sub->destination.len - d->name.len;
        d->unsubscribe(s, sub, &arg);
    }

    s->dest_subs[sub->dest]--;
    ngx_chat_metric_gauge_add(NGX_CHAT_G_SUBSCRIPTIONS, -1);

    if (sub->pending) {
        ngx_free(sub->pending);
    }

    ngx_free(sub->id.data);

    *sub = s->subs[--s->nsubs];
}


ngx_uint_t
ngx_chat_session_end_topic(ngx_chat_session_t *s, ngx_uint_t dest,
    ngx_str_t *destination, const char *code, const char *message)
{
    ngx_uint_t       i, n;
    ngx_chat_sub_t  *sub;

    n = 0;
    i = 0;

    while (i < s->nsubs) {
        sub = &s->subs[i];

        if (sub->dest != dest || sub->waiting
            || sub->destination.len != destination->len
            || ngx_strncmp(sub->destination.data, destination->data,
                           destination->len) != 0)
        {
            i++;
            continue;
        }

        /* the last one moves here: i is looked at again */
        ngx_chat_session_sub_free(s, sub);
        n++;
    }

    if (n && !s->closing) {
        ngx_chat_session_reject(s, code, message, NULL, NULL);
    }

    return n;
}


ngx_int_t
ngx_chat_session_unsubscribe(ngx_chat_session_t *s, ngx_chat_stomp_frame_t *f)
{
    ngx_str_t   id, receipt;
    ngx_uint_t  i;

    ngx_chat_stomp_header_value(f, "receipt", &receipt.data, &receipt.len);

    if (ngx_chat_stomp_header_value(f, "id", &id.data, &id.len) != 0
        && ngx_chat_stomp_header_value(f, "destination", &id.data,
                                       &id.len) != 0)
    {
        ngx_chat_session_error(s, "UNSUBSCRIBE without id", NULL, &receipt,
                               NGX_CHAT_WS_CLOSE_PROTOCOL);
        return NGX_ERROR;
    }

    for (i = 0; i < s->nsubs; i++) {
        if (s->subs[i].id.len == id.len
            && ngx_strncmp(s->subs[i].id.data, id.data, id.len) == 0)
        {
            ngx_chat_session_sub_free(s, &s->subs[i]);
            return NGX_OK;
        }
    }

    ngx_chat_session_error(s, "no such subscription", NULL, &receipt,
                           NGX_CHAT_WS_CLOSE_PROTOCOL);
    return NGX_ERROR;
}


ngx_int_t
ngx_chat_session_ack(ngx_chat_session_t *s, ngx_chat_stomp_command_e cmd,
    ngx_str_t *id, ngx_str_t *subscription)
{
    uint64_t             n;
    ngx_uint_t           i, j, k, m;
    ngx_chat_sub_t      *sub;
    ngx_chat_pending_t  *pe;

    n = 0;

    for (i = 0; i < id->len; i++) {
        if (id->data[i] < '0' || id->data[i] > '9' || n > NGX_MAX_INT_T_VALUE)
        {
            n = 0;
            break;
        }

        n = n * 10 + (id->data[i] - '0');
    }

    for (i = 0; i < s->nsubs; i++) {
        sub = &s->subs[i];

        for (j = 0; j < sub->npending; j++) {
            if (sub->pending[j].ack != n) {
                continue;
            }

            /*
             * client mode acknowledges everything up to this one,
             * client-individual (and any NACK) only this one; an ACKed
             * message is delivered, a NACKed one is not
             */

            m = j;

            if (sub->ack == NGX_CHAT_ACK_CLIENT
                && cmd == NGX_CHAT_STOMP_ACK)
            {
                m = 0;
            }

            for (k = m; cmd == NGX_CHAT_STOMP_ACK && k <= j; k++) {
                pe = &sub->pending[k];

                if (pe->seq) {
                    ngx_chat_session_delivered(s, pe->conv, pe->conv_len,
                                               pe->seq);
                }
            }

            if (m == j) {
                ngx_memmove(&sub->pending[j], &sub->pending[j + 1],
                            (sub->npending - j - 1)
                            * sizeof(ngx_chat_pending_t));
                sub->npending--;
                return NGX_OK;
            }

            k = j + 1;

            ngx_memmove(&sub->pending[0], &sub->pending[k],
                        (sub->npending - k) * sizeof(ngx_chat_pending_t));
            sub->npending -= k;

            return NGX_OK;
        }
    }

    /* already acknowledged (cumulatively) or never sent: harmless */

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, s->log, 0,
                   "chat: ACK of unknown id \"%V\"", id);

    return NGX_OK;
}


void
ngx_chat_session_subscribed(ngx_chat_session_t *s, ngx_str_t *sub_id,
    ngx_int_t rc, ngx_chat_blob_t *body, ngx_str_t *receipt)
{
    ngx_uint_t        i;
    ngx_chat_sub_t   *sub;
    ngx_chat_dest_t  *d;

    s->paused = 0;

    if (s->closing) {
        return;
    }

    sub = NULL;

    for (i = 0; i < s->nsubs; i++) {
        if (s->subs[i].id.len == sub_id->len
            && ngx_strncmp(s->subs[i].id.data, sub_id->data, sub_id->len)
               == 0)
        {
            sub = &s->subs[i];
            break;
        }
    }

    if (sub == NULL) {
        /* cannot be: frames waited */
        ngx_chat_transport_close(s->t, NGX_CHAT_WS_CLOSE_INTERNAL, NULL);
        return;
    }

    d = ngx_chat_session_dests[sub->dest];

    if (rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_INFO, s->log, 0,
                      "chat: SUBSCRIBE to \"%V\" refused", &sub->destination);
        ngx_chat_session_sub_free(s, sub);
        ngx_chat_session_error(s, "forbidden destination",
                               "this destination does not exist or may not "
                               "be read by this user", receipt,
                               NGX_CHAT_WS_CLOSE_POLICY);
        return;
    }

    if (rc != NGX_OK) {
        ngx_chat_session_sub_free(s, sub);
        ngx_chat_session_reject(s, "unavailable", d->unavailable, NULL,
                                receipt);

    } else {
        if (receipt && receipt->len) {
            ngx_chat_session_receipt(s, receipt);
        }

        if (body) {
            ngx_chat_session_deliver_to(s, sub->dest, &sub->destination,
                                        &sub->id, NULL, 0, body);

        } else {
            sub->waiting = 0;
        }
    }

    if (s->closing) {
        return;
    }

    /* the frames that waited */

    ngx_chat_session_parse(s);
}


/* "SEND goes to /app/a, /app/b or /app/c": the destinations that take one */

const char *
ngx_chat_session_send_names(void)
{
    u_char         *p, *last;
    ngx_uint_t      i, n, k;
    static u_char   names[512];

    n = 0;

    for (i = 0; i < ngx_chat_session_ndests; i++) {
        n += (ngx_chat_session_dests[i]->send != NULL);
    }

    p = names;
    last = names + sizeof(names) - 1;

    p = ngx_slprintf(p, last, "SEND goes to");

    for (i = 0, k = 0; i < ngx_chat_session_ndests; i++) {
        if (ngx_chat_session_dests[i]->send == NULL) {
            continue;
        }

        k++;
        p = ngx_slprintf(p, last, "%s%V",
                         k == 1 ? " " : (k == n ? " or " : ", "),
                         &ngx_chat_session_dests[i]->name);
    }

    *p = '\0';

    return (const char *) names;
}
