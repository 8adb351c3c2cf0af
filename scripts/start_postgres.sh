#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster for the store tests and benchmarks, installing the
# server from Debian packages when it is missing, then prints the URL the tests read from
# TRACKLINE_TEST_PG_URL. Idempotent: a cluster that already answers is reused.
#
# The cluster is the suite's own (TRACKLINE_TEST_PG_DIR, port TRACKLINE_TEST_PG_PORT), not the
# machine's. A cluster left behind by an unclean stop is wiped and created again: its
# databases are test leftovers, and recovering a large one (the fsync of every file) can
# take minutes. Its settings keep PostgreSQL's durability defaults, so the benchmarks
# measure a server that fsyncs.
#
# Standard output carries the URL and nothing else, since callers capture it; every other
# message goes to standard error. Exits non-zero when the server does not answer.
set -euo pipefail
exec 3>&1 1>&2

dir=${TRACKLINE_TEST_PG_DIR:-/tmp/trackline-test-pg}
port=${TRACKLINE_TEST_PG_PORT:-55432}

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

# PostgreSQL refuses to run as root; root runs it as the postgres user the package creates.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

answers() { as_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; }

marker="$dir/.trackline-test-cluster"
if ! answers; then
  if [ -e "$dir" ]; then
    if [ ! -e "$marker" ]; then
      echo "start_postgres: $dir exists but is not a Trackline test cluster; not touching it"
      exit 1
    fi
    as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
  fi
  mkdir -p "$dir"
  touch "$marker"
  if [ "$(id -u)" = 0 ]; then chown postgres:postgres "$dir"; fi
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
    >/dev/null
  # 3>&-: the server must not hold the caller's capture of standard output open.
  if ! as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" >/dev/null 3>&-; then
    echo "start_postgres: the test cluster did not start; its log follows"
    cat "$dir/server.log"
    exit 1
  fi
fi

psql_q() { as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -qtA "$@"; }
psql_q -c "select 1 from pg_roles where rolname = 'trackline'" | grep -q 1 ||
  psql_q -c "create role trackline login createdb password 'trackline'" >/dev/null
echo "postgresql+asyncpg://trackline:trackline@127.0.0.1:${port}/postgres" >&3
