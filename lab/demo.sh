#!/usr/bin/env bash
# `make demo [FLAVOR=mariadb|mysql]`: bring up the compose lab, restart it with harestart, print
# the result, tear down. The flavour comes from $LAB_FLAVOR (the Makefile sets it from FLAVOR):
# docker-compose.yml picks the image by it, and each flavour has its own inventory (they differ
# only in the restart command).
set -euo pipefail
cd "$(dirname "$0")/.."
HARESTART=${HARESTART:-.venv/bin/harestart}
PROJECT=${DEMO_PROJECT:-harestart-demo}
export LAB_FLAVOR=${LAB_FLAVOR:-mariadb}
case "$LAB_FLAVOR" in
  mariadb) INVENTORY=inventories/lab.yml ;;
  mysql) INVENTORY=inventories/lab-mysql.yml ;;
  *) echo "demo: LAB_FLAVOR must be mariadb or mysql (got '$LAB_FLAVOR')" >&2; exit 2 ;;
esac

compose() {
  if docker compose version >/dev/null 2>&1; then docker compose -p "$PROJECT" "$@"
  else docker-compose -p "$PROJECT" "$@"; fi
}
teardown() { echo "== tearing the lab down"; compose down -v --remove-orphans >/dev/null 2>&1 || true; }
trap teardown EXIT

echo "== starting the $LAB_FLAVOR lab (db1 source, db2 + db3 replicas, mha manager)"
compose up -d
deadline=$((SECONDS + 240))
while :; do
  states=$(compose ps -q | xargs -r docker inspect --format '{{.State.Health.Status}}' | sort | uniq -c | tr '\n' ' ')
  ids=$(compose ps -q | wc -l)
  healthy=$(compose ps -q | xargs -r docker inspect --format '{{.State.Health.Status}}' | grep -c '^healthy$' || true)
  [[ $ids -eq 4 && $healthy -eq 4 ]] && break
  if ((SECONDS > deadline)); then
    echo "demo: the lab did not become healthy within 240 s ($states)" >&2
    compose logs --tail 30 >&2 || true
    exit 1
  fi
  sleep 2
done
echo "== lab healthy; MHA: $(compose exec -T mha masterha_check_status --conf=/etc/mha/app1.cnf || true)"

echo "== harestart plan --probe $INVENTORY"
"$HARESTART" plan "$INVENTORY" --probe
if "$HARESTART" run --help >/dev/null 2>&1; then
  echo "== harestart run $INVENTORY --yes"
  "$HARESTART" run "$INVENTORY" --yes
fi
