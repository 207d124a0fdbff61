/* ngx_chat_messaging_body.c: the bodies of SENDs to /app/chat.*: checked,
 * and the JSON they become around the seq Redis assigns; message ids and
 * times. */

#include "ngx_chat_messaging_int.h"
#include "ngx_chat_metrics.h"
#include "ngx_chat_utf8.h"




static uint64_t           ngx_chat_id_last_ms;
static uint64_t           ngx_chat_id_counter;


/*
 * The conversationId of a body, copied into op and written as a JSON
 * string. NGX_DECLINED: missing or not a valid id.
 */

ngx_int_t
ngx_chat_op_conversation(ngx_chat_send_t *op, json_t *root, ngx_str_t *jconv)
{
    json_t  *conv;

    conv = json_object_get(root, "conversationId");

    if (!json_is_string(conv)
        || json_string_length(conv) == 0
        || json_string_length(conv) > NGX_CHAT_CONV_ID_MAX)
    {
        return NGX_DECLINED;
    }

    op->conversation.len = json_string_length(conv);
    op->conversation.data = ngx_pnalloc(op->pool, op->conversation.len);
    if (op->conversation.data == NULL) {
        return NGX_ERROR;
    }

    ngx_memcpy(op->conversation.data, json_string_value(conv),
               op->conversation.len);

    return ngx_chat_json_string(op->pool, jconv,
                                (char *) op->conversation.data,
                                op->conversation.len);
}


/*
 * What is wrong with a body that is not a JSON object, said precisely
 * (JSON-safe: it goes into the rejection as it is); NULL: out of memory.
 */

const char *
ngx_chat_body_error(ngx_pool_t *pool, json_t *root, u_char *body,
    size_t len, json_error_t *jerr)
{
    u_char  *p;

    if (root != NULL) {
        return "the body is JSON but not an object";
    }

    if (ngx_chat_utf8_feed(NGX_CHAT_UTF8_ACCEPT, body, len)
        != NGX_CHAT_UTF8_ACCEPT)
    {
        return "the body is not valid UTF-8";
    }

    if (ngx_strstr(jerr->text, "\\u0000") != NULL) {
        return "the body contains \\\\u0000, which is not allowed";
    }

    if (ngx_strlchr(body, body + len, '\0') != NULL) {
        return "the body contains a NUL byte";
    }

    if (len == 0) {
        return "the body is empty, a JSON object is expected";
    }

    p = ngx_pnalloc(pool, sizeof("the body is not valid JSON (line , column "
                                 ")") + 2 * NGX_INT_T_LEN);
    if (p == NULL) {
        return NULL;
    }

    *ngx_sprintf(p, "the body is not valid JSON (line %d, column %d)",
                 jerr->line, jerr->column) = '\0';

    return (const char *) p;
}


/*
 * Parses and validates a chat.send body, and builds what every member
 * receives around the seq that Redis assigns: the route
 * "/user/queue/messages\n<id>\n", then the JSON head up to "seq": and its
 * tail. NGX_DECLINED: rejected (the session was told).
 */

ngx_int_t
ngx_chat_send_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    char          *meta;
    size_t         n;
    uint64_t       id, ms;
    json_t        *root, *content, *cmid, *metadata, *reply;
    ngx_int_t      rc;
    ngx_str_t      jconv, jcontent, jcmid;
    const char    *code, *message;
    json_error_t   jerr;

    code = "bad_request";
    message = NULL;
    meta = NULL;
    ngx_str_null(&jcmid);

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL || !json_is_object(root)) {
        message = ngx_chat_body_error(op->pool, root, body, len, &jerr);
        if (message == NULL) {
            goto failed;
        }

        goto rejected;
    }

    cmid = json_object_get(root, "clientMsgId");

    if (cmid != NULL && !json_is_null(cmid)) {
        if (!json_is_string(cmid)
            || json_string_length(cmid) == 0
            || json_string_length(cmid) > NGX_CHAT_CLIENT_ID_MAX)
        {
            message = "clientMsgId must be a string of 1 to 64 characters";
            goto rejected;
        }

        op->client_msg_id.len = json_string_length(cmid);
        op->client_msg_id.data = ngx_pnalloc(op->pool,
                                             op->client_msg_id.len);
        if (op->client_msg_id.data == NULL) {
            goto failed;
        }

        ngx_memcpy(op->client_msg_id.data, json_string_value(cmid),
                   op->client_msg_id.len);

        if (ngx_chat_json_string(op->pool, &jcmid,
                                 (char *) op->client_msg_id.data,
                                 op->client_msg_id.len)
            != NGX_OK)
        {
            goto failed;
        }
    }

    rc = ngx_chat_op_conversation(op, root, &jconv);

    if (rc == NGX_DECLINED) {
        message = "conversationId must be a string of 1 to 36 characters";
        goto rejected;
    }

    if (rc != NGX_OK) {
        goto failed;
    }

    content = json_object_get(root, "content");

    if (!json_is_string(content) || json_string_length(content) == 0) {
        message = "content must be a non-empty string";
        goto rejected;
    }

    if (json_string_length(content) > s->lcf->max_content) {
        code = "too_large";
        message = "content is larger than this server accepts";
        goto rejected;
    }

    metadata = json_object_get(root, "metadata");

    if (metadata != NULL && !json_is_null(metadata)) {
        if (!json_is_object(metadata)) {
            message = "metadata must be a JSON object";
            goto rejected;
        }

        meta = json_dumps(metadata, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (meta == NULL) {
            goto failed;
        }

        /* it goes into every copy, the history buffer and the database */

        if (s->lcf->max_metadata && ngx_strlen(meta) > s->lcf->max_metadata)
        {
            ngx_chat_metric_inc(NGX_CHAT_M_LIMIT_METADATA, 1);
            code = "too_large";
            message = "metadata is larger than this server accepts "
                      "(chat_max_metadata_size)";
            goto rejected;
        }
    }

    /* replyTo: an earlier seq of the conversation (the script checks) */

    reply = json_object_get(root, "replyTo");

    if (reply != NULL && !json_is_null(reply)) {
        if (!json_is_integer(reply) || json_integer_value(reply) < 1) {
            message = "replyTo must be the seq of a message (an integer of "
                      "at least 1)";
            goto rejected;
        }

        op->reply_to.data = ngx_pnalloc(op->pool, NGX_INT64_LEN);
        if (op->reply_to.data == NULL) {
            goto failed;
        }

        op->reply_to.len = ngx_sprintf(op->reply_to.data, "%L",
                                       (int64_t) json_integer_value(reply))
                           - op->reply_to.data;
    }

    if (ngx_chat_json_string(op->pool, &jcontent, json_string_value(content),
                             json_string_length(content))
        != NGX_OK)
    {
        goto failed;
    }

    id = ngx_chat_next_id(&ms);

    n = sizeof("/user/queue/messages\n\n{\"type\":\"message\","
               "\"messageId\":\"\",\"conversationId\":,\"seq\":")
        + 2 * NGX_INT64_LEN + jconv.len;

    op->route.data = ngx_pnalloc(op->pool, n);
    if (op->route.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(op->route.data, "/user/queue/messages\n%uL\n", id);
    op->route.len = p - op->route.data;

    op->head.data = p;
    p = ngx_sprintf(p, "{\"type\":\"message\",\"messageId\":\"%uL\","
                    "\"conversationId\":%V,\"seq\":", id, &jconv);
    op->head.len = p - op->head.data;

    /* a userId needs no JSON escaping */

    n = sizeof(",\"senderId\":\"\",\"content\":,\"clientMsgId\":,"
               "\"metadata\":,\"createdAt\":\"2024-01-01T00:00:00.000Z\"}")
        + sizeof(",\"replyTo\":") + op->reply_to.len
        + s->id.user.len + jcontent.len + jcmid.len
        + (meta ? ngx_strlen(meta) : 2);

    op->tail.data = ngx_pnalloc(op->pool, n);
    if (op->tail.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(op->tail.data, ",\"senderId\":\"%V\",\"content\":%V",
                    &s->id.user, &jcontent);

    if (jcmid.len) {
        p = ngx_sprintf(p, ",\"clientMsgId\":%V", &jcmid);
    }

    if (op->reply_to.len) {
        p = ngx_sprintf(p, ",\"replyTo\":%V", &op->reply_to);
    }

    p = ngx_sprintf(p, ",\"metadata\":%s,\"createdAt\":\"",
                    meta ? meta : "{}");
    p = ngx_chat_format_time(p, ms);
    *p++ = '"';
    *p++ = '}';
    op->tail.len = p - op->tail.data;

    free(meta);
    json_decref(root);

    return NGX_OK;

rejected:

    free(meta);

    if (root) {
        json_decref(root);
    }

    ngx_chat_session_reject(s, code, message, &op->client_msg_id,
                            &op->receipt);
    return NGX_DECLINED;

failed:

    free(meta);

    if (root) {
        json_decref(root);
    }

    return NGX_ERROR;
}


/* chat.typing: {"conversationId"} */

ngx_int_t
ngx_chat_typing_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    size_t         n;
    json_t        *root;
    ngx_int_t      rc;
    ngx_str_t      jconv;
    json_error_t   jerr;

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);
    rc = ngx_chat_op_conversation(op, root, &jconv);

    if (root) {
        json_decref(root);
    }

    if (rc == NGX_DECLINED) {
        ngx_chat_session_reject(s, "bad_request",
                                "the body must be a JSON object with a "
                                "conversationId", NULL, &op->receipt);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    n = sizeof("/user/queue/typing\n\n{\"type\":\"typing\","
               "\"conversationId\":,\"userId\":\"\","
               "\"at\":\"2024-01-01T00:00:00.000Z\"}")
        + jconv.len + s->id.user.len;

    op->head.data = ngx_pnalloc(op->pool, n);
    if (op->head.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_sprintf(op->head.data, "/user/queue/typing\n\n"
                    "{\"type\":\"typing\",\"conversationId\":%V,"
                    "\"userId\":\"%V\",\"at\":\"", &jconv, &s->id.user);
    p = ngx_chat_format_time(p, ngx_chat_now_ms());
    *p++ = '"';
    *p++ = '}';
    op->head.len = p - op->head.data;

    return NGX_OK;
}


/*
 * chat.read: {"conversationId", "seq"}; the payload is split around the
 * watermark that Redis settles on.
 */

ngx_int_t
ngx_chat_read_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    size_t         n;
    json_t        *root, *seq;
    ngx_int_t      rc;
    ngx_str_t      jconv;
    json_int_t     value;
    json_error_t   jerr;

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);
    rc = ngx_chat_op_conversation(op, root, &jconv);
    seq = json_object_get(root, "seq");
    value = json_is_integer(seq) ? json_integer_value(seq) : 0;

    if (root) {
        json_decref(root);
    }

    if (rc == NGX_DECLINED || value < 1) {
        ngx_chat_session_reject(s, "bad_request",
                                "the body must be a JSON object with a "
                                "conversationId and a seq of at least 1",
                                NULL, &op->receipt);
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_ERROR;
    }

    n = NGX_INT64_LEN
        + sizeof("/user/queue/receipts\n\n{\"type\":\"read\","
                 "\"conversationId\":,\"userId\":\"\",\"seq\":")
        + jconv.len + s->id.user.len
        + sizeof(",\"at\":\"2024-01-01T00:00:00.000Z\"}");

    p = ngx_pnalloc(op->pool, n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    op->seq.data = p;
    p = ngx_sprintf(p, "%L", (int64_t) value);
    op->seq.len = p - op->seq.data;

    op->head.data = p;
    p = ngx_sprintf(p, "/user/queue/receipts\n\n{\"type\":\"read\","
                    "\"conversationId\":%V,\"userId\":\"%V\",\"seq\":",
                    &jconv, &s->id.user);
    op->head.len = p - op->head.data;

    op->tail.data = p;
    p = ngx_cpymem(p, ",\"at\":\"", 7);
    p = ngx_chat_format_time(p, ngx_chat_now_ms());
    *p++ = '"';
    *p++ = '}';
    op->tail.len = p - op->tail.data;

    return NGX_OK;
}


/* a JSON string literal, quotes included */

ngx_int_t
ngx_chat_json_string(ngx_pool_t *pool, ngx_str_t *out, const char *s,
    size_t len)
{
    u_char  *p;
    size_t   n;

    n = len + ngx_escape_json(NULL, (u_char *) s, len) + 2;

    p = ngx_pnalloc(pool, n);
    if (p == NULL) {
        return NGX_ERROR;
    }

    out->data = p;
    *p++ = '"';
    p = (u_char *) ngx_escape_json(p, (u_char *) s, len);
    *p++ = '"';
    out->len = p - out->data;

    return NGX_OK;
}


/*
 * 63-bit time-sortable ids: 41 bits of milliseconds since 2024-01-01,
 * 7 bits of chat_node_id, 5 bits of worker number, 10 bits of counter.
 * More than 1024 ids in one millisecond borrow the next millisecond, and
 * a clock that steps back never makes an id go back.
 */

uint64_t
ngx_chat_now_ms(void)
{
    ngx_time_t  *tp;

    tp = ngx_timeofday();

    return (uint64_t) tp->sec * 1000 + tp->msec;
}


uint64_t
ngx_chat_next_id(uint64_t *ms_out)
{
    uint64_t  ms;

    ms = ngx_chat_now_ms();

    if (ms > ngx_chat_id_last_ms) {
        ngx_chat_id_last_ms = ms;
        ngx_chat_id_counter = 0;

    } else if (++ngx_chat_id_counter == 1024) {
        ngx_chat_id_last_ms++;
        ngx_chat_id_counter = 0;
    }

    *ms_out = ngx_chat_id_last_ms;

    return ((ngx_chat_id_last_ms - NGX_CHAT_ID_EPOCH) << 22)
           | ((uint64_t) (ngx_chat_worker.mcf->node_id & 0x7f) << 15)
           | ((uint64_t) (ngx_worker & 0x1f) << 10)
           | ngx_chat_id_counter;
}


/* RFC 3339 UTC with milliseconds */

u_char *
ngx_chat_format_time(u_char *p, uint64_t ms)
{
    ngx_tm_t  tm;

    ngx_gmtime((time_t) (ms / 1000), &tm);

    return ngx_sprintf(p, "%4d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                       tm.ngx_tm_year, tm.ngx_tm_mon, tm.ngx_tm_mday,
                       tm.ngx_tm_hour, tm.ngx_tm_min, tm.ngx_tm_sec,
                       (int) (ms % 1000));
}
