#!/bin/sh
# Container healthcheck (Dockerfile HEALTHCHECK and docker-compose.yml).
#  db nodes: setup finished and mysqld answers on the local socket.
#  manager:  masterha_check_status exits 0 (PING_OK).
#  bastion:  setup finished and sshd listens on port 22 (a socket check: connecting every few
#            seconds would fill sshd's log with "Connection reset" lines).
#  proxy:    setup finished and HAProxy listens on its writer (3306) and reader (3307) ports.
case "${LAB_ROLE:-}" in
  source | replica)
    test -f /run/lab-ready && exec mysqladmin --protocol=socket -uroot ping >/dev/null 2>&1 ;;
  manager)
    exec masterha_check_status --conf=/etc/mha/app1.cnf >/dev/null 2>&1 ;;
  bastion)
    test -f /run/lab-ready && ss -Hltn 'sport = :22' | grep -q LISTEN ;;
  proxy)
    test -f /run/lab-ready && ss -Hltn 'sport = :3306' | grep -q LISTEN \
      && ss -Hltn 'sport = :3307' | grep -q LISTEN ;;
  *) exit 1 ;;
esac
