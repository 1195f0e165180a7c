"""Where a synthetic set's labels come from: the class of each image, learned soft labels, or a teacher.

``condense.labels`` names the source. ``hard`` and ``learned`` are made by the condensation method
itself (learned soft labels need a gradient feature map); ``teacher`` relabels the finished set
with a network's softmax at ``condense.teacher.temperature``, optionally averaged over DSA draws of
each image. The teacher is loaded from a file written by :func:`save_teacher`, or trained by
fedcond on the data being condensed, within the stated budget of SGD steps; either way its seconds are
part of the set's ``condense_seconds`` (a federated client's local model labels its own set the
same way).

A teacher file is untrusted input like a synthetic-set file: it is read without unpickling
arbitrary objects, and its architecture, label space, image shape and weights are checked before
the network is used.
"""

from __future__ import annotations

import copy
import io
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from fedcond.augment import dsa
from fedcond.device import autocast, chunk_size, split_pieces
from fedcond.errors import ConfigError
from fedcond.evaluation import fresh_network, test_accuracy
from fedcond.io import atomic_write_bytes
from fedcond.models import batch_independent
from fedcond.seeds import derive_seed
from fedcond.synthetic import SyntheticSet, compact_cpu

if TYPE_CHECKING:
    from fedcond.config import Config
    from fedcond.data.base import ImageDataset

#: What ``condense.labels`` may name.
LABEL_SOURCES = ("hard", "learned", "teacher")
TEACHER_FORMAT = "fedcond.teacher/1"
_TEACHER_KEYS = frozenset({"format", "model", "model_params_json", "num_classes", "image_shape", "state_dict", "info_json"})
#: Largest teacher file read (a ResNet-18 for 3-channel images is about 45 MB).
MAX_TEACHER_BYTES = 2**30


@dataclass
class Teacher:
    """A network that labels synthetic images, and what it cost.

    Parameters
    ----------
    net
        The trained classifier, in eval mode.
    model
        Its architecture (``fedcond.models``).
    num_classes, image_shape
        The label space and the ``(C, H, W)`` images it was built for.
    model_params
        The architecture's options.
    seconds
        Training time on the real data (a loaded teacher: the time to load it).
    steps
        Training steps (0 when loaded from ``weights``).
    weights
        The file it was loaded from, or None when fedcond trained it.
    test_accuracy
        Top-1 accuracy on a test split, in percent, when a caller measured it (:func:`measure_teacher`).
    """

    net: nn.Module
    model: str
    num_classes: int
    image_shape: tuple[int, int, int]
    model_params: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    steps: int = 0
    weights: str | None = None
    test_accuracy: float | None = None

    def info(self) -> dict[str, Any]:
        """The teacher as results and set metadata record it (JSON values only)."""
        return {
            "model": self.model,
            "model_params": copy.deepcopy(self.model_params),
            "steps": self.steps,
            "seconds": round(self.seconds, 3),
            "weights": self.weights,
            "test_accuracy": self.test_accuracy,
        }

    @torch.no_grad()
    def soft_labels(
        self,
        images: torch.Tensor,
        *,
        temperature: float,
        augmentations: int = 0,
        dsa_strategy: str = "",
        dsa_mode: str = "single",
        seed: int = 0,
    ) -> torch.Tensor:
        """``softmax(teacher(x) / temperature)`` of every image ``[M, K]`` float32 on the CPU.

        With ``augmentations > 0`` the softmax is averaged over that many DSA draws of each image
        (seeded from ``seed``), so a label says what the teacher thinks of the image as training
        will see it rather than of the one stored view.
        """
        device = next(self.net.parameters()).device
        self.net.eval()
        out = []
        for index, chunk in enumerate(images.split(chunk_size(device))):
            x = chunk.to(device)
            if augmentations == 0:
                probs = (self.net(x) / temperature).softmax(dim=1)
            else:
                probs = torch.zeros(len(x), self.num_classes, device=device)
                for draw in range(augmentations):
                    generator = torch.Generator().manual_seed(derive_seed(seed, "teacher-labels", index, draw))
                    probs += (self.net(dsa(x, dsa_strategy, generator=generator, mode=dsa_mode)) / temperature).softmax(dim=1)
                probs /= augmentations
            out.append(probs.double())
        labels = torch.cat(out)
        return (labels / labels.sum(dim=1, keepdim=True)).float().cpu()


def train_teacher(data: ImageDataset, config: Config, *, device: torch.device) -> Teacher:
    """Train ``condense.teacher.model`` on ``data`` for ``condense.teacher.steps`` SGD steps.

    Random batches of ``batch_size`` real images (DSA-augmented under the run's strategy when
    ``condense.teacher.dsa``), SGD with momentum 0.9 and weight decay 5e-4 at ``lr``, x0.1 after
    half the steps; the network and its batches are drawn from ``(seed, "teacher")``.
    """
    t = config.condense.teacher
    started = time.perf_counter()
    seed = derive_seed(config.seed, "teacher")
    net = fresh_network(t.model, data.images.shape[1:], data.num_classes, device=device, seed=seed, **t.model_params)
    images, labels = data.images.to(device), data.labels.to(device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=t.lr, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[t.steps // 2], gamma=0.1)
    strategy = config.condense.dsa_strategy if t.dsa else None
    piece = chunk_size(device) if batch_independent(net) else t.batch_size
    net.train()
    for _ in range(t.steps):
        batch = torch.randint(len(images), (min(t.batch_size, len(images)),), generator=generator).to(device)
        x, y = images[batch], labels[batch]
        if strategy is not None:
            x = dsa(x, strategy, generator=generator, mode=config.condense.dsa_mode)
        optimizer.zero_grad(set_to_none=True)
        for xp, yp in zip(*split_pieces(x, y, piece, equal=False)):
            with autocast(device, config.evaluation.precision):
                loss = F.cross_entropy(net(xp), yp, reduction="sum") / len(x)
            loss.backward()
        optimizer.step()
        scheduler.step()
    shape = _shape(data.images.shape[1:])
    return Teacher(net.eval(), t.model, data.num_classes, shape, dict(t.model_params), time.perf_counter() - started, t.steps)


def measure_teacher(teacher: Teacher, test: ImageDataset, config: Config) -> float:
    """The teacher's top-1 test accuracy in percent; also stored as ``teacher.test_accuracy``."""
    device = next(teacher.net.parameters()).device
    teacher.test_accuracy = round(test_accuracy(teacher.net, test, device, precision=config.evaluation.precision), 4)
    return teacher.test_accuracy


def save_teacher(teacher: Teacher, path: str | Path) -> None:
    """Write ``teacher`` to ``path`` (its architecture, shapes, weights and info), atomically."""
    content = {
        "format": TEACHER_FORMAT,
        "model": teacher.model,
        "model_params_json": json.dumps(teacher.model_params),
        "num_classes": teacher.num_classes,
        "image_shape": list(teacher.image_shape),
        "state_dict": {name: compact_cpu(value) for name, value in teacher.net.state_dict().items()},
        "info_json": json.dumps(teacher.info(), allow_nan=False),
    }
    buffer = io.BytesIO()
    torch.save(content, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_teacher(
    path: str | Path, config: Config, *, num_classes: int, image_shape: tuple[int, ...], device: torch.device
) -> Teacher:
    """Read a teacher written by :func:`save_teacher`; it must be ``condense.teacher.model`` for
    ``num_classes`` classes of ``image_shape`` images, with finite weights that fit the architecture."""
    path = Path(path)
    started = time.perf_counter()
    t = config.condense.teacher
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ConfigError(f"condense.teacher.weights: cannot read {path} ({err.strerror or err})") from None
    if size > MAX_TEACHER_BYTES:
        raise ConfigError(f"condense.teacher.weights: {path} is {size} bytes, more than a teacher may take ({MAX_TEACHER_BYTES})")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for malformed files; each means "not a teacher file"
        raise ConfigError(f"condense.teacher.weights: {path} is not a teacher file ({type(err).__name__})") from None
    if not isinstance(content, dict) or set(content) != _TEACHER_KEYS or content.get("format") != TEACHER_FORMAT:
        raise ConfigError(f"condense.teacher.weights: {path} is not a {TEACHER_FORMAT} file")
    if content["model"] != t.model:
        raise ConfigError(f"condense.teacher.weights: {path} holds a {content['model']!r}, condense.teacher.model is {t.model!r}")
    if content["num_classes"] != num_classes or list(content["image_shape"]) != list(image_shape):
        raise ConfigError(
            f"condense.teacher.weights: {path} labels {content['num_classes']} classes of "
            f"{'x'.join(map(str, content['image_shape']))} images, the data has {num_classes} of {'x'.join(map(str, image_shape))}"
        )
    model_params = json.loads(content["model_params_json"])
    if not isinstance(model_params, dict) or model_params != dict(t.model_params):
        raise ConfigError(f"condense.teacher.weights: {path} was built with model_params {model_params}, the config says {dict(t.model_params)}")
    state = content["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"condense.teacher.weights: {path} holds no state dict of tensors")
    if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
        raise ConfigError(f"condense.teacher.weights: {path} holds non-finite weights")
    net = fresh_network(t.model, image_shape, num_classes, device=device, seed=0, **model_params)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ConfigError(f"condense.teacher.weights: {path} does not fit {t.model}: {str(err).splitlines()[0]}") from None
    info = json.loads(content["info_json"])
    accuracy = info.get("test_accuracy") if isinstance(info, dict) else None
    teacher = Teacher(net.eval(), t.model, num_classes, _shape(image_shape), model_params, time.perf_counter() - started, 0, str(path))
    teacher.test_accuracy = float(accuracy) if isinstance(accuracy, (int, float)) and math.isfinite(accuracy) else None
    return teacher


def build_teacher(data: ImageDataset, config: Config, *, device: torch.device) -> Teacher:
    """The teacher ``condense.teacher`` names: loaded from ``weights``, else trained on ``data``."""
    weights = config.condense.teacher.weights
    if weights is not None:
        return load_teacher(weights, config, num_classes=data.num_classes, image_shape=tuple(data.images.shape[1:]), device=device)
    return train_teacher(data, config, device=device)


def relabel(synthetic: SyntheticSet, teacher: Teacher, config: Config) -> SyntheticSet:
    """``synthetic`` with the teacher's soft labels; its metadata records the label source and the
    teacher, and its ``condense_seconds`` include the teacher's seconds and the labelling."""
    t = config.condense.teacher
    started = time.perf_counter()
    labels = teacher.soft_labels(
        synthetic.images,
        temperature=t.temperature,
        augmentations=t.augmentations,
        dsa_strategy=config.condense.dsa_strategy,
        dsa_mode=config.condense.dsa_mode,
        seed=config.seed,
    )
    if labels.shape[1] != synthetic.num_classes:
        raise ConfigError(f"the teacher labels {labels.shape[1]} classes, the set has {synthetic.num_classes}")
    labelling = time.perf_counter() - started
    metadata = copy.deepcopy(synthetic.metadata)
    timings = dict(metadata.get("timings") or {})
    timings["teacher_seconds"] = round(teacher.seconds, 3)
    timings["labelling_seconds"] = round(labelling, 3)
    timings["condense_seconds"] = float(timings.get("condense_seconds", 0.0)) + teacher.seconds + labelling
    metadata["timings"] = timings
    metadata["labels"] = {
        "source": "teacher",
        "temperature": t.temperature,
        "augmentations": t.augmentations,
        "teacher": teacher.info(),
    }
    return SyntheticSet(synthetic.images, labels, synthetic.num_classes, metadata, stored=synthetic.stored).validate()


def _shape(image_shape: Any) -> tuple[int, int, int]:
    channels, height, width = (int(v) for v in image_shape)
    return channels, height, width
