"""Shared by the fuzz harnesses: run one with atheris (`make fuzz`, or
`python fuzz/fuzz_frames.py fuzz/corpus/frames -max_total_time=60`);
each harness states the exceptions its target documents, and any other
exception is a finding."""

from __future__ import annotations

import os
import sys
from typing import Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def run(target: Callable[[bytes], None]) -> None:
    """Fuzz `target` with atheris (arguments: libFuzzer's)."""
    import atheris

    atheris.instrument_all()  # coverage of everything imported so far
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()
