"""actstudy: activation-function studies on recurrent networks.

The command is `actstudy` (actstudy/cli.py). From Python, `actstudy.load_run(dir)` and
`actstudy.load_runs(dirs)` read finished runs (actstudy/api.py); they are imported on first use, so that
`import actstudy` stays light (no torch, no pandas).
"""

from actstudy.runtime import quiet_waiting

quiet_waiting()  # before anything imports torch, which reads the OpenMP settings once

__all__ = ["Run", "RunLoadError", "load_run", "load_runs"]


def __getattr__(name: str):
    if name in __all__:
        from actstudy import api

        return getattr(api, name)
    raise AttributeError(f"module 'actstudy' has no attribute {name!r}")
