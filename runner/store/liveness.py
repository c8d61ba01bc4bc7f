"""Which process runs a run, and whether it still does: a run killed with SIGKILL never says it stopped."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunProcess:
    pid: int
    host: str


def this_process() -> RunProcess:
    return RunProcess(os.getpid(), socket.gethostname())


def process_alive(pid: int) -> bool:
    """True while `pid` exists on this machine and has not exited (a zombie waiting to be reaped has)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # no /proc (macOS): signal 0 is all we know
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
