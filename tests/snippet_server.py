"""Run documentation snippets, each in its own process, without paying torch's import for each one.

One process imports the heavy libraries every snippet needs (torch, numpy, scikit-learn,
matplotlib, fedcond's engine) once, then forks a child per snippet: the child is a separate
process (its own memory, registries and working directory; its own process group, so Ray's
workers die with it) that starts with those modules loaded. ``tests/test_docs.py`` drives it::

    python tests/snippet_server.py ROOT WORKERS < jobs.json > results.json

``jobs.json`` is a list of ``{"id", "folder", "timeout"}``; each folder holds ``snippet.py``, and
the child writes ``output.txt`` there. The result maps each id to its exit status (null: timed
out) and seconds. Flower and Avalanche are not preloaded: they start threads at import, and a
process with threads must not fork.
"""

from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import threading
import time
import traceback
from typing import Any


def main() -> int:
    root, workers = sys.argv[1], int(sys.argv[2])
    jobs: list[dict[str, Any]] = json.load(sys.stdin)
    sys.path.insert(0, root)
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib  # noqa: F401
    import numpy  # noqa: F401
    import sklearn.datasets  # noqa: F401
    import torch  # noqa: F401
    import torch.optim  # noqa: F401  (pulls in torch._dynamo: seconds on its own)
    import yaml  # noqa: F401

    import fedcond  # noqa: F401
    import fedcond.config

    fedcond.config.config_sections()  # the layers' sections are light: import them once too
    if threading.active_count() != 1:  # forking a process with threads can deadlock the child
        raise RuntimeError(f"cannot fork snippets: {threading.active_count()} threads after the imports")
    results: dict[str, dict[str, Any]] = {}
    pending, running = list(jobs), {}
    while pending or running:
        while pending and len(running) < workers:
            job = pending.pop(0)
            pid = os.fork()
            if pid == 0:
                _run_child(job)  # never returns
            running[pid] = (job, time.monotonic())
        for pid, (job, started) in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            elapsed = time.monotonic() - started
            if not done and elapsed <= job["timeout"]:
                continue
            if not done:
                _kill_group(pid)
                os.waitpid(pid, 0)
            _kill_group(pid)  # whatever the snippet left running in its group (Ray's processes)
            code = os.waitstatus_to_exitcode(status) if done else None
            results[job["id"]] = {"returncode": code, "seconds": round(elapsed, 2)}
            del running[pid]
        time.sleep(0.05)
    json.dump(results, sys.stdout)
    return 0


def _run_child(job: dict[str, Any]) -> None:
    code = 1
    try:
        os.setsid()
        os.chdir(job["folder"])
        output = os.open("output.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        sys.argv = ["snippet.py"]
        try:
            runpy.run_path("snippet.py", run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        import atexit

        atexit._run_exitfuncs()  # what the interpreter would run at exit (Ray's shutdown, ...)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


if __name__ == "__main__":
    sys.exit(main())
