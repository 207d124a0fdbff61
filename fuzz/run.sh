#!/bin/sh
# run.sh SECONDS BINDIR CORPUSDIR TARGET...: runs each libFuzzer target
# (BINDIR/fuzz_TARGET) for SECONDS from its seeds (fuzz/corpus/TARGET) and
# CORPUSDIR/TARGET, where what it finds is kept. A crash, a sanitizer
# report, a broken property or a hang is a failure, its input saved in
# BINDIR/crashes/. Prints "ok - TARGET: ..." or "not ok - TARGET: ..."
# per target; exits 1 if any failed.

set -u

cd "$(dirname "$0")/.." || exit 1

if [ $# -lt 4 ]; then
    echo "usage: $0 SECONDS BINDIR CORPUSDIR TARGET..." >&2
    exit 2
fi

secs=$1
bin=$2
corpus=$3
shift 3

failed=0

for t in "$@"; do
    fuzzer=$bin/fuzz_$t
    log=$bin/fuzz_$t.log

    if [ ! -x "$fuzzer" ]; then
        echo "not ok - $t: $fuzzer is not built (make fuzz-build)"
        failed=1
        continue
    fi

    mkdir -p "$corpus/$t" "$bin/crashes" || exit 1

    # -timeout: one input taking 10 s is a hang; inputs up to 64 KB, the
    # size of a frame or a body at the default limits
    "$fuzzer" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 \
        -artifact_prefix="$bin/crashes/$t-" \
        "$corpus/$t" "fuzz/corpus/$t" > "$log" 2>&1
    rc=$?

    runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log")
    cov=$(sed -n 's/^#[0-9]*.*DONE *cov: \([0-9]*\).*/\1/p' "$log")

    if [ "$rc" -eq 0 ] && [ -n "$runs" ]; then
        echo "ok - $t: $runs runs in ${secs}s, coverage ${cov:-?}" \
             "($(ls "$corpus/$t" | wc -l) inputs kept)"
    else
        echo "not ok - $t: exit $rc (log $log)"
        grep -E 'ERROR|runtime error|property broken|Test unit written' \
            "$log" | head -5 | sed 's/^/    /'
        failed=1
    fi
done

exit $failed
