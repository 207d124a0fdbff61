/* ngx_chat_messaging_change.c: the bodies of SENDs to /app/chat.edit,
 * /app/chat.delete and /app/chat.react (PROTOCOL.md section 10), checked,
 * the change event they become around the seq Redis assigns, and the
 * state of their target that PostgreSQL knows. */

#include "ngx_chat_messaging_int.h"


static void ngx_chat_change_checked(PGresult *res, void *data);


/*
 * The target's state in PostgreSQL: kind ("": not persisted), sender,
 * deleted, whether the user may delete any message (a group's creator),
 * and whether the user has the emoji on it. No row: no conversation.
 */
static const char  ngx_chat_change_sql[] =
    "SELECT coalesce(m.kind, ''), coalesce(m.sender_id, ''),"
    " (m.deleted_at IS NOT NULL)::int,"
    " (c.type = 'group' AND c.created_by = $3)::int,"
    " (EXISTS (SELECT 1 FROM message_reactions r"
    " WHERE r.conversation_id = c.id AND r.seq = $2::bigint"
    " AND r.user_id = $3 AND r.emoji = $4))::int"
    " FROM conversations c LEFT JOIN messages m"
    " ON m.conversation_id = c.id AND m.seq = $2::bigint"
    " WHERE c.id = $1";


/*
 * {"conversationId", "seq", "content"} (edit), {"conversationId", "seq"}
 * (delete), {"conversationId", "seq", "emoji", "remove"?} (react), kind
 * already in op. Builds the route, the event's JSON head (up to "seq":)
 * and tail, and what the script needs: the target, the new content or the
 * emoji, the time. NGX_DECLINED: rejected (the session was told).
 */

ngx_int_t
ngx_chat_change_prepare(ngx_chat_session_t *s, ngx_chat_send_t *op,
    u_char *body, size_t len)
{
    u_char        *p;
    size_t         n;
    uint64_t       id, ms;
    json_t        *root, *seq, *v, *rm;
    ngx_int_t      rc;
    ngx_str_t      jconv, jvalue;
    const char    *code, *message, *type;
    json_error_t   jerr;

    code = "bad_request";
    message = NULL;
    ngx_str_null(&jvalue);

    root = json_loadb((char *) body, len, JSON_REJECT_DUPLICATES, &jerr);

    if (root == NULL || !json_is_object(root)) {
        message = ngx_chat_body_error(op->pool, root, body, len, &jerr);
        if (message == NULL) {
            goto failed;
        }

        goto rejected;
    }

    rc = ngx_chat_op_conversation(op, root, &jconv);

    if (rc == NGX_DECLINED) {
        message = "conversationId must be a string of 1 to 36 characters";
        goto rejected;
    }

    if (rc != NGX_OK) {
        goto failed;
    }

    seq = json_object_get(root, "seq");

    if (!json_is_integer(seq) || json_integer_value(seq) < 1) {
        message = "seq must be the seq of a message (an integer of at "
                  "least 1)";
        goto rejected;
    }

    op->target.data = ngx_pnalloc(op->pool, NGX_INT64_LEN);
    if (op->target.data == NULL) {
        goto failed;
    }

    op->target.len = ngx_sprintf(op->target.data, "%L",
                                 (int64_t) json_integer_value(seq))
                     - op->target.data;

    switch (op->kind) {

    case NGX_CHAT_OP_EDIT:
        type = "message.edited";
        v = json_object_get(root, "content");

        if (!json_is_string(v) || json_string_length(v) == 0) {
            message = "content must be a non-empty string";
            goto rejected;
        }

        if (json_string_length(v) > s->lcf->max_content) {
            code = "too_large";
            message = "content is larger than this server accepts";
            goto rejected;
        }

        break;

    case NGX_CHAT_OP_REACT:
        v = json_object_get(root, "emoji");

        if (!json_is_string(v) || json_string_length(v) == 0
            || json_string_length(v) > NGX_CHAT_EMOJI_MAX)
        {
            message = "emoji must be a string of 1 to 32 bytes";
            goto rejected;
        }

        rm = json_object_get(root, "remove");

        if (rm != NULL && !json_is_null(rm) && !json_is_boolean(rm)) {
            message = "remove must be true or false";
            goto rejected;
        }

        op->remove = json_is_true(rm);
        type = op->remove ? "reaction.removed" : "reaction.added";
        break;

    default: /* NGX_CHAT_OP_DELETE */
        type = "message.deleted";
        v = NULL;
        break;
    }

    if (v) {
        op->value.len = json_string_length(v);
        op->value.data = ngx_pnalloc(op->pool, op->value.len);
        if (op->value.data == NULL) {
            goto failed;
        }

        ngx_memcpy(op->value.data, json_string_value(v), op->value.len);

        if (ngx_chat_json_string(op->pool, &jvalue,
                                 (char *) op->value.data, op->value.len)
            != NGX_OK)
        {
            goto failed;
        }
    }

    json_decref(root);
    root = NULL;

    id = ngx_chat_next_id(&ms);

    n = sizeof("/user/queue/messages\n\n{\"type\":\"\",\"messageId\":\"\","
               "\"conversationId\":,\"seq\":")
        + sizeof("reaction.removed") + 2 * NGX_INT64_LEN + jconv.len;

    op->route.data = ngx_pnalloc(op->pool, n);
    if (op->route.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(op->route.data, "/user/queue/messages\n%uL\n", id);
    op->route.len = p - op->route.data;

    op->head.data = p;
    p = ngx_sprintf(p, "{\"type\":\"%s\",\"messageId\":\"%uL\","
                    "\"conversationId\":%V,\"seq\":", type, id, &jconv);
    op->head.len = p - op->head.data;

    /* "target":<seq>, is what the script looks for: it is never last */

    n = sizeof(",\"senderId\":\"\",\"target\":,\"content\":,"
               "\"createdAt\":\"2024-01-01T00:00:00.000Z\"}")
        + s->id.user.len + op->target.len + jvalue.len;

    op->tail.data = ngx_pnalloc(op->pool, n);
    if (op->tail.data == NULL) {
        goto failed;
    }

    p = ngx_sprintf(op->tail.data, ",\"senderId\":\"%V\",\"target\":%V",
                    &s->id.user, &op->target);

    if (op->kind == NGX_CHAT_OP_EDIT) {
        p = ngx_sprintf(p, ",\"content\":%V", &jvalue);

    } else if (op->kind == NGX_CHAT_OP_REACT) {
        p = ngx_sprintf(p, ",\"emoji\":%V", &jvalue);
    }

    p = ngx_cpymem(p, ",\"createdAt\":\"", sizeof(",\"createdAt\":\"") - 1);
    op->at.data = p;
    p = ngx_chat_format_time(p, ms);
    op->at.len = p - op->at.data;
    *p++ = '"';
    *p++ = '}';
    op->tail.len = p - op->tail.data;

    return NGX_OK;

rejected:

    if (root) {
        json_decref(root);
    }

    ngx_chat_session_reject(s, code, message, NULL, &op->receipt);
    return NGX_DECLINED;

failed:

    if (root) {
        json_decref(root);
    }

    return NGX_ERROR;
}


/* a change: asks PostgreSQL for its target's state */

ngx_int_t
ngx_chat_change_check(ngx_chat_send_t *op)
{
    const char  *values[4];
    int          lengths[4];

    values[0] = (char *) op->conversation.data;
    lengths[0] = (int) op->conversation.len;
    values[1] = (char *) op->target.data;
    lengths[1] = (int) op->target.len;
    values[2] = (char *) op->op.session->id.user.data;
    lengths[2] = (int) op->op.session->id.user.len;
    values[3] = op->value.len ? (char *) op->value.data : "";
    lengths[3] = (int) op->value.len;

    op->pg = ngx_chat_pg_query(ngx_chat_change_sql, 4, values, lengths,
                               ngx_chat_change_checked, op);

    return op->pg ? NGX_OK : NGX_ERROR;
}


static void
ngx_chat_change_checked(PGresult *res, void *data)
{
    ngx_chat_send_t  *op = data;

    size_t       len;
    ngx_uint_t   i;
    const char  *kind, *sender;

    op->pg = NULL;

    if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK
        || (PQntuples(res) == 1 && PQnfields(res) != 5))
    {
        if (res) {
            ngx_log_error(NGX_LOG_ERR, op->op.session->log, 0,
                          "chat: the state of a message could not be "
                          "read: %s", PQresultErrorMessage(res));
        }

        ngx_chat_send_finish(op, "unavailable",
                             "the database is unavailable, try again");
        return;
    }

    if (PQntuples(res) == 0) {
        ngx_chat_send_finish(op, "not_found", "no such conversation");
        return;
    }

    kind = PQgetvalue(res, 0, 0);

    if (kind[0] != '\0' && ngx_strcmp(kind, "message") != 0) {
        ngx_chat_send_finish(op, "bad_request",
                             "the target is not a message "
                             "(a change cannot be changed)");
        return;
    }

    sender = PQgetvalue(res, 0, 1);
    len = ngx_strlen(sender);

    op->sender.data = ngx_pnalloc(op->pool, len + 1);
    if (op->sender.data == NULL) {
        ngx_chat_send_finish(op, "unavailable", "out of memory");
        return;
    }

    ngx_memcpy(op->sender.data, sender, len);
    op->sender.len = len;

    op->state[0] = (len > 0);

    for (i = 1; i < 4; i++) {
        op->state[i] = (PQgetvalue(res, 0, (int) i + 1)[0] == '1');
    }

    op->checked = 1;

    ngx_chat_send_run(op);
}
