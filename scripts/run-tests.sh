#!/usr/bin/env bash
# run-tests.sh: the whole suite (make test): the C unit tests, then every
# t/*.t with prove against one Redis and one PostgreSQL for the whole run.
#
# usage: scripts/run-tests.sh [prove arguments or test files]
#   default: -r t/ ; PROVE_FLAGS adds prove options (e.g. -v);
#   SKIP_UNIT=1 skips the unit tests.

set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$CHAT_ROOT" || exit 1

unit_rc=0
unit_line="unit: not run"

if [ -z "${SKIP_UNIT:-}" ] && [ -x t/unit/run.sh ]; then
    chat_log "unit tests (t/unit/run.sh)"
    mkdir -p build
    t/unit/run.sh > build/unit.log 2>&1 9>&-
    unit_rc=$?
    unit_line=$(grep '^unit:' build/unit.log | tail -1)
    grep -v '^ok' build/unit.log || true
fi

# a second "make test" running at the same time in this checkout gets its
# own directory (removed afterwards)
mkdir -p t/servroot
shared=t/servroot/_shared
exec 9> "$shared.lock"
if ! flock -n 9; then
    shared=t/servroot/_shared.$$
fi

cleanup() {
    scripts/test-servers.sh stop "$shared" >/dev/null 2>&1 || true
    case $shared in
    *_shared.*) rm -rf "$shared" ;;
    esac
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -z "${TEST_NGINX_REDIS_PORT:-}" ] || [ -z "${TEST_NGINX_PG_PORT:-}" ]
then
    chat_log "starting Redis and PostgreSQL for the suite ($shared)"
    env_lines=$(scripts/test-servers.sh start "$shared" 9>&-) || exit 1
    eval "$env_lines"
fi

if [ $# -eq 0 ]; then
    set -- -r t/
fi

chat_log "prove ${PROVE_FLAGS:-} $*"
# shellcheck disable=SC2086
prove ${PROVE_FLAGS:-} "$@" 9>&-
prove_rc=$?

echo
echo "$unit_line"
if [ $prove_rc -eq 0 ]; then
    echo "prove: all tests successful"
else
    echo "prove: FAILED (see the summary above)"
fi

[ $unit_rc -eq 0 ] && [ $prove_rc -eq 0 ]
