/* cb_report.c: the figures of a run as a table and as JSON. */

#include "cb_bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>


static const char *cb_system_names[] = { "ngx_chat", "rabbitmq", "nchan",
                                         "mosquitto", "socketio" };
static const char *cb_scenario_names[] = { "density", "direct", "fanout",
                                           "storm" };


const char *
cb_system_name(void)
{
    return (size_t) cf.system
               < sizeof(cb_system_names) / sizeof(cb_system_names[0])
           ? cb_system_names[cf.system] : "?";
}


const char *
cb_scenario_name(void)
{
    return (size_t) cf.scenario
               < sizeof(cb_scenario_names) / sizeof(cb_scenario_names[0])
           ? cb_scenario_names[cf.scenario] : "?";
}


static void
cb_hist_json(FILE *f, const char *name, const cb_hist_t *h, int comma)
{
    fprintf(f, "    \"%s\": {\"count\": %" PRIu64 ", \"p50\": %.3f, "
            "\"p99\": %.3f, \"p999\": %.3f, \"max\": %.3f}%s\n",
            name, h->count, cb_hist_quantile(h, 0.5) / 1e6,
            cb_hist_quantile(h, 0.99) / 1e6,
            cb_hist_quantile(h, 0.999) / 1e6, h->max_ns / 1e6,
            comma ? "," : "");
}


static void
cb_hist_line(const char *name, const cb_hist_t *h)
{
    if (h->count == 0) {
        printf("  %-22s (none)\n", name);
        return;
    }

    printf("  %-22s p50 %8.3f  p99 %8.3f  p99.9 %8.3f  max %8.3f ms"
           "  (n=%" PRIu64 ")\n",
           name, cb_hist_quantile(h, 0.5) / 1e6,
           cb_hist_quantile(h, 0.99) / 1e6,
           cb_hist_quantile(h, 0.999) / 1e6, h->max_ns / 1e6, h->count);
}


void
cb_report(const cb_sample_t *s0, const cb_sample_t *s1, double wall,
    const cb_sample_t *c0, const cb_sample_t *c1)
{
    FILE     *f;
    double    secs, per_session, rss_per, sock_per, slab_per, msg_rate,
              dlv_rate, sess_rate, setup_secs, cpu_srv, cpu_aux, cpu_self;
    int64_t   rss_delta, sock_delta, slab_delta;
    char      procs[32];

    procs[0] = '\0';
    if (cf.procs > 1) {
        snprintf(procs, sizeof(procs), ", %u processes", cf.procs);
    }

    secs = st.t_end && st.t_measure
           ? (double) (st.t_end - st.t_measure) / 1e9 : 0;
    setup_secs = st.t_all_ready && st.t_begin
                 ? (double) (st.t_all_ready - st.t_begin) / 1e9 : 0;

    msg_rate = secs > 0 ? (double) st.sent_window / secs : 0;
    dlv_rate = secs > 0 ? (double) st.deliveries_window / secs : 0;
    sess_rate = setup_secs > 0 ? (double) st.ready / setup_secs : 0;

    rss_delta = (int64_t) s1->rss_kb - (int64_t) s0->rss_kb;
    sock_delta = (int64_t) s1->sock_pages - (int64_t) s0->sock_pages;
    slab_delta = (int64_t) s1->slab_kb - (int64_t) s0->slab_kb;
    rss_per = st.ready ? (double) rss_delta * 1024 / (double) st.ready : 0;
    sock_per = st.ready
               ? (double) sock_delta * 4096 / (double) st.ready : 0;
    slab_per = st.ready ? (double) slab_delta * 1024 / (double) st.ready : 0;
    per_session = rss_per + sock_per;

    /* CPU: over the measured window (direct, fan-out), else the run */
    cpu_srv = wall > 0 ? (c1->cpu_server - c0->cpu_server) / wall : 0;
    cpu_aux = wall > 0 ? (c1->cpu_aux - c0->cpu_aux) / wall : 0;
    cpu_self = wall > 0 ? (c1->cpu_self - c0->cpu_self) / wall : 0;

    printf("== chat_bench %s %s%s%s: %u clients, group %u%s ==\n",
           cb_system_name(), cb_scenario_name(),
           cf.label ? " " : "", cf.label ? cf.label : "", cf.clients,
           cf.group, procs);
    printf("  %-22s %" PRIu64 " ready, %" PRIu64 " failed, %" PRIu64
           " dropped, %" PRIu64 " ERROR frames%s%s\n", "sessions",
           st.ready, st.failed, st.dropped, st.errors,
           *stop_reason ? ", stopped: " : "", stop_reason);
    printf("  %-22s %.2f s (%.0f sessions/s)\n", "setup", setup_secs,
           sess_rate);
    cb_hist_line("setup latency", &st.setup);

    if (cf.scenario == CB_SC_DENSITY) {
        printf("  %-22s %+.1f MiB gateway RSS, %+.1f MiB socket memory, "
               "%+.1f MiB slab\n", "memory",
               rss_delta / 1024.0, sock_delta * 4096 / 1048576.0,
               slab_delta / 1024.0);
        printf("  %-22s %.0f B (RSS %.0f + sockets %.0f; slab %.0f not "
               "counted)\n", "per session", per_session, rss_per, sock_per,
               slab_per);
    }

    if (cf.scenario == CB_SC_DIRECT || cf.scenario == CB_SC_FANOUT) {
        printf("  %-22s %.1f s measured, %.0f msg/s sent (offered %.0f), "
               "%" PRIu64 " skipped\n", "load", secs, msg_rate, cf.rate,
               st.skipped);
        printf("  %-22s %.0f deliveries/s, %" PRIu64 " of the window's "
               "messages delivered\n", "deliveries", dlv_rate,
               st.delivered_of_window);
        cb_hist_line("SEND->MESSAGE", &st.msg);
        cb_hist_line(cf.system == CB_SYS_NCHAN ? "POST->answer"
                     : cf.proto == CB_PROTO_MQTT ? "PUBLISH->PUBACK"
                     : cf.proto == CB_PROTO_SIO ? "emit->ack"
                     : "SEND->RECEIPT", &st.rcpt);
    }

    printf("  %-22s server %.2f, aux %.2f, load generator %.2f "
           "(over %.1f s)\n", "CPU cores busy", cpu_srv, cpu_aux, cpu_self,
           wall);

    if (cf.json == NULL) {
        return;
    }

    f = fopen(cf.json, "w");
    if (f == NULL) {
        cb_die("%s: %s", cf.json, strerror(errno));
    }

    fprintf(f, "{\n  \"tool\": \"chat_bench\",\n"
            "  \"system\": \"%s\",\n  \"scenario\": \"%s\",\n"
            "  \"label\": \"%s\",\n",
            cb_system_name(), cb_scenario_name(),
            cf.label ? cf.label : "");
    fprintf(f, "  \"params\": {\"clients\": %u, \"group\": %u, "
            "\"rate\": %.0f, \"duration\": %.1f, \"size\": %u, "
            "\"heartbeat_ms\": %u, \"sources\": %u, \"window\": %u, "
            "\"procs\": %u},\n",
            cf.clients, cf.group, cf.rate, cf.duration, cf.size, cf.hb_ms,
            cf.sources, cf.window, cf.procs);
    fprintf(f, "  \"sessions\": {\"ready\": %" PRIu64 ", \"failed\": %"
            PRIu64 ", \"dropped\": %" PRIu64 ", \"error_frames\": %" PRIu64
            ", \"setup_s\": %.3f, \"per_s\": %.1f},\n",
            st.ready, st.failed, st.dropped, st.errors, setup_secs,
            sess_rate);
    fprintf(f, "  \"throughput\": {\"measured_s\": %.3f, \"sent\": %"
            PRIu64 ", \"skipped\": %" PRIu64 ", \"msg_per_s\": %.1f, "
            "\"deliveries_per_s\": %.1f, \"delivered_of_window\": %"
            PRIu64 ", \"receipts\": %" PRIu64 "},\n",
            secs, st.sent_window, st.skipped, msg_rate, dlv_rate,
            st.delivered_of_window, st.receipts);
    fprintf(f, "  \"memory\": {\"sessions\": %" PRIu64 ", \"rss_kb\": %"
            PRId64 ", \"sock_pages\": %" PRId64 ", \"slab_kb\": %" PRId64
            ", \"tcp_inuse\": %" PRIu64 ", \"bytes_per_session\": %.0f, "
            "\"rss_per_session\": %.0f, \"sock_per_session\": %.0f, "
            "\"slab_per_session\": %.0f},\n",
            st.ready, rss_delta, sock_delta, slab_delta, s1->tcp_inuse,
            cf.scenario == CB_SC_DENSITY ? per_session : 0,
            rss_per, sock_per, slab_per);
    fprintf(f, "  \"cpu\": {\"wall_s\": %.3f, \"server\": %.3f, "
            "\"aux\": %.3f, \"self\": %.3f},\n",
            wall, cpu_srv, cpu_aux, cpu_self);
    fprintf(f, "  \"latency_ms\": {\n");
    cb_hist_json(f, "message", &st.msg, 1);
    cb_hist_json(f, "receipt", &st.rcpt, 1);
    cb_hist_json(f, "setup", &st.setup, 0);
    fprintf(f, "  },\n  \"stopped\": \"%s\"\n}\n", stop_reason);

    if (fclose(f) != 0) {
        cb_die("%s: %s", cf.json, strerror(errno));
    }
}
