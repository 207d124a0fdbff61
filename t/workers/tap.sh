# tap.sh: TAP output and process helpers for the worker tests (sourced).

T_ROOT=${T_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
T_BIN=${T_BIN:-${CHAT_BIN:-$T_ROOT/build/bin}}
T_N=0
T_FAILED=0
T_PIDS=""

ok() {
    T_N=$((T_N + 1))
    echo "ok $T_N - $*"
}

not_ok() {
    T_N=$((T_N + 1))
    T_FAILED=$((T_FAILED + 1))
    echo "not ok $T_N - $*"
}

# check "description" command...: ok when the command succeeds
check() {
    local what=$1
    shift
    if "$@"; then ok "$what"; else not_ok "$what"; fi
}

# is "description" got expected
is() {
    if [ "$2" = "$3" ]; then
        ok "$1"
    else
        not_ok "$1"
        echo "#   got:      '$2'"
        echo "#   expected: '$3'"
    fi
}

diag() {
    echo "# $*"
}

bail() {
    echo "Bail out! $*"
    exit 255
}

# remembers a pid to kill at exit
t_track() {
    T_PIDS="$T_PIDS $1"
}

# t_wait_file FILE SECONDS
t_wait_file() {
    local i
    for i in $(seq 1 $(($2 * 10))); do
        [ -s "$1" ] && return 0
        sleep 0.1
    done
    return 1
}

# t_wait_gone PID SECONDS: waits for a process to exit
t_wait_gone() {
    local i
    for i in $(seq 1 $(($2 * 10))); do
        kill -0 "$1" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

t_done() {
    echo "1..$T_N"
    [ "$T_FAILED" = 0 ]
}

t_require_bins() {
    local b
    for b in "$@"; do
        [ -x "$T_BIN/$b" ] || bail "$T_BIN/$b not built (make workers)"
    done
}
