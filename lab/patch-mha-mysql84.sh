#!/bin/bash
# Vendored from the project's shared MySQL lab recipe: /work/shared/mysql-lab/patch-mha-mysql84.sh
# (tested there with MySQL 9.7.4-2 and MHA 0.58-3; see its RECIPE.md, section 4). Run by
# lab/Dockerfile.mysql at build time; lab/patch-mha.sh is the MariaDB flavour's patch.
#
# patch-mha-mysql84.sh - make MHA 0.58 (Debian mha4mysql-node / mha4mysql-manager 0.58-3)
# talk to Oracle MySQL 8.4 / 9.x (tested with 9.7.4).
#
# * SQL: CHANGE MASTER / RESET|START|STOP SLAVE / SHOW SLAVE|MASTER STATUS were removed in 8.4
#   -> CHANGE REPLICATION SOURCE / ... REPLICA / SHOW REPLICA STATUS / SHOW BINARY LOG STATUS.
#   WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS() was removed -> WAIT_FOR_EXECUTED_GTID_SET();
#   MASTER_POS_WAIT() is deprecated -> SOURCE_POS_WAIT().
# * SHOW REPLICA STATUS returns Source_*/Replica_* columns: the row is aliased back to the
#   old Master_*/Slave_* names in one place (DBHelper::check_slave_status), so the rest of MHA
#   is untouched.
# * relay_log_info_repository was removed (8.3): relay log info always lives in
#   mysql.slave_relay_log_info, so MHA is told "TABLE".
# * "9.7.4-2" has four numbers: NodeUtil's sprintf('%03d%03d%03d', m/(\d+)/g) then dies with
#   "Redundant argument in sprintf" (warnings are FATAL) -> only match N.N.N / N.N.
# * caching_sha2_password is the only password plugin: CHANGE REPLICATION SOURCE gets
#   GET_SOURCE_PUBLIC_KEY=1 so a rebuilt replica channel also authenticates without TLS.
# * Not MySQL specific: masterha_check_ssh exits 255 after "All SSH connection tests passed"
#   ("Use of uninitialized value in exit") because do_ssh_connection_check returns undef.
#
# Idempotent: every edit is skipped when its replacement is already there, and the script
# fails loudly (exit 1, nothing written for that file) when neither old nor new text is found.
# Run it on the manager AND on every node (all MHA modules live in /usr/share/perl5/MHA).
# Usage: patch-mha-mysql84.sh [MHA_DIR]   (default /usr/share/perl5/MHA)
set -euo pipefail
MHA_DIR=${1:-/usr/share/perl5/MHA}
exec perl -w - "$MHA_DIR" <<'PERL'
use strict;
use File::Basename qw(dirname);
my $dir = shift;
sub first { my ($t) = @_; $t =~ s/^\s+//; $t =~ s/\n.*//s; substr($t, 0, 90) }
# [ file, old text, new text, expected number of occurrences of old ]
my @edits = (
  # ---- DBHelper.pm: statements -------------------------------------------------------
  [ 'DBHelper.pm',
    q{"CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_LOG_FILE='%s', MASTER_LOG_POS=%d";},
    q{"CHANGE REPLICATION SOURCE TO SOURCE_HOST='%s', SOURCE_PORT=%d, SOURCE_USER='%s', SOURCE_PASSWORD='%s', SOURCE_LOG_FILE='%s', SOURCE_LOG_POS=%d, GET_SOURCE_PUBLIC_KEY=1";}, 1 ],
  [ 'DBHelper.pm',
    q{"CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_LOG_FILE='%s', MASTER_LOG_POS=%d";},
    q{"CHANGE REPLICATION SOURCE TO SOURCE_HOST='%s', SOURCE_PORT=%d, SOURCE_USER='%s', SOURCE_LOG_FILE='%s', SOURCE_LOG_POS=%d, GET_SOURCE_PUBLIC_KEY=1";}, 1 ],
  [ 'DBHelper.pm',
    q{"CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_PASSWORD='%s', MASTER_AUTO_POSITION=1";},
    q{"CHANGE REPLICATION SOURCE TO SOURCE_HOST='%s', SOURCE_PORT=%d, SOURCE_USER='%s', SOURCE_PASSWORD='%s', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1";}, 1 ],
  [ 'DBHelper.pm',
    q{"CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='%s', MASTER_AUTO_POSITION=1";},
    q{"CHANGE REPLICATION SOURCE TO SOURCE_HOST='%s', SOURCE_PORT=%d, SOURCE_USER='%s', SOURCE_AUTO_POSITION=1, GET_SOURCE_PUBLIC_KEY=1";}, 1 ],
  [ 'DBHelper.pm', q{=> "RESET SLAVE /*!50516 ALL */";},     q{=> "RESET REPLICA ALL";}, 1 ],
  [ 'DBHelper.pm', q{=> "RESET SLAVE";},                      q{=> "RESET REPLICA";}, 1 ],
  [ 'DBHelper.pm', q{=> "CHANGE MASTER TO MASTER_HOST=''";},  q{=> "CHANGE REPLICATION SOURCE TO SOURCE_HOST=''";}, 1 ],
  [ 'DBHelper.pm', q{=> "SHOW SLAVE STATUS";},                q{=> "SHOW REPLICA STATUS";}, 1 ],
  [ 'DBHelper.pm', q{=> "SHOW MASTER STATUS";},               q{=> "SHOW BINARY LOG STATUS";}, 1 ],
  [ 'DBHelper.pm', q{=> "STOP SLAVE IO_THREAD";},             q{=> "STOP REPLICA IO_THREAD";}, 1 ],
  [ 'DBHelper.pm', q{=> "START SLAVE IO_THREAD";},            q{=> "START REPLICA IO_THREAD";}, 1 ],
  [ 'DBHelper.pm', q{=> "START SLAVE";},                      q{=> "START REPLICA";}, 1 ],
  [ 'DBHelper.pm', q{=> "STOP SLAVE";},                       q{=> "STOP REPLICA";}, 1 ],
  [ 'DBHelper.pm', q{=> "START SLAVE SQL_THREAD";},           q{=> "START REPLICA SQL_THREAD";}, 1 ],
  [ 'DBHelper.pm', q{=> "STOP SLAVE SQL_THREAD";},            q{=> "STOP REPLICA SQL_THREAD";}, 1 ],
  [ 'DBHelper.pm', q{"SELECT MASTER_POS_WAIT(?,?,0) AS Result"},
                   q{"SELECT SOURCE_POS_WAIT(?,?,0) AS Result"}, 1 ],
  [ 'DBHelper.pm', q{"SELECT WAIT_UNTIL_SQL_THREAD_AFTER_GTIDS(?,0) AS Result"},
                   q{"SELECT WAIT_FOR_EXECUTED_GTID_SET(?) AS Result"}, 1 ],
  # ---- DBHelper.pm: alias SHOW REPLICA STATUS columns to the old names ------------------
  [ 'DBHelper.pm',
    qq{  \$status{Status} = 0;\n  \$href = \$sth->fetchrow_hashref;\n},
    qq{  \$status{Status} = 0;\n  \$href = \$sth->fetchrow_hashref;\n}
  . qq{  # mysql84-patch: Source_*/Replica_* columns -> Master_*/Slave_* (Relay_Source_Log_File, Seconds_Behind_Source, ...)\n}
  . qq{  if (\$href) { for my \$k (keys %\$href) { (my \$o = \$k) =~ s/(^|_)Source(_|\$)/\$1Master\$2/g; \$o =~ s/^Replica_/Slave_/; \$href->{\$o} = \$href->{\$k} unless exists \$href->{\$o}; } }\n}, 1 ],
  [ 'DBHelper.pm', q{$state =~ m/^Slave has read all relay log/},
                   q{$state =~ m/^(?:Slave|Replica) has read all relay log/}, 1 ],
  # ---- SlaveUtil.pm (node) ---------------------------------------------------------
  [ 'SlaveUtil.pm', q{=> "SHOW SLAVE STATUS";}, q{=> "SHOW REPLICA STATUS";}, 1 ],
  [ 'SlaveUtil.pm', q{"SELECT \@\@global.relay_log_info_repository AS Value";},
                    q{"SELECT 'TABLE' AS Value"; # mysql84-patch: relay_log_info_repository removed in 8.3, always TABLE}, 1 ],
  # ---- Server.pm -------------------------------------------------------------------
  [ 'Server.pm', q{$dbhelper->execute("CHANGE MASTER TO MASTER_HOST='dummy_host'");},
                 q{$dbhelper->execute("CHANGE REPLICATION SOURCE TO SOURCE_HOST='dummy_host'");}, 1 ],
  # ---- NodeUtil.pm (node): "9.7.4-2" must not feed 4 numbers to a 3-number sprintf -----
  [ 'NodeUtil.pm', q{sprintf( '%03d%03d%03d', $str =~ m/(\d+)/g );},
                   q{sprintf( '%03d%03d%03d', $str =~ m/(\d+)\.(\d+)\.(\d+)/ );}, 1 ],
  [ 'NodeUtil.pm', q{sprintf( '%03d%03d', $str =~ m/(\d+)/g );},
                   q{sprintf( '%03d%03d', $str =~ m/(\d+)\.(\d+)/ );}, 1 ],
  # ---- SSHCheck.pm: exit code of masterha_check_ssh ---------------------------------
  [ 'SSHCheck.pm',
    qq#  \$log->info("All SSH connection tests passed successfully.");\n}\n#,
    qq#  \$log->info("All SSH connection tests passed successfully.");\n  return 0;\n}\n#, 1 ],
);

my (%text, %orig, $failed);
for my $e (@edits) {
  my ($file, $old, $new, $want) = @$e;
  my $path = "$dir/$file";
  unless (exists $text{$file}) {
    open(my $fh, '<', $path) or die "patch-mha-mysql84: cannot read $path: $!\n";
    local $/; $text{$file} = $orig{$file} = <$fh>; close $fh;
  }
  if (index($text{$file}, $new) >= 0) {
    print "  already patched  $file: ", first($new), "\n";
    next;
  }
  my $n = () = $text{$file} =~ /\Q$old\E/g;
  if ($n != $want) {
    print STDERR "FAILED           $file: expected $want x [$old], found $n\n";
    $failed++;
    next;
  }
  $text{$file} =~ s/\Q$old\E/$new/g;
  print "  patched          $file: ", first($new), "\n";
}
die "patch-mha-mysql84: $failed edit(s) did not match - MHA version differs? Nothing written.\n" if $failed;
for my $file (sort keys %text) {
  next if $text{$file} eq $orig{$file};
  my $path = "$dir/$file";
  if (! -e "$path.orig-0.58") { open(my $b, '>', "$path.orig-0.58") or die "$path.orig-0.58: $!\n"; print $b $orig{$file}; close $b; }
  open(my $fh, '>', "$path.tmp$$") or die "$path.tmp$$: $!\n"; print $fh $text{$file}; close $fh or die "$path: $!\n";
  rename("$path.tmp$$", $path) or die "rename $path: $!\n";
  my $inc = dirname($dir);
  my $out = `perl -I'$inc' -c '$path' 2>&1`;
  $? == 0 or die "patch-mha-mysql84: $path no longer compiles!\n$out";
}
# safety net: no SQL string in any MHA module may still start with removed syntax
my @left;
for my $path (glob("$dir/*.pm")) {
  open(my $fh, '<', $path) or die "$path: $!\n";
  while (my $l = <$fh>) {
    next if $l =~ /^\s*#/;
    push @left, "$path:$.: $l" if $l =~ /"(?:SHOW (?:SLAVE|MASTER) STATUS|(?:START|STOP|RESET) SLAVE|CHANGE MASTER TO)\b/;
  }
}
die "patch-mha-mysql84: old syntax left:\n@left" if @left;
print "patch-mha-mysql84: OK ($dir)\n";
PERL
