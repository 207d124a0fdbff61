/* wk_conf.c: the workers' configuration table: defaults, file, flags. */

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "wk_conf.h"
#include "wk_log.h"


static const char *wk_conf_type_names[] = { "string", "int", "bool" };


/* "batch_size" and "batch-size" name the same setting */
static int
wk_conf_name_eq(const char *a, const char *b, size_t blen)
{
    size_t  i;
    char    ca, cb;

    for (i = 0; i < blen; i++) {
        ca = a[i] == '_' ? '-' : a[i];
        cb = b[i] == '_' ? '-' : b[i];

        if (ca == '\0' || ca != cb) {
            return 0;
        }
    }

    return a[blen] == '\0';
}


static wk_conf_t *
wk_conf_find(wk_conf_spec_t *spec, const char *name, size_t len)
{
    wk_conf_t  *c;

    for (c = spec->table; c->name; c++) {
        if (wk_conf_name_eq(c->name, name, len)) {
            return c;
        }
    }

    return NULL;
}


static int
wk_conf_set(wk_conf_t *c, const char *value, const char *where)
{
    char       *end, *s;
    long long   n;

    switch (c->type) {

    case WK_CONF_STR:
        s = strdup(value);
        if (s == NULL) {
            fprintf(stderr, "out of memory\n");
            return -1;
        }

        /* every value, the default too, is a copy of its own */
        free(*(char **) c->value);
        *(char **) c->value = s;
        return 0;

    case WK_CONF_INT:
        errno = 0;
        n = strtoll(value, &end, 10);

        if (errno || end == value || *end != '\0' || n < c->min
            || n > c->max)
        {
            fprintf(stderr, "%s: %s: \"%s\" is not an integer in "
                    "[%lld, %lld]\n", where, c->name, value, c->min, c->max);
            return -1;
        }

        *(long long *) c->value = n;
        return 0;

    case WK_CONF_BOOL:
        if (strcasecmp(value, "true") == 0 || strcasecmp(value, "yes") == 0
            || strcasecmp(value, "on") == 0 || strcmp(value, "1") == 0)
        {
            *(int *) c->value = 1;
            return 0;
        }

        if (strcasecmp(value, "false") == 0 || strcasecmp(value, "no") == 0
            || strcasecmp(value, "off") == 0 || strcmp(value, "0") == 0)
        {
            *(int *) c->value = 0;
            return 0;
        }

        fprintf(stderr, "%s: %s: \"%s\" is not a boolean\n", where, c->name,
                value);
        return -1;
    }

    return -1;
}


static int
wk_conf_apply(wk_conf_spec_t *spec, const char *name, size_t len,
    const char *value, const char *where)
{
    char       *full;
    size_t      plen;
    wk_conf_t  *c;
    int         rc;

    c = wk_conf_find(spec, name, len);
    if (c != NULL) {
        return wk_conf_set(c, value, where);
    }

    if (spec->extra_prefix != NULL) {
        plen = strlen(spec->extra_prefix);

        if (len > plen && strncmp(name, spec->extra_prefix, plen) == 0) {
            full = strndup(name + plen, len - plen);
            if (full == NULL) {
                fprintf(stderr, "out of memory\n");
                return -1;
            }

            rc = spec->extra(full, value, spec->data);
            if (rc != 0) {
                fprintf(stderr, "%s: invalid setting %.*s\n", where,
                        (int) len, name);
            }

            free(full);
            return rc;
        }
    }

    fprintf(stderr, "%s: unknown setting \"%.*s\" (see --help)\n", where,
            (int) len, name);

    return -1;
}


static char *
wk_conf_trim(char *s)
{
    char  *e;

    while (isspace((unsigned char) *s)) {
        s++;
    }

    e = s + strlen(s);

    while (e > s && isspace((unsigned char) e[-1])) {
        e--;
    }

    *e = '\0';

    return s;
}


/*
 * The file: one "name = value" (or "name value") per line; "#" starts a
 * comment line; a value may be in double quotes.
 */
static int
wk_conf_file(wk_conf_spec_t *spec, const char *path)
{
    FILE    *f;
    char     line[4096], where[1024], *p, *name, *value;
    size_t   len;
    int      lineno, rc;

    f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "%s: cannot open \"%s\": %s\n", spec->prog, path,
                strerror(errno));
        return -1;
    }

    lineno = 0;
    rc = 0;

    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        snprintf(where, sizeof(where), "%s:%d", path, lineno);

        p = wk_conf_trim(line);

        if (*p == '\0' || *p == '#') {
            continue;
        }

        name = p;
        len = strcspn(p, " \t=");
        p += len;
        p += strspn(p, " \t");

        if (*p == '=') {
            p++;
        }

        value = wk_conf_trim(p);
        len = strcspn(name, " \t=");

        if (*value == '"') {
            value++;
            p = strrchr(value, '"');

            if (p == NULL || p[1] != '\0') {
                fprintf(stderr, "%s: unbalanced quote\n", where);
                rc = -1;
                break;
            }

            *p = '\0';
        }

        if (wk_conf_apply(spec, name, len, value, where) != 0) {
            rc = -1;
            break;
        }
    }

    fclose(f);

    return rc;
}


int
wk_conf_load(wk_conf_spec_t *spec, int argc, char **argv)
{
    int         i;
    char       *arg, *eq;
    size_t      len;
    wk_conf_t  *c;
    const char *file;

    for (c = spec->table; c->name; c++) {
        if (wk_conf_set(c, c->dflt, "default") != 0) {
            return -1;
        }
    }

    file = NULL;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            wk_conf_usage(spec);
            return 1;
        }

        if (strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "-c") == 0) {
            if (i + 1 == argc) {
                fprintf(stderr, "%s: %s needs a file name\n", spec->prog,
                        argv[i]);
                return -1;
            }

            file = argv[++i];

        } else if (strncmp(argv[i], "--config=", 9) == 0) {
            file = argv[i] + 9;
        }
    }

    if (file != NULL && wk_conf_file(spec, file) != 0) {
        return -1;
    }

    for (i = 1; i < argc; i++) {
        arg = argv[i];

        if (strcmp(arg, "--config") == 0 || strcmp(arg, "-c") == 0) {
            i++;
            continue;
        }

        if (strncmp(arg, "--config=", 9) == 0) {
            continue;
        }

        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            fprintf(stderr, "%s: unexpected argument \"%s\" (see --help)\n",
                    spec->prog, arg);
            return -1;
        }

        arg += 2;
        eq = strchr(arg, '=');

        if (eq != NULL) {
            if (wk_conf_apply(spec, arg, (size_t) (eq - arg), eq + 1,
                              "command line")
                != 0)
            {
                return -1;
            }

            continue;
        }

        len = strlen(arg);
        c = wk_conf_find(spec, arg, len);

        if (c != NULL && c->type == WK_CONF_BOOL
            && (i + 1 == argc || strncmp(argv[i + 1], "--", 2) == 0))
        {
            *(int *) c->value = 1;
            continue;
        }

        if (i + 1 == argc) {
            fprintf(stderr, "%s: --%s needs a value\n", spec->prog, arg);
            return -1;
        }

        if (wk_conf_apply(spec, arg, len, argv[++i], "command line") != 0) {
            return -1;
        }
    }

    return 0;
}


void
wk_conf_usage(wk_conf_spec_t *spec)
{
    wk_conf_t  *c;

    printf("usage: %s [--config FILE] [--NAME=VALUE ...]\n\n%s\n\n",
           spec->prog, spec->summary);

    printf("Settings come from their defaults, then from the file (lines "
           "\"name = value\",\n\"#\" comments), then from the flags.\n\n");

    printf("  %-22s %-7s %-22s %s\n", "NAME", "TYPE", "DEFAULT",
           "DESCRIPTION");

    for (c = spec->table; c->name; c++) {
        if (strlen(c->dflt) > 22) {
            printf("  %-22s %-7s %s\n  %-22s %-7s %-22s %s\n", c->name,
                   wk_conf_type_names[c->type], c->dflt, "", "", "",
                   c->help);
            continue;
        }

        printf("  %-22s %-7s %-22s %s\n", c->name,
               wk_conf_type_names[c->type], *c->dflt ? c->dflt : "-",
               c->help);
    }

    if (spec->extra_prefix != NULL) {
        printf("  %-22s %-7s %-22s %s\n", spec->extra_prefix, "string", "-",
               spec->extra_help);
    }
}


void
wk_conf_log(wk_conf_spec_t *spec)
{
    wk_conf_t  *c;

    for (c = spec->table; c->name; c++) {
        if (c->secret) {
            wk_info("config %s = (not shown)", c->name);
            continue;
        }

        switch (c->type) {

        case WK_CONF_STR:
            wk_info("config %s = \"%s\"", c->name, *(char **) c->value);
            break;

        case WK_CONF_INT:
            wk_info("config %s = %lld", c->name, *(long long *) c->value);
            break;

        case WK_CONF_BOOL:
            wk_info("config %s = %s", c->name,
                    *(int *) c->value ? "true" : "false");
            break;
        }
    }
}
