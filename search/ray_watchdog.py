"""Kill what a dead search driver's local Ray leaves behind.

A driver that starts Ray locally (``ray.init()`` without an address) owns its
GCS, raylet and workers; Ray makes them die with the driver (prctl
PR_SET_PDEATHSIG). Two children of the raylet do not: the DashboardAgent and
the RuntimeEnvAgent notice the raylet's death, then try to tell the GCS --
dead too -- with a fixed 60 s timeout, and linger ~1-2 minutes after a
SIGKILLed driver (measured by tests/test_reliability.py), holding memory and
the Ray session folder. ``include_dashboard=False`` does not stop them.

``python search/ray_watchdog.py DRIVER_PID`` (started by ``search/run.py``
right after ``ray.init``) records the driver's descendants every half second
from /proc; once the driver is gone it SIGKILLs those still alive -- each
checked by its start time, so a reused pid is never hit -- and exits. After a
normal exit (``ray.shutdown()`` already stopped them) it finds nothing to kill.
Linux only (/proc); elsewhere it exits at once. Stdlib only.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.5


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks) of ``pid``, or None if gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[1]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> dict[int, int]:
    """pid -> start time of every process below ``root`` (children, their children...)."""
    parent: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _stat(int(entry.name))
            if st is not None:
                parent[int(entry.name)] = st
    out: dict[int, int] = {}
    frontier = [root]
    while frontier:
        p = frontier.pop()
        for pid, (ppid, start) in parent.items():
            if ppid == p and pid not in out:
                out[pid] = start
                frontier.append(pid)
    return out


def watch(driver: int) -> int:
    me = os.getpid()
    seen: dict[int, int] = {}
    while _stat(driver) is not None:
        # Keep every process ever seen under the driver: the agents hang under
        # the raylet, which dies first, and are then re-parented out of the tree.
        seen.update(descendants(driver))
        seen.pop(me, None)
        time.sleep(POLL_S)
    killed = 0
    for pid, start in seen.items():
        st = _stat(pid)
        if st is not None and st[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit() or not Path("/proc").is_dir():
        return 0
    # Not ours to be interrupted by the terminal's Ctrl-C: it must outlive the driver.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    watch(int(argv[0]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
