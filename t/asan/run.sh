#!/usr/bin/env bash
# run.sh NGINX MODULE LOGDIR [prove arguments]: the suite
# (scripts/run-tests.sh, without the C unit tests) on an nginx and a module
# built with -fsanitize=address,undefined (make test-asan). Every nginx
# process writes its sanitizer reports to LOGDIR/san.<pid>; a leak report
# comes when a process exits (the harness stops nginx with TERM: workers
# and master run their exit path and return from main). Fails if the suite
# fails or if any report was written.

set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1

if [ $# -lt 3 ]; then
    echo "usage: $0 NGINX MODULE LOGDIR [prove arguments]" >&2
    exit 2
fi

bin=$1
module=$2
logs=$3
shift 3

supp=$PWD/t/asan

# no report from an nginx built without the sanitizers would prove nothing
# (ldd's output is read whole first: with pipefail, grep -q leaving at the
# first match would let ldd die of SIGPIPE on its next line and fail the
# pipeline now and then)
for f in "$bin" "$module"; do
    libs=$(ldd "$f" 2>/dev/null) || libs=
    if ! grep -q 'libasan\.so' <<<"$libs"; then
        echo "$0: $f is not built with -fsanitize=address" >&2
        exit 1
    fi
done

rm -rf "$logs"
mkdir -p "$logs" || exit 1
# workers run as nobody when the suite runs as root
chmod 1777 "$logs"

export TEST_NGINX_BINARY=$bin
export TEST_NGINX_MODULE=$module
# chat_stomp (t/110): the stream module of this nginx, ours beside it
export TEST_NGINX_STREAM_MODULE=$(dirname "$module")/ngx_stream_module.so
# files that cannot run on this nginx skip themselves (t/097-chatctl.t)
export CHAT_ASAN=1

# detect_odr_violation=0: every nginx dynamic module defines its own
# ngx_modules and ngx_module_names (nginx looks them up with dlsym), which
# ASan takes for one global defined twice
export ASAN_OPTIONS="detect_leaks=1:detect_odr_violation=0:log_path=$logs/san"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:log_path=$logs/san"
UBSAN_OPTIONS="$UBSAN_OPTIONS:suppressions=$supp/ubsan.supp"

start=$(date +%s)

SKIP_UNIT=1 scripts/run-tests.sh "$@"
rc=$?

secs=$(( $(date +%s) - start ))

# nginx's main() returns 1 without destroying init_cycle's pool when it
# refuses a configuration (the must_die blocks): a leak of nginx's, in a
# process that never served. Suppressions cannot name it (main is in every
# stack), so a report of nothing but that is set aside here as .known.
for f in $(find "$logs" -type f -name 'san.*'); do
    if perl -0777 -ne '
        my @leaks = /^((?:Direct|Indirect) leak .*?)(?=^\S|\z)/msg;
        exit 1 if !@leaks || /runtime error|ERROR: AddressSanitizer/;
        for (@leaks) {
            exit 1 unless /in ngx_create_pool .*\n\s*#3 \S+ in main /;
        }
        exit 0' "$f"
    then
        mv "$f" "$f.known"
    fi
done

echo
reports=$(find "$logs" -type f -name 'san.*' ! -name '*.known' | sort)

if [ -n "$reports" ]; then
    echo "sanitizers: $(echo "$reports" | wc -l) report(s) in $logs:"
    # shellcheck disable=SC2086
    grep -h -E 'runtime error|SUMMARY' $reports | sed 's/^==[0-9]*==//' \
        | sort | uniq -c | sort -rn | head -20
    for f in $reports; do
        echo "--- $f"
        grep -v '^$' "$f" | head -25
    done | head -300
    rc=1
else
    known=$(find "$logs" -type f -name '*.known' | wc -l)
    echo "sanitizers: no report (ASan, LSan, UBSan) in ${secs}s" \
         "($known of nginx refusing a configuration set aside)"
fi

exit $rc
