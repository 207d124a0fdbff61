/* cb_stomp.c: the client side of WebSocket (RFC 6455) and STOMP 1.2:
 * handshakes, subscriptions, frames in and out, sends and publishes. */

#include "cb_bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>


/* a masked client frame, text opcode */
void
cb_ws_send(cb_conn_t *c, const char *payload, size_t len)
{
    cb_ws_send_op(c, 0x1, payload, len);
}


/* a masked client frame with opcode op (MQTT: 0x2, binary) */
void
cb_ws_send_op(cb_conn_t *c, unsigned op, const char *payload, size_t len)
{
    char      *p;
    size_t     i, hl;
    uint32_t   m;
    uint8_t    mask[4];

    p = wscratch;
    p[0] = (char) (0x80 | op);

    if (len < 126) {
        p[1] = (char) (0x80 | len);
        hl = 2;

    } else if (len < 65536) {
        p[1] = (char) (0x80 | 126);
        p[2] = (char) (len >> 8);
        p[3] = (char) len;
        hl = 4;

    } else {
        cb_die("frame too large");
        return;
    }

    m = cb_rand();
    memcpy(mask, &m, 4);
    memcpy(p + hl, mask, 4);
    hl += 4;

    for (i = 0; i < len; i++) {
        p[hl + i] = payload[i] ^ (char) mask[i & 3];
    }

    cb_write(c, p, hl + len);
}


static void
cb_ws_pong(cb_conn_t *c, const char *payload, size_t len)
{
    char     f[6 + 125];
    size_t   i;

    if (len > 125) {
        len = 125;
    }

    f[0] = (char) 0x8a;
    f[1] = (char) (0x80 | len);
    f[2] = 1;
    f[3] = 2;
    f[4] = 3;
    f[5] = 4;

    for (i = 0; i < len; i++) {
        f[6 + i] = payload[i] ^ (char) (1 + (i & 3));
    }

    cb_write(c, f, 6 + len);
}


void
cb_send_handshake(cb_conn_t *c)
{
    int   n;
    char  req[512], path[256];

    if (cf.system == CB_SYS_NCHAN) {
        snprintf(path, sizeof(path), "%sc%u", cf.sub_path, c->id / cf.group);

    } else {
        snprintf(path, sizeof(path), "%s", cf.ws_path);
    }

    n = snprintf(req, sizeof(req),
                 "GET %s HTTP/1.1\r\nHost: localhost\r\n"
                 "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n%s\r\n",
                 path,
                 cf.system == CB_SYS_NCHAN
                     || cf.proto == CB_PROTO_SIO
                     ? "" : cf.proto == CB_PROTO_MQTT
                     ? "Sec-WebSocket-Protocol: mqtt\r\n"
                     : "Sec-WebSocket-Protocol: v12.stomp\r\n");

    c->state = CB_HANDSHAKE;
    cb_write(c, req, (size_t) n);
}


static void
cb_send_connect(cb_conn_t *c)
{
    int   n;
    char  f[1024];

    if (cf.system == CB_SYS_CHAT) {
        n = snprintf(f, sizeof(f),
                     "CONNECT\naccept-version:1.2\nhost:localhost\n"
                     "heart-beat:%u,%u\npasscode:%s\n\n",
                     cf.hb_ms, cf.hb_ms, jwts[c->id]);

    } else {
        n = snprintf(f, sizeof(f),
                     "CONNECT\naccept-version:1.2\nhost:/\n"
                     "heart-beat:%u,%u\nlogin:guest\npasscode:guest\n\n",
                     cf.hb_ms, cf.hb_ms);
    }

    c->state = CB_STOMP;
    cb_ws_send(c, f, (size_t) n + 1);           /* with the NUL */
}


static void
cb_send_subscribe(cb_conn_t *c)
{
    int         n;
    char        f[512];
    uint32_t    g;
    int         quiet;

    g = c->id / cf.group;
    quiet = cf.scenario == CB_SC_DENSITY || cf.scenario == CB_SC_STORM;

    /* two subscriptions, the second one with a receipt: the session is
     * ready when it arrives */
    if (cf.system == CB_SYS_CHAT) {
        n = snprintf(f, sizeof(f),
                     "SUBSCRIBE\nid:0\ndestination:/user/queue/messages\n\n");
        n += 1 + snprintf(f + n + 1, sizeof(f) - (size_t) n - 1,
                          "SUBSCRIBE\nid:1\ndestination:%s\nreceipt:s\n\n",
                          quiet ? "/user/queue/receipts"
                                : "/user/queue/errors");

    } else if (quiet) {
        n = snprintf(f, sizeof(f),
                     "SUBSCRIBE\nid:0\ndestination:/exchange/amq.topic/"
                     "%s.u%u\n\n", cf.prefix, c->id);
        n += 1 + snprintf(f + n + 1, sizeof(f) - (size_t) n - 1,
                          "SUBSCRIBE\nid:1\ndestination:/exchange/amq.topic/"
                          "%s.r%u\nreceipt:s\n\n", cf.prefix, c->id);

    } else {
        n = snprintf(f, sizeof(f),
                     "SUBSCRIBE\nid:0\ndestination:/exchange/amq.topic/"
                     "%s.c%u\n\n", cf.prefix, g);
        n += 1 + snprintf(f + n + 1, sizeof(f) - (size_t) n - 1,
                          "SUBSCRIBE\nid:1\ndestination:/exchange/amq.topic/"
                          "%s.e%u\nreceipt:s\n\n", cf.prefix, c->id);
    }

    /* one frame per WebSocket message: RabbitMQ reads only the first */
    c->state = CB_SUBSCRIBING;
    n = (int) strlen(f);
    cb_ws_send(c, f, (size_t) n + 1);
    cb_ws_send(c, f + n + 1, strlen(f + n + 1) + 1);
}


void
cb_ready(cb_conn_t *c)
{
    int64_t  now;

    now = cb_now();
    c->state = CB_READY;
    st.ready++;

    if (st.t_first_ready == 0) {
        st.t_first_ready = now;
    }

    cb_hist_add(&st.setup, now - c->t_start);
}


/* --- what arrives --- */

int
cb_in_window(int64_t t)
{
    return st.t_measure && t >= st.t_measure
           && (st.t_end == 0 || t < st.t_end);
}


/* a message that carries "bt:<ns>:<sender>" */
void
cb_delivery(cb_conn_t *c, const char *body, size_t len)
{
    char       *p, *end;
    int64_t     now, t;
    uint64_t    sender;

    now = cb_now();
    st.deliveries++;
    st.t_last_delivery = now;

    if (cb_in_window(now)) {
        st.deliveries_window++;
    }

    p = memmem(body, len, "bt:", 3);
    if (p != NULL && cf.proto == CB_PROTO_MQTT) {
        /* strtoll must stop inside the payload: no NUL follows it */
        end = memchr(p, ' ', (size_t) (body + len - p));
        if (end == NULL) {
            return;
        }
    }
    if (p == NULL) {
        return;
    }

    t = strtoll(p + 3, &end, 10);
    sender = *end == ':' ? strtoull(end + 1, NULL, 10) : UINT64_MAX;

    if (!cb_in_window(t)) {
        return;
    }

    st.delivered_of_window++;

    if (c->kind == CB_CLIENT && sender == c->id
        && cf.system != CB_SYS_NCHAN)
    {
        return;                         /* the sender's own copy */
    }

    cb_hist_add(&st.msg, now - t);
}


static int
cb_header(const char *f, const char *end, const char *name, const char **v,
    size_t *vlen)
{
    size_t       nl;
    const char  *p, *eol;

    nl = strlen(name);
    p = memchr(f, '\n', (size_t) (end - f));

    while (p != NULL && p + 1 < end && p[1] != '\n'
           && !(p[1] == '\r' && p + 2 < end && p[2] == '\n'))
    {
        p++;
        eol = memchr(p, '\n', (size_t) (end - p));
        if (eol == NULL) {
            eol = end;
        }

        if ((size_t) (eol - p) > nl && p[nl] == ':'
            && memcmp(p, name, nl) == 0)
        {
            *v = p + nl + 1;
            *vlen = (size_t) (eol - *v);
            if (*vlen && (*v)[*vlen - 1] == '\r') {
                (*vlen)--;
            }
            return 1;
        }

        p = eol < end ? eol : NULL;
    }

    return 0;
}


static void
cb_stomp_frame(cb_conn_t *c, const char *f, size_t len)
{
    size_t       vlen;
    int64_t      t;
    uint32_t     sx, sy;
    const char  *end, *v, *body;
    static int   errors_shown;

    end = f + len;

    if (len >= 7 && memcmp(f, "MESSAGE", 7) == 0) {
        body = memmem(f, len, "\n\n", 2);
        if (body != NULL) {
            cb_delivery(c, body + 2, (size_t) (end - body - 2));
        }
        return;
    }

    if (len >= 7 && memcmp(f, "RECEIPT", 7) == 0) {
        if (!cb_header(f, end, "receipt-id", &v, &vlen) || vlen == 0) {
            return;
        }

        if (v[0] == 's') {
            if (c->state == CB_SUBSCRIBING) {
                cb_ready(c);
            }
            return;
        }

        if (v[0] == 'r') {
            t = strtoll(v + 1, NULL, 10);
            st.receipts++;
            if (c->inflight) {
                c->inflight--;
                st.outstanding--;
            }
            if (cb_in_window(t)) {
                cb_hist_add(&st.rcpt, cb_now() - t);
            }
        }
        return;
    }

    if (len >= 9 && memcmp(f, "CONNECTED", 9) == 0) {
        sx = sy = 0;
        if (cb_header(f, end, "heart-beat", &v, &vlen)) {
            (void) sscanf(v, "%u,%u", &sx, &sy);
        }

        c->hb_ms = (cf.hb_ms && sy) ? (cf.hb_ms > sy ? cf.hb_ms : sy) : 0;
        cb_send_subscribe(c);
        return;
    }

    if (len >= 5 && memcmp(f, "ERROR", 5) == 0) {
        st.errors++;
        if (errors_shown++ < 5) {
            if (!cb_header(f, end, "message", &v, &vlen)) {
                v = "?";
                vlen = 1;
            }
            fprintf(stderr, "chat_bench: ERROR frame: %.*s\n", (int) vlen, v);
        }
    }
}


/* STOMP bytes of one WebSocket data frame: frames end with a NUL, lone
 * end-of-lines are heart-beats */
static void
cb_stomp_bytes(cb_conn_t *c, const char *p, size_t len)
{
    char        *nb;
    const char  *end, *nul;

    if (c->st != NULL) {
        nb = realloc(c->st, c->st_len + len);
        if (nb == NULL) {
            cb_die("out of memory");
        }
        memcpy(nb + c->st_len, p, len);
        c->st = nb;
        c->st_len += (uint32_t) len;
        p = c->st;
        len = c->st_len;
    }

    end = p + len;

    while (p < end) {
        if (*p == '\n' || *p == '\r') {
            p++;
            continue;
        }

        nul = memchr(p, '\0', (size_t) (end - p));
        if (nul == NULL) {
            break;
        }

        cb_stomp_frame(c, p, (size_t) (nul - p));

        if (c->state == CB_CLOSED) {
            return;
        }

        p = nul + 1;
    }

    if (p == end) {
        free(c->st);
        c->st = NULL;
        c->st_len = 0;
        return;
    }

    if (c->st == NULL) {
        c->st = malloc((size_t) (end - p));
        if (c->st == NULL) {
            cb_die("out of memory");
        }
        memcpy(c->st, p, (size_t) (end - p));

    } else {
        memmove(c->st, p, (size_t) (end - p));
    }

    c->st_len = (uint32_t) (end - p);
}


/* WebSocket frames from the server; returns the bytes consumed */
static size_t
cb_ws_frames(cb_conn_t *c, char *buf, size_t len)
{
    char      *p, *end, *pl;
    size_t     hl, i;
    uint64_t   plen;
    unsigned   op, masked;

    p = buf;
    end = buf + len;

    while (end - p >= 2 && c->state != CB_CLOSED) {
        op = (unsigned char) p[0] & 0x0f;
        masked = (unsigned char) p[1] & 0x80;
        plen = (unsigned char) p[1] & 0x7f;
        hl = 2;

        if (plen == 126) {
            if (end - p < 4) {
                break;
            }
            plen = (uint64_t) (unsigned char) p[2] << 8 | (unsigned char) p[3];
            hl = 4;

        } else if (plen == 127) {
            if (end - p < 10) {
                break;
            }
            plen = 0;
            for (i = 2; i < 10; i++) {
                plen = plen << 8 | (unsigned char) p[i];
            }
            hl = 10;
        }

        if (masked) {
            hl += 4;
        }

        if ((uint64_t) (end - p) < hl + plen) {
            break;
        }

        pl = p + hl;

        if (masked) {
            for (i = 0; i < plen; i++) {
                pl[i] ^= p[hl - 4 + (i & 3)];
            }
        }

        switch (op) {
        case 0x0:
        case 0x1:
        case 0x2:
            if (cf.system == CB_SYS_NCHAN) {
                cb_delivery(c, pl, (size_t) plen);
            } else if (cf.proto == CB_PROTO_MQTT) {
                cb_mqtt_bytes(c, pl, (size_t) plen);
            } else if (cf.proto == CB_PROTO_SIO) {
                cb_sio_packet(c, pl, (size_t) plen);
            } else {
                cb_stomp_bytes(c, pl, (size_t) plen);
            }
            break;

        case 0x8:
            cb_close(c);
            return len;

        case 0x9:
            cb_ws_pong(c, pl, (size_t) plen);
            break;

        default:
            break;
        }

        p = pl + plen;
    }

    return (size_t) (p - buf);
}


/* HTTP answers on a publisher connection (nchan) */
static size_t
cb_pub_answers(cb_conn_t *c, char *buf, size_t len)
{
    int       status;
    char     *p, *end, *hend, *h;
    long      clen;
    int64_t   t;

    p = buf;
    end = buf + len;

    for ( ;; ) {
        hend = memmem(p, (size_t) (end - p), "\r\n\r\n", 4);
        if (hend == NULL) {
            break;
        }

        clen = 0;

        for (h = p; h < hend; h++) {
            if (*h == '\n' && strncasecmp(h + 1, "content-length:", 15) == 0)
            {
                clen = strtol(h + 16, NULL, 10);
            }
        }

        if (end - (hend + 4) < clen) {
            break;
        }

        status = (int) strtol(p + 9, NULL, 10);

        if (status < 200 || status > 299) {
            st.errors++;
        }

        if (c->inflight) {
            t = c->ring[(c->ring_head + CB_PUB_RING - c->inflight)
                        % CB_PUB_RING];
            c->inflight--;
            st.outstanding--;
            st.receipts++;

            if (cb_in_window(t)) {
                cb_hist_add(&st.rcpt, cb_now() - t);
            }
        }

        p = hend + 4 + clen;
    }

    return (size_t) (p - buf);
}


size_t
cb_consume(cb_conn_t *c, char *buf, size_t len)
{
    char    *hend;
    size_t   used;

    used = 0;

    if (c->kind == CB_PUB) {
        return cb_pub_answers(c, buf, len);
    }

    if (c->state == CB_HANDSHAKE) {
        hend = memmem(buf, len, "\r\n\r\n", 4);
        if (hend == NULL) {
            return 0;
        }

        if (len < 12 || memcmp(buf + 9, "101", 3) != 0) {
            fprintf(stderr, "chat_bench: handshake refused: %.*s\n",
                    (int) (memchr(buf, '\r', len) - (void *) buf), buf);
            cb_close(c);
            return len;
        }

        used = (size_t) (hend + 4 - buf);

        if (cf.system == CB_SYS_NCHAN) {
            cb_ready(c);
        } else if (cf.proto == CB_PROTO_MQTT) {
            cb_mqtt_connect(c);
        } else if (cf.proto == CB_PROTO_SIO) {
            c->state = CB_STOMP;                /* Engine.IO's open next */
        } else {
            cb_send_connect(c);
        }
    }

    return used + cb_ws_frames(c, buf + used, len - used);
}


/* --- sending --- */

void
cb_send_message(cb_conn_t *c)
{
    int       n, m, jl;
    char      body[4096], json[4400], f[4800];
    int64_t   t;
    uint32_t  g;

    if (cf.proto == CB_PROTO_MQTT) {
        cb_mqtt_publish(c);
        return;
    }

    if (cf.proto == CB_PROTO_SIO) {
        cb_sio_send(c);
        return;
    }

    t = cb_now();
    g = c->id / cf.group;

    n = snprintf(body, sizeof(body), "bt:%" PRId64 ":%u ", t, c->id);
    while ((uint32_t) n < cf.size && (size_t) n < sizeof(body) - 1) {
        body[n++] = 'x';
    }
    body[n] = '\0';

    if (cf.system == CB_SYS_CHAT) {
        jl = snprintf(json, sizeof(json),
                      "{\"conversationId\":\"%s\",\"content\":\"%s\","
                      "\"clientMsgId\":\"%u-%" PRIu64 "\"}",
                      convs[g], body, c->id, st.sent);
        m = snprintf(f, sizeof(f),
                     "SEND\ndestination:/app/chat.send\n"
                     "content-type:application/json\n"
                     "content-length:%d\nreceipt:r%" PRId64 "\n\n%s",
                     jl, t, json);

    } else {
        m = snprintf(f, sizeof(f),
                     "SEND\ndestination:/exchange/amq.topic/%s.c%u\n"
                     "content-type:text/plain\n"
                     "content-length:%d\nreceipt:r%" PRId64 "\n\n%s",
                     cf.prefix, g, n, t, body);
    }

    c->inflight++;
    st.outstanding++;
    st.sent++;

    if (cb_in_window(t)) {
        st.sent_window++;
    }

    cb_ws_send(c, f, (size_t) m + 1);
}


void
cb_publish(uint32_t g)
{
    int         n, m;
    char        body[8192], req[9000];
    int64_t     t;
    uint32_t    i, best;
    cb_conn_t  *c;

    best = UINT32_MAX;

    for (i = 0; i < cf.pubs; i++) {
        c = &pubs[i];
        if (c->state == CB_READY && c->inflight < CB_PUB_RING
            && (best == UINT32_MAX || c->inflight < pubs[best].inflight))
        {
            best = i;
        }
    }

    if (best == UINT32_MAX) {
        st.skipped++;
        return;
    }

    c = &pubs[best];
    t = cb_now();

    n = snprintf(body, sizeof(body), "bt:%" PRId64 ":p ", t);
    while ((uint32_t) n < cf.size && (size_t) n < sizeof(body) - 1) {
        body[n++] = 'x';
    }
    body[n] = '\0';

    m = snprintf(req, sizeof(req),
                 "POST %sc%u HTTP/1.1\r\nHost: localhost\r\n"
                 "Content-Type: text/plain\r\n"
                 "Content-Length: %d\r\n\r\n%s", cf.pub_path, g, n, body);

    c->ring[c->ring_head] = t;
    c->ring_head = (c->ring_head + 1) % CB_PUB_RING;
    c->inflight++;
    st.outstanding++;
    st.sent++;

    if (cb_in_window(t)) {
        st.sent_window++;
    }

    cb_write(c, req, (size_t) m);
}
