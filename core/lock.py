"""One writer per results folder: the lock file ``FOLDER/.clsearch.lock``.

A search driver (``search/run.py``), a rerun writing its final table
(``search/rerun.py``) and a report build (``analysis/report.py``) each take the
lock of the folder they write into and hold it until they exit; a second one
is refused with one line naming the holder (pid, host, start time, command).
Readers do not take it.

How it works (stdlib only, so ``analysis`` can use it):

- the file is opened (created if absent) and ``fcntl.flock``-ed, exclusive and
  non-blocking. The kernel drops a flock when its holder dies, SIGKILL
  included, so a driver killed mid-search never leaves a lock that blocks the
  next ``--resume``;
- the holder writes its pid, hostname, process start time and command line
  into the file, for the refusal message and for the stale-lock note: a file
  that still names a process when the flock is free was left by a holder that
  died (its pid is dead, or reused by a process that started later); the new
  holder says so and takes over;
- a file naming another host is not taken over: flock over a network
  filesystem may not reach that host, and its pid cannot be checked from here;
- release unlinks the file and then closes it. Because a competitor may have
  opened the old file just before the unlink, whoever gets the flock checks
  that the path still names the file it locked, and retries if not.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from core.errors import UserError

LOCK_NAME = ".clsearch.lock"


class FolderLocked(UserError):
    """The folder is held by another live process."""


def lock_path(folder: str | Path) -> Path:
    return Path(folder) / LOCK_NAME


def _proc_start_ticks(pid: int) -> int | None:
    """The start time of ``pid`` (clock ticks since boot, /proc/PID/stat field
    22), or None where /proc is not available: with the pid it names one
    process even after the pid is reused."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def pid_alive(pid: int, start_ticks: int | None = None) -> bool:
    """Whether process ``pid`` runs on this host (and is the one that started
    at ``start_ticks``, when that is known on both sides)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if start_ticks is not None:
        now = _proc_start_ticks(pid)
        if now is not None and now != start_ticks:
            return False  # the pid was reused by a later process
    return True


def describe_holder(info: dict[str, Any]) -> str:
    return (f"pid {info.get('pid')} on {info.get('host')} since {info.get('started', '?')}"
            f" ({info.get('command', '?')})")


def read_holder(folder: str | Path) -> dict[str, Any] | None:
    """What the lock file of ``folder`` says about its holder (None: no file, or
    an empty or unreadable one)."""
    try:
        info = json.loads(lock_path(folder).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


class FolderLock:
    """The exclusive lock of one results folder; a context manager.

    ``FolderLock(folder, purpose).acquire()`` creates ``folder`` if needed,
    takes the lock or raises ``FolderLocked`` (one line), and returns a note
    naming a stale lock it took over (or None). ``release()`` is idempotent.
    """

    def __init__(self, folder: str | Path, purpose: str) -> None:
        self.folder = Path(folder)
        self.path = lock_path(folder)
        self.purpose = purpose
        self.fd: int | None = None
        self.stale_note: str | None = None

    def acquire(self) -> str | None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file in the way, a read-only or full disk, a name too long
            raise UserError(f"cannot create the folder {self.folder}: {exc.strerror or exc}") from None
        for _ in range(100):  # retries only when a holder released between our open and flock
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise UserError(f"cannot write in {self.folder} (lock file {LOCK_NAME}): "
                                f"{exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                holder = read_holder(self.folder) or {}
                raise FolderLocked(f"{self.folder} is in use by another process ({describe_holder(holder)}); "
                                   f"wait for it to end, or use another folder") from None
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # locked a file its holder had just unlinked: try the new one
                os.close(fd)
                continue
            try:
                self._check_previous(fd)
                self._write_info(fd)
            except BaseException:
                os.close(fd)
                raise
            self.fd = fd
            return self.stale_note
        raise FolderLocked(f"{self.folder}: could not take the lock {self.path} (it kept changing hands)")

    def _check_previous(self, fd: int) -> None:
        """The file may name an earlier holder that died without releasing it."""
        text = os.pread(fd, 65536, 0).decode("utf-8", "replace").strip()
        if not text:
            return
        try:
            old = json.loads(text)
        except ValueError:
            old = None
        if not isinstance(old, dict) or not isinstance(old.get("pid"), int):
            self.stale_note = f"took over an unreadable lock file {self.path}"
            return
        if old.get("host") != socket.gethostname():
            # The flock is free here, but a holder on another machine sharing this
            # folder may not show in it; its pid cannot be checked from here.
            raise FolderLocked(f"{self.folder} is locked by {describe_holder(old)}, another host; if nothing runs "
                               f"there any more, delete {self.path}")
        if pid_alive(old["pid"], old.get("start_ticks")) and old["pid"] != os.getpid():
            # Alive but not holding the flock: only possible if the file was
            # rewritten by hand. Refuse rather than share the folder.
            raise FolderLocked(f"{self.folder} is in use by another process ({describe_holder(old)})")
        self.stale_note = (f"took over the stale lock of {describe_holder(old)}: that process is gone")

    def _write_info(self, fd: int) -> None:
        info = {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _proc_start_ticks(os.getpid()),
                "started": time.strftime("%Y-%m-%d %H:%M:%S"), "purpose": self.purpose,
                "command": " ".join(sys.argv)[:300]}
        data = json.dumps(info).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
        except OSError as exc:
            # A full disk: the flock alone is the lock; only the holder's
            # description is missing from refusals.
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise

    def release(self) -> None:
        if self.fd is None:
            return
        # Unlink while still holding the flock, then close (which drops it): a
        # competitor that opened the old file sees it is no longer the path's.
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "FolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
