#!/usr/bin/env bash
# Puts libfaketime, the preload library that fakes a process's wall clock
# (set up entirely by environment variables: FAKETIME,
# FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE, FAKETIME_DONT_FAKE_MONOTONIC),
# into .tools/faketime/lib, once, without root: the clock-skew, clock-step
# and torture tests need it, and report themselves NOT CHECKED without it.
# It is Debian's libfaketime package, fetched with `apt-get download` (which
# needs no root) and unpacked with `dpkg-deb -x`. Not Debian's `faketime`
# command: its library path is compiled in (/usr/$LIB/faketime), so it
# could not use this copy; the tests set LD_PRELOAD themselves. They look
# here first, then for a system libfaketime (__test__/support/faketime.mjs).
#
# Pinned to 0.9.10-2.1, Debian 12's. Another Debian or Ubuntu release's apt
# may not carry that revision: then that release's own libfaketime is
# taken (the script says so). .tools/faketime/version records
# "<pinned> <taken>"; a copy made for another pin is replaced.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=0.9.10-2.1
OUT="$PWD/.tools/faketime"
MARKER="$OUT/version"
up_to_date() {
  [ -f "$OUT/lib/libfaketimeMT.so.1" ] && [ -f "$OUT/lib/libfaketime.so.1" ] \
    && [ "$(cut -d' ' -f1 "$MARKER" 2>/dev/null)" = "$VERSION" ]
}
up_to_date && exit 0
for tool in apt-get apt-cache dpkg-deb; do
  if ! command -v "$tool" >/dev/null; then
    echo "install-faketime.sh: needs $tool (Debian or Ubuntu). Elsewhere, install your system's libfaketime (the tests also look in /usr/lib/<triple>/faketime, /usr/lib64/faketime and /usr/local/lib/faketime)." >&2
    exit 1
  fi
done

DL="$PWD/.tools/faketime-download"
rm -rf "$DL" "$OUT.new"
trap 'rm -rf "$DL" "$OUT.new"' EXIT
mkdir -p "$DL"
errors="$DL/apt-errors"
# As root, apt downloads as its sandbox user `_apt`, who may not write here:
# download as root, without the warning saying so.
sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
download() { (cd "$DL" && apt-get download -q "${sandbox[@]}" "libfaketime=$1" >/dev/null 2>"$errors"); }
taken=$VERSION
if ! download "$taken"; then
  # Package lists missing (containers ship without them) or stale: only root
  # can refresh them.
  [ "$(id -u)" = 0 ] && apt-get update -qq
  if ! download "$taken"; then
    taken=$(apt-cache policy libfaketime 2>/dev/null | sed -n 's/^ *Candidate: //p')
    if [ -z "$taken" ] || [ "$taken" = "(none)" ] || ! download "$taken"; then
      cat "$errors" >&2
      echo "install-faketime.sh: apt-get download found no libfaketime (pinned $VERSION)." >&2
      [ "$(id -u)" = 0 ] || echo "  If apt's package lists are missing or stale: sudo apt-get update, then run this again." >&2
      exit 1
    fi
    echo "install-faketime.sh: apt has no libfaketime $VERSION; taking this release's $taken"
  fi
fi

dpkg-deb -x "$DL"/libfaketime_*.deb "$DL/root"
mkdir -p "$OUT.new/lib"
cp "$DL"/root/usr/lib/*/faketime/libfaketime.so.1 "$DL"/root/usr/lib/*/faketime/libfaketimeMT.so.1 "$OUT.new/lib/"
cp "$DL/root/usr/share/doc/libfaketime/copyright" "$OUT.new/"

# Fail here, not in the first test, if the library does not take: a wall
# clock one day ahead under it.
real=$(date +%s)
faked=$(LD_PRELOAD="$OUT.new/lib/libfaketimeMT.so.1" FAKETIME=+1d date +%s)
if (( faked - real < 86000 || faked - real > 86800 )); then
  echo "install-faketime.sh: under $OUT.new/lib/libfaketimeMT.so.1 with FAKETIME=+1d, date says $faked, $((faked - real)) s from the real $real (expected 86400)" >&2
  exit 1
fi

rm -rf "$OUT"
mv "$OUT.new" "$OUT"
echo "$VERSION $taken" > "$MARKER"
echo "libfaketime $taken in .tools/faketime/lib"
