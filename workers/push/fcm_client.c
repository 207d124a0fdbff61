/* fcm_client.c: Firebase Cloud Messaging HTTP v1 sends over libcurl's
 * multi interface: OAuth2 access token, retries, error classes. */

#define _GNU_SOURCE     /* strcasestr() */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <curl/curl.h>

#include "common/wk_log.h"
#include "common/wk_proc.h"
#include "fcm_auth.h"
#include "fcm_client.h"


#define FCM_RESPONSE_MAX    65536
#define FCM_ASSERTION_TTL   3600        /* s */
#define FCM_TOKEN_MARGIN    60000       /* ms: renew this long before */
#define FCM_RETRY_AFTER_MAX 3600000     /* ms */


typedef struct {
    char        *data;
    size_t       len;
    size_t       cap;
} fcm_buf_t;


typedef struct fcm_req_s  fcm_req_t;

struct fcm_req_s {
    fcm_req_t           *prev;          /* in the waiting list */
    fcm_req_t           *next;
    fcm_req_t           *fly_prev;      /* in the in-flight list */
    fcm_req_t           *fly_next;
    char                *token;
    char                *body;
    fcm_done_pt          done;
    void                *data;
    long                 attempts;      /* failed ones */
    int                  auth_retried;
    unsigned             auth_gen;      /* of the access token used */
    int64_t              not_before;
    long                 retry_after;   /* ms, -1: no Retry-After */
    CURL                *easy;
    struct curl_slist   *headers;
    fcm_buf_t            resp;
};


static fcm_conf_t        fcm_conf;
static fcm_account_t     fcm_account;
static int               fcm_dry;
static char             *fcm_url;
static CURLM            *fcm_multi;

static fcm_req_t        *fcm_wait_head;
static fcm_req_t        *fcm_wait_tail;
static long              fcm_waiting;
static fcm_req_t        *fcm_fly_head;
static long              fcm_in_flight;

/* the OAuth2 access token and its request */
static char             *fcm_access;
static int64_t           fcm_access_until;
static unsigned          fcm_access_gen;
static CURL             *fcm_tok_easy;
static char             *fcm_tok_post;
static fcm_buf_t         fcm_tok_resp;
static long              fcm_tok_fails;
static int64_t           fcm_tok_next;

/* marks the token request among the transfers */
static char              fcm_tok_mark;


static size_t
fcm_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    char       *p;
    size_t      n, cap;
    fcm_buf_t  *b = userdata;

    n = size * nmemb;

    if (b->len + n + 1 > FCM_RESPONSE_MAX) {
        n = FCM_RESPONSE_MAX > b->len + 1 ? FCM_RESPONSE_MAX - b->len - 1 : 0;
    }

    if (b->len + n + 1 > b->cap) {
        cap = b->cap ? b->cap * 2 : 1024;

        while (cap < b->len + n + 1) {
            cap *= 2;
        }

        p = realloc(b->data, cap);
        if (p == NULL) {
            return 0;
        }

        b->data = p;
        b->cap = cap;
    }

    if (n) {
        memcpy(b->data + b->len, ptr, n);
        b->len += n;
    }

    b->data[b->len] = '\0';

    return size * nmemb;
}


/* Retry-After: seconds or an HTTP date */
static size_t
fcm_header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
    char       line[128], *p;
    long       secs;
    size_t     n;
    time_t     t, now;
    fcm_req_t  *req = userdata;

    n = size * nitems;

    if (n < sizeof("Retry-After:") || n >= sizeof(line)
        || strncasecmp(buf, "Retry-After:", sizeof("Retry-After:") - 1) != 0)
    {
        return n;
    }

    memcpy(line, buf + sizeof("Retry-After:") - 1,
           n - (sizeof("Retry-After:") - 1));
    line[n - (sizeof("Retry-After:") - 1)] = '\0';

    for (p = line; *p == ' ' || *p == '\t'; p++) { /* void */ }

    p[strcspn(p, "\r\n")] = '\0';

    if (isdigit((unsigned char) *p)) {
        secs = strtol(p, NULL, 10);

    } else {
        t = curl_getdate(p, NULL);

        if (t == (time_t) -1) {
            return n;
        }

        now = time(NULL);
        secs = t > now ? (long) (t - now) : 0;
    }

    /* clamped before the product: a huge value or date must not overflow */
    req->retry_after = secs > FCM_RETRY_AFTER_MAX / 1000
                       ? FCM_RETRY_AFTER_MAX : secs * 1000;

    return n;
}


static void
fcm_buf_reset(fcm_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}


int
fcm_init(const fcm_conf_t *conf)
{
    size_t       len;
    const char  *project;

    fcm_conf = *conf;

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        wk_error("curl_global_init() failed");
        return -1;
    }

    fcm_multi = curl_multi_init();
    if (fcm_multi == NULL) {
        wk_error("curl_multi_init() failed");
        return -1;
    }

    /* many streams on one HTTP/2 connection where the server offers it */
    curl_multi_setopt(fcm_multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);

    if (conf->credentials == NULL || *conf->credentials == '\0') {
        fcm_dry = 1;
        wk_warn("no FCM credentials configured (fcm-credentials, "
                "CHAT_FCM_CREDENTIALS): DRY RUN, notifications are logged, "
                "not sent");
        return 0;
    }

    if (fcm_account_load(conf->credentials, &fcm_account) != 0) {
        return -1;
    }

    project = (conf->project_id && *conf->project_id) ? conf->project_id
                                                      : fcm_account.project_id;

    if (project == NULL) {
        wk_error("%s has no \"project_id\" and project-id is not set",
                 conf->credentials);
        return -1;
    }

    len = strlen(conf->base_url) + strlen(project) + 64;

    fcm_url = malloc(len);
    if (fcm_url == NULL) {
        wk_error("out of memory");
        return -1;
    }

    snprintf(fcm_url, len, "%s%sv1/projects/%s/messages:send",
             conf->base_url,
             conf->base_url[strlen(conf->base_url) - 1] == '/' ? "" : "/",
             project);

    wk_info("sending to %s as %s (token from %s)", fcm_url,
            fcm_account.client_email, fcm_account.token_uri);

    return 0;
}


int
fcm_dry_run(void)
{
    return fcm_dry;
}


int
fcm_send(const char *token, json_t *message, fcm_done_pt done, void *data)
{
    json_t     *root;
    fcm_req_t  *req;

    req = calloc(1, sizeof(fcm_req_t));
    if (req == NULL) {
        wk_error("out of memory");
        return -1;
    }

    req->token = strdup(token);

    root = json_pack("{s:O}", "message", message);

    if (root != NULL
        && json_object_set_new(json_object_get(root, "message"), "token",
                               json_string(token))
           == 0)
    {
        req->body = json_dumps(root, JSON_COMPACT);
    }

    json_decref(root);

    if (req->token == NULL || req->body == NULL) {
        wk_error("out of memory");
        free(req->token);
        free(req->body);
        free(req);
        return -1;
    }

    req->done = done;
    req->data = data;
    req->retry_after = -1;

    req->prev = fcm_wait_tail;

    if (fcm_wait_tail) {
        fcm_wait_tail->next = req;
    } else {
        fcm_wait_head = req;
    }

    fcm_wait_tail = req;
    fcm_waiting++;

    return 0;
}


long
fcm_pending(void)
{
    return fcm_waiting + fcm_in_flight;
}


static void
fcm_unwait(fcm_req_t *req)
{
    if (req->prev) {
        req->prev->next = req->next;
    } else {
        fcm_wait_head = req->next;
    }

    if (req->next) {
        req->next->prev = req->prev;
    } else {
        fcm_wait_tail = req->prev;
    }

    req->prev = NULL;
    req->next = NULL;
    fcm_waiting--;
}


static void
fcm_unfly(fcm_req_t *req)
{
    if (req->fly_prev) {
        req->fly_prev->fly_next = req->fly_next;
    } else {
        fcm_fly_head = req->fly_next;
    }

    if (req->fly_next) {
        req->fly_next->fly_prev = req->fly_prev;
    }

    req->fly_prev = NULL;
    req->fly_next = NULL;

    curl_multi_remove_handle(fcm_multi, req->easy);
    curl_easy_cleanup(req->easy);
    req->easy = NULL;
    fcm_in_flight--;
}


static void
fcm_rewait(fcm_req_t *req, int64_t not_before)
{
    req->not_before = not_before;
    req->prev = fcm_wait_tail;
    req->next = NULL;

    if (fcm_wait_tail) {
        fcm_wait_tail->next = req;
    } else {
        fcm_wait_head = req;
    }

    fcm_wait_tail = req;
    fcm_waiting++;
}


static void
fcm_finish(fcm_req_t *req, fcm_result_e result)
{
    fcm_done_pt   done;
    void         *data;

    done = req->done;
    data = req->data;

    if (req->easy) {
        fcm_unfly(req);
    }

    curl_slist_free_all(req->headers);
    fcm_buf_reset(&req->resp);
    free(req->token);
    free(req->body);
    free(req);

    done(data, result);
}


/* a short, printable form of a token for the log */
static const char *
fcm_short(const char *token, char *buf, size_t size)
{
    size_t  n;

    n = strlen(token);

    if (n <= 16) {
        return token;
    }

    snprintf(buf, size, "%.8s...%s", token, token + n - 6);

    return buf;
}


static int
fcm_token_valid(int64_t now)
{
    return fcm_access != NULL && now < fcm_access_until;
}


static void
fcm_token_start(int64_t now)
{
    char    *jwt;
    size_t   len;

    jwt = fcm_assertion(&fcm_account, time(NULL), FCM_ASSERTION_TTL);
    if (jwt == NULL) {
        fcm_tok_next = now + 5000;
        return;
    }

    len = sizeof("grant_type=&assertion=") + 3 * sizeof(FCM_AUTH_GRANT)
          + strlen(jwt);

    free(fcm_tok_post);

    fcm_tok_post = malloc(len);
    if (fcm_tok_post == NULL) {
        free(jwt);
        fcm_tok_next = now + 5000;
        return;
    }

    /* the assertion is base64url and dots: nothing to escape */
    snprintf(fcm_tok_post, len, "grant_type=%s&assertion=%s",
             "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer", jwt);
    free(jwt);

    fcm_buf_reset(&fcm_tok_resp);

    fcm_tok_easy = curl_easy_init();
    if (fcm_tok_easy == NULL) {
        fcm_tok_next = now + 5000;
        return;
    }

    curl_easy_setopt(fcm_tok_easy, CURLOPT_URL, fcm_account.token_uri);
    curl_easy_setopt(fcm_tok_easy, CURLOPT_POSTFIELDS, fcm_tok_post);
    curl_easy_setopt(fcm_tok_easy, CURLOPT_WRITEFUNCTION, fcm_write_cb);
    curl_easy_setopt(fcm_tok_easy, CURLOPT_WRITEDATA, &fcm_tok_resp);
    curl_easy_setopt(fcm_tok_easy, CURLOPT_TIMEOUT_MS, fcm_conf.timeout);
    curl_easy_setopt(fcm_tok_easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(fcm_tok_easy, CURLOPT_PRIVATE, &fcm_tok_mark);

    if (curl_multi_add_handle(fcm_multi, fcm_tok_easy) != CURLM_OK) {
        curl_easy_cleanup(fcm_tok_easy);
        fcm_tok_easy = NULL;
        fcm_tok_next = now + 5000;
        return;
    }

    wk_debug("requesting an access token from %s", fcm_account.token_uri);
}


static void
fcm_token_done(CURLcode res)
{
    long          status, delay, i;
    int64_t       now, life;
    json_t       *root, *tok, *exp;
    json_error_t  jerr;

    status = 0;
    curl_easy_getinfo(fcm_tok_easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle(fcm_multi, fcm_tok_easy);
    curl_easy_cleanup(fcm_tok_easy);
    fcm_tok_easy = NULL;

    now = wk_now_ms();
    root = NULL;

    if (res == CURLE_OK && status == 200) {
        root = json_loadb(fcm_tok_resp.data ? fcm_tok_resp.data : "",
                          fcm_tok_resp.len, 0, &jerr);
        tok = json_object_get(root, "access_token");
        exp = json_object_get(root, "expires_in");

        if (json_is_string(tok) && json_is_integer(exp)
            && json_integer_value(exp) > 0)
        {
            free(fcm_access);
            fcm_access = strdup(json_string_value(tok));

            if (fcm_access != NULL) {
                /* at most a day (Google's last an hour): no overflow */
                life = json_integer_value(exp) > 86400
                       ? 86400 * 1000 : json_integer_value(exp) * 1000;
                fcm_access_until = now + life
                                   - (life / 2 < FCM_TOKEN_MARGIN
                                      ? life / 2 : FCM_TOKEN_MARGIN);
                fcm_access_gen++;
                fcm_tok_fails = 0;

                wk_info("got an access token valid for %llds",
                        (long long) (life / 1000));
                json_decref(root);
                return;
            }
        }
    }

    json_decref(root);

    fcm_tok_fails++;

    delay = fcm_conf.retry_base;

    for (i = 1; i < fcm_tok_fails && delay < fcm_conf.retry_max; i++) {
        delay *= 2;
    }

    if (delay > fcm_conf.retry_max) {
        delay = fcm_conf.retry_max;
    }

    fcm_tok_next = now + delay;

    wk_error("cannot get an access token from %s (%s, status %ld): %.300s; "
             "again in %ld ms", fcm_account.token_uri,
             res == CURLE_OK ? "done" : curl_easy_strerror(res), status,
             fcm_tok_resp.data ? fcm_tok_resp.data : "", delay);
}


static int
fcm_req_start(fcm_req_t *req)
{
    char   auth[4096];
    CURL  *e;

    e = curl_easy_init();
    if (e == NULL) {
        return -1;
    }

    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", fcm_access);

    req->headers = curl_slist_append(NULL, "Content-Type: application/json");

    if (req->headers) {
        req->headers = curl_slist_append(req->headers, auth);
    }

    if (req->headers == NULL) {
        curl_easy_cleanup(e);
        return -1;
    }

    req->auth_gen = fcm_access_gen;
    req->retry_after = -1;
    fcm_buf_reset(&req->resp);

    curl_easy_setopt(e, CURLOPT_URL, fcm_url);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, req->headers);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, fcm_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &req->resp);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, fcm_header_cb);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, req);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, fcm_conf.timeout);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, req);

    if (curl_multi_add_handle(fcm_multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        curl_slist_free_all(req->headers);
        req->headers = NULL;
        return -1;
    }

    req->easy = e;
    fcm_in_flight++;

    req->fly_prev = NULL;
    req->fly_next = fcm_fly_head;

    if (fcm_fly_head) {
        fcm_fly_head->fly_prev = req;
    }

    fcm_fly_head = req;

    return 0;
}


/* starts what may start; returns ms until something else may (or -1) */
static long
fcm_start(int64_t now, int *finished)
{
    char        sbuf[32];
    long        wait;
    fcm_req_t  *req, *next;

    wait = -1;

    if (!fcm_dry && !fcm_token_valid(now) && fcm_tok_easy == NULL
        && fcm_waiting > 0)
    {
        if (now >= fcm_tok_next) {
            fcm_token_start(now);

        } else {
            wait = (long) (fcm_tok_next - now);
        }
    }

    for (req = fcm_wait_head; req; req = next) {
        next = req->next;

        if (req->not_before > now) {
            if (wait < 0 || req->not_before - now < wait) {
                wait = (long) (req->not_before - now);
            }

            continue;
        }

        if (fcm_dry) {
            fcm_unwait(req);
            wk_info("dry run: would send to %s: %s",
                    fcm_short(req->token, sbuf, sizeof(sbuf)), req->body);
            fcm_finish(req, FCM_SENT);
            *finished = 1;
            continue;
        }

        if (!fcm_token_valid(now) || fcm_in_flight >= fcm_conf.max_in_flight)
        {
            break;
        }

        fcm_unwait(req);

        if (fcm_req_start(req) != 0) {
            wk_error("cannot start a request: out of memory");
            fcm_rewait(req, now + 1000);
        }
    }

    return wait;
}


static long
fcm_backoff(fcm_req_t *req)
{
    long  delay, i;

    if (req->retry_after >= 0) {
        return req->retry_after;
    }

    delay = fcm_conf.retry_base;

    for (i = 1; i < req->attempts && delay < fcm_conf.retry_max; i++) {
        delay *= 2;
    }

    return delay > fcm_conf.retry_max ? fcm_conf.retry_max : delay;
}


/* the token is what FCM found invalid (not some other field) */
static int
fcm_token_invalid(json_t *err)
{
    size_t       i, j;
    json_t      *d, *v;
    const char  *msg, *field;

    msg = json_string_value(json_object_get(err, "message"));

    if (msg != NULL && strcasestr(msg, "registration token") != NULL) {
        return 1;
    }

    json_array_foreach(json_object_get(err, "details"), i, d) {
        json_array_foreach(json_object_get(d, "fieldViolations"), j, v) {
            field = json_string_value(json_object_get(v, "field"));
            msg = json_string_value(json_object_get(v, "description"));

            if ((field != NULL && strcmp(field, "message.token") == 0)
                || (msg != NULL
                    && strcasestr(msg, "registration token") != NULL))
            {
                return 1;
            }
        }
    }

    return 0;
}


static const char *
fcm_error_code(json_t *err)
{
    size_t       i;
    json_t      *d;
    const char  *code;

    json_array_foreach(json_object_get(err, "details"), i, d) {
        code = json_string_value(json_object_get(d, "errorCode"));

        if (code != NULL) {
            return code;
        }
    }

    return NULL;
}


static void
fcm_req_done(fcm_req_t *req, CURLcode res)
{
    char          sbuf[32];
    long          status, delay;
    json_t       *root, *err;
    const char   *code, *st, *tok, *why;
    json_error_t  jerr;

    status = 0;
    curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status);
    fcm_unfly(req);
    curl_slist_free_all(req->headers);
    req->headers = NULL;

    tok = fcm_short(req->token, sbuf, sizeof(sbuf));

    if (res == CURLE_OK && status == 200) {
        wk_debug("sent to %s: %s", tok,
                 req->resp.data ? req->resp.data : "");
        fcm_finish(req, FCM_SENT);
        return;
    }

    root = NULL;
    code = NULL;
    st = NULL;
    err = NULL;

    if (res == CURLE_OK && req->resp.len) {
        root = json_loadb(req->resp.data, req->resp.len, 0, &jerr);
        err = json_object_get(root, "error");
        code = fcm_error_code(err);
        st = json_string_value(json_object_get(err, "status"));
    }

    why = res != CURLE_OK ? curl_easy_strerror(res)
                          : (code ? code : (st ? st : "error"));

    if (res == CURLE_OK && status == 401) {
        if (!req->auth_retried) {
            req->auth_retried = 1;

            if (req->auth_gen == fcm_access_gen) {
                free(fcm_access);
                fcm_access = NULL;
                wk_info("access token refused (401): renewing it");
            }

            json_decref(root);
            fcm_rewait(req, 0);
            return;
        }

        wk_error("giving up on %s: 401 again after a new access token",
                 tok);
        json_decref(root);
        fcm_finish(req, FCM_FAILED);
        return;
    }

    if (res == CURLE_OK
        && (status == 404
            || (code && strcmp(code, "UNREGISTERED") == 0)))
    {
        wk_info("token %s is unregistered (%ld %s)", tok, status, why);
        json_decref(root);
        fcm_finish(req, FCM_BAD_TOKEN);
        return;
    }

    if (res == CURLE_OK && status == 400
        && ((code && strcmp(code, "INVALID_ARGUMENT") == 0)
            || (st && strcmp(st, "INVALID_ARGUMENT") == 0)))
    {
        if (fcm_token_invalid(err)) {
            wk_info("token %s is invalid (400 INVALID_ARGUMENT)", tok);
            json_decref(root);
            fcm_finish(req, FCM_BAD_TOKEN);
            return;
        }
    }

    if (res != CURLE_OK || status == 429 || status >= 500) {
        req->attempts++;

        if (req->attempts <= fcm_conf.retries) {
            delay = fcm_backoff(req);

            wk_warn("send to %s failed (%ld %s): retry %ld of %ld in %ld ms",
                    tok, status, why, req->attempts, fcm_conf.retries,
                    delay);

            json_decref(root);
            fcm_rewait(req, wk_now_ms() + delay);
            return;
        }
    }

    wk_error("giving up on %s after %ld attempt(s): %ld %s: %.300s", tok,
             req->attempts + (res != CURLE_OK || status == 429
                              || status >= 500 ? 0 : 1),
             status, why, req->resp.data ? req->resp.data : "");

    json_decref(root);
    fcm_finish(req, FCM_FAILED);
}


static void
fcm_collect(void)
{
    int        left;
    void      *priv;
    CURLMsg   *msg;

    while ((msg = curl_multi_info_read(fcm_multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE) {
            continue;
        }

        priv = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);

        if (priv == &fcm_tok_mark) {
            fcm_token_done(msg->data.result);

        } else if (priv != NULL) {
            fcm_req_done(priv, msg->data.result);
        }
    }
}


void
fcm_poll(long timeout_ms, int wake_fd)
{
    int                 running, numfds, finished;
    long                wait;
    struct curl_waitfd  wfd;

    finished = 0;

    wait = fcm_start(wk_now_ms(), &finished);

    if (finished) {
        timeout_ms = 0;

    } else if (wait >= 0 && wait < timeout_ms) {
        timeout_ms = wait;
    }

    wfd.fd = wake_fd;
    wfd.events = CURL_WAIT_POLLIN;
    wfd.revents = 0;

    curl_multi_poll(fcm_multi, wake_fd >= 0 ? &wfd : NULL,
                    wake_fd >= 0 ? 1 : 0, (int) timeout_ms, &numfds);

    curl_multi_perform(fcm_multi, &running);

    fcm_collect();

    (void) fcm_start(wk_now_ms(), &finished);
}


void
fcm_cleanup(void)
{
    fcm_req_t  *req;

    while (fcm_wait_head) {
        req = fcm_wait_head;
        fcm_unwait(req);
        fcm_finish(req, FCM_FAILED);
    }

    while (fcm_fly_head) {
        fcm_finish(fcm_fly_head, FCM_FAILED);
    }

    if (fcm_tok_easy) {
        curl_multi_remove_handle(fcm_multi, fcm_tok_easy);
        curl_easy_cleanup(fcm_tok_easy);
        fcm_tok_easy = NULL;
    }

    if (fcm_multi) {
        curl_multi_cleanup(fcm_multi);
        fcm_multi = NULL;
    }

    free(fcm_access);
    free(fcm_tok_post);
    free(fcm_url);
    fcm_buf_reset(&fcm_tok_resp);
    fcm_account_free(&fcm_account);
    fcm_access = NULL;
    fcm_tok_post = NULL;
    fcm_url = NULL;

    curl_global_cleanup();
}
