"""What every server strategy shares in one run: the config, the server's test set, the trainer."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import yaml
from flwr.app import ArrayRecord, ConfigRecord

from fedcond.config import Config, EvaluationConfig
from fedcond.data.base import ImageDataset
from fedcond.evaluation import fit, fresh_network, test_accuracy
from fedcond.federated import wire
from fedcond.seeds import derive_seed
from fedcond.synthetic import SyntheticSet
from strategies.uploads import UploadSpec


@dataclass
class ServerContext:
    """The run's config and test set, and how the server trains and tests the global model.

    Parameters
    ----------
    config
        The experiment config; every train message carries it to the clients.
    test
        The server's test split: the global model is evaluated on it after every round.
    device
        Where the server trains and tests.
    """

    config: Config
    test: ImageDataset
    device: torch.device

    @property
    def spec(self) -> UploadSpec:
        c, f = self.config.condense, self.config.federated
        max_per_class = f.max_per_class if f.max_per_class is not None else c.ipc * c.factor**2
        return UploadSpec(self.test.num_classes, tuple(self.test.images.shape[1:]), max_per_class, factor=c.factor)

    def message_config(self, task: str, **extra: object) -> ConfigRecord:
        """The config record of a train message: the task, and the whole experiment config as YAML
        (the server is the one source of truth; clients only add their own data location)."""
        return ConfigRecord({wire.TASK_KEY: task, wire.CONFIG_KEY: yaml.safe_dump(self.config.to_dict()), **extra})

    def initial_arrays(self) -> ArrayRecord:
        """The global model every strategy starts from (the same weights for all)."""
        return ArrayRecord(self.network(None).state_dict())

    def network(self, arrays: ArrayRecord | None) -> torch.nn.Module:
        """The global model architecture, with ``arrays`` loaded (fresh under the seed when None)."""
        net = fresh_network(
            self.config.evaluation.model, self.test.images.shape[1:], self.test.num_classes,
            device=self.device, seed=derive_seed(self.config.seed, "global-model"),
        )  # fmt: skip
        if arrays is not None:
            net.load_state_dict(arrays.to_torch_state_dict())
        return net

    def train_on(
        self, synthetic: SyntheticSet, *, start: ArrayRecord | None, epochs: int, seed: int, steps: int | None = None
    ) -> ArrayRecord:
        """Train the global model on ``synthetic`` (from ``start``, or fresh) with the protocol's SGD and DSA.

        The loss is ``evaluation.loss``: with ``kd`` the model distils the sets' labels (the clients'
        teachers' soft labels, or one-hot rows for hard labels) at :attr:`kd_temperature`.
        ``steps`` trains that many SGD steps at the protocol's lr, without its decay (the server's
        correction after an averaging round), instead of ``epochs`` epochs of the full schedule.
        """
        e = self.config.evaluation
        cfg: EvaluationConfig = dataclasses.replace(e, epochs=epochs)
        net = self.network(start)
        strategy = self.config.condense.dsa_strategy if e.dsa else None
        labels = synthetic.labels
        if e.loss == "kd" and labels.ndim == 1:
            labels = torch.nn.functional.one_hot(labels, self.test.num_classes).float()
        fit(net, synthetic.images, labels, cfg=cfg, dsa_strategy=strategy, device=self.device, seed=seed,
            dsa_mode=self.config.condense.dsa_mode, loss=e.loss, temperature=self.kd_temperature,
            steps=steps, decay=steps is None)  # fmt: skip
        return ArrayRecord({k: v.detach().cpu() for k, v in net.state_dict().items()})

    @property
    def kd_temperature(self) -> float:
        """The KD temperature of server training: ``evaluation.temperature``, else the clients'
        teachers' (``condense.teacher.temperature`` with ``condense.labels: teacher``), else 1.

        The config, not an upload's metadata, says it: the server sent that config to every client.
        """
        e, c = self.config.evaluation, self.config.condense
        if e.temperature is not None:
            return float(e.temperature)
        return float(c.teacher.temperature) if c.label_source == "teacher" else 1.0

    def accuracy(self, arrays: ArrayRecord) -> float:
        """Test accuracy (percent) of the global model ``arrays`` on the server's test set."""
        e = self.config.evaluation
        return test_accuracy(self.network(arrays), self.test, self.device, precision=e.precision, compiled=e.compile)
