"""Runs the property-based fuzzing of tests/fuzz_properties.py (the YAML loader, the runbook loader and
parameter parsing: about 3,200 examples) in a child pytest held to an address-space limit, so an input that
exhausts memory fails here instead of taking the machine, and to a time limit (each example also has
hypothesis' deadline)."""
from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

MEMORY_LIMIT = 1536 * 1024 * 1024  # the child needs ~250 MB; the billion laughs alone reached 9.7 GB
TIME_LIMIT = 900  # wall time on 2 shared cores; about 25 s of CPU


def _limit() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def test_loader_and_parameter_fuzz_raises_nothing_but_runbook_errors_in_bounded_memory() -> None:
    here = Path(__file__).resolve().parent
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                           str(here / "fuzz_properties.py")], cwd=here.parent, preexec_fn=_limit,
                          capture_output=True, text=True, timeout=TIME_LIMIT, env=dict(os.environ))
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "4 passed" in done.stdout, done.stdout[-2000:]
