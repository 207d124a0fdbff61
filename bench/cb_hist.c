/* cb_hist.c: a log-linear latency histogram (about 3% precision). */

#include "cb_hist.h"


static unsigned
cb_hist_index(uint64_t us)
{
    unsigned  k, idx;

    if (us < CB_HIST_LINEAR) {
        return (unsigned) us;
    }

    k = 63 - (unsigned) __builtin_clzll(us);        /* k >= 6 */
    idx = CB_HIST_LINEAR + (k - 6) * CB_HIST_SUB
          + (unsigned) ((us >> (k - 5)) & (CB_HIST_SUB - 1));

    return idx < CB_HIST_SIZE ? idx : CB_HIST_SIZE - 1;
}


static uint64_t
cb_hist_upper_us(unsigned idx)
{
    unsigned  k, sub;

    if (idx < CB_HIST_LINEAR) {
        return idx + 1;
    }

    k = (idx - CB_HIST_LINEAR) / CB_HIST_SUB + 6;
    sub = (idx - CB_HIST_LINEAR) % CB_HIST_SUB;

    return ((uint64_t) (CB_HIST_SUB + sub + 1)) << (k - 5);
}


void
cb_hist_add(cb_hist_t *h, int64_t ns)
{
    if (ns < 0) {
        ns = 0;
    }

    h->count++;
    h->sum_us += (uint64_t) ns / 1000;

    if ((uint64_t) ns > h->max_ns) {
        h->max_ns = (uint64_t) ns;
    }

    h->bucket[cb_hist_index((uint64_t) ns / 1000)]++;
}


void
cb_hist_merge(cb_hist_t *dst, const cb_hist_t *src)
{
    unsigned  i;

    dst->count += src->count;
    dst->sum_us += src->sum_us;

    if (src->max_ns > dst->max_ns) {
        dst->max_ns = src->max_ns;
    }

    for (i = 0; i < CB_HIST_SIZE; i++) {
        dst->bucket[i] += src->bucket[i];
    }
}


uint64_t
cb_hist_quantile(const cb_hist_t *h, double q)
{
    unsigned  i;
    uint64_t  want, seen, v;

    if (h->count == 0) {
        return 0;
    }

    want = (uint64_t) (q * (double) h->count);
    if (want >= h->count) {
        want = h->count - 1;
    }

    seen = 0;

    for (i = 0; i < CB_HIST_SIZE; i++) {
        seen += h->bucket[i];

        if (seen > want) {
            v = cb_hist_upper_us(i) * 1000;
            return v < h->max_ns ? v : h->max_ns;
        }
    }

    return h->max_ns;
}
