"""The state directory, trusted only once checked: owner-only directories and files, opened
without following a symbolic link (as ssh treats ``~/.ssh``).

harestart runs as root with every password; what it finds in its state directory decides what
it truncates, where it writes a resume state and what it resumes. So the state directory and
each directory in it (``locks``, ``journals``, ``logs``) must be a real directory (never a
symbolic link), owned by the current user and writable by nobody else; anything else is refused
with ``StateDirError`` (exit 2) naming the path and the reason. What harestart creates is 0700
(directories) and 0600 (files).

Files are opened relative to a checked directory's descriptor (``openat``) with ``O_NOFOLLOW``:
swapping a directory or planting a symbolic link between the check and the open finds the
check's directory, or fails; it never writes through the link.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from harestart.errors import StateDirError

SUBDIRS = ("locks", "journals", "logs", "marks")  # what harestart keeps in its state directory
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted in place of a file opens at once (and is refused as not a
# regular file) instead of blocking the open; it changes nothing for regular files.
_FILE_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class PrivateDir:
    """A checked directory, held open: files in it are opened by name through its descriptor."""

    def __init__(self, fd: int, path: Path, root: Path) -> None:
        self.fd = fd
        self.path = path
        self.root = root

    def open(self, name: str, flags: int, mode: int = 0o600) -> int:
        """A file of this directory, never through a symbolic link; refused unless it is a
        regular file of ours that nobody else can write. Raises FileNotFoundError as
        ``os.open`` does (no ``O_CREAT``)."""
        path = self.path / name
        try:
            fd = os.open(name, flags | _FILE_FLAGS, mode, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise self.refused(path, "is a symbolic link") from None
            if exc.errno == errno.ENOENT:
                raise
            raise self.refused(path, f"cannot be opened ({exc.strerror})") from None
        try:
            why = _unsafe(os.fstat(fd), stat.S_ISREG, "a regular file")
        except BaseException:
            os.close(fd)
            raise
        if why is not None:
            os.close(fd)
            raise self.refused(path, why)
        return fd

    def replace(self, src: str, dst: str) -> None:
        """Rename ``src`` over ``dst`` in this directory (a link at ``dst`` is replaced, not
        followed), then fsync the directory."""
        os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        os.fsync(self.fd)

    def write_atomically(self, name: str, data: bytes) -> None:
        """Replace the file ``name`` by ``data`` (``put_atomically``)."""
        os.close(self.put_atomically(name, data))

    def put_atomically(self, name: str, data: bytes, *, synchronous: bool = False) -> int:
        """Replace the file ``name`` by ``data``: a temporary file written and fsynced, renamed
        over it, the directory fsynced; after a crash the file is the old or the new one. The
        new file's descriptor, open for appending (the caller closes it); ``synchronous``: each
        write to it returns once its data is on disk (``O_DSYNC``, write and fdatasync in one)."""
        tmp = f".{name}.{os.getpid()}.tmp"
        self.unlink(tmp)  # a leftover of a killed process that had this pid
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND
        fd = self.open(tmp, flags | (os.O_DSYNC if synchronous else 0))
        try:
            write_all(fd, data)
            os.fsync(fd)
            self.replace(tmp, name)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def unlink(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def refused(self, path: Path, why: str) -> StateDirError:
        return StateDirError(self.root, path, why)


@contextlib.contextmanager
def state_subdir(root: Path, name: str, *, create: bool) -> Iterator[PrivateDir | None]:
    """The checked directory ``root/name`` for the block (None when it, or ``root``, does not
    exist and ``create`` is false). Created 0700 when missing and ``create``; refused
    (StateDirError) when ``root`` or it is a symbolic link, not a directory, not ours, or
    writable by group or others."""
    root_fd = _open_dir(root, None, root, create=create)
    if root_fd is None:
        yield None
        return
    try:
        fd = _open_dir(root / name, root_fd, root, create=create)
    finally:
        os.close(root_fd)
    if fd is None:
        yield None
        return
    try:
        yield PrivateDir(fd, root / name, root)
    finally:
        os.close(fd)


@contextlib.contextmanager
def created_subdir(root: Path, name: str) -> Iterator[PrivateDir]:
    """``state_subdir`` that creates what is missing (the state directory and ``name``)."""
    with state_subdir(root, name, create=True) as d:
        if d is None:  # removed between its creation and its opening
            raise StateDirError(root, root / name, "disappeared while being created")
        yield d


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def check_state_dir(root: Path, *, create: bool) -> None:
    """Refuse (StateDirError, exit 2) an unsafe state directory and unsafe directories in it,
    before anything is done; create it (0700) when ``create``."""
    fd = _open_dir(root, None, root, create=create)
    if fd is None:
        return
    try:
        with os.scandir(fd) as entries:
            names = [e.name for e in entries if e.name in SUBDIRS or e.is_dir()]
        for name in names:
            sub = _open_dir(root / name, fd, root, create=False)
            if sub is not None:
                os.close(sub)
    finally:
        os.close(fd)


def private_parent(path: Path) -> None:
    """Create ``path``'s missing parents as 0700 (a file named outside the state directory,
    e.g. ``--log-file``: existing directories are left alone)."""
    missing: list[Path] = []
    p = path.parent
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue
        os.chmod(d, 0o700)  # the mode passed to mkdir is masked by the umask


def open_private_file(path: Path, flags: int) -> int:
    """A run log (in the checked ``logs`` directory, or wherever ``--log-file`` names it):
    created 0600 (missing directories 0700), never through a symbolic link, refused unless it is
    a regular file of ours that nobody else can write."""
    private_parent(path)
    try:
        fd = os.open(path, flags | _FILE_FLAGS, 0o600)
    except OSError as exc:
        failed = "is a symbolic link" if exc.errno == errno.ELOOP else "cannot be opened"
        raise StateDirError(None, path, f"{failed} ({exc.strerror})") from None
    why = _unsafe(os.fstat(fd), stat.S_ISREG, "a regular file")
    if why is not None:
        os.close(fd)
        raise StateDirError(None, path, why)
    return fd


def _open_dir(path: Path, parent_fd: int | None, root: Path, *, create: bool) -> int | None:
    """Open ``path`` (relative to ``parent_fd`` when given) as a checked directory."""
    name: str | Path = path.name if parent_fd is not None else path
    created = False
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except FileNotFoundError:
        if not create:
            return None
        if parent_fd is None:
            private_parent(path)
        try:
            os.mkdir(name, 0o700, dir_fd=parent_fd)
            created = True
        except FileExistsError:
            pass  # made meanwhile by someone else: checked below like any other
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            raise StateDirError(root, path, _open_failure(name, parent_fd, exc)) from None
    except OSError as exc:
        raise StateDirError(root, path, _open_failure(name, parent_fd, exc)) from None
    if created:
        os.fchmod(fd, 0o700)  # the mode given to mkdir is masked by the umask
    why = _unsafe(os.fstat(fd), stat.S_ISDIR, "a directory")
    if why is not None:
        os.close(fd)
        raise StateDirError(root, path, why)
    return fd


def _open_failure(name: str | Path, parent_fd: int | None, exc: OSError) -> str:
    try:
        st = os.lstat(name, dir_fd=parent_fd)
    except OSError:
        return f"cannot be opened ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    return f"cannot be opened ({exc.strerror})"


def _unsafe(st: os.stat_result, is_kind: Callable[[int], bool], kind: str) -> str | None:
    """Why a checked file or directory is not to be trusted, or None."""
    if not is_kind(st.st_mode):
        return f"is not {kind}"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by uid {os.geteuid()} (this user)"
    if st.st_mode & 0o022:
        who = {0o022: "group and others", 0o020: "its group"}.get(st.st_mode & 0o022, "others")
        return f"is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o})"
    return None
