/* ngx_chat_sockjs_int.h: what the SockJS files share. */

#ifndef _NGX_CHAT_SOCKJS_INT_H_INCLUDED_
#define _NGX_CHAT_SOCKJS_INT_H_INCLUDED_

#include "ngx_chat.h"
#include "ngx_chat_sockjs.h"
#include "ngx_chat_sockjs_codec.h"


/* the receiving requests */
#define NGX_CHAT_SOCKJS_XHR           1
#define NGX_CHAT_SOCKJS_XHR_STREAMING 2
#define NGX_CHAT_SOCKJS_EVENTSOURCE   3

/* a session id's longest */
#define NGX_CHAT_SOCKJS_ID_MAX        64

/* a worker's name in the relay (hex) */
#define NGX_CHAT_SOCKJS_ROUTE_LEN     16


/*
 * ngx_chat_sockjs.c: the Origin check (chat_allowed_origins) and the CORS
 * headers; methods: a preflight's. NGX_OK, or a status.
 */
ngx_int_t ngx_chat_sockjs_cors(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, const char *methods);

/*
 * A client's ["frame", ...] to the layer above t, frame by frame.
 * NGX_DECLINED: not such an array (*err says why, as SockJS says it).
 */
ngx_int_t ngx_chat_sockjs_deliver(ngx_chat_transport_t *t, u_char *p,
    size_t len, const char **err);

/* ngx_chat_sockjs_http.c: the HTTP transports; content handler results */
ngx_int_t ngx_chat_sockjs_receive(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_str_t *id, ngx_uint_t kind);
ngx_int_t ngx_chat_sockjs_xhr_send(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_str_t *id);

/*
 * What a receiving request does when its session is this worker's, or
 * new (owned: chat:sj:<id> names this worker); a content handler result.
 */
ngx_int_t ngx_chat_sockjs_receive_local(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_str_t *id, ngx_uint_t kind,
    ngx_uint_t owned);

/* a receiving request's header and prelude; it is held: NGX_OK, or what
 * to finalize it with */
ngx_int_t ngx_chat_sockjs_start(ngx_http_request_t *r, ngx_uint_t kind);
void ngx_chat_sockjs_test_reading(ngx_http_request_t *r);

/* a whole answer of one frame (with its "\n") to a receiving request */
ngx_int_t ngx_chat_sockjs_receive_answer(ngx_http_request_t *r,
    ngx_uint_t kind, u_char *frame, size_t len);
void ngx_chat_sockjs_writer(ngx_http_request_t *r);

/* an xhr_send's answer for an HTTP status (err: the 500's text) */
ngx_int_t ngx_chat_sockjs_send_answer(ngx_http_request_t *r,
    ngx_int_t status, const char *err);

/*
 * The owner's side of the relay, for requests another worker received:
 * the client's frames (an HTTP status: 204, 404, 500 with *err), a
 * receiving request to attach (from: that worker, rid: its request), and
 * its end.
 */
ngx_int_t ngx_chat_sockjs_remote_send(ngx_str_t *id, u_char *p, size_t len,
    const char **err);
void ngx_chat_sockjs_remote_attach(ngx_str_t *id, u_char *from,
    uint64_t rid, ngx_uint_t kind);
void ngx_chat_sockjs_remote_detach(ngx_str_t *id, u_char *from,
    uint64_t rid);

/*
 * ngx_chat_sockjs_relay.c: HTTP sessions across workers.
 *
 * ready: Redis is up and the id can travel.
 * receive: a receiving request for a session not in this worker: claims
 *   the id in Redis (then ngx_chat_sockjs_receive_local()) or forwards to
 *   the owner; NGX_DECLINED: Redis down, do it locally.
 * send: an xhr_send's body for a session not in this worker: forwarded,
 *   or 404; finalizes r.
 * frame: a frame of session id for the forwarder (from, rid); last: its
 *   request ends. Nobody hearing it detaches the forwarder's request.
 * refresh, disown: the owner's key while the session lives, and at its
 *   end.
 */
ngx_uint_t ngx_chat_sockjs_relay_ready(ngx_str_t *id);
ngx_int_t ngx_chat_sockjs_relay_receive(ngx_http_request_t *r,
    ngx_chat_loc_conf_t *lcf, ngx_str_t *id, ngx_uint_t kind);
void ngx_chat_sockjs_relay_send(ngx_http_request_t *r, ngx_str_t *id,
    u_char *p, size_t len);
ngx_int_t ngx_chat_sockjs_relay_frame(ngx_str_t *id, u_char *from,
    uint64_t rid, ngx_uint_t last, u_char *f, size_t len);
void ngx_chat_sockjs_relay_refresh(ngx_str_t *id, ngx_chat_loc_conf_t *lcf,
    ngx_uint_t owned);
void ngx_chat_sockjs_relay_disown(ngx_str_t *id);

/* ngx_chat_sockjs_ws.c: the open handler of <server>/<session>/websocket */
ngx_int_t ngx_chat_sockjs_ws_open(ngx_chat_transport_t *wt);


#endif /* _NGX_CHAT_SOCKJS_INT_H_INCLUDED_ */
