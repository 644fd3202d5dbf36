#!/usr/bin/env bash
# Makes sure the local PostgreSQL the store tests use is running, and exports its
# admin URL. Sourced by scripts/test; safe to run on its own.
#   ACTIVITY_SYNC_TEST_POSTGRES_URL  admin connection the tests create databases with
set -euo pipefail

export ACTIVITY_SYNC_TEST_POSTGRES_URL="${ACTIVITY_SYNC_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

pg_ready() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "PostgreSQL is not installed; installing it from Debian's packages" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
if ! pg_ready; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  echo "starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_ready && break; sleep 0.5; done
fi
pg_ready || { echo "PostgreSQL did not become ready on 127.0.0.1:5432" >&2; exit 1; }
