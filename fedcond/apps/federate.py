"""``fedcond federate``: the ServerApp and ClientApp in Flower's Simulation Engine."""

from __future__ import annotations

import json
import logging
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedcond.config import Config
from fedcond.errors import FedcondError
from fedcond.report import RESULTS_FILE

if TYPE_CHECKING:
    from flwr.clientapp import ClientApp


def simulate(config: Config, out: Path, *, client_app: ClientApp | None = None, verbose: bool = False) -> dict[str, Any]:
    """Run the federation with ``federated.num_clients`` simulated SuperNodes; return the results.

    ``client_app`` replaces fedcond's ClientApp (tests and attack simulations wrap it). Flower's
    simulation engine logs and swallows a ServerApp crash, so success is read from ``results.json``.
    """
    from flwr.simulation import run_simulation

    from fedcond.federated.client_app import app as fedcond_client_app
    from fedcond.federated.server_app import make_server_app

    f = config.federated
    if not verbose:  # Flower logs every round and the whole train config; the CLI prints a summary
        logging.getLogger("flwr").setLevel(logging.WARNING)
        warnings.filterwarnings("ignore", category=FutureWarning, module="ray")
    path = out / RESULTS_FILE
    run_id = uuid.uuid4().hex  # tells this run's results.json from an earlier one (never deleted)
    run_simulation(
        server_app=make_server_app(config, out, run_id=run_id),
        client_app=client_app or fedcond_client_app,
        num_supernodes=f.num_clients,
        backend_config={
            "client_resources": {"num_cpus": f.num_cpus, "num_gpus": f.num_gpus},
            "init_args": {"logging_level": "ERROR", "log_to_driver": verbose},
        },
        verbose_logging=verbose,
    )
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        results = {}
    if results.get("run_id") != run_id:
        raise FedcondError("the federation failed before any strategy finished (run with --verbose for Flower's log)")
    if not results.get("complete"):
        done = ", ".join(results.get("strategies", {})) or "none"
        raise FedcondError(f"the federation stopped early; finished strategies ({done}) are in {path}")
    return results
