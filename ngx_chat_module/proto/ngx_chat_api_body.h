/* ngx_chat_api_body.h: the REST API's JSON request bodies: loading and
 * the checks of their fields (pure, no nginx; fuzz/fuzz_api_body.c). */

#ifndef _NGX_CHAT_API_BODY_H_INCLUDED_
#define _NGX_CHAT_API_BODY_H_INCLUDED_

#include <stddef.h>

#include <jansson.h>


#define NGX_CHAT_API_MEMBERS_MAX  100000  /* chat_max_group_members at most */
#define NGX_CHAT_API_AVATAR_MAX   2048
#define NGX_CHAT_API_TOKEN_MAX    512

/*
 * The body as a JSON object (duplicate keys refused), or NULL with *err
 * set: jansson's text in *jerr, or a static message.
 */
json_t *ngx_chat_api_body_load(const char *buf, size_t len,
    json_error_t *jerr, const char **err);

/* characters of a NUL-terminated UTF-8 string */
size_t ngx_chat_api_utf8_chars(const char *s);

/* 1 if p[0..len) is a push token: 1-512 letters, digits, ":-_." */
int ngx_chat_api_token_valid(const unsigned char *p, size_t len);

/*
 * "members" of POST /conversations (NULL: none) as a PostgreSQL text[]
 * literal, {"a","b"} (userIds need no escaping): sets *size to the bytes
 * it takes with its NUL; returns NULL, or why the members are refused.
 */
const char *ngx_chat_api_members_size(json_t *members, size_t *size);

/* writes that literal to p (*size bytes); returns p */
char *ngx_chat_api_members_write(json_t *members, char *p);

#endif /* _NGX_CHAT_API_BODY_H_INCLUDED_ */
