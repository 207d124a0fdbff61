#!/bin/sh
# run.sh: builds the parser unit tests into $1 (default build/unit), runs them
# and the checks of chat-token (CHAT_TOKEN_BIN, default build/bin/chat-token,
# which make builds), and prints "unit: N passed, M failed" last; exits 1 if
# anything failed.

set -u

cd "$(dirname "$0")/../.." || exit 1

out=${1:-build/unit}
cc=${CC:-gcc}
cflags="-std=gnu99 -Wall -Wextra -Werror -Wpointer-arith -O1 -g"
mod=ngx_chat_module/proto

mkdir -p "$out" || exit 1

if ! pkgflags=$(pkg-config --cflags --libs libcrypto jansson); then
    echo "unit: needs pkg-config, libssl-dev and libjansson-dev" >&2
    echo "unit: 0 passed, 1 failed"
    exit 1
fi

passed=0
failed=0

build() {
    name=$1
    shift
    # shellcheck disable=SC2086
    if ! $cc $cflags -I$mod "$@" -o "$out/$name"; then
        echo "not ok - $name does not compile"
        failed=$((failed + 1))
        return 1
    fi
}

run() {
    name=$1
    "$out/$name" > "$out/$name.log" 2>&1
    rc=$?
    cat "$out/$name.log"

    # the binary's last line: "<name>: N passed, M failed"
    re='^[a-z_0-9]*: \([0-9]*\) passed, \([0-9]*\) failed$'
    summary=$(tail -n 1 "$out/$name.log")
    p=$(echo "$summary" | sed -n "s/$re/\\1/p")
    f=$(echo "$summary" | sed -n "s/$re/\\2/p")

    if [ -z "$p" ] || [ -z "$f" ]; then
        echo "not ok - $name crashed or printed no summary (exit $rc)"
        failed=$((failed + 1))
        return
    fi

    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "not ok - $name exited with $rc"
        f=1
    fi

    passed=$((passed + p))
    failed=$((failed + f))
}

build test_utf8 $mod/ngx_chat_utf8.c t/unit/test_utf8.c \
    && run test_utf8

build test_ws_parser $mod/ngx_chat_ws_parser.c $mod/ngx_chat_utf8.c \
    t/unit/test_ws_parser.c \
    && run test_ws_parser

build test_stomp $mod/ngx_chat_stomp.c t/unit/test_stomp.c \
    && run test_stomp

# shellcheck disable=SC2086
build test_jwt $mod/ngx_chat_jwt.c t/unit/test_jwt.c $pkgflags \
    && run test_jwt

# shellcheck disable=SC2086
build test_sockjs_codec $mod/ngx_chat_sockjs_codec.c \
    t/unit/test_sockjs_codec.c $pkgflags \
    && run test_sockjs_codec

# the chat-token tool: usage errors exit 2, a token has three segments

check() {
    if [ "$1" = ok ]; then
        echo "ok - chat_token: $2"
        passed=$((passed + 1))
    else
        echo "not ok - chat_token: $2"
        failed=$((failed + 1))
    fi
}

ct=${CHAT_TOKEN_BIN:-build/bin/chat-token}

if [ ! -x "$ct" ]; then
    echo "not ok - chat_token: $ct is not built (make workers)"
    failed=$((failed + 1))
else
    token=$("$ct" --secret s --ttl 60 --name "A B" alice 2>/dev/null)
    b64='[A-Za-z0-9_-]'
    if echo "$token" | grep -Eq "^$b64+\\.$b64+\\.$b64{43}\$"; then
        check ok "prints a token"
    else
        check no "prints a token"
    fi

    "$ct" "bad user" >/dev/null 2>&1
    [ $? -eq 2 ] && check ok "invalid user id: exit 2" \
                 || check no "invalid user id: exit 2"

    "$ct" >/dev/null 2>&1
    [ $? -eq 2 ] && check ok "no user: exit 2" || check no "no user: exit 2"

    "$ct" --ttl abc alice >/dev/null 2>&1
    [ $? -eq 2 ] && check ok "bad ttl: exit 2" || check no "bad ttl: exit 2"

    "$ct" --name "$(printf 'x\377')" alice >/dev/null 2>&1
    [ $? -eq 2 ] && check ok "name not UTF-8: exit 2" \
                 || check no "name not UTF-8: exit 2"

    "$ct" --bogus alice >/dev/null 2>&1
    [ $? -eq 2 ] && check ok "unknown option: exit 2" \
                 || check no "unknown option: exit 2"

    a=$(CHAT_JWT_SECRET= "$ct" --ttl 100 bob)
    b=$(CHAT_JWT_SECRET=ngx-chat-dev-secret-change-me "$ct" --ttl 100 bob)
    c=$(CHAT_JWT_SECRET=other "$ct" --ttl 100 bob)
    d=$(CHAT_JWT_SECRET=other "$ct" --secret ngx-chat-dev-secret-change-me \
        --ttl 100 bob)
    # tokens made in the same second are equal; allow a second's tick
    if [ "${a##*.}" != "${c##*.}" ] && { [ "$a" = "$b" ] || [ "$b" = "$d" ]; }
    then
        check ok "secret from --secret, CHAT_JWT_SECRET, default"
    else
        check no "secret from --secret, CHAT_JWT_SECRET, default"
    fi
fi

echo "unit: $passed passed, $failed failed"

[ "$failed" -eq 0 ]
