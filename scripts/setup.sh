#!/usr/bin/env bash
# Installs what the project needs and skips what is already there:
# Debian packages for PostgreSQL 15 and its extensions, Chromium and openssl, then the npm packages.
source "$(dirname "$0")/lib.sh"

debs=(postgresql-15 postgresql-contrib postgresql-15-pgtap postgresql-15-cron
      postgresql-15-plpgsql-check libtap-parser-sourcehandler-pgtap-perl
      chromium fonts-dejavu-core   # headless Chromium for the console's browser tests
      openssl)                     # the socketPost tests make a TLS certificate of their own
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  [ "$(id -u)" = 0 ] || die "installing Debian packages needs root" "run as root, or: sudo apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq || die "apt-get update failed" "check the network access to Debian's mirrors"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed" "run it by hand to see apt's message"
  # Debian's postgresql package creates and starts a cluster on 5432; the project does not use it.
  command -v pg_ctlcluster >/dev/null && pg_ctlcluster 15 main stop >/dev/null 2>&1 || true
else
  step "Debian packages present (${#debs[@]})"
fi

cd "$ROOT"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  # `npm install`, not `npm ci`: npm 11 leaves other platforms' optional packages (rollup's)
  # out of the lock file and `npm ci` then refuses it. The lock still pins every version.
  step "installing npm packages (npm install from package-lock.json)"
  npm install --no-audit --no-fund --loglevel=error || die "npm install failed" "run 'npm install' to see npm's message"
else
  step "npm packages present"
fi
# The MCP conformance suite needs Node 22: test/conformance is a package of its own holding it and
# the npm package `node` (a Node 22 binary), outside node_modules/.bin, so nothing else runs on it.
if [ ! -d test/conformance/node_modules ] || [ test/conformance/package-lock.json -nt test/conformance/node_modules/.package-lock.json ]; then
  step "installing the MCP conformance suite and its Node 22 (npm install in test/conformance)"
  (cd test/conformance && npm install --no-audit --no-fund --loglevel=error) || die "npm install in test/conformance failed" "run 'cd test/conformance && npm install' to see npm's message"
fi
