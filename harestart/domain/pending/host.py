"""What mysqld's host says about the running server: one POSIX ``sh`` script, sent as one
command over the SSH session harestart already has, and the parser of its output. Pure.

The script reports, one ``TAG<TAB>value`` line each (it always exits 0; what it could not
read is a ``TAG!`` line with the error, never silence):

- ``user``: who ran it (root through sudo, or the login user);
- ``pid``: mysqld's pid, from the server's own ``pid_file`` if that process is mysqld, else
  ``pidof`` when it finds exactly one;
- ``exe``, ``exe-inode``, ``exe-disk``: ``readlink /proc/PID/exe`` (`` (deleted)`` when the
  file was removed or renamed over), the inode of the file that runs and of the file at that
  path now (a package upgrade renames a new file over the old one: another inode);
- ``map`` and ``disk``: each shared library mapped (``/proc/PID/maps``, as needrestart reads
  it: ``.so`` paths, `` (deleted)`` or an inode the path no longer has) and the inode at its
  path now;
- ``pkg``: the package owning the executable and its version, where dpkg or rpm answers;
- ``arg``: mysqld's command line (options there win over the option files);
- ``opt``: ``my_print_defaults`` of the server's groups (with the command line's
  ``--defaults-file``/``--defaults-extra-file``/``--defaults-group-suffix``), its complaints
  included (it skips an option file it cannot read and still exits 0);
- ``unreadable``: an option file the user cannot read (``/etc/my.cnf``, ``/etc/mysql/my.cnf``
  and the directories their ``!includedir`` lines name).
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from harestart.domain.topology import Flavor

_SCRIPT = r"""export LC_ALL=C
say() { printf '%s\t%s\n' "$1" "$2"; }
tagged() { awk -v t="$1" 'NF { print t "\t" $0 }'; }
say user "$(id -un 2>&1)"
pf=@PIDFILE@
is_server() {
  case "$(cat "/proc/$1/comm" 2>/dev/null)" in mariadbd|mysqld) return 0;; esac; return 1
}
pid=$(head -n 1 "$pf" 2>/dev/null | tr -cd 0-9)
{ [ -n "$pid" ] && is_server "$pid"; } || pid=$(pidof mariadbd mysqld 2>/dev/null)
set --
case $pid in
  '') say 'pid!' "no mariadbd or mysqld process (pid file $pf)";;
  *' '*) say 'pid!' "several server processes ($pid), none of them in the pid file $pf"; pid=;;
esac
if [ -n "$pid" ]; then
  say pid "$pid"
  if exe=$(readlink -v "/proc/$pid/exe" 2>&1); then
    say exe "$exe"
    path=${exe% (deleted)}
    say exe-inode "$(stat -L -c %i "/proc/$pid/exe" 2>&1)"
    say exe-disk "$(stat -c %i "$path" 2>&1)"
    if command -v dpkg-query >/dev/null 2>&1; then
      pkg=$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1)
      [ -z "$pkg" ] || say pkg "$pkg $(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null)"
    elif command -v rpm >/dev/null 2>&1; then
      say pkg "$(rpm -qf --qf '%{NAME} %{VERSION}-%{RELEASE}' "$path" 2>/dev/null)"
    fi
  else
    say 'exe!' "$exe"
  fi
  if maps=$(cat "/proc/$pid/maps" 2>&1); then
    libs=$(printf '%s\n' "$maps" | awk '$6 ~ /\.so(\.[0-9]+)*$/ && !seen[$6]++ {
      print $5 "\t" $6 ($7 == "(deleted)" ? "\t(deleted)" : "") }')
    printf '%s\n' "$libs" | tagged map
    printf '%s\n' "$libs" | cut -f2 | xargs stat --printf 'disk\t%i\t%n\n' 2>/dev/null
  else
    say 'maps!' "$maps"
  fi
  while IFS= read -r a; do
    [ -z "$a" ] || say arg "$a"
    case $a in
      --defaults-file=*|--defaults-extra-file=*|--defaults-group-suffix=*|--no-defaults)
        set -- "$@" "$a";;
    esac
  done <<ARGS
$(tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | tail -n +2)
ARGS
fi
if out=$(my_print_defaults "$@" @GROUPS@ 2>&1); then
  printf '%s\n' "$out" | tagged opt
else
  rc=$?  # only its complaints: an option it printed may hold a password
  said=$(printf '%s\n' "$out" | grep -v '^--' | head -n 3 | tr '\n' ' ')
  say 'opt!' "my_print_defaults exited $rc: $said"
fi
dirs=$(sed -n 's/^[[:space:]]*!includedir[[:space:]]*//p' /etc/my.cnf /etc/mysql/my.cnf 2>/dev/null)
for f in /etc/my.cnf /etc/mysql/my.cnf $(printf '%s\n' "$dirs" | sed 's|$|/*.cnf|'); do
  [ ! -e "$f" ] || [ -r "$f" ] || say unreadable "$f"
done
exit 0
"""


def option_groups(flavor: Flavor, version: tuple[int, int, int]) -> tuple[str, ...]:
    """The ``my_print_defaults`` arguments for the groups the server reads: MariaDB's own
    ``--mysqld`` (``mysqld``, ``server``, ``mariadb``, ``mariadbd``, ``client-server``,
    ``galera`` and their ``-VERSION`` variants); MySQL's ``mysqld``, ``server`` and
    ``mysqld-MAJOR.MINOR``."""
    if flavor is Flavor.MARIADB:
        return ("--mysqld",)
    return ("mysqld", "server", f"mysqld-{version[0]}.{version[1]}")


def host_script(pid_file: str, groups: Iterable[str]) -> str:
    """The one command: ``sh -c`` around the script, so any login shell runs it the same."""
    script = _SCRIPT.replace("@PIDFILE@", shlex.quote(pid_file or "/nonexistent")).replace(
        "@GROUPS@", " ".join(shlex.quote(g) for g in groups)
    )
    return f"sh -c {shlex.quote(script)}"


@dataclass(frozen=True)
class MappedLibrary:
    """A shared library mysqld maps: the inode it mapped, and the inode at its path now (None:
    no file there any more)."""

    path: str
    inode: int | None
    deleted: bool
    disk_inode: int | None = None

    @property
    def replaced(self) -> bool:
        return self.deleted or self.disk_inode is None or self.inode != self.disk_inode


@dataclass(frozen=True)
class HostFacts:
    """The script's output, parsed. ``*_error`` holds what could not be read, with why."""

    user: str = ""
    pid: int | None = None
    pid_error: str | None = None
    exe: str | None = None
    exe_deleted: bool = False
    exe_inode: int | None = None
    exe_disk_inode: int | None = None
    exe_error: str | None = None
    libraries: tuple[MappedLibrary, ...] = ()
    maps_error: str | None = None
    package: tuple[str, str] | None = None
    command_line: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    options_error: str | None = None
    unreadable: tuple[str, ...] = ()


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if text.isdigit() else None


@dataclass
class _Lines:
    """The script's lines by tag: single values (the last wins) and the repeated ones."""

    single: dict[str, str]
    repeated: dict[str, list[str]]

    @classmethod
    def read(cls, output: str) -> _Lines:
        single: dict[str, str] = {}
        repeated: dict[str, list[str]] = {t: [] for t in ("arg", "opt", "unreadable", "map")}
        repeated["disk"] = []
        for line in output.splitlines():
            tag, sep, rest = line.partition("\t")
            if not sep:
                continue
            if tag in repeated:
                repeated[tag].append(rest)
            else:
                single[tag] = rest.strip()
        return cls(single, repeated)

    def error(self, tag: str) -> str | None:
        return self.single.get(f"{tag}!")


def _libraries(lines: _Lines) -> tuple[MappedLibrary, ...]:
    disk: dict[str, int] = {}
    for rest in lines.repeated["disk"]:
        inode, _, path = rest.partition("\t")
        if _int(inode) is not None:
            disk[path] = int(inode)
    out = []
    for rest in lines.repeated["map"]:
        inode, _, tail = rest.partition("\t")
        path, _, flag = tail.partition("\t")
        out.append(MappedLibrary(path, _int(inode), flag == "(deleted)", disk.get(path)))
    return tuple(out)


def _package(text: str | None) -> tuple[str, str] | None:
    name, _, version = (text or "").strip().partition(" ")
    return (name.strip(), version.strip()) if name.strip() and version.strip() else None


def parse_host_facts(output: str) -> HostFacts:
    """``host_script``'s output as ``HostFacts``; lines it does not know are ignored."""
    lines = _Lines.read(output)
    exe = lines.single.get("exe")
    return HostFacts(
        user=lines.single.get("user", ""),
        pid=_int(lines.single.get("pid")),
        pid_error=lines.error("pid"),
        exe=exe.removesuffix(" (deleted)") if exe is not None else None,
        exe_deleted=exe is not None and exe.endswith(" (deleted)"),
        exe_inode=_int(lines.single.get("exe-inode")),
        exe_disk_inode=_int(lines.single.get("exe-disk")),
        exe_error=lines.error("exe"),
        libraries=_libraries(lines),
        maps_error=lines.error("maps"),
        package=_package(lines.single.get("pkg")),
        command_line=tuple(lines.repeated["arg"]),
        options=tuple(lines.repeated["opt"]),
        options_error=lines.error("opt"),
        unreadable=tuple(lines.repeated["unreadable"]),
    )
