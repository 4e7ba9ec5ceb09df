#!/usr/bin/env bash
# Builds Toxiproxy (the TCP proxy the fault-injection tests put between the
# driver and FerretDB, to add latency, hang or reset connections) into
# .tools/bin/toxiproxy-server, once. Built from the Go module, because only
# the Go module proxy is reachable here, not GitHub release downloads.
# `go install …/cmd/server@v2.12.0` alone gives a binary named `server` that
# reports "version git": the release version is stamped by Toxiproxy's
# goreleaser config (-X …/v2.Version=2.12.0, without the "v"), not by the Go
# toolchain. So we pass the same -X flag, and install into a scratch GOBIN so
# the generic name `server` never lands in .tools/bin.
# v2.12.0 is the newest release proxy.golang.org serves: `go list -m -versions`
# lists only v2.3.0 and v2.5.0 (later tags are missing from its list, but
# resolve when asked for by name), and v2.13.0 answers 403 "not available".
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=v2.12.0
BIN="$PWD/.tools/bin/toxiproxy-server"
if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qx "toxiproxy-server version ${VERSION#v}"; then
  exit 0
fi
mkdir -p .tools/bin
GOBIN_TMP="$PWD/.tools/toxiproxy-gobin"
rm -rf "$GOBIN_TMP"
CGO_ENABLED=0 GOBIN="$GOBIN_TMP" go install -trimpath \
  -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=${VERSION#v}" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@${VERSION}"
mv "$GOBIN_TMP/server" "$BIN"
rm -rf "$GOBIN_TMP"
# Fail here, not in the first test, if the version stamp did not take.
if ! "$BIN" --version | grep -qx "toxiproxy-server version ${VERSION#v}"; then
  echo "install-toxiproxy.sh: $BIN reports '$("$BIN" --version)', expected ${VERSION#v}" >&2
  exit 1
fi
"$BIN" --version
