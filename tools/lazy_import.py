"""torch (and other heavy modules), imported on first use.

The tools import `torch` from here so that `--help` and their pure-Python parts work on a machine
without torch: the module is imported the first time one of its attributes is read, and a missing
torch is then one clear error naming the tool and what to install.
"""
from __future__ import annotations

import importlib
import os
import sys


class LazyModule:
    """Stands for a module until an attribute is read, then imports it and forwards to it."""

    def __init__(self, name: str, install_hint: str):
        self._name = name
        self._hint = install_hint
        self._module = None

    def _load(self):
        if self._module is None:
            try:
                self._module = importlib.import_module(self._name)
            except ImportError as e:
                tool = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "this tool"
                raise SystemExit(f"{tool}: error: needs the Python module {self._name!r} ({self._hint}): {e}")
        return self._module

    def __getattr__(self, attr):
        return getattr(self._load(), attr)


torch = LazyModule("torch", "Debian: apt install python3-torch; else pip install torch")


if __name__ == "__main__":
    # A helper module, not a command: --help (or anything) prints what it is.
    print(__doc__)
