#!/bin/bash
# harestart lab container entrypoint (runs under tini, see lab/Dockerfile).
#
# Role-driven setup, then `exec sshd -D -e` as the long-lived main process. mysqld is a
# sysvinit service (`service mariadb|mysql start|restart`) and masterha_manager runs detached,
# so restarting the database or stopping MHA - exactly what harestart does - never ends the
# container.
#
# One script for both lab flavours; the image sets LAB_FLAVOR and the few differences live in
# flavor_settings() and the small functions that take its values:
#   mariadb  MariaDB 10.11 (lab/Dockerfile): GTID slave_pos, `service mariadb`
#   mysql    Oracle MySQL 9.7 (lab/Dockerfile.mysql): gtid_mode=ON + auto-position,
#            super_read_only on replicas, `service mysql` (lab/mysql.init)
#
# Environment contract (docker-compose.yml and tests/integration/lab.py use these names):
#   LAB_FLAVOR          mariadb | mysql (set by the image; default mariadb)
#   LAB_ROLE            source | replica | manager | bastion | proxy
#                       (bastion: sshd only, no database; the SSH jump host in front of a group)
#                       (proxy: HAProxy in front of a group, MariaDB image only; see setup_proxy)
#   LAB_SERVER_ID       unique integer (source/replica)
#   LAB_SOURCE          hostname of the source on the lab network (replica, manager, proxy)
#   LAB_REPLICAS        space-separated replica hostnames (manager, proxy)
#   LAB_PROXY_API_PORT  proxy: TCP port of HAProxy's runtime API in the container (default 9999)
#   LAB_PROXY_CHECK     proxy: health check, mysql (log in as haproxy_check: MariaDB) or greeting
#                       (the server's handshake names caching_sha2_password: Oracle MySQL 8+,
#                       whose only password plugin HAProxy's mysql-check cannot speak)
#   LAB_ADMIN_USER      admin account harestart uses (default: harestart)
#   LAB_ADMIN_PASSWORD, LAB_REPL_PASSWORD, LAB_MHA_PASSWORD   (required)
#   LAB_SOURCE_READ_ONLY 1: the source's option file says read_only (switchover-ready); the
#                       entrypoint makes the running source writable (source)
#   LAB_CONNECT_RETRY   optional MASTER_/SOURCE_CONNECT_RETRY for replicas (default 60 s)
#   LAB_WAIT_TIMEOUT    optional deadline in seconds for waiting on other nodes (default 300)
# Keys, mounted read-only at /lab/keys/: id_ed25519(.pub) = client key for root/ops logins
# and the manager's SSH to nodes; ssh_host_ed25519_key(.pub) = host key every node presents.
# The bastion needs only id_ed25519.pub and the host key (clients hop through it with
# direct-tcpip channels; it never logs in anywhere itself).
#
# Passwords never reach the container log: no `set -x`, and SQL/credentials travel through
# stdin and 0600 option files, not command lines.
set -euo pipefail

KEYS=/lab/keys
READY=/run/lab-ready
SETUP_FAILED=/run/lab-setup-failed
MARKER=/var/lib/mysql/.lab-initialised
WAIT_TIMEOUT=${LAB_WAIT_TIMEOUT:-300}
LAB_ADMIN_USER=${LAB_ADMIN_USER:-harestart}
LAB_FLAVOR=${LAB_FLAVOR:-mariadb}

log() { printf '%s lab[%s]: %s\n' "$(date -u +%H:%M:%S)" "${LAB_ROLE:-?}" "$*"; }
die() { log "FATAL: $*" >&2; touch "$SETUP_FAILED"; exit 1; }

require() {
  local name
  for name in "$@"; do
    [[ -n "${!name:-}" ]] || die "environment variable $name is required for role ${LAB_ROLE:-?}"
  done
}

# What differs between the flavours, as values the functions below take: the client and
# service names, where the server config goes, and the replication statements' vocabulary
# (MySQL 8.4 removed CHANGE MASTER / START SLAVE / SHOW SLAVE STATUS; MariaDB 10.11 reports
# Slave_* columns even for SHOW REPLICA STATUS).
flavor_settings() {
  case "$LAB_FLAVOR" in
    mariadb)
      DB_CLIENT=mariadb
      DB_SERVICE=mariadb
      DB_CONF=/etc/mysql/mariadb.conf.d/60-lab.cnf
      CHANGE_SOURCE='CHANGE MASTER TO'
      SOURCE_WORD=MASTER
      REPLICA_WORD=SLAVE
      THREAD_COLUMN_PREFIX=Slave
      GTID_CLAUSE='MASTER_USE_GTID=slave_pos'
      ;;
    mysql)
      DB_CLIENT=mysql
      DB_SERVICE=mysql
      DB_CONF=/etc/mysql/conf.d/60-lab.cnf
      CHANGE_SOURCE='CHANGE REPLICATION SOURCE TO'
      SOURCE_WORD=SOURCE
      REPLICA_WORD=REPLICA
      THREAD_COLUMN_PREFIX=Replica
      # caching_sha2_password is MySQL 9's only password plugin: without TLS the replica needs
      # the source's RSA key to send the password.
      GTID_CLAUSE='SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1'
      ;;
    *) die "LAB_FLAVOR must be mariadb or mysql (got '${LAB_FLAVOR}')" ;;
  esac
}

# Run the SQL on stdin on the local server as root, through its socket (root has no password
# and no network login).
sql_root() { "$DB_CLIENT" --protocol=socket -uroot; }

# Quote a value as an SQL string literal.
sql_str() {
  local v=${1//\\/\\\\}
  v=${v//\'/\'\'}
  printf "'%s'" "$v"
}

# wait_until DESCRIPTION CMD...: poll CMD every second until it succeeds or the deadline passes.
wait_until() {
  local what=$1; shift
  local deadline=$((SECONDS + WAIT_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "timed out after ${WAIT_TIMEOUT}s waiting for: $what"
    sleep 1
  done
  log "ok: $what"
}

setup_ssh() {
  [[ -r $KEYS/id_ed25519.pub && -r $KEYS/ssh_host_ed25519_key ]] \
    || die "keys missing: mount a directory with id_ed25519(.pub) and ssh_host_ed25519_key(.pub) at $KEYS"

  # Exactly one host key, the shared lab one, so clients can check it strictly.
  rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
  install -m 0600 -o root -g root "$KEYS/ssh_host_ed25519_key" /etc/ssh/ssh_host_ed25519_key
  install -m 0644 -o root -g root "$KEYS/ssh_host_ed25519_key.pub" /etc/ssh/ssh_host_ed25519_key.pub
  cat > /etc/ssh/sshd_config.d/60-lab.conf <<'CONF'
HostKey /etc/ssh/ssh_host_ed25519_key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UseDNS no
MaxStartups 50:30:200
MaxSessions 50
CONF

  # ops: the operator account harestart logs in with (passwordless sudo).
  if ! id ops >/dev/null 2>&1; then
    useradd -m -s /bin/bash ops
    usermod -p '*' ops   # no password, but not "locked" (sshd refuses locked accounts)
  fi
  echo 'ops ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/ops
  chmod 0440 /etc/sudoers.d/ops

  local home
  for home in /root /home/ops; do
    install -d -m 0700 "$home/.ssh"
    install -m 0600 "$KEYS/id_ed25519.pub" "$home/.ssh/authorized_keys"
  done
  chown -R ops:ops /home/ops/.ssh

  if [[ $LAB_ROLE == bastion ]]; then
    # The jump host: clients open direct-tcpip channels through it to dbN:22 / dbN:3306.
    # (OpenSSH's default is already "yes"; say so, since the whole role depends on it.)
    printf 'AllowTcpForwarding yes\nPermitOpen any\n' > /etc/ssh/sshd_config.d/61-lab-bastion.conf
  fi

  # root's SSH client identity: the manager needs it to reach every node (MHA runs ssh/scp as
  # root); db nodes get it too so MHA's node-to-node checks (masterha_check_ssh) pass.
  # known_hosts trusts exactly the shared lab host key for any lab hostname.
  if [[ -r $KEYS/id_ed25519 ]]; then
    install -m 0600 "$KEYS/id_ed25519" /root/.ssh/id_ed25519
    install -m 0644 "$KEYS/id_ed25519.pub" /root/.ssh/id_ed25519.pub
  fi
  printf '* %s\n' "$(cut -d' ' -f1,2 "$KEYS/ssh_host_ed25519_key.pub")" > /root/.ssh/known_hosts
  cat > /root/.ssh/config <<'CONF'
Host *
  StrictHostKeyChecking yes
  UserKnownHostsFile /root/.ssh/known_hosts
  BatchMode yes
  ConnectTimeout 5
CONF
  chmod 0600 /root/.ssh/config /root/.ssh/known_hosts
  mkdir -p /run/sshd
}

write_mysql_config() {
  local read_only=$1
  {
    cat <<CONF
# Written by the harestart lab entrypoint (role ${LAB_ROLE}, flavour ${LAB_FLAVOR}).
[mysqld]
server_id                = ${LAB_SERVER_ID}
bind_address             = 0.0.0.0
skip_name_resolve        = 1
log_bin                  = /var/lib/mysql/mysql-bin
relay_log                = /var/lib/mysql/relay-bin
relay_log_purge          = 0
log_error                = /var/log/mysql/error.log
# In the file, not SET GLOBAL, so the role survives 'service ${DB_SERVICE} restart'.
read_only                = ${read_only}
# Small footprint: many lab clusters share two cores.
innodb_buffer_pool_size  = 64M
innodb_log_buffer_size   = 8M
max_connections          = 100
CONF
    "mysql_config_${LAB_FLAVOR}" "$read_only"
  } > "$DB_CONF"
  install -d -o mysql -g adm -m 2750 /var/log/mysql
}

mysql_config_mariadb() {
  # MySQL logs ROW by default (and deprecates the setting); MariaDB 10.11 defaults to MIXED.
  cat <<'CONF'
binlog_format            = ROW
log_slave_updates        = 1
performance_schema       = 0

# Debian's 50-mysqld_safe.cnf sends mysqld's log to syslog (skip_log_error + syslog), and
# containers have no syslog: keep the error log in a file so operators (and tests) can read
# every startup and shutdown.
[mysqld_safe]
skip_syslog
log_error                = /var/log/mysql/error.log
CONF
}

mysql_config_mysql() {
  local read_only=$1
  # /etc/mysql/my.cnf in this image is mariadb-common's (pulled in by MHA's DBD::mysql): it
  # includes conf.d/ but sets MariaDB's socket path, so both sides get theirs spelt out here.
  cat <<CONF
# Real MySQL shops run replicas with super_read_only too (read_only alone lets accounts with
# CONNECTION_ADMIN, like the admin user, write); harestart notes and restores both.
super_read_only          = ${read_only}
report_host              = $(hostname)
gtid_mode                = ON
enforce_gtid_consistency = ON
log_replica_updates      = ON
user                     = mysql
datadir                  = /var/lib/mysql
socket                   = /run/mysqld/mysqld.sock
pid_file                 = /run/mysqld/mysqld.pid
secure_file_priv         = /var/lib/mysql-files
mysqlx                   = OFF
innodb_redo_log_capacity = 32M
# mbind() is not permitted in a container: NUMA interleaving only fills the log with warnings.
innodb_numa_interleave   = OFF
# The lab proxy's health check (LAB_PROXY_CHECK=greeting) leaves after the server's greeting,
# which MySQL counts as an interrupted connection: at the default 100 it would block the proxy.
max_connect_errors       = 1000000000

[client]
socket                   = /run/mysqld/mysqld.sock
CONF
}

start_mysqld() {
  log "starting ${DB_SERVICE} (server_id ${LAB_SERVER_ID})"
  service "$DB_SERVICE" start >/dev/null 2>&1 || { tail -n 30 /var/log/mysql/error.log >&2 || true; die "service ${DB_SERVICE} start failed"; }
  wait_until "local mysqld answers" mysqladmin --protocol=socket -uroot ping
}

setup_source() {
  require LAB_SERVER_ID LAB_ADMIN_PASSWORD LAB_REPL_PASSWORD LAB_MHA_PASSWORD
  # LAB_SOURCE_READ_ONLY=1: the source's option file says read-only, as a switchover wants
  # of a source (restarted as a replica, it must not come back writable), and the running
  # source is made writable once started, as an orchestrator does.
  local configured=0
  [[ ${LAB_SOURCE_READ_ONLY:-0} == 1 ]] && configured=1
  write_mysql_config "$configured"
  start_mysqld
  if ((configured)); then
    sql_root <<<"SET GLOBAL read_only = OFF;"
    log "source configured read-only (LAB_SOURCE_READ_ONLY=1), made writable once started"
  fi
  if [[ -f $MARKER ]]; then
    log "datadir already initialised; skipping user setup"
    return
  fi
  local admin
  admin=$(sql_str "$LAB_ADMIN_USER")
  # Users exist only on the source; replicas receive them through replication.
  sql_root <<SQL
CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY $(sql_str "$LAB_REPL_PASSWORD");
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%';
CREATE USER IF NOT EXISTS ${admin}@'%' IDENTIFIED BY $(sql_str "$LAB_ADMIN_PASSWORD");
GRANT ALL PRIVILEGES ON *.* TO ${admin}@'%';
CREATE USER IF NOT EXISTS 'mha'@'%' IDENTIFIED BY $(sql_str "$LAB_MHA_PASSWORD");
GRANT ALL PRIVILEGES ON *.* TO 'mha'@'%' WITH GRANT OPTION;
-- The lab proxy's health check (option mysql-check): it only logs in and quits, so no
-- password and no privileges (USAGE only).
CREATE USER IF NOT EXISTS 'haproxy_check'@'%';
CREATE DATABASE IF NOT EXISTS labdb;
SQL
  touch "$MARKER"
  log "source initialised: users repl, ${LAB_ADMIN_USER}, mha, haproxy_check; database labdb"
}

# Option file holding a password, so it never appears in argv or the log.
client_cnf() {
  local file=$1 user=$2 password=$3
  (umask 077 && printf '[client]\nuser=%s\npassword=%s\nconnect_timeout=3\n' "$user" "$password" > "$file")
}

setup_replica() {
  require LAB_SERVER_ID LAB_SOURCE LAB_REPL_PASSWORD
  write_mysql_config 1
  start_mysqld
  if [[ -f $MARKER ]]; then
    log "datadir already initialised; replication resumes from its saved position"
    return
  fi
  client_cnf /root/.lab-repl.cnf repl "$LAB_REPL_PASSWORD"
  # The repl user answering also proves the source finished creating its users.
  wait_until "source ${LAB_SOURCE} accepts the replication user" \
    "$DB_CLIENT" --defaults-extra-file=/root/.lab-repl.cnf -h "$LAB_SOURCE" -e 'SELECT 1'
  local retry=""
  if [[ -n ${LAB_CONNECT_RETRY:-} ]]; then
    [[ $LAB_CONNECT_RETRY =~ ^[0-9]+$ ]] || die "LAB_CONNECT_RETRY must be an integer"
    retry=", ${SOURCE_WORD}_CONNECT_RETRY=${LAB_CONNECT_RETRY}"
  fi
  sql_root <<SQL
${CHANGE_SOURCE} ${SOURCE_WORD}_HOST=$(sql_str "$LAB_SOURCE"), ${SOURCE_WORD}_USER='repl',
  ${SOURCE_WORD}_PASSWORD=$(sql_str "$LAB_REPL_PASSWORD"), ${GTID_CLAUSE}${retry};
START ${REPLICA_WORD};
SQL
  touch "$MARKER"
  log "replica of ${LAB_SOURCE} configured (${GTID_CLAUSE}${LAB_CONNECT_RETRY:+, connect retry ${LAB_CONNECT_RETRY}s})"
}

write_mha_config() {
  install -d -m 0700 /etc/mha
  install -d /var/log/mha/app1
  touch /etc/mha/app1.cnf && chmod 0600 /etc/mha/app1.cnf
  {
    cat <<CONF
# Written by the harestart lab entrypoint.
[server default]
user=mha
password=${LAB_MHA_PASSWORD}
repl_user=repl
repl_password=${LAB_REPL_PASSWORD}
ssh_user=root
manager_workdir=/var/log/mha/app1
manager_log=/var/log/mha/app1/manager.log
remote_workdir=/var/tmp/mha
master_binlog_dir=/var/lib/mysql
ping_interval=1

[server1]
hostname=${LAB_SOURCE}
candidate_master=1
CONF
    local n=2 host
    for host in $LAB_REPLICAS; do
      printf '\n[server%d]\nhostname=%s\n' "$n" "$host"
      n=$((n + 1))
    done
  } > /etc/mha/app1.cnf

  # The one command that starts MHA, here and in harestart (over SSH): detached, so it
  # outlives the shell/SSH session that starts it.
  cat > /usr/local/bin/lab-mha-start <<'SCRIPT'
#!/bin/sh
# Start the MHA manager for app1, detached from the calling shell / SSH session.
setsid nohup masterha_manager --conf=/etc/mha/app1.cnf --ignore_last_failover < /dev/null > /var/log/mha/app1/manager.log 2>&1 &
SCRIPT
  chmod 0755 /usr/local/bin/lab-mha-start
}

replica_running() {
  local status
  status=$("$DB_CLIENT" --defaults-extra-file=/root/.lab-mha.cnf -h "$1" -E -e "SHOW ${REPLICA_WORD} STATUS") || return 1
  grep -q "${THREAD_COLUMN_PREFIX}_IO_Running: Yes" <<<"$status" \
    && grep -q "${THREAD_COLUMN_PREFIX}_SQL_Running: Yes" <<<"$status"
}

mha_ping_ok() {
  masterha_check_status --conf=/etc/mha/app1.cnf | grep -q 'PING_OK'
}

# Runs in the background after sshd is up: wait for the whole group, then start MHA.
manager_bootstrap() {
  local host
  for host in $LAB_SOURCE $LAB_REPLICAS; do
    wait_until "ssh root@${host}" ssh "root@${host}" true
    wait_until "mysql on ${host}" "$DB_CLIENT" --defaults-extra-file=/root/.lab-mha.cnf -h "$host" -e 'SELECT 1'
  done
  for host in $LAB_REPLICAS; do
    wait_until "replication threads running on ${host}" replica_running "$host"
  done
  if masterha_check_status --conf=/etc/mha/app1.cnf >/dev/null 2>&1; then
    log "MHA already running"
  else
    log "starting MHA: lab-mha-start"
    /usr/local/bin/lab-mha-start
  fi
  wait_until "masterha_check_status reports PING_OK" mha_ping_ok
  touch "$READY"
  log "manager ready: $(masterha_check_status --conf=/etc/mha/app1.cnf 2>&1 || true)"
}

setup_manager() {
  require LAB_SOURCE LAB_REPLICAS LAB_REPL_PASSWORD LAB_MHA_PASSWORD
  [[ -r $KEYS/id_ed25519 ]] || die "the manager needs the private client key at $KEYS/id_ed25519"
  client_cnf /root/.lab-mha.cnf mha "$LAB_MHA_PASSWORD"
  write_mha_config
  # Background: the container (sshd) is up and debuggable while the group comes up.
  ( manager_bootstrap ) &
}

# ---- proxy: HAProxy in front of the group (the lab's stand-in for a production proxy)
#
#   frontend writer_in  :3306 -> backend writer:  every db node, only LAB_SOURCE enabled, the
#                                others in maintenance (the writer moves with `set server`)
#   frontend readers_in :3307 -> backend readers: LAB_REPLICAS, round robin
#   runtime API (level admin): /run/haproxy/admin.sock and TCP :LAB_PROXY_API_PORT (9999)
# Server names are the node names (db1, db2, ...), as in the inventory: lab/hooks/ scripts
# address them as writer/<node> and readers/<node>. Health checks log in as haproxy_check
# (created on the source, see setup_source) and quit: a node is UP once mysqld accepts logins.
write_haproxy_config() {
  local api_port=${LAB_PROXY_API_PORT:-9999} host state check
  [[ $api_port =~ ^[0-9]+$ ]] || die "LAB_PROXY_API_PORT must be an integer"
  case "${LAB_PROXY_CHECK:-mysql}" in
    mysql) check='option mysql-check user haproxy_check post-41' ;;
    # MySQL 9 answers mysql-check's login with error 1251 (no caching_sha2_password in HAProxy)
    # and counts it as an aborted connect: check that mysqld sends its greeting instead.
    greeting) check=$'option tcp-check\n    tcp-check connect\n    tcp-check expect string caching_sha2_password' ;;
    *) die "LAB_PROXY_CHECK must be mysql or greeting (got '${LAB_PROXY_CHECK}')" ;;
  esac
  install -d -m 0755 /run/haproxy
  {
    cat <<CONF
# Written by the harestart lab entrypoint (role proxy): source ${LAB_SOURCE}, replicas ${LAB_REPLICAS}.
global
    log stdout format raw local0 info
    stats socket /run/haproxy/admin.sock mode 600 level admin expose-fd listeners
    # The same API on TCP, published on 127.0.0.1 only, for hook scripts on the bastion.
    stats socket ipv4@0.0.0.0:${api_port} level admin
    stats timeout 30s
    maxconn 2000

defaults
    mode tcp
    log global
    option tcplog
    option dontlognull
    timeout connect 3s
    timeout client 1h
    timeout server 1h
    timeout check 2s
    # A client retried once on another server if its connection attempt fails.
    retries 1
    option redispatch
    # init-addr: start even if a name does not resolve yet; check every second, 2 to flip.
    default-server init-addr last,libc,none inter 1s fall 2 rise 2

frontend writer_in
    bind :3306
    default_backend writer

backend writer
    ${check}
    # A writer that goes down takes its client connections with it: clients reconnect and
    # land on the next writer instead of writing into a dead or read-only node.
    default-server on-marked-down shutdown-sessions
CONF
    for host in $LAB_SOURCE $LAB_REPLICAS; do
      state=""
      [[ $host == "$LAB_SOURCE" ]] || state=" disabled"
      printf '    server %s %s:3306 check%s\n' "$host" "$host" "$state"
    done
    cat <<CONF

frontend readers_in
    bind :3307
    default_backend readers

backend readers
    balance roundrobin
    ${check}
CONF
    for host in $LAB_REPLICAS; do
      printf '    server %s %s:3306 check\n' "$host" "$host"
    done
  } > /etc/haproxy/haproxy.cfg
  haproxy -c -q -f /etc/haproxy/haproxy.cfg || die "haproxy rejects the generated /etc/haproxy/haproxy.cfg"
}

setup_proxy() {
  require LAB_SOURCE LAB_REPLICAS
  command -v haproxy >/dev/null 2>&1 || die "no haproxy in this image (the proxy role runs on harestart-lab:mariadb)"
  write_haproxy_config
  log "proxy: writer :3306 -> ${LAB_SOURCE} (others in maint), readers :3307 -> ${LAB_REPLICAS}, API :${LAB_PROXY_API_PORT:-9999}"
}

main() {
  rm -f "$READY" "$SETUP_FAILED"
  case "${LAB_ROLE:-}" in
    source | replica | manager | bastion | proxy) ;;
    *) die "LAB_ROLE must be source, replica, manager, bastion or proxy (got '${LAB_ROLE:-}')" ;;
  esac
  flavor_settings
  if [[ $LAB_ROLE == proxy ]]; then
    # No sshd and no keys: HAProxy (master-worker, foreground) is the container's main process.
    setup_proxy
    touch "$READY"
    log "starting haproxy"
    exec haproxy -W -db -f /etc/haproxy/haproxy.cfg
  fi
  setup_ssh
  case "$LAB_ROLE" in
    source) setup_source; touch "$READY" ;;
    replica) setup_replica; touch "$READY" ;;
    manager) setup_manager ;;
    bastion) log "bastion: sshd only (TCP forwarding on), no database"; touch "$READY" ;;
  esac
  log "starting sshd"
  exec /usr/sbin/sshd -D -e
}

main "$@"
