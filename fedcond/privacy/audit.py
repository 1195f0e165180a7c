"""Membership inference against a released synthetic set: what does it leak about its source?

Members are the owner's real training samples (the training split the set was condensed from),
non-members held-out samples of the same distribution (the test split), equally many of each. Three
attacks score every sample, higher meaning "member":

* ``loss-threshold``: minus the loss of a model trained on the synthetic set (the evaluation protocol);
* ``nearest-synthetic-neighbour``: minus the distance to the closest synthetic image (pixel space);
* ``loss-threshold-real-data-model``: the loss attack on a model trained on the members themselves,
  the reference for what a model of the real data would leak.

Each is summarised by its ROC AUC and its TPR at 1 % and 0.1 % FPR (scikit-learn's ROC curve; with
fewer than 1000 non-members the 0.1 % point is the TPR at zero false positives).
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fedcond.config import Config
from fedcond.data.base import DatasetSplits, ImageDataset
from fedcond.device import chunk_size
from fedcond.errors import DataError
from fedcond.evaluation import test_accuracy, train_network
from fedcond.seeds import derive_seed
from fedcond.synthetic import SyntheticSet

FPR_POINTS = {"tpr_at_1pct_fpr": 0.01, "tpr_at_0.1pct_fpr": 0.001}


def roc_summary(member_scores: np.ndarray, nonmember_scores: np.ndarray) -> dict[str, float]:
    """AUC and TPR at low FPR of scores that should be higher for members."""
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = np.concatenate([np.ones(len(member_scores)), np.zeros(len(nonmember_scores))])
    scores = np.concatenate([member_scores, nonmember_scores]).astype(np.float64)
    fpr, tpr, _ = roc_curve(truth, scores)
    summary = {"auc": round(float(roc_auc_score(truth, scores)), 4)}
    for key, limit in FPR_POINTS.items():
        summary[key] = round(float(tpr[fpr <= limit].max(initial=0.0)), 4)
    return summary


@torch.inference_mode()
def per_sample_loss(net: nn.Module, data: ImageDataset, device: torch.device) -> np.ndarray:
    """Cross-entropy of every sample under ``net``."""
    net.eval()
    losses = []
    size = chunk_size(device)
    for x, y in zip(data.images.split(size), data.labels.split(size)):
        losses.append(F.cross_entropy(net(x.to(device)).float(), y.to(device), reduction="none").cpu())
    return torch.cat(losses).numpy()


@torch.inference_mode()
def nearest_distance(data: ImageDataset, synthetic: SyntheticSet, device: torch.device) -> np.ndarray:
    """L2 distance (pixels, normalised space) from every sample to its nearest synthetic image."""
    reference = synthetic.images.to(device).flatten(1)
    size = chunk_size(device)
    return torch.cat(
        [torch.cdist(x.to(device).flatten(1), reference).min(dim=1).values.cpu() for x in data.images.split(size)]
    ).numpy()


def audit_split(splits: DatasetSplits, config: Config) -> tuple[ImageDataset, ImageDataset]:
    """Members (from the training split) and as many non-members (from the test split), drawn with ``config.seed``."""
    train, test = splits.train, splits.test
    count = min(config.privacy.audit_samples, len(train), len(test))
    generator = torch.Generator().manual_seed(derive_seed(config.seed, "audit-split"))
    members = train.subset(torch.randperm(len(train), generator=generator)[:count])
    nonmembers = test.subset(torch.randperm(len(test), generator=generator)[:count])
    return members, nonmembers


def _train(images: torch.Tensor, labels: torch.Tensor, epochs: int, num_classes: int, config: Config, device: torch.device) -> nn.Module:
    """A network of the evaluation protocol trained for ``epochs`` on ``images``."""
    e = config.evaluation
    return train_network(
        images, labels, model=e.model, num_classes=num_classes, cfg=dataclasses.replace(e, epochs=epochs),
        dsa_strategy=config.condense.dsa_strategy if e.dsa else None, device=device,
        seed=derive_seed(config.seed, "audit-model"),
        dsa_mode=config.condense.dsa_mode,
    )  # fmt: skip


def reference_key(config: Config) -> str:
    """Every setting the real-data reference depends on: references are shared only when these agree."""
    d = config.to_dict()
    p = d["privacy"]
    return json.dumps(
        {"seed": d["seed"], "dataset": d["dataset"], "evaluation": d["evaluation"],
         "dsa": [d["condense"]["dsa_strategy"], d["condense"]["dsa_mode"]],
         "audit": [p["audit_samples"], p["audit_reference_epochs"]]},
        sort_keys=True,
    )  # fmt: skip


@dataclass(frozen=True)
class RealDataReference:
    """The loss attack on a model trained on the members themselves; it does not depend on the set audited."""

    key: str
    attack: dict[str, float]
    accuracy: float
    seconds: float


def real_data_reference(splits: DatasetSplits, config: Config, device: torch.device) -> RealDataReference:
    """Train the reference model on the members (``privacy.audit_reference_epochs``) and attack it."""
    started = time.perf_counter()
    members, nonmembers = audit_split(splits, config)
    net = _train(members.images, members.labels, config.privacy.audit_reference_epochs, splits.train.num_classes, config, device)
    attack = roc_summary(-per_sample_loss(net, members, device), -per_sample_loss(net, nonmembers, device))
    accuracy = round(test_accuracy(net, nonmembers, device), 2)
    return RealDataReference(reference_key(config), attack, accuracy, round(time.perf_counter() - started, 1))


def audit(
    synthetic: SyntheticSet,
    splits: DatasetSplits,
    config: Config,
    device: torch.device | str,
    reference: RealDataReference | None = None,
) -> dict[str, Any]:
    """Run the three attacks; the ``results.json`` body of ``fedcond audit``.

    Parameters
    ----------
    synthetic
        The released set.
    splits
        The dataset it was condensed from: members come from its training split, non-members
        from its test split.
    config
        ``privacy.audit_samples`` and ``audit_reference_epochs``; the evaluation protocol trains
        the attacked models.
    device
        Where to train them.
    reference
        A real-data reference computed for the same settings (a benchmark auditing several sets);
        without it the reference model is trained here.
    """
    device = torch.device(device)
    started = time.perf_counter()
    train = splits.train
    if tuple(synthetic.images.shape[1:]) != tuple(train.images.shape[1:]):
        raise DataError(
            f"the synthetic set's images are {tuple(synthetic.images.shape[1:])}, the dataset's {tuple(train.images.shape[1:])}: "
            "audit a set against the dataset it was condensed from"
        )
    if reference is None:
        reference = real_data_reference(splits, config, device)
    elif reference.key != reference_key(config):
        raise ValueError("the real-data reference was computed for other dataset, evaluation or audit settings")
    members, nonmembers = audit_split(splits, config)
    on_synthetic = _train(synthetic.images, synthetic.labels, config.evaluation.epochs, train.num_classes, config, device)
    attacks = {
        "loss-threshold": roc_summary(-per_sample_loss(on_synthetic, members, device), -per_sample_loss(on_synthetic, nonmembers, device)),
        "nearest-synthetic-neighbour": roc_summary(
            -nearest_distance(members, synthetic, device), -nearest_distance(nonmembers, synthetic, device)
        ),
        "loss-threshold-real-data-model": reference.attack,
    }
    privacy = synthetic.metadata.get("privacy") or {}
    return {
        "dataset": config.dataset.name,
        "members": len(members),
        "nonmembers": len(nonmembers),
        "attacks": attacks,
        "privacy": {"epsilon": privacy.get("epsilon"), "delta": privacy.get("delta")},
        "model_accuracy": {
            "synthetic": round(test_accuracy(on_synthetic, nonmembers, device), 2),
            "real": reference.accuracy,
        },
        "synthetic_set": {k: synthetic.metadata.get(k) for k in ("method", "init", "ipc", "discrepancy")} | {"size": len(synthetic)},
        "reference_seconds": reference.seconds,
        "seconds": round(time.perf_counter() - started, 1),
    }
