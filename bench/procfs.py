"""What bench/run.py reads from /proc: CPU and memory of a process tree,
load average, file-descriptor limit; and loopback port helpers."""

from __future__ import annotations

import os
import resource
import socket
import time
from typing import Callable, Dict, List, Optional

CLK_TCK = os.sysconf('SC_CLK_TCK')


def _stat_fields(pid: int) -> Optional[List[str]]:
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(pid: int) -> List[int]:
    """`pid` and all its live descendants."""
    children: Dict[int, List[int]] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        todo.extend(children.get(p, []))
    return found


def cpu_split(pids: List[int]) -> tuple:
    """(user, system) seconds: utime/stime (all threads, live or ended)
    plus cutime/cstime (reaped children) of every process in `pids`."""
    user = system = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:  # fields[11:15] = utime stime cutime cstime
            user += int(fields[11]) + int(fields[13])
            system += int(fields[12]) + int(fields[14])
    return user / CLK_TCK, system / CLK_TCK


def cpu_seconds(pids: List[int]) -> float:
    return sum(cpu_split(pids))


def memory_kib(pids: List[int]) -> Dict[str, int]:
    """Sum of Pss and Rss over `pids` (Pss splits pages shared between
    processes, e.g. Apache's children, fairly)."""
    pss = rss = 0
    for pid in pids:
        try:
            with open('/proc/%d/smaps_rollup' % pid) as f:
                for line in f:
                    if line.startswith('Pss:'):
                        pss += int(line.split()[1])
                    elif line.startswith('Rss:'):
                        rss += int(line.split()[1])
        except OSError:
            pass
    return {'pss_kib': pss, 'rss_kib': rss}


def open_fds(pids: List[int]) -> int:
    """File descriptors open in `pids`, summed."""
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir('/proc/%d/fd' % pid))
        except OSError:
            pass
    return total


def _alive(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != 'Z'


def settle(
    pids: Callable[[], List[int]],
    limit: float,
    busy: float = 0.05,
    window: float = 0.5,
) -> float:
    """Wait (at most `limit` s) until the processes use under `busy` of a
    core over `window` seconds: a fresh server has finished starting
    (imports, Apache children initialising) before it is measured."""
    start = time.monotonic()
    before = cpu_seconds(pids())
    while time.monotonic() - start < limit:
        time.sleep(window)
        now = cpu_seconds(pids())
        if now - before < busy * window:
            break
        before = now
    return time.monotonic() - start


def loadavg() -> float:
    """The 1-minute load average (other work on the machine skews
    everything measured here)."""
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(('127.0.0.1', port), timeout=1):
            return True
    except OSError:
        return False


def raise_nofile_limit(wanted: int = 65536) -> int:
    """Raise RLIMIT_NOFILE for this process and its children (servers and
    client inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
