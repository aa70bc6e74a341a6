#!/usr/bin/env bash
# Runs the whole suite: lint, types, then pytest against PostgreSQL and Redis servers started
# here on 127.0.0.1 (when installed), then again on the embedded defaults (SQLite, no server).
#   HAAO_TEST_MODE=services|embedded|both (default both; `services` fails when a server is
#   missing), extra arguments go to pytest.
# Ends with one line summing both pytest passes from their JUnit XML reports,
# `tests: N passed, N failed, N skipped` (errors count as failed), also kept in SUMMARY_FILE
# for .ci/run; the exit status is the first failure's.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
MODE=${HAAO_TEST_MODE:-both}
# Two processes (the machine's cores), each test file on one of them: per-file servers
# (OpenID provider, local model) start once. HAAO_TEST_WORKERS=0 runs in this process.
WORKERS=${HAAO_TEST_WORKERS:-2}
XDIST=()
[ "$WORKERS" != 0 ] && XDIST=(-n "$WORKERS" --dist loadfile)

work=$(mktemp -d /tmp/haao-test.XXXXXX)
chmod 755 "$work"
SUMMARY_FILE=${HAAO_TEST_SUMMARY:-var/test-summary.txt}
mkdir -p "$work/junit" "$(dirname "$SUMMARY_FILE")"
rm -f "$SUMMARY_FILE"
reports=()
summarize() {
  echo "== the 20 slowest tests"
  "$PY" scripts/junit_summary.py --slowest 20 "${reports[@]}" || true
  "$PY" scripts/junit_summary.py "${reports[@]}" > "$SUMMARY_FILE" || echo "tests: summary failed" > "$SUMMARY_FILE"
  cat "$SUMMARY_FILE"
}
cleanup() {
  if [ -n "${PGDATA_DIR:-}" ] && [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -m immediate stop >/dev/null 2>&1 || true
  fi
  if [ -n "${REDIS_PORT:-}" ]; then redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

export SECRET_KEY="test-$("$PY" -c 'import secrets; print(secrets.token_urlsafe(50))')"
export HAAO_ENCRYPTION_KEYS="$("$PY" -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')"
export HAAO_READ_DOTENV=false HAAO_DATA_DIR="$work/data" HAAO_HTTPS=false
# The browser tests save screenshots of the portal's pages here, for a reviewer to open.
export HAAO_SCREENSHOTS="${HAAO_SCREENSHOTS:-$PWD/var/screenshots}"
unset DATABASE_URL REDIS_URL

echo "== ruff"; "$VENV/bin/ruff" check .
echo "== mypy"; "$VENV/bin/mypy" .
# The order of HAAO's parts (pyproject.toml, [tool.importlinter]); a broken contract stops here.
echo "== import contracts"
"$VENV/bin/lint-imports" --no-cache > "$work/lint-imports.log" 2>&1 \
  || { cat "$work/lint-imports.log"; exit 1; }
grep -E "KEPT|BROKEN" "$work/lint-imports.log"

status=0
if [ "$MODE" = services ] || [ "$MODE" = both ]; then
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [ -z "$PGBIN" ] || ! command -v redis-server >/dev/null; then
    if [ "$MODE" = services ]; then echo "PostgreSQL or Redis is not installed (apt-get install postgresql redis-server)."; exit 1; fi
    echo "== PostgreSQL or Redis not installed: skipping the run against servers"
  else
    PGDATA_DIR="$work/pg"; install -d -o postgres -g postgres "$PGDATA_DIR" 2>/dev/null || mkdir -p "$PGDATA_DIR"
    PG_PORT=$(free_port); REDIS_PORT=$(free_port)
    as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -w -l "$PGDATA_DIR/server.log" \
      -o "-p $PG_PORT -k $PGDATA_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" start >/dev/null
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --save '' --appendonly no \
      --dir "$work" --pidfile "$work/redis.pid" >/dev/null
    echo "== pytest on PostgreSQL :$PG_PORT and Redis :$REDIS_PORT"
    reports+=("$work/junit/services.xml")
    DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/haao" REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
      "$PY" -m pytest "${XDIST[@]}" --junitxml="$work/junit/services.xml" "$@" || status=$?
  fi
fi
if [ "$MODE" = embedded ] || [ "$MODE" = both ]; then
  # After a pass against the servers, tests that never open the database cannot differ here:
  # only the others run again (tests/environment.py).
  skip_free=0
  [ ${#reports[@]} -gt 0 ] && skip_free=1
  echo "== pytest on the embedded defaults (SQLite, database cache, SQL broker)$(
    [ $skip_free = 1 ] && echo '; database-free tests ran above')"
  reports+=("$work/junit/embedded.xml")
  HAAO_SKIP_DATABASE_FREE=$skip_free \
    "$PY" -m pytest "${XDIST[@]}" --junitxml="$work/junit/embedded.xml" "$@" \
    || { rc=$?
         # 5: every selected test was database-free and ran in the first pass already.
         if [ $rc = 5 ] && [ $skip_free = 1 ]; then rc=0; fi
         [ "$status" != 0 ] || status=$rc; }
fi
summarize
exit $status
