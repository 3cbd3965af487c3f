#!/usr/bin/env bash
# `make demo-switchover`: the compose lab behind HAProxy (profile "proxy"), a writer inserting
# through the writer frontend (one row every ~10 ms, lab/demo_writer.py), and
#   harestart run lab/hooks/lab-haproxy.yml --source-strategy switchover
# whose hooks (lab/hooks/haproxy_hook.py) drain each replica from the reader backend before its
# restart and move the writer backend at each switch. Prints the write gaps, tears down.
#
#   DEMO_STRATEGY=restart   the seed's procedure instead (the source restarts in place): the
#                           same path, for comparing the gaps (or a harestart without switchover)
#   DEMO_INVENTORY=FILE     another inventory for the same compose lab (default the one above)
# MariaDB lab only (the proxy's health checks are tested against MariaDB).
set -euo pipefail
cd "$(dirname "$0")/.."
HARESTART=${HARESTART:-.venv/bin/harestart}
PYTHON=${PYTHON:-.venv/bin/python}
PROJECT=${DEMO_PROJECT:-harestart-demo-switchover}
STRATEGY=${DEMO_STRATEGY:-switchover}
INVENTORY=${DEMO_INVENTORY:-lab/hooks/lab-haproxy.yml}
export LAB_FLAVOR=${LAB_FLAVOR:-mariadb}
[[ $LAB_FLAVOR == mariadb ]] || { echo "demo-switchover: the MariaDB lab only (got LAB_FLAVOR=$LAB_FLAVOR)" >&2; exit 2; }
case "$STRATEGY" in
  restart | switchover) ;;
  *) echo "demo-switchover: DEMO_STRATEGY must be restart or switchover (got '$STRATEGY')" >&2; exit 2 ;;
esac

# --source-strategy when this harestart has it; without it only the seed's restart exists.
strategy_args=()
if "$HARESTART" run --help 2>/dev/null | grep -q -- '--source-strategy'; then
  strategy_args=(--source-strategy "$STRATEGY")
elif [[ $STRATEGY == switchover ]]; then
  echo "demo-switchover: this harestart has no --source-strategy yet; DEMO_STRATEGY=restart runs the same demo with the seed's restart" >&2
  exit 2
fi

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose -p "$PROJECT" --profile proxy "$@"
  else docker-compose -p "$PROJECT" --profile proxy "$@"; fi
}
writer_pid=""
teardown() {
  [[ -z $writer_pid ]] || kill "$writer_pid" 2>/dev/null || true
  [[ -z ${app_password_file:-} ]] || rm -f "$app_password_file"
  [[ -z ${demo_state:-} ]] || rm -rf "$demo_state"
  echo "== tearing the lab down"
  compose down -v --remove-orphans >/dev/null 2>&1 || true
}
trap teardown EXIT

# The run's journal, lock and log in a directory of the demo's own (the lab is torn down at
# the end, so there is nothing to resume later).
if [[ -z ${HARESTART_STATE_DIR:-} ]]; then
  demo_state=$(mktemp -d)
  export HARESTART_STATE_DIR=$demo_state
fi
# A switchover restarts the old source as a replica: its option file must say read_only
# (harestart refuses the switch otherwise); the lab makes the running source writable.
if [[ $STRATEGY == switchover ]]; then export LAB_SOURCE_READ_ONLY=1; fi
# The replication account's password (the inventory's replication.password_env).
set -a; . lab/.secrets/lab.env; set +a
echo "== starting the lab behind HAProxy (db1 source, db2 + db3 replicas, mha, proxy)"
compose up -d
deadline=$((SECONDS + 240))
until [[ $(compose ps -q | xargs -r docker inspect --format '{{.State.Health.Status}}' | grep -c '^healthy$' || true) -eq 5 ]]; do
  if ((SECONDS > deadline)); then
    echo "demo-switchover: the lab did not become healthy within 240 s" >&2
    compose logs --tail 30 >&2 || true
    exit 1
  fi
  sleep 2
done
export HAPROXY_API=127.0.0.1:9999
until python3 lab/hooks/haproxy_hook.py status >/dev/null 2>&1; do
  ((SECONDS <= deadline)) || { python3 lab/hooks/haproxy_hook.py status >&2 || true; exit 1; }
  sleep 1
done
echo "== HAProxy (writer 127.0.0.1:3320, readers 127.0.0.1:3321, API $HAPROXY_API):"
python3 lab/hooks/haproxy_hook.py status | sed 's/^/   /'

echo "== harestart plan $INVENTORY ${strategy_args[*]}"
"$HARESTART" plan "$INVENTORY" "${strategy_args[@]}" >/dev/null

# The writer is an application account (no SUPER, no admin): read_only stops it, as it stops
# a real application, so a write can only land on the writable source.
app_password_file=$(mktemp)
"$PYTHON" - "$app_password_file" <<'PY'
import os, secrets, sys
from pathlib import Path
import pymysql
password = secrets.token_hex(16)
Path(sys.argv[1]).write_text(password)
# The lab's mha account holds GRANT OPTION (the harestart account does not).
admin = os.environ["LAB_MHA_PASSWORD"]
with pymysql.connect(host="127.0.0.1", port=3311, user="mha", password=admin) as c:
    with c.cursor() as cur:
        cur.execute("CREATE USER IF NOT EXISTS 'demo_app'@'%%' IDENTIFIED BY %s", (password,))
        cur.execute("GRANT SELECT, INSERT, CREATE, DROP ON labdb.* TO 'demo_app'@'%'")
PY
echo "== writer: one insert every ~10 ms through the writer frontend (127.0.0.1:3320), as demo_app"
"$PYTHON" lab/demo_writer.py 127.0.0.1 3320 demo_app "$app_password_file" &
writer_pid=$!
sleep 3   # a few seconds of undisturbed writes first: the baseline

echo "== harestart run $INVENTORY --yes ${strategy_args[*]}"
status=0
"$HARESTART" run "$INVENTORY" --yes "${strategy_args[@]}" || status=$?
sleep 2   # and a little after, so a gap at the very end shows

echo "== write gaps during the run (strategy: $STRATEGY)"
kill -TERM "$writer_pid"
writer_status=0
wait "$writer_pid" || writer_status=$?
writer_pid=""
echo "== HAProxy after the run:"
python3 lab/hooks/haproxy_hook.py status | sed 's/^/   /' || true
echo "== MHA: $(compose exec -T mha masterha_check_status --conf=/etc/mha/app1.cnf || true)"
if ((status != 0)); then
  echo "demo-switchover: harestart run exited $status" >&2
  exit "$status"
fi
exit "$writer_status"
