"""`flwr run` end to end: the app on a real Deployment Engine and on Flower's local simulation SuperLink.

Both tests start real Flower processes on 127.0.0.1 (free ports, ``FLWR_HOME`` under ``tmp_path``),
run the tiny federation below and read ``results.json``: ``flwr run`` exits 0 even when the
ServerApp fails, so the exit code proves nothing. The run config passes absolute paths, because
the ServerApp runs in the SuperLink's working directory, not in the one ``flwr run`` starts in.
Every process started here (and every process they started) is stopped at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: flower-superlink & co. live beside python
EXECUTABLES = ("flwr", "flower-superlink", "flower-supernode", "flower-superexec")

#: Two iid clients, one round of each strategy, 5 condensation iterations: `flwr run` takes ~40 s here.
TINY = (
    "federated.num_clients=2 federated.strategies=fedcondense,fedavg federated.rounds=1 "
    "condense.iterations=5 condense.pool_networks=0 federated.server_epochs=5 condense.ipc=2 "
    "federated.partitioner=iid"
)
STARTUP_TIMEOUT = 60.0
RUN_TIMEOUT = 300.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


class _Processes:
    """Processes started in their own sessions, logged to files, stopped with all their descendants."""

    def __init__(self, logs: Path, env: dict[str, str], cwd: Path) -> None:
        self.logs, self.env, self.cwd = logs, env, cwd
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.adopted: list[int] = []
        logs.mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with open(self.logs / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=self.env, cwd=self.cwd, start_new_session=True,
            )  # fmt: skip
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def adopt(self, pid: int) -> None:
        """Stop ``pid`` too (a process one of ours started detached, e.g. the local SuperLink)."""
        self.adopted.append(pid)

    def stop(self) -> None:
        roots = [p.pid for p in self.procs.values() if p.poll() is None] + self.adopted
        family: list[psutil.Process] = []
        for pid in roots:
            try:
                root = psutil.Process(pid)
                family += [root, *root.children(recursive=True)]  # before they get re-parented
            except psutil.Error:
                pass
        self._signal(family, signal.SIGTERM)
        _, alive = psutil.wait_procs(family, timeout=10)
        self._signal(alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=5)
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=5)
        self.adopted.clear()

    @staticmethod
    def _signal(procs: list[psutil.Process], sig: signal.Signals) -> None:
        own_group = os.getpgrp()
        for p in procs:
            try:
                pgid = os.getpgid(p.pid)
                if pgid != own_group:
                    os.killpg(pgid, sig)
                p.send_signal(sig)
            except (ProcessLookupError, PermissionError, psutil.Error):
                pass


@contextlib.contextmanager
def _flower(tmp_path: Path) -> Iterator[_Processes]:
    """Processes for one test; on failure their logs are printed (after they are stopped)."""
    missing = [name for name in EXECUTABLES if not (BIN / name).exists()]
    if missing:
        pytest.skip(f"Flower executables not installed beside {sys.executable}: {', '.join(missing)}")
    home = tmp_path / "flwr-home"
    home.mkdir()
    env = {
        **os.environ,
        # Not activated in CI (`.venv/bin/python -m pytest`): Flower starts flower-superexec,
        # flwr-serverapp, flwr-clientapp and flwr-simulation by name from PATH.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLWR_HOME": str(home),
        "FLWR_TELEMETRY_ENABLED": "0",
        "FLWR_DISABLE_UPDATE_CHECK": "1",
        # The app's dependencies are installed here; don't let Flower `uv sync` them (torch!) per run.
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "PYTHONUNBUFFERED": "1",
    }
    procs = _Processes(tmp_path / "logs", env, cwd=tmp_path)
    try:
        yield procs
    except BaseException:
        procs.stop()
        _dump_logs([*sorted(procs.logs.glob("*.log")), home / "local-superlink" / "superlink.log"])
        raise
    finally:
        procs.stop()


def _dump_logs(paths: list[Path]) -> None:
    for path in paths:
        if path.exists():
            lines = path.read_text(errors="replace").splitlines()
            print(f"\n===== {path.name} (last 200 of {len(lines)} lines) =====")
            print("\n".join(lines[-200:]))


def _wait_for(
    what: str, ready: Callable[[], bool], procs: list[subprocess.Popen[bytes]], timeout: float = STARTUP_TIMEOUT
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        for proc in procs:
            if proc.poll() is not None:
                pytest.fail(f"{what}: {proc.args[0]} exited with code {proc.returncode} while starting")
        time.sleep(0.25)
    pytest.fail(f"{what} not ready after {timeout:.0f} s")


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as res:
            return res.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _flwr_run(procs: _Processes, connection: str, out: Path, *extra: str) -> None:
    run_config = (
        f"config={_toml_str(str(REPO / 'configs' / 'federated-digits.yaml'))} "
        f"out={_toml_str(str(out))} overrides={_toml_str(TINY)}"
    )
    args = [str(BIN / "flwr"), "run", str(REPO), connection, "--stream", "--run-config", run_config, *extra]
    run = procs.start("flwr-run", args)
    try:
        run.wait(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`flwr run` did not finish within {RUN_TIMEOUT:.0f} s")
    assert run.returncode == 0, f"`flwr run` exited with {run.returncode}"


def _check_results(out: Path) -> dict[str, Any]:
    path = out / "results.json"
    assert path.exists(), "the ServerApp wrote no results.json (see the flwr-run log)"
    results = json.loads(path.read_text())
    assert results["complete"] is True
    strategies = results["strategies"]
    assert set(strategies) == {"fedcondense", "fedavg"}
    for name, entry in strategies.items():
        accuracy = entry["final_accuracy"]
        assert isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool), (name, accuracy)
        assert accuracy > 0, (name, accuracy)
        assert entry["failed_clients"] == [], (name, entry["failed_clients"])
    fedcondense = strategies["fedcondense"]
    assert fedcondense["total_upload_bytes"] > 0
    # Both SuperNodes answered, each with its own partition (node config / simulated node ids).
    clients = fedcondense["condense_rounds"]["1"]["clients"]
    assert sorted(c["partition-id"] for c in clients) == [0, 1]
    assert (out / "accuracy_vs_upload.png").exists()
    return results


def test_deployment_engine_runs_the_app(tmp_path: Path) -> None:
    with _flower(tmp_path) as flower:
        _deployment(flower, tmp_path)


def _deployment(flower: _Processes, tmp_path: Path) -> None:
    link_port = _free_port()
    superlink = flower.start(
        "superlink",
        [str(BIN / "flower-superlink"), "--insecure", "--host", "127.0.0.1", "--port", str(link_port),
         "--disable-runtime-dependency-installation"],
    )  # fmt: skip
    _wait_for("SuperLink", lambda: _healthy(link_port), [superlink])
    nodes = []
    for partition in (0, 1):
        nodes.append(flower.start(
            f"supernode-{partition}",
            [str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link_port}",
             "--host", "127.0.0.1", "--port", str(_free_port()),
             "--node-config", f"partition-id={partition} num-partitions=2"],
        ))  # fmt: skip
    # FedCondense sends to the nodes connected when its round starts: wait for both.
    _wait_for(
        "SuperNodes",
        lambda: all("SuperNode ID:" in flower.log(f"supernode-{p}") for p in (0, 1)),
        [superlink, *nodes],
    )
    (Path(flower.env["FLWR_HOME"]) / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n'
        '[superlink.local]\naddress = ":local:"\n\n'
        f'[superlink.fedcond-test]\naddress = "127.0.0.1:{link_port}"\ninsecure = true\n'
    )
    out = tmp_path / "out"
    _flwr_run(flower, "fedcond-test", out)
    _check_results(out)


def test_flwr_run_local_simulation(tmp_path: Path) -> None:
    with _flower(tmp_path) as flower:
        _local_simulation(flower, tmp_path)


def _local_simulation(flower: _Processes, tmp_path: Path) -> None:
    # `flwr run . local` starts a detached SuperLink (simulation runtime) on these ports and leaves
    # it running; `_flower` stops it too (found by its FLWR_HOME-specific --log-file argument).
    flower.env["FLWR_LOCAL_SUPERLINK_HTTP_API_PORT"] = str(_free_port())
    flower.env["FLWR_LOCAL_CONTROL_API_PORT"] = str(_free_port())
    out = tmp_path / "out"
    try:
        _flwr_run(flower, "local", out,
                  "--federation-config", "num-supernodes=2 client-resources-num-cpus=1")  # fmt: skip
    finally:
        marker = str(Path(flower.env["FLWR_HOME"]) / "local-superlink")
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if any("flower-superlink" in arg for arg in cmdline) and any(marker in arg for arg in cmdline):
                flower.adopt(proc.pid)
    assert "Starting local SuperLink" in flower.log("flwr-run")
    assert flower.adopted, "no local SuperLink process found"
    _check_results(out)
