/* ngx_chat_api_body.c: the REST API's JSON request bodies (pure). */

#include <string.h>

#include "ngx_chat_api_body.h"
#include "ngx_chat_jwt.h"


json_t *
ngx_chat_api_body_load(const char *buf, size_t len, json_error_t *jerr,
    const char **err)
{
    json_t  *body;

    body = json_loadb(buf, len, JSON_REJECT_DUPLICATES, jerr);

    if (body == NULL) {
        *err = len ? jerr->text : "a JSON body is required";
        return NULL;
    }

    if (!json_is_object(body)) {
        json_decref(body);
        *err = "the body must be a JSON object";
        return NULL;
    }

    return body;
}


size_t
ngx_chat_api_utf8_chars(const char *s)
{
    size_t  n;

    for (n = 0; *s; s++) {
        if ((*s & 0xc0) != 0x80) {
            n++;
        }
    }

    return n;
}


/* push tokens (FCM's are letters, digits, ":", "-", "_") */
int
ngx_chat_api_token_valid(const unsigned char *p, size_t len)
{
    const unsigned char  *last;

    if (len == 0 || len > NGX_CHAT_API_TOKEN_MAX) {
        return 0;
    }

    for (last = p + len; p < last; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
              || (*p >= '0' && *p <= '9')
              || *p == ':' || *p == '-' || *p == '_' || *p == '.'))
        {
            return 0;
        }
    }

    return 1;
}


const char *
ngx_chat_api_members_size(json_t *members, size_t *size)
{
    size_t   i, n, len;
    json_t  *m;

    if (members != NULL && !json_is_array(members)) {
        return "members must be an array of userIds";
    }

    n = json_array_size(members);

    if (n > NGX_CHAT_API_MEMBERS_MAX) {
        return "too many members (at most 100000)";
    }

    len = sizeof("{}");

    for (i = 0; i < n; i++) {
        m = json_array_get(members, i);

        if (!json_is_string(m)
            || !ngx_chat_user_id_valid((unsigned char *) json_string_value(m),
                                       json_string_length(m)))
        {
            return "members must be an array of valid userIds";
        }

        len += (i ? sizeof(",\"\"") : sizeof("\"\"")) - 1
               + json_string_length(m);
    }

    *size = len;

    return NULL;
}


char *
ngx_chat_api_members_write(json_t *members, char *p)
{
    char    *start;
    size_t   i, n;
    json_t  *m;

    start = p;
    n = json_array_size(members);

    *p++ = '{';

    for (i = 0; i < n; i++) {
        m = json_array_get(members, i);

        if (i > 0) {
            *p++ = ',';
        }

        *p++ = '"';
        memcpy(p, json_string_value(m), json_string_length(m));
        p += json_string_length(m);
        *p++ = '"';
    }

    *p++ = '}';
    *p = '\0';

    return start;
}
