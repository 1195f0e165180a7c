"""The Flower ServerApp: run every configured strategy on the same clients, record what each cost and bought.

Strategies run one after another in one Flower run, each from the same initial global model, each
through a :class:`~fedcond.federated.metering.MeteredGrid` that counts the bytes of every message
and records the clients that failed. After each strategy ``DIR/results.json`` is rewritten
atomically (a crash later loses nothing measured), and at the end an accuracy-vs-upload-bytes PNG
is drawn. The global model is evaluated by the server on the dataset's test split after every round.
"""

from __future__ import annotations

import logging
import shlex
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.common.logger import log
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Result

from fedcond.config import Config
from fedcond.data import load_dataset
from fedcond.device import resolve_device
from fedcond.federated.metering import MeteredGrid
from fedcond.federated.plot import plot_accuracy_vs_upload
from fedcond.report import peak_memory_mb, write_results
from strategies import STRATEGIES
from strategies.context import ServerContext
from strategies.uploads import UploadLog

RESULTS_COMMAND = "federate"
PLOT_FILE = "accuracy_vs_upload.png"


def run_federation(grid: Grid, config: Config, out: Path, *, run_id: str | None = None) -> dict[str, Any]:
    """Run ``config.federated.strategies`` through ``grid``; write and return the results.

    ``run_id`` (a fresh one when None) is recorded so a caller can tell this run's results from
    an earlier run's in the same folder, which are only replaced once a strategy has finished.
    """
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    context = ServerContext(config, load_dataset(config.dataset).test, device)
    f = config.federated
    results: dict[str, Any] = {
        "run_id": run_id or uuid.uuid4().hex,
        "dataset": config.dataset.name,
        "num_clients": f.num_clients,
        "partitioner": {"name": f.partitioner, "alpha": f.alpha, "classes_per_client": f.classes_per_client},
        "ipc": config.condense.ipc,
        "device": str(device),
        "complete": False,
        "strategies": {},
        "config": config.to_dict(),
    }
    for name in f.strategies:
        plan = STRATEGIES.get(name)(context)
        print(f"[fedcond] {name}: {f.num_clients} clients ...", file=sys.stderr, flush=True)
        metered = MeteredGrid(grid, f.max_in_flight)
        accuracies: dict[int, float] = {}

        def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
            if server_round == 0:
                return None  # the shared random initialisation: not worth a test pass
            accuracies[server_round] = round(context.accuracy(arrays), 4)
            if plan.num_rounds > 1:  # progress of long runs, one line per round
                print(f"[fedcond] {name}: round {server_round}/{plan.num_rounds}, accuracy {accuracies[server_round]:.2f}%, "
                      f"{time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
            return MetricRecord({"accuracy": accuracies[server_round]})

        started = time.perf_counter()
        result = plan.strategy.start(
            grid=metered,
            initial_arrays=context.initial_arrays(),
            num_rounds=plan.num_rounds,
            timeout=f.timeout,
            train_config=plan.train_config,
            evaluate_fn=evaluate,
        )
        results["strategies"][name] = _strategy_results(plan.num_rounds, accuracies, metered, plan.uploads, result)
        results["strategies"][name]["seconds"] = round(time.perf_counter() - started, 3)
        results["peak_memory_mb"] = peak_memory_mb(device)
        write_results(out, RESULTS_COMMAND, results)
        done = results["strategies"][name]
        accuracy = "n/a" if done["final_accuracy"] is None else f"{done['final_accuracy']:.2f}%"
        print(f"[fedcond] {name}: {plan.num_rounds} round(s), accuracy {accuracy}, "
              f"upload {done['total_upload_bytes'] / 2**20:.2f} MiB, {done['seconds']:.0f} s", file=sys.stderr, flush=True)
    results["complete"] = True
    write_results(out, RESULTS_COMMAND, results)
    plot_accuracy_vs_upload(results, out / PLOT_FILE)
    return results


def _strategy_results(
    num_rounds: int, accuracies: dict[int, float], metered: MeteredGrid, uploads: UploadLog | None, result: Result
) -> dict[str, Any]:
    rounds = []
    for r in range(1, num_rounds + 1):
        traffic = metered.traffic(r)
        rounds.append({
            "round": r,
            "accuracy": accuracies.get(r),
            "upload_bytes": traffic.upload_bytes,
            "download_bytes": traffic.download_bytes,
            "failed_clients": len(traffic.failed),
        })  # fmt: skip
    failed = [{"round": r, **item} for r, t in sorted(metered.rounds.items()) for item in t.failed]
    client_metrics = {str(r): dict(m) for r, m in result.train_metrics_clientapp.items()}
    return {
        "rounds": rounds,
        "final_accuracy": accuracies.get(num_rounds),
        "total_upload_bytes": sum(t.upload_bytes for t in metered.rounds.values()),
        "total_download_bytes": sum(t.download_bytes for t in metered.rounds.values()),
        "rejected_clients": list(uploads.rejected) if uploads is not None else [],
        "failed_clients": failed,
        "train_metrics": client_metrics,
        "condense_rounds": {str(r): info for r, info in uploads.rounds.items()} if uploads is not None else {},
    }


def make_server_app(config: Config, out: Path, *, run_id: str | None = None) -> ServerApp:
    """A ServerApp bound to an already loaded config (``fedcond federate`` uses this one)."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        run_federation(grid, config, out, run_id=run_id)

    return server_app


#: The project root, or the installed app package (FAB) under ``flwr run``: both ship ``configs/``.
APP_DIR = Path(__file__).resolve().parents[2]


def resolve_config_path(value: str) -> Path:
    """``value`` as given when it exists (or is absolute), else relative to the app's own folder.

    Under ``flwr run`` the ServerApp runs in the SuperLink's working directory, not where
    ``flwr run`` was typed, so a relative path falls back to the configs the app package carries.
    """
    path = Path(value).expanduser()
    if path.is_absolute() or path.exists():
        return path
    bundled = APP_DIR / path
    return bundled if bundled.exists() else path


def config_from_run_config(run_config: dict[str, Any]) -> tuple[Config, Path]:
    """The experiment config and output folder named in ``[tool.flwr.app.config]`` (``flwr run``)."""
    overrides = shlex.split(str(run_config.get("overrides", "")))
    config = Config.load(resolve_config_path(str(run_config.get("config", "configs/federated-digits.yaml"))), overrides)
    return config, Path(str(run_config.get("out", "runs/federate-flwr"))).expanduser()


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """``flwr run``: the config path, overrides and output folder come from the run config."""
    config, out = config_from_run_config(dict(context.run_config))
    log(logging.INFO, "fedcond: results go to %s", out.resolve())
    run_federation(grid, config, out)
