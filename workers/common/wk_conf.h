/* wk_conf.h: the workers' configuration table: defaults, file, flags. */

#ifndef WK_CONF_H
#define WK_CONF_H


typedef enum {
    WK_CONF_STR,        /* value: char ** */
    WK_CONF_INT,        /* value: long long *, within [min, max] */
    WK_CONF_BOOL        /* value: int *; true/false, yes/no, on/off, 1/0 */
} wk_conf_type_e;


typedef struct {
    const char      *name;      /* "batch-size": --batch-size, or a line */
                                /* "batch-size = 10" (or batch_size) */
    wk_conf_type_e   type;
    const char      *dflt;      /* as text, "" for none */
    const char      *help;
    void            *value;
    long long        min;
    long long        max;
    int              secret;    /* not logged by wk_conf_log() */
} wk_conf_t;


/* receives "<prefix><name> = value" settings passed through (librdkafka) */
typedef int (*wk_conf_extra_pt)(const char *name, const char *value,
    void *data);


typedef struct {
    const char        *prog;
    const char        *summary;
    wk_conf_t         *table;           /* ends with a NULL name */
    const char        *extra_prefix;    /* e.g. "kafka.", or NULL */
    const char        *extra_help;
    wk_conf_extra_pt   extra;
    void              *data;
} wk_conf_spec_t;


/*
 * Sets the defaults, then reads the file named by --config FILE (or
 * -c FILE), then applies the other flags (--name=value or --name value;
 * a boolean flag alone means true). Returns 0 to run, 1 when --help was
 * printed, -1 on an error (already reported on stderr).
 */
int wk_conf_load(wk_conf_spec_t *spec, int argc, char **argv);

void wk_conf_usage(wk_conf_spec_t *spec);

/* logs every setting at info level */
void wk_conf_log(wk_conf_spec_t *spec);


#endif /* WK_CONF_H */
