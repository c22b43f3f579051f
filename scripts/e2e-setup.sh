#!/usr/bin/env bash
# Install the Debian packages the end-to-end suite (tests/e2e, `make e2e`) needs:
#   postgresql  the metadata database server (the suite runs a private instance on a free port)
#   chromium    the browser Playwright drives for the connection-form test (/usr/bin/chromium)
# Idempotent: it asks apt only for what is missing, so a second run takes no time.
# Needs root (or sudo). Python packages (psycopg2-binary, asyncpg, playwright) come from PyPI
# through `make e2e`; Playwright's own browser downloads are never used.
set -euo pipefail

missing=()
compgen -G "/usr/lib/postgresql/*/bin/initdb" > /dev/null || missing+=(postgresql)
getent passwd postgres > /dev/null || missing+=(postgresql)
[ -x /usr/bin/chromium ] || missing+=(chromium)
fc-list 2>/dev/null | grep -qi "liberation" || missing+=(fonts-liberation)

if [ ${#missing[@]} -eq 0 ]; then
    echo "e2e-setup: PostgreSQL and Chromium are installed."
    exit 0
fi

# shellcheck disable=SC2207
missing=($(printf '%s\n' "${missing[@]}" | sort -u))
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo > /dev/null || { echo "e2e-setup: run as root to install: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo)
fi
echo "e2e-setup: installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -q "${missing[@]}" > /tmp/octopods-e2e-apt.log 2>&1 \
    || { tail -30 /tmp/octopods-e2e-apt.log >&2; echo "e2e-setup: apt-get install failed" >&2; exit 1; }
# The package may start its default cluster on 5432; the suite does not use it.
echo "e2e-setup: installed ${missing[*]}"
