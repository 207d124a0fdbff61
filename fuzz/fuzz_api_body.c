/* fuzz_api_body.c: the REST API's request bodies (ngx_chat_api_body.c):
 * loaded as the body handler loads them, then every field the handlers
 * read checked as they check it: POST /conversations (type, name,
 * members), POST .../members (userId), PUT /users/me (displayName,
 * avatarUrl), POST /devices (platform, token).
 */

#include "fuzz.h"
#include "ngx_chat_api_body.h"
#include "ngx_chat_jwt.h"
#include "ngx_chat_utf8.h"


/* a string field: its characters are counted as the handlers count them */
static void
fuzz_api_name(json_t *body, const char *key)
{
    size_t       chars, len;
    json_t      *v;
    const char  *s;

    v = json_object_get(body, key);

    if (!json_is_string(v)) {
        return;
    }

    s = json_string_value(v);
    len = json_string_length(v);

    /* jansson's strings are valid UTF-8 (with no NUL unless allowed) */
    FUZZ_ASSERT(strlen(s) == len);
    FUZZ_ASSERT(ngx_chat_utf8_feed(NGX_CHAT_UTF8_ACCEPT,
                                   (const unsigned char *) s, len)
                == NGX_CHAT_UTF8_ACCEPT);

    chars = ngx_chat_api_utf8_chars(s);
    FUZZ_ASSERT(chars <= len && (len == 0 || chars > 0));
    FUZZ_ASSERT(len <= 4 * chars);
}


static void
fuzz_api_members(json_t *body)
{
    char        *lit;
    size_t       size, i, n, quotes;
    json_t      *members;
    const char  *why;

    members = json_object_get(body, "members");

    why = ngx_chat_api_members_size(members, &size);

    if (why != NULL) {
        FUZZ_ASSERT(members != NULL);
        return;
    }

    n = json_array_size(members);
    FUZZ_ASSERT(n <= NGX_CHAT_API_MEMBERS_MAX);

    /* exactly the bytes it said: ASan sees one more */
    lit = malloc(size);
    FUZZ_ASSERT(lit != NULL);

    FUZZ_ASSERT(ngx_chat_api_members_write(members, lit) == lit);
    FUZZ_ASSERT(strlen(lit) + 1 == size);
    FUZZ_ASSERT(lit[0] == '{' && lit[size - 2] == '}');

    /* every member quoted once, nothing inside needs escaping */
    for (i = 0, quotes = 0; lit[i]; i++) {
        quotes += lit[i] == '"';
        FUZZ_ASSERT(lit[i] != '\\');
    }

    FUZZ_ASSERT(quotes == 2 * n);

    for (i = 0; i < n; i++) {
        json_t  *m = json_array_get(members, i);

        FUZZ_ASSERT(ngx_chat_user_id_valid(
                        (const unsigned char *) json_string_value(m),
                        json_string_length(m)));
    }

    free(lit);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char          *buf;
    json_t        *body, *v;
    const char    *err;
    json_error_t   jerr;

    /* the body handler's copy is NUL-terminated, its length given */
    buf = fuzz_strdup(data, size);
    err = NULL;

    body = ngx_chat_api_body_load(buf, size, &jerr, &err);

    if (body == NULL) {
        FUZZ_ASSERT(err != NULL);
        free(buf);
        return 0;
    }

    FUZZ_ASSERT(json_is_object(body));

    fuzz_api_name(body, "name");
    fuzz_api_name(body, "displayName");
    fuzz_api_members(body);

    v = json_object_get(body, "userId");

    if (json_is_string(v)) {
        (void) ngx_chat_user_id_valid(
                   (const unsigned char *) json_string_value(v),
                   json_string_length(v));
    }

    v = json_object_get(body, "token");

    if (json_is_string(v)
        && ngx_chat_api_token_valid(
               (const unsigned char *) json_string_value(v),
               json_string_length(v)))
    {
        FUZZ_ASSERT(json_string_length(v) > 0
                    && json_string_length(v) <= NGX_CHAT_API_TOKEN_MAX);
        FUZZ_ASSERT(strspn(json_string_value(v),
                           "abcdefghijklmnopqrstuvwxyz"
                           "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:-_.")
                    == json_string_length(v));
    }

    json_decref(body);
    free(buf);

    return 0;
}
