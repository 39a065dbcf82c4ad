#!/usr/bin/env bash
# Debian's chromium for the browser tests (Playwright drives it; nothing downloads a browser).
# Idempotent: does nothing when /usr/bin/chromium and a font are already there. Installs with
# apt-get only when run as root on a system that has it; otherwise says what to do and fails.
set -euo pipefail

CHROMIUM=/usr/bin/chromium
# Without any font headless chromium renders text as nothing at all (blank screenshots);
# DejaVu is small and covers Latin, Greek and Cyrillic.
FONT_PACKAGE=fonts-dejavu-core
FONT_FILE=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

have_font() {
  [ -e "$FONT_FILE" ] || { command -v fc-list >/dev/null && [ -n "$(fc-list 2>/dev/null)" ]; }
}

if [ -x "$CHROMIUM" ] && have_font; then
  exit 0
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "error: the browser tests need Debian's chromium at $CHROMIUM and a font ($FONT_PACKAGE)." >&2
  echo "       Install them as root: apt-get update && apt-get install -y chromium $FONT_PACKAGE" >&2
  echo "       (Playwright's own browser download is not used: never run 'playwright install'.)" >&2
  exit 1
fi

packages=()
[ -x "$CHROMIUM" ] || packages+=(chromium)
have_font || packages+=("$FONT_PACKAGE")

echo "installing ${packages[*]} with apt-get (once; later runs skip this)" >&2
start=$SECONDS
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
echo "installed ${packages[*]} in $((SECONDS - start))s" >&2

if [ ! -x "$CHROMIUM" ]; then
  echo "error: apt-get finished but $CHROMIUM is still missing" >&2
  exit 1
fi
"$CHROMIUM" --version >&2 || true
