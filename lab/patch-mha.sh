#!/bin/sh
# Build-time fixes for Debian's MHA 0.58 (mha4mysql-node/-manager) against MariaDB 10.11.
# Run by lab/Dockerfile. Exits non-zero (failing the image build) if a patch did not apply,
# e.g. because a newer MHA package changed the code.
set -eu

NODEUTIL=/usr/share/perl5/MHA/NodeUtil.pm
SLAVEUTIL=/usr/share/perl5/MHA/SlaveUtil.pm

# Patch 1: parse_mysql_version / parse_mysql_major_version hand *every* number of the
# version string to sprintf. "10.11.x-MariaDB-0+deb12u1" has more numbers than the format
# has slots, MHA runs with fatal warnings, so masterha_check_repl / masterha_manager die with
# "Redundant argument in sprintf". Keep only major.minor.patch (major.minor), padding with 0.
perl -0pi -e '
  s{sprintf\( \x27%03d%03d%03d\x27, \$str =~ m/\(\\d\+\)/g \);}
   {sprintf( \x27%03d%03d%03d\x27, map { \$_ // 0 } ( \$str =~ m/(\\d+)/g )[ 0 .. 2 ] ); # harestart-lab patch};
  s{sprintf\( \x27%03d%03d\x27, \$str =~ m/\(\\d\+\)/g \);}
   {sprintf( \x27%03d%03d\x27, map { \$_ // 0 } ( \$str =~ m/(\\d+)/g )[ 0 .. 1 ] ); # harestart-lab patch};
' "$NODEUTIL"
if [ "$(grep -c 'harestart-lab patch' "$NODEUTIL")" -ne 2 ]; then
  echo "FATAL: MHA NodeUtil.pm version-parsing patch did not apply" >&2
  exit 1
fi

# Patch 2: check_if_super_read_only runs "SELECT @@global.super_read_only"; MariaDB has no
# such variable, the query raises "Unknown system variable", and MHA's master failover and
# apply_diff_relay_logs abort on it. Treat a failed probe as "super_read_only not set".
perl -0pi -e '
  s{  \$sth->execute\(\);\n  my \$href = \$sth->fetchrow_hashref;\n  if \( \$href->\{Value\} == \x271\x27 \) \{}
   {  # harestart-lab patch: MariaDB lacks super_read_only; a failed probe means "not set".\n  my \$href = eval { \$sth->execute(); \$sth->fetchrow_hashref } || {};\n  if ( defined \$href->{Value} && \$href->{Value} == 1 ) \{};
' "$SLAVEUTIL"
if ! grep -q 'harestart-lab patch' "$SLAVEUTIL"; then
  echo "FATAL: MHA SlaveUtil.pm super_read_only patch did not apply" >&2
  exit 1
fi

# Both modules must still compile.
perl -c "$NODEUTIL" >/dev/null 2>&1 || { echo "FATAL: patched NodeUtil.pm does not compile" >&2; perl -c "$NODEUTIL"; exit 1; }
perl -I/usr/share/perl5 -c "$SLAVEUTIL" >/dev/null 2>&1 || { echo "FATAL: patched SlaveUtil.pm does not compile" >&2; perl -c "$SLAVEUTIL"; exit 1; }
perl -MMHA::NodeUtil -e 'MHA::NodeUtil::parse_mysql_version("10.11.19-MariaDB-0+deb12u1") eq "010011019" or die "parse_mysql_version still broken\n"; MHA::NodeUtil::parse_mysql_major_version("10.11.19-MariaDB-0+deb12u1") eq "010011" or die "parse_mysql_major_version still broken\n"'
echo "MHA patches applied"
