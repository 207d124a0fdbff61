#!/usr/bin/env bash
# deb.sh: make deb. Builds the Debian packages (debian/, dpkg-buildpackage
# -b -us -uc) from a copy of the checkout and puts the .debs in OUT, then
# runs lintian on them. A build is reused while nothing it is made from
# changed (a hash of the files it is made from and the nginx-dev
# version).
#
# usage: scripts/deb.sh [OUT]     (default: build/deb)
#   DEB_FORCE=1 rebuilds anyway; DEB_LINTIAN=0 skips lintian.

set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

cd "$CHAT_ROOT"
out=${1:-build/deb}

for tool in dpkg-buildpackage dh help2man; do
    command -v "$tool" >/dev/null || {
        echo "deb: $tool is missing: make deps installs it" >&2
        exit 1
    }
done

# the files the packages are made from: what git tracks or would track
# (untracked but not ignored files too), else everything but the
# build output and the runtime state
list_sources() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git ls-files -z -co --exclude-standard \
            | while IFS= read -r -d '' f; do
                  [ -f "$f" ] && printf '%s\0' "$f"
              done
    else
        find . -type f \( -path ./build -o -path ./var -o -path ./.git \
                          -o -path ./t/servroot -o -path '*/node_modules' \
                       \) -prune -o -type f -printf '%P\0'
    fi
}

mkdir -p "$out"
out=$(cd "$out" && pwd)

# what the packages are made of: the build glue, the module, the workers,
# the migrations, debian/ (not the tests, the docs or the web client)
built_from() {
    grep -z -E '^(config|config\.make|Makefile|.*\.mk|.*/Makefile\.inc|ngx_chat_module/.*|workers/.*|sql/.*|debian/.*)$'
}

hash=$( { list_sources | built_from | LC_ALL=C sort -z | xargs -0 sha256sum;
          dpkg-query -W -f='${Version}\n' nginx-dev; } | sha256sum \
        | cut -d' ' -f1)

if [ -z "${DEB_FORCE:-}" ] && [ -f "$out/.source-hash" ] \
   && [ "$(cat "$out/.source-hash")" = "$hash" ] \
   && compgen -G "$out/*.deb" >/dev/null
then
    chat_log "deb: up to date ($out)"
    ls "$out"/*.deb
    exit 0
fi

chat_log "deb: building the packages (log: $out/build.log)"
rm -f "$out"/*.deb "$out/.source-hash"
work=$out/src
rm -rf "$work"
mkdir -p "$work/ngx-chat"
list_sources | tar -cf - --null -T - | tar -xf - -C "$work/ngx-chat"

if ! (cd "$work/ngx-chat" && dpkg-buildpackage -b -us -uc) \
        > "$out/build.log" 2>&1
then
    tail -40 "$out/build.log" >&2
    echo "deb: dpkg-buildpackage failed (whole log: $out/build.log)" >&2
    exit 1
fi

mv "$work"/*.deb "$out/"
rm -rf "$work"

if [ "${DEB_LINTIAN:-1}" != 0 ] && command -v lintian >/dev/null; then
    chat_log "deb: lintian"
    # errors fail the build; warnings are shown (debian/*.lintian-overrides
    # explain the ones we keep)
    lintian --fail-on error \
        "$out"/*.deb || exit 1
fi

echo "$hash" > "$out/.source-hash"
ls "$out"/*.deb
