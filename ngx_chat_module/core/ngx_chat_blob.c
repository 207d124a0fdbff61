/* ngx_chat_blob.c: the reference-counted byte string of a published
 * message. */

#include "ngx_chat_blob.h"


ngx_chat_blob_t *
ngx_chat_blob_create(size_t len)
{
    ngx_chat_blob_t  *b;

    b = ngx_alloc(offsetof(ngx_chat_blob_t, data) + len + 1, ngx_cycle->log);
    if (b == NULL) {
        return NULL;
    }

    b->refs = 1;
    b->len = len;
    b->seq = 0;
    ngx_str_null(&b->conv);
    b->parsed = 0;

    return b;
}


void
ngx_chat_blob_release(ngx_chat_blob_t *b)
{
    if (b != NULL && --b->refs == 0) {
        ngx_free(b);
    }
}


/* a plain scan: the JSON is ours (the store scripts write it) */

ngx_int_t
ngx_chat_blob_message_ids(u_char *json, size_t len, ngx_str_t *conv,
    uint64_t *seq)
{
    u_char    *p, *end, *q;
    uint64_t   n;

    end = json + len;

    p = ngx_strlcasestrn(json, end, (u_char *) "\"conversationId\":\"",
                         sizeof("\"conversationId\":\"") - 2);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    p += sizeof("\"conversationId\":\"") - 1;

    for (q = p; q < end && *q != '"'; q++) {
        if (*q == '\\') {
            return NGX_DECLINED;
        }
    }

    if (q == end || q == p) {
        return NGX_DECLINED;
    }

    conv->data = p;
    conv->len = q - p;

    p = ngx_strlcasestrn(q, end, (u_char *) "\"seq\":",
                         sizeof("\"seq\":") - 2);
    if (p == NULL) {
        return NGX_DECLINED;
    }

    n = 0;

    for (p += sizeof("\"seq\":") - 1; p < end && *p >= '0' && *p <= '9'; p++)
    {
        if (n > (NGX_MAX_UINT32_VALUE * (uint64_t) 1000)) {
            return NGX_DECLINED;
        }

        n = n * 10 + (*p - '0');
    }

    if (n == 0) {
        return NGX_DECLINED;
    }

    *seq = n;

    return NGX_OK;
}
