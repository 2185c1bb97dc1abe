"""Threads and OpenMP waiting chosen for machines shared with other jobs.

Two things made a run fall off a cliff beside busy cores (4 min 28 s instead of 13.7 s with the old
default of one thread per core while another job kept both cores busy):

- every core's worth of threads: a recurrent step is a chain of small matmuls and pointwise passes, each
  a parallel region whose threads meet at a barrier; when one of them is descheduled by another process,
  the others wait for it every step. On an idle machine two threads gained only ~12% over one here;
- OpenMP threads that spin while they wait (libgomp spins for a while before sleeping): beside busy
  cores the spinning takes the very CPU time the late thread needs.

So a run takes one thread unless told otherwise (`threads=N`, or OMP_NUM_THREADS as a batch scheduler sets
it), and idle OpenMP threads sleep at once (OMP_WAIT_POLICY=PASSIVE) for whoever asks for more.
benchmarks/shared_cpu.py measures the effect.
"""

from __future__ import annotations

import os

# What quiet_waiting sets unless the user already has: libgomp's and Intel OpenMP's forms of "sleep, don't spin".
WAIT_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def quiet_waiting() -> None:
    """Make idle OpenMP threads sleep instead of spinning; a setting the user made wins.

    OpenMP reads these once, when torch loads it, so this must run before torch is imported
    (actstudy/__init__.py calls it); child processes such as sweep workers inherit them.
    """
    for key, value in WAIT_SETTINGS.items():
        os.environ.setdefault(key, value)


def default_threads() -> int:
    """torch threads for a run that does not set `threads`: OMP_NUM_THREADS when set, else 1 (module docstring)."""
    try:
        requested = int(os.environ.get("OMP_NUM_THREADS", ""))
    except ValueError:
        return 1
    return requested if requested >= 1 else 1
