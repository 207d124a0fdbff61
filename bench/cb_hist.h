/* cb_hist.h: a log-linear latency histogram (about 3% precision). */

#ifndef _CB_HIST_H_INCLUDED_
#define _CB_HIST_H_INCLUDED_

#include <stdint.h>


#define CB_HIST_SUB      32                  /* buckets per power of two */
#define CB_HIST_LINEAR   64                  /* exact microseconds below */
#define CB_HIST_SIZE     (CB_HIST_LINEAR + 40 * CB_HIST_SUB)


typedef struct {
    uint64_t   count;
    uint64_t   max_ns;
    uint64_t   sum_us;
    uint64_t   bucket[CB_HIST_SIZE];
} cb_hist_t;


void cb_hist_add(cb_hist_t *h, int64_t ns);

/* adds the counts of src to dst */
void cb_hist_merge(cb_hist_t *dst, const cb_hist_t *src);

/* the value (ns) at quantile q (0..1), an upper bound of its bucket */
uint64_t cb_hist_quantile(const cb_hist_t *h, double q);

#endif /* _CB_HIST_H_INCLUDED_ */
