/* chat_token.c: prints an HS256 JWT for a userId, for development and tests. */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ngx_chat_jwt.h"


#define CT_DEFAULT_SECRET  "ngx-chat-dev-secret-change-me"
#define CT_DEFAULT_TTL     3600


static void
ct_usage(FILE *out)
{
    fprintf(out,
        "usage: chat-token [--secret S] [--ttl SECONDS] [--name NAME] USER\n"
        "\n"
        "Prints a JWT (HS256) with sub=USER, exp=now+SECONDS and the\n"
        "optional display name.\n"
        "\n"
        "  --secret S     HMAC secret (default: $CHAT_JWT_SECRET, else the\n"
        "                 development default \"%s\")\n"
        "  --ttl SECONDS  lifetime, may be negative for expired tokens\n"
        "                 (default %d)\n"
        "  --name NAME    the \"name\" claim\n"
        "\n"
        "USER: 1-64 characters of [A-Za-z0-9._@-].\n",
        CT_DEFAULT_SECRET, CT_DEFAULT_TTL);
}


static int
ct_parse_ttl(const char *s, long long *ttl)
{
    char       *end;
    long long   v;

    errno = 0;
    v = strtoll(s, &end, 10);

    if (errno != 0 || end == s || *end != '\0'
        || v > 100LL * 365 * 86400 || v < -100LL * 365 * 86400)
    {
        return -1;
    }

    *ttl = v;

    return 0;
}


int
main(int argc, char **argv)
{
    int          i;
    char        *token;
    long long    ttl;
    const char  *secret, *name, *user, *arg;

    secret = getenv("CHAT_JWT_SECRET");
    if (secret == NULL || secret[0] == '\0') {
        secret = CT_DEFAULT_SECRET;
    }

    ttl = CT_DEFAULT_TTL;
    name = NULL;
    user = NULL;

    for (i = 1; i < argc; i++) {
        arg = argv[i];

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            ct_usage(stdout);
            return 0;
        }

        if (strcmp(arg, "--secret") == 0 || strcmp(arg, "--ttl") == 0
            || strcmp(arg, "--name") == 0)
        {
            if (i + 1 >= argc) {
                fprintf(stderr, "chat-token: %s needs a value\n", arg);
                ct_usage(stderr);
                return 2;
            }

            i++;

            if (arg[2] == 's') {
                secret = argv[i];

            } else if (arg[2] == 'n') {
                name = argv[i];

            } else if (ct_parse_ttl(argv[i], &ttl) != 0) {
                fprintf(stderr, "chat-token: bad --ttl \"%s\"\n", argv[i]);
                return 2;
            }

            continue;
        }

        if (arg[0] == '-' && arg[1] != '\0' && strcmp(arg, "--") != 0) {
            fprintf(stderr, "chat-token: unknown option \"%s\"\n", arg);
            ct_usage(stderr);
            return 2;
        }

        if (strcmp(arg, "--") == 0) {
            if (i + 1 < argc) {
                arg = argv[++i];

            } else {
                break;
            }
        }

        if (user != NULL) {
            fprintf(stderr, "chat-token: only one USER, please\n");
            ct_usage(stderr);
            return 2;
        }

        user = arg;
    }

    if (user == NULL) {
        ct_usage(stderr);
        return 2;
    }

    if (!ngx_chat_user_id_valid((const unsigned char *) user, strlen(user))) {
        fprintf(stderr, "chat-token: invalid user id \"%s\" "
                "(1-64 characters of [A-Za-z0-9._@-])\n", user);
        return 2;
    }

    token = ngx_chat_jwt_sign(user, name, (int64_t) time(NULL) + ttl,
                              (const unsigned char *) secret,
                              strlen(secret));
    if (token == NULL) {
        /* the userId is valid: jansson refused a name that is not UTF-8 */

        if (name != NULL) {
            fprintf(stderr, "chat-token: --name must be valid UTF-8\n");
            return 2;
        }

        fprintf(stderr, "chat-token: signing failed\n");
        return 1;
    }

    printf("%s\n", token);
    free(token);

    return 0;
}
