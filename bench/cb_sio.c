/* cb_sio.c: the client side of Socket.IO 5 over Engine.IO 4 on the
 * WebSocket transport (--system socketio, bench/socketio/server.mjs): one
 * Engine.IO packet per WebSocket text message.
 *
 *   server: 0{"sid":...}            open          client: 40   connect "/"
 *   server: 40{"sid":...}           connected     client: 420["join",[rooms]]
 *   server: 430[]                   join acked: the session is ready
 *   client: 42<t>["send",room,body] a SEND; its ack 43<t>[] is the receipt
 *   server: 42["m",body]            a delivery
 *   server: 2  (ping)               client: 3 (pong)
 *
 * The ack id of a send is its send time in ns (an integer below 2^53, as
 * JavaScript keeps it exactly): the receipt needs no table. Rooms are the
 * MQTT topics' names: <prefix>/c<conversation>, <prefix>/e<user>
 * (density and storm: <prefix>/u<user>, <prefix>/r<user>). */

#include "cb_bench.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


static void
cb_sio_join(cb_conn_t *c)
{
    int   n, quiet;
    char  f[256];

    quiet = cf.scenario == CB_SC_DENSITY || cf.scenario == CB_SC_STORM;

    if (quiet) {
        n = snprintf(f, sizeof(f), "420[\"join\",[\"%s/u%u\",\"%s/r%u\"]]",
                     cf.prefix, c->id, cf.prefix, c->id);
    } else {
        n = snprintf(f, sizeof(f), "420[\"join\",[\"%s/c%u\",\"%s/e%u\"]]",
                     cf.prefix, c->id / cf.group, cf.prefix, c->id);
    }

    c->state = CB_SUBSCRIBING;
    cb_ws_send(c, f, (size_t) n);
}


/* one Engine.IO packet (one WebSocket message) */
void
cb_sio_packet(cb_conn_t *c, const char *p, size_t len)
{
    int64_t     t;
    static int  errors_shown;

    if (len == 0) {
        goto bad;
    }

    switch (p[0]) {

    case '0':                                   /* open */
        c->state = CB_STOMP;
        cb_ws_send(c, "40", 2);
        return;

    case '2':                                   /* ping */
        cb_ws_send(c, "3", 1);
        return;

    case '4':
        if (len >= 2 && p[1] == '0') {          /* connected to "/" */
            if (c->state == CB_STOMP) {
                cb_sio_join(c);
            }
            return;
        }

        if (len >= 2 && p[1] == '2') {          /* an event: "m" */
            cb_delivery(c, p + 2, len - 2);
            return;
        }

        if (len >= 3 && p[1] == '3') {          /* an ack */
            if (p[2] == '0' && c->state == CB_SUBSCRIBING) {
                cb_ready(c);
                return;
            }

            t = strtoll(p + 2, NULL, 10);
            if (c->inflight) {
                c->inflight--;
                st.outstanding--;
            }
            st.receipts++;
            if (cb_in_window(t)) {
                cb_hist_add(&st.rcpt, cb_now() - t);
            }
            return;
        }

        if (len >= 2 && p[1] == '4') {          /* connect_error */
            st.errors++;
            if (errors_shown++ < 5) {
                fprintf(stderr, "chat_bench: Socket.IO: %.*s\n",
                        (int) (len > 200 ? 200 : len), p);
            }
            cb_close(c);
            return;
        }

        break;

    case '1':                                   /* close */
        cb_close(c);
        return;

    default:
        break;
    }

bad:

    st.errors++;
    if (errors_shown++ < 5) {
        fprintf(stderr, "chat_bench: Socket.IO: unexpected packet %.*s\n",
                (int) (len > 80 ? 80 : len), p);
    }
}


/* a SEND: an event with an ack whose id is the send time */
void
cb_sio_send(cb_conn_t *c)
{
    int       n, m;
    char      body[4096], f[4400];
    int64_t   t;

    t = cb_now();

    n = snprintf(body, sizeof(body), "bt:%" PRId64 ":%u ", t, c->id);
    while ((uint32_t) n < cf.size && (size_t) n < sizeof(body) - 1) {
        body[n++] = 'x';
    }
    body[n] = '\0';

    m = snprintf(f, sizeof(f), "42%" PRId64 "[\"send\",\"%s/c%u\",\"%s\"]",
                 t, cf.prefix, c->id / cf.group, body);

    c->inflight++;
    st.outstanding++;
    st.sent++;

    if (cb_in_window(t)) {
        st.sent_window++;
    }

    cb_ws_send(c, f, (size_t) m);
}
