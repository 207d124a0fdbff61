/* cb_sweep.c: --sweep: each step's figures, whether the system carried the
 * step's offered rate, the capacity (the last step carried) and the JSON.
 *
 * A step is carried when every session is up and, over its measured
 * window:
 *   - the tool sent at least 95% of the offered messages (else the window
 *     of unanswered sends was full, or the tool itself fell behind or was
 *     stalled: the reason says which, the tool named as the bound);
 *   - at least 98% of the deliveries those messages owe (group members
 *     each) arrived, before the drain's end;
 *   - SEND->MESSAGE p99 < --limit-ms, and SEND->RECEIPT p99 < --limit-ms
 *     where the system answers with receipts (STOMP: ngx_chat, RabbitMQ;
 *     nchan's POST answer is printed, not judged).
 */

#include "cb_bench.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>


typedef struct {
    double       rate;          /* offered msg/s */
    double       secs;
    double       msg_per_s;
    double       dlv_per_s;
    double       delivered;     /* of the deliveries owed, 0..1 */
    double       msg_p50;
    double       msg_p99;
    double       msg_max;
    double       rcpt_p50;
    double       rcpt_p99;
    double       cpu_server;
    double       cpu_aux;
    double       cpu_self;
    uint64_t     msg_n;
    uint64_t     rcpt_n;
    uint64_t     sent;
    uint64_t     skipped;
    uint64_t     late;
    uint64_t     errors;
    uint64_t     dropped;
    double       us_per_dlv;    /* the tool's CPU per delivery */
    int          tool_busy;     /* the tool's processes were saturated */
    int          pass;
    const char  *why;           /* why not carried, "" when carried */
} cb_step_t;


static cb_step_t   steps[CB_MAX_STEPS];
static uint32_t    n_steps;


static int
cb_has_receipts(void)
{
    return cf.system != CB_SYS_NCHAN;
}


int
cb_sweep_step(uint32_t i, const cb_sample_t *c0, const cb_sample_t *c1,
    double wall)
{
    double      owed, limit_ns;
    cb_step_t  *s;

    if (i >= CB_MAX_STEPS) {
        return 0;
    }

    if (i == 0) {
        printf("== chat_bench %s %s%s%s sweep: %u clients, group %u, "
               "%" PRIu64 " ready, %.1f s steps, limit p99 %.0f ms ==\n",
               cb_system_name(), cb_scenario_name(),
               cf.label ? " " : "", cf.label ? cf.label : "", cf.clients,
               cf.group, st.ready, cf.duration, cf.limit_ms);
    }

    s = &steps[i];
    n_steps = i + 1;
    memset(s, 0, sizeof(*s));

    s->rate = cf.rate;
    s->secs = st.t_end && st.t_measure
              ? (double) (st.t_end - st.t_measure) / 1e9 : 0;
    s->sent = st.sent_window;
    s->skipped = st.skipped;
    s->late = st.late;
    s->errors = st.errors;
    s->dropped = st.dropped;
    s->msg_per_s = s->secs > 0 ? (double) st.sent_window / s->secs : 0;
    s->dlv_per_s = s->secs > 0 ? (double) st.deliveries_window / s->secs
                               : 0;
    owed = (double) st.sent_window * cf.group;
    s->delivered = owed > 0 ? (double) st.delivered_of_window / owed : 0;
    s->msg_n = st.msg.count;
    s->rcpt_n = st.rcpt.count;
    s->msg_p50 = cb_hist_quantile(&st.msg, 0.5) / 1e6;
    s->msg_p99 = cb_hist_quantile(&st.msg, 0.99) / 1e6;
    s->msg_max = st.msg.max_ns / 1e6;
    s->rcpt_p50 = cb_hist_quantile(&st.rcpt, 0.5) / 1e6;
    s->rcpt_p99 = cb_hist_quantile(&st.rcpt, 0.99) / 1e6;
    s->cpu_server = wall > 0 ? (c1->cpu_server - c0->cpu_server) / wall : 0;
    s->cpu_aux = wall > 0 ? (c1->cpu_aux - c0->cpu_aux) / wall : 0;
    s->cpu_self = wall > 0 ? (c1->cpu_self - c0->cpu_self) / wall : 0;

    limit_ns = cf.limit_ms * 1e6;
    s->why = "";

    if (s->secs <= 0 || st.ready == 0) {
        s->why = "no measured window";

    } else if (st.ready < cf.clients) {
        s->why = "sessions not all ready";

    } else if ((double) st.sent_window + 2 < 0.95 * s->rate * s->secs) {
        /* (2: a step of a few messages is not failed on its rounding) */
        s->why = st.late * 2 > st.skipped && st.late ? "tool fell behind"
                 : st.skipped ? "sends not answered (window)"
                 : "tool sent late (its process stalled)";

    } else if (s->delivered < 0.98) {
        s->why = "deliveries missing";

    } else if (s->msg_n == 0
               || cb_hist_quantile(&st.msg, 0.99) >= limit_ns)
    {
        s->why = "MESSAGE p99";

    } else if (cb_has_receipts()
               && (s->rcpt_n == 0
                   || cb_hist_quantile(&st.rcpt, 0.99) >= limit_ns))
    {
        s->why = "RECEIPT p99";

    } else if (st.dropped) {
        s->why = "sessions dropped";
    }

    s->pass = *s->why == '\0';

    /* the tool's own share: a step not carried while every load-generator
     * process was busy says nothing about the system */
    s->tool_busy = s->cpu_self > 0.9 * cf.procs;
    s->us_per_dlv = st.deliveries_window
                    ? s->cpu_self * s->secs * 1e6
                      / (double) st.deliveries_window : 0;

    printf("  offered %8.0f msg/s (%9.0f dlv/s): sent %8.0f/s, %9.0f "
           "deliveries/s, %5.1f%% delivered, MESSAGE p99 %7.2f ms, %s p99 "
           "%7.2f ms, CPU server %.2f aux %.2f tool %.2f (%.2f us/dlv):"
           " %s%s%s\n",
           s->rate, s->rate * cf.group, s->msg_per_s, s->dlv_per_s,
           s->delivered * 100, s->msg_p99,
           cf.system == CB_SYS_NCHAN ? "POST" : "RECEIPT", s->rcpt_p99,
           s->cpu_server, s->cpu_aux, s->cpu_self, s->us_per_dlv,
           s->pass ? "carried" : "not carried: ", s->why,
           s->tool_busy ? " (the tool was saturated)" : "");
    fflush(stdout);

    return s->pass;
}


static void
cb_step_json(FILE *f, const cb_step_t *s, const char *end)
{
    fprintf(f, "    {\"rate\": %.0f, \"offered_deliveries_per_s\": %.0f, "
            "\"measured_s\": %.3f, \"sent\": %" PRIu64 ", "
            "\"msg_per_s\": %.1f, \"deliveries_per_s\": %.1f, "
            "\"delivered\": %.4f, \"skipped\": %" PRIu64 ", "
            "\"late\": %" PRIu64 ", \"error_frames\": %" PRIu64 ", "
            "\"dropped\": %" PRIu64 ",\n"
            "     \"message\": {\"count\": %" PRIu64 ", \"p50\": %.3f, "
            "\"p99\": %.3f, \"max\": %.3f}, "
            "\"receipt\": {\"count\": %" PRIu64 ", \"p50\": %.3f, "
            "\"p99\": %.3f},\n"
            "     \"cpu\": {\"server\": %.3f, \"aux\": %.3f, "
            "\"self\": %.3f, \"self_us_per_delivery\": %.3f, "
            "\"self_saturated\": %s},\n"
            "     \"carried\": %s, \"why\": \"%s\"}%s\n",
            s->rate, s->rate * cf.group, s->secs, s->sent, s->msg_per_s,
            s->dlv_per_s, s->delivered, s->skipped, s->late, s->errors,
            s->dropped, s->msg_n, s->msg_p50, s->msg_p99, s->msg_max,
            s->rcpt_n, s->rcpt_p50, s->rcpt_p99, s->cpu_server, s->cpu_aux,
            s->cpu_self, s->us_per_dlv, s->tool_busy ? "true" : "false",
            s->pass ? "true" : "false", s->why, end);
}


/* the capacity line and the JSON: the steps, the last one carried */
void
cb_sweep_report(void)
{
    int               cap;
    FILE             *f;
    uint32_t          i;
    const cb_step_t  *c, *x;

    cap = -1;
    for (i = 0; i < n_steps && steps[i].pass; i++) {
        cap = (int) i;
    }

    c = cap >= 0 ? &steps[cap] : NULL;
    x = cap + 1 < (int) n_steps ? &steps[cap + 1] : NULL;

    if (c) {
        printf("  capacity: %.0f msg/s offered, %.0f deliveries/s, MESSAGE "
               "p99 %.2f ms%s", c->rate, c->dlv_per_s, c->msg_p99,
               x ? "" : " (the sweep's last rate: at least this)");
    } else {
        printf("  capacity: below the first rate (%.0f msg/s)",
               n_steps ? steps[0].rate : cf.sweep[0]);
    }

    if (x) {
        printf("; %.0f msg/s not carried: %s", x->rate, x->why);
    }

    printf("\n");

    if (cf.json == NULL) {
        return;
    }

    f = fopen(cf.json, "w");
    if (f == NULL) {
        cb_die("%s: %s", cf.json, strerror(errno));
    }

    fprintf(f, "{\n  \"tool\": \"chat_bench\",\n"
            "  \"system\": \"%s\",\n  \"scenario\": \"%s\",\n"
            "  \"label\": \"%s\",\n  \"sweep\": true,\n",
            cb_system_name(), cb_scenario_name(),
            cf.label ? cf.label : "");
    fprintf(f, "  \"params\": {\"clients\": %u, \"group\": %u, "
            "\"step_s\": %.1f, \"warmup_s\": %.1f, \"size\": %u, "
            "\"window\": %u, \"procs\": %u, \"limit_ms\": %.1f, "
            "\"receipts_judged\": %s, \"rates\": [",
            cf.clients, cf.group, cf.duration, cf.warmup, cf.size,
            cf.window, cf.procs, cf.limit_ms,
            cb_has_receipts() ? "true" : "false");
    for (i = 0; i < cf.n_sweep; i++) {
        fprintf(f, "%s%.0f", i ? ", " : "", cf.sweep[i]);
    }
    fprintf(f, "]},\n  \"sessions\": {\"ready\": %" PRIu64 ", \"failed\": %"
            PRIu64 "},\n", st.ready, st.failed);

    fprintf(f, "  \"steps\": [\n");
    for (i = 0; i < n_steps; i++) {
        cb_step_json(f, &steps[i], i + 1 < n_steps ? "," : "");
    }
    fprintf(f, "  ],\n");

    if (c) {
        fprintf(f, "  \"capacity\": {\"rate\": %.0f, \"msg_per_s\": %.1f, "
                "\"deliveries_per_s\": %.1f, \"message_p99\": %.3f, "
                "\"message_p50\": %.3f, \"receipt_p99\": %.3f, "
                "\"cpu_self\": %.3f, \"cpu_server\": %.3f, "
                "\"at_least\": %s},\n",
                c->rate, c->msg_per_s, c->dlv_per_s, c->msg_p99, c->msg_p50,
                c->rcpt_p99, c->cpu_self, c->cpu_server,
                x ? "false" : "true");
    } else {
        fprintf(f, "  \"capacity\": null,\n");
    }

    if (x) {
        fprintf(f, "  \"failed\": {\"rate\": %.0f, \"why\": \"%s\", "
                "\"cpu_self\": %.3f, \"self_saturated\": %s},\n",
                x->rate, x->why, x->cpu_self,
                x->tool_busy ? "true" : "false");
    } else {
        fprintf(f, "  \"failed\": null,\n");
    }

    fprintf(f, "  \"stopped\": \"%s\"\n}\n", stop_reason);

    if (fclose(f) != 0) {
        cb_die("%s: %s", cf.json, strerror(errno));
    }
}
