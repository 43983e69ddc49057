"""Subprocesses under time limits for the verdicts harness: every command runs with a timeout
capped by one overall deadline, its output to a log file; nothing can hang the harness.
Pure Python."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time


class Deadline:
    """Wall-clock budget of one harness run."""

    def __init__(self, seconds):
        self.t0 = time.time()
        self.end = self.t0 + seconds

    def left(self):
        return self.end - time.time()

    def elapsed(self):
        return time.time() - self.t0

    def cap(self, limit):
        """min(limit, time left minus a small reserve for writing the tables)."""
        return max(0.0, min(limit, self.left() - 5.0))


def log(msg, t0=None):
    stamp = f"[{time.time() - t0:7.1f}s] " if t0 is not None else ""
    print(stamp + msg, flush=True)


def _kill(p):
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, OSError):
        try:
            p.kill()
        except OSError:
            pass


def run(cmd, log_path, timeout, env=None, cwd=None):
    """Run cmd (list) with stdout+stderr to log_path, killed (with its process group) after
    timeout seconds. Returns (returncode or "timeout"/"skipped", seconds)."""
    t0 = time.time()
    if timeout <= 1:
        with open(log_path, "a") as f:
            f.write(f"SKIPPED (no time left): {' '.join(map(str, cmd))}\n")
        return "skipped", 0.0
    with open(log_path, "a") as f:
        f.write(f"$ {' '.join(map(str, cmd))}\n")
        f.flush()
        p = subprocess.Popen([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(p)
            p.wait()
            f.write(f"\nTIMEOUT after {timeout:.0f} s\n")
            return "timeout", time.time() - t0
    return rc, time.time() - t0


class Background:
    """A long subprocess polled by the harness's main loop (the HF worker, the reference run)."""

    def __init__(self, cmd, log_path, timeout, env=None, cwd=None):
        self.cmd = [str(c) for c in cmd]
        self.t0 = time.time()
        self.timeout = timeout
        self.f = open(log_path, "a")
        self.f.write(f"$ {' '.join(self.cmd)}\n")
        self.f.flush()
        self.p = subprocess.Popen(self.cmd, stdout=self.f, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                  start_new_session=True)
        self.rc = None

    def poll(self):
        """Return code when finished ("timeout" if killed), else None."""
        if self.rc is not None:
            return self.rc
        rc = self.p.poll()
        if rc is None and time.time() - self.t0 > self.timeout:
            _kill(self.p)
            self.p.wait()
            self.f.write(f"\nTIMEOUT after {self.timeout:.0f} s\n")
            rc = "timeout"
        if rc is not None:
            self.rc = rc
            self.f.close()
        return self.rc

    def kill(self):
        if self.rc is None:
            _kill(self.p)
            self.p.wait()
            self.rc = "killed"
            self.f.close()

    def seconds(self):
        return time.time() - self.t0


def python():
    return sys.executable or "python3"
