/* cb_mqtt.c: the client side of MQTT 3.1.1 over WebSocket (--proto mqtt,
 * Mosquitto): CONNECT/CONNACK, SUBSCRIBE/SUBACK, PUBLISH with QoS 1 and its
 * PUBACK (the receipt), PINGREQ as the heart-beat.
 *
 * Topics: <prefix>/c<conversation> (direct and fan-out: every member
 * subscribes, a SEND is a PUBLISH to it, as RabbitMQ's routing key),
 * <prefix>/e<user> (errors, never published), and for density and storm
 * <prefix>/u<user> and <prefix>/r<user>: two subscriptions per session
 * everywhere. Every PUBLISH carries a packet identifier; its send time
 * waits in the session's ring (CB_PUB_RING) until the PUBACK comes. */

#include "cb_bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define CB_MQTT_CONNECT     0x10
#define CB_MQTT_CONNACK     0x20
#define CB_MQTT_PUBLISH     0x30
#define CB_MQTT_PUBACK      0x40
#define CB_MQTT_SUBSCRIBE   0x82        /* with its reserved flags 0010 */
#define CB_MQTT_SUBACK      0x90
#define CB_MQTT_PINGREQ     0xc0
#define CB_MQTT_PINGRESP    0xd0
#define CB_MQTT_DISCONNECT  0xe0

#define CB_MQTT_SUB_ID      1           /* the SUBSCRIBE's packet id */


/* the fixed header: type and flags, the remaining length (1-4 bytes) */
static size_t
cb_mqtt_header(char *p, unsigned type, size_t rem)
{
    size_t  n;

    p[0] = (char) type;
    n = 1;

    do {
        p[n] = (char) (rem & 0x7f);
        rem >>= 7;
        if (rem) {
            p[n] |= (char) 0x80;
        }
        n++;
    } while (rem && n < 5);

    return n;
}


static size_t
cb_mqtt_str(char *p, const char *s, size_t len)
{
    p[0] = (char) (len >> 8);
    p[1] = (char) len;
    memcpy(p + 2, s, len);
    return len + 2;
}


static void
cb_mqtt_topic(char *t, size_t size, char kind, uint32_t n)
{
    snprintf(t, size, "%s/%c%u", cf.prefix, kind, n);
}


/* after the WebSocket handshake: CONNECT, clean session, keep-alive in
 * seconds (0: none) */
void
cb_mqtt_connect(cb_conn_t *c)
{
    int       idl;
    char      id[64], body[128], f[136];
    size_t    n, hl;
    uint32_t  ka;

    idl = snprintf(id, sizeof(id), "%s-u%u", cf.prefix, c->id);
    ka = cf.hb_ms ? (cf.hb_ms + 999) / 1000 : 0;
    if (ka > 65535) {
        ka = 65535;
    }

    n = cb_mqtt_str(body, "MQTT", 4);
    body[n++] = 4;                          /* 3.1.1 */
    body[n++] = 0x02;                       /* clean session */
    body[n++] = (char) (ka >> 8);
    body[n++] = (char) ka;
    n += cb_mqtt_str(body + n, id, (size_t) idl);

    hl = cb_mqtt_header(f, CB_MQTT_CONNECT, n);
    memcpy(f + hl, body, n);

    c->state = CB_STOMP;
    cb_ws_send_op(c, 0x2, f, hl + n);
}


/* both subscriptions in one SUBSCRIBE; the session is ready at its SUBACK */
static void
cb_mqtt_subscribe(cb_conn_t *c)
{
    int       quiet;
    char      t1[96], t2[96], body[256], f[264];
    size_t    n, hl;

    quiet = cf.scenario == CB_SC_DENSITY || cf.scenario == CB_SC_STORM;

    if (quiet) {
        cb_mqtt_topic(t1, sizeof(t1), 'u', c->id);
        cb_mqtt_topic(t2, sizeof(t2), 'r', c->id);

    } else {
        cb_mqtt_topic(t1, sizeof(t1), 'c', c->id / cf.group);
        cb_mqtt_topic(t2, sizeof(t2), 'e', c->id);
    }

    n = 0;
    body[n++] = 0;
    body[n++] = CB_MQTT_SUB_ID;
    n += cb_mqtt_str(body + n, t1, strlen(t1));
    body[n++] = (char) cf.qos;
    n += cb_mqtt_str(body + n, t2, strlen(t2));
    body[n++] = (char) cf.qos;

    hl = cb_mqtt_header(f, CB_MQTT_SUBSCRIBE, n);
    memcpy(f + hl, body, n);

    c->state = CB_SUBSCRIBING;
    cb_ws_send_op(c, 0x2, f, hl + n);
}


void
cb_mqtt_ping(cb_conn_t *c)
{
    char  f[2] = { (char) CB_MQTT_PINGREQ, 0 };

    cb_ws_send_op(c, 0x2, f, 2);
}


static void
cb_mqtt_puback(cb_conn_t *c, unsigned pid)
{
    char  f[4];

    f[0] = (char) CB_MQTT_PUBACK;
    f[1] = 2;
    f[2] = (char) (pid >> 8);
    f[3] = (char) pid;
    cb_ws_send_op(c, 0x2, f, 4);
}


/* one whole packet: its first byte, the rest (rem bytes) */
static void
cb_mqtt_packet(cb_conn_t *c, unsigned b0, const unsigned char *p, size_t rem)
{
    size_t      tl, off;
    unsigned    qos, pid, i;
    int64_t     t;
    static int  errors_shown;

    switch (b0 & 0xf0) {

    case CB_MQTT_PUBLISH:
        qos = (b0 >> 1) & 3;
        if (rem < 2) {
            goto bad;
        }
        tl = (size_t) p[0] << 8 | p[1];
        off = 2 + tl;
        pid = 0;
        if (qos) {
            if (rem < off + 2) {
                goto bad;
            }
            pid = (unsigned) p[off] << 8 | p[off + 1];
            off += 2;
        }
        if (off > rem) {
            goto bad;
        }

        cb_delivery(c, (const char *) p + off, rem - off);

        if (qos == 1) {
            cb_mqtt_puback(c, pid);
        }
        return;

    case CB_MQTT_PUBACK:
        if (rem < 2 || c->ring == NULL || c->inflight == 0) {
            return;
        }
        pid = (unsigned) p[0] << 8 | p[1];
        t = c->ring[pid % CB_PUB_RING];
        c->inflight--;
        st.outstanding--;
        st.receipts++;
        if (cb_in_window(t)) {
            cb_hist_add(&st.rcpt, cb_now() - t);
        }
        return;

    case CB_MQTT_CONNACK:
        if (rem < 2 || p[1] != 0) {
            goto refused;
        }
        c->hb_ms = cf.hb_ms;
        cb_mqtt_subscribe(c);
        return;

    case CB_MQTT_SUBACK:
        for (i = 2; i < rem; i++) {
            if (p[i] & 0x80) {
                goto refused;
            }
        }
        if (c->state == CB_SUBSCRIBING) {
            cb_ready(c);
        }
        return;

    case CB_MQTT_PINGRESP:
        return;

    default:
        goto bad;
    }

refused:

    st.errors++;
    if (errors_shown++ < 5) {
        fprintf(stderr, "chat_bench: MQTT: packet 0x%02x refused (code %u)\n",
                b0, rem >= 2 ? (unsigned) p[rem - 1] : 0);
    }
    cb_close(c);
    return;

bad:

    st.errors++;
    if (errors_shown++ < 5) {
        fprintf(stderr, "chat_bench: MQTT: bad packet 0x%02x, %zu bytes\n",
                b0, rem);
    }
    cb_close(c);
}


/* MQTT bytes of one WebSocket data frame: packets may span frames */
void
cb_mqtt_bytes(cb_conn_t *c, const char *data, size_t len)
{
    char                 *nb;
    size_t                rem, hl, shift;
    const unsigned char  *p, *end;

    if (c->st != NULL) {
        nb = realloc(c->st, c->st_len + len);
        if (nb == NULL) {
            cb_die("out of memory");
        }
        memcpy(nb + c->st_len, data, len);
        c->st = nb;
        c->st_len += (uint32_t) len;
        data = c->st;
        len = c->st_len;
    }

    p = (const unsigned char *) data;
    end = p + len;

    while (end - p >= 2) {
        rem = 0;
        shift = 0;
        hl = 1;

        do {
            if (p + hl >= end) {
                goto partial;
            }
            rem |= (size_t) (p[hl] & 0x7f) << shift;
            shift += 7;
        } while ((p[hl++] & 0x80) && hl < 5);

        if ((size_t) (end - p) < hl + rem) {
            break;
        }

        cb_mqtt_packet(c, p[0], p + hl, rem);

        if (c->state == CB_CLOSED) {
            return;
        }

        p += hl + rem;
    }

partial:

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


/* a SEND: PUBLISH QoS 1 to the conversation's topic; its PUBACK is the
 * receipt. Skipped (and counted) while the session's ring is full. */
void
cb_mqtt_publish(cb_conn_t *c)
{
    int       n;
    char      topic[96], body[4096], f[4300];
    size_t    tl, hl, rem;
    int64_t   t;
    unsigned  pid;

    if (c->ring == NULL) {
        c->ring = calloc(CB_PUB_RING, sizeof(int64_t));
        if (c->ring == NULL) {
            cb_die("out of memory");
        }
    }

    if (c->inflight >= CB_PUB_RING - 1) {
        st.skipped++;
        return;
    }

    t = cb_now();
    cb_mqtt_topic(topic, sizeof(topic), 'c', c->id / cf.group);
    tl = strlen(topic);

    n = snprintf(body, sizeof(body), "bt:%" PRId64 ":%u ", t, c->id);
    while ((uint32_t) n < cf.size && (size_t) n < sizeof(body) - 1) {
        body[n++] = 'x';
    }

    /* packet ids 1..65535; the ring holds the last CB_PUB_RING of them,
     * and PUBACKs come in order */
    c->ring_head = c->ring_head % 65535 + 1;
    pid = c->ring_head;
    c->ring[pid % CB_PUB_RING] = t;

    rem = 2 + tl + 2 + (size_t) n;
    hl = cb_mqtt_header(f, CB_MQTT_PUBLISH | 0x02, rem);
    hl += cb_mqtt_str(f + hl, topic, tl);
    f[hl++] = (char) (pid >> 8);
    f[hl++] = (char) pid;
    memcpy(f + hl, body, (size_t) n);

    c->inflight++;
    st.outstanding++;
    st.sent++;

    if (cb_in_window(t)) {
        st.sent_window++;
    }

    cb_ws_send_op(c, 0x2, f, hl + (size_t) n);
}
