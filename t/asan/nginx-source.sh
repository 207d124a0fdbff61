#!/bin/sh
# nginx-source.sh VERSION DIR: puts nginx_VERSION.orig.tar.gz (the upstream
# source of Debian's nginx package) into DIR with apt-get source, enabling
# Debian's deb-src entries first if there are none (root or sudo).

set -eu

version=$1
dir=$2
tarball=nginx_$version.orig.tar.gz

[ -f "$dir/$tarball" ] && exit 0

if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi

# the deb822 file of bookworm's images, or a one-line sources.list
if ! grep -rqs '^Types:.*deb-src\|^deb-src ' /etc/apt/sources.list \
        /etc/apt/sources.list.d/
then
    echo "nginx-source: enabling deb-src" \
         "(/etc/apt/sources.list.d/ngx-chat-deb-src.*)"

    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        sed 's/^Types: deb$/Types: deb-src/' \
            /etc/apt/sources.list.d/debian.sources \
            | $sudo tee /etc/apt/sources.list.d/ngx-chat-deb-src.sources \
              >/dev/null
    elif grep -qs '^deb ' /etc/apt/sources.list; then
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list \
            | $sudo tee /etc/apt/sources.list.d/ngx-chat-deb-src.list \
              >/dev/null
    else
        echo "nginx-source: no Debian apt source to copy a deb-src from" >&2
        exit 1
    fi

    $sudo apt-get update -qq
fi

mkdir -p "$dir"
cd "$dir"

# only the upstream tarball is needed: a missing .dsc or debian.tar (a
# mirror that lags the security archive) is not an error
apt-get source --download-only -qq nginx >apt-source.log 2>&1 || true

if [ ! -f "$tarball" ]; then
    cat apt-source.log >&2
    echo "nginx-source: apt-get source nginx gave no $tarball" \
         "(Debian's nginx-dev is $version)" >&2
    exit 1
fi

echo "nginx-source: $dir/$tarball"
