#!/usr/bin/env bash
# Verdaccio 6.8.0, the local npm registry of __test__/release/registry-install.test.mjs,
# into .tools/verdaccio from __test__/support/verdaccio/package.json and its lockfile
# (skipped when that lockfile is already installed). It stays out of the
# package's devDependencies: a few hundred packages that one test needs would
# otherwise weigh on every `npm ci`. 6.8.0 because newer releases want Node 22
# (this machine's Node is 20); the override pins node-fetch to 2.7.0, the
# CommonJS release verdaccio-audit can require() on Node 20.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=.tools/verdaccio
if cmp -s __test__/support/verdaccio/package-lock.json "$dest/package-lock.json" &&
   [[ -f "$dest/node_modules/verdaccio/package.json" ]]; then
  exit 0
fi
printf '\n▶ verdaccio (npm ci from __test__/support/verdaccio) into %s\n' "$dest"
rm -rf "$dest"
mkdir -p "$dest"
cp __test__/support/verdaccio/package.json __test__/support/verdaccio/package-lock.json "$dest/"
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error)
echo "✓ verdaccio $(node -p 'require("./.tools/verdaccio/node_modules/verdaccio/package.json").version') in $dest"
