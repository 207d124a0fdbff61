/* fcm_client.h: Firebase Cloud Messaging HTTP v1 sends over libcurl's
 * multi interface: OAuth2 access token, retries, error classes. */

#ifndef FCM_CLIENT_H
#define FCM_CLIENT_H


#include <jansson.h>


typedef enum {
    FCM_SENT = 0,
    FCM_BAD_TOKEN,      /* UNREGISTERED, 404, or the token is invalid */
    FCM_FAILED          /* given up (logged) */
} fcm_result_e;


/* called once per fcm_send(), from fcm_poll() or fcm_cleanup() */
typedef void (*fcm_done_pt)(void *data, fcm_result_e result);


typedef struct {
    const char  *credentials;   /* key file; "" or NULL: dry run */
    const char  *base_url;      /* https://fcm.googleapis.com */
    const char  *project_id;    /* "" or NULL: the key file's */
    long         max_in_flight;
    long         retries;       /* after the first attempt */
    long         retry_base;    /* ms, doubled per attempt */
    long         retry_max;     /* ms */
    long         timeout;       /* ms per request */
} fcm_conf_t;


/* 0, or -1 (logged); the strings of conf must outlive the client */
int fcm_init(const fcm_conf_t *conf);

/* 1 when no credentials are configured: sends are logged, not made */
int fcm_dry_run(void);

/*
 * Queues the message (an FCM v1 "message" object without "token"; the
 * reference is taken) for token. 0, or -1 when out of memory (done is
 * not called then).
 */
int fcm_send(const char *token, json_t *message, fcm_done_pt done,
    void *data);

/* queued, waiting for a retry, or in flight */
long fcm_pending(void);

/*
 * Runs the transfers and waits up to timeout_ms for network activity or
 * for wake_fd (if >= 0) to become readable.
 */
void fcm_poll(long timeout_ms, int wake_fd);

/* ends every pending send with FCM_FAILED, frees everything */
void fcm_cleanup(void);


#endif /* FCM_CLIENT_H */
