#!/usr/bin/env bash
# Installs (Debian packages) and starts a local PostgreSQL for the store tests, then prints the
# URL the tests read from TRACKLINE_TEST_PG_URL. Idempotent.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
  pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
for _ in $(seq 1 30); do
  su postgres -c "psql -qtAc 'select 1'" >/dev/null 2>&1 && break
  sleep 1
done
su postgres -c "psql -qtAc \"select 1 from pg_roles where rolname='trackline'\"" | grep -q 1 ||
  su postgres -c "psql -qc \"create role trackline login createdb password 'trackline'\"" >/dev/null
port=$(su postgres -c "psql -qtAc 'show port'")
echo "postgresql+asyncpg://trackline:trackline@127.0.0.1:${port}/postgres"
