#!/bin/sh
# Fill deploy/wheels with every wheel the image needs, so `docker build --network none` works:
# pyBTC's dependencies at the versions pyproject.toml pins, plus setuptools and wheel to build
# pyBTC itself, as wheels for the image's Python (Debian bookworm: CPython 3.11, glibc 2.36) on
# this machine's architecture, or ARCH=x86_64|aarch64. Runs on any host that has pip; only this
# step uses the network (PyPI).
set -eu
cd "$(dirname "$0")/.."
if [ -z "${PIP:-}" ]; then
    if [ -x .venv/bin/pip ]; then PIP=.venv/bin/pip; else PIP="python3 -m pip"; fi
fi
arch="${ARCH:-$(uname -m)}"
case "$arch" in
    amd64) arch=x86_64 ;;
    arm64) arch=aarch64 ;;
esac
# bookworm's glibc 2.36 down to 2.17, most preferred first, then the legacy manylinux2014
platforms=""
glibc=36
while [ "$glibc" -ge 17 ]; do
    platforms="$platforms --platform manylinux_2_${glibc}_$arch"
    glibc=$((glibc - 1))
done
platforms="$platforms --platform manylinux2014_$arch"
rm -rf deploy/wheels
# pip evaluates markers with this Python, not the image's 3.11.2: redis needs async-timeout
# on Python < 3.11.3, so it is named here.
# shellcheck disable=SC2086 # $PIP and $platforms are word lists on purpose
$PIP download --quiet --dest deploy/wheels --only-binary=:all: \
    --implementation cp --python-version 3.11 $platforms \
    . 'setuptools>=77' wheel 'async-timeout>=4.0.3'
echo "deploy/wheels: $(ls deploy/wheels | wc -l) wheels for CPython 3.11 on $arch"
