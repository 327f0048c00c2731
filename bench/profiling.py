"""--profile: py-spy sampling a server process during the load, and a
summary of where its CPU went."""

from __future__ import annotations

import signal
import subprocess
from typing import Dict


class Profiler:
    """py-spy sampling a server process between two marks (on-CPU samples
    only, all threads); the collapsed stacks go to `path`."""

    def __init__(self, pyspy: str, pid: int, path: str) -> None:
        self.path = path
        self.proc = subprocess.Popen(
            [
                pyspy,
                'record',
                '--pid',
                str(pid),
                '--rate',
                '250',
                '--nonblocking',
                '--format',
                'raw',
                '--output',
                path,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes, exits
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def _function(frame: str) -> str:
    """'name (path/file.py:123)' -> 'name (path/file.py)'."""
    head, sep, tail = frame.rpartition(':')
    if sep and tail.rstrip(')').isdigit():
        return head + ')'
    return frame


def summarize_profile(path: str, top: int = 12) -> str:
    """Self and inclusive time per function from py-spy's collapsed stacks
    ("frame;frame;... count" lines)."""
    self_time: Dict[str, int] = {}
    inclusive: Dict[str, int] = {}
    total = 0
    try:
        with open(path) as f:
            for line in f:
                stack, _, count = line.rstrip().rpartition(' ')
                if not stack or not count.isdigit():
                    continue
                n = int(count)
                frames = [
                    _function(fr)
                    for fr in stack.split(';')
                    if not fr.startswith('process ')
                    and not fr.startswith('thread ')
                ]
                if not frames:
                    continue
                total += n
                self_time[frames[-1]] = self_time.get(frames[-1], 0) + n
                for frame in set(frames):
                    inclusive[frame] = inclusive.get(frame, 0) + n
    except OSError:
        return '(no profile)'
    if not total:
        return '(no samples)'
    lines = ['%d on-CPU samples' % total, '', 'self time:']
    for frame, n in sorted(self_time.items(), key=lambda x: -x[1])[:top]:
        lines.append('  %5.1f%%  %s' % (100 * n / total, frame))
    lines += ['', 'inclusive time (mod_pywebsocket frames):']
    ours = [
        (f, n)
        for f, n in inclusive.items()
        if 'mod_pywebsocket/' in f
        or 'pywebsocket3/' in f
        or 'websockets/' in f
    ]
    for frame, n in sorted(ours, key=lambda x: -x[1])[:top]:
        lines.append('  %5.1f%%  %s' % (100 * n / total, frame))
    return '\n'.join(lines)
