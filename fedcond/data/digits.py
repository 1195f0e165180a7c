"""scikit-learn's 8x8 handwritten digits: 1797 images bundled with scikit-learn, always available.

Small enough to condense and evaluate in seconds on a CPU, so it is the default dataset and the
one the tests and examples run on.
"""

from __future__ import annotations

import numpy as np

from fedcond.data.base import DatasetSplits
from fedcond.data.config import DatasetConfig
from fedcond.data.convert import make_splits, stratified_split
from fedcond.data.registry import register_dataset


def _probe(cfg: DatasetConfig) -> tuple[bool, str]:
    return True, "bundled with scikit-learn"


@register_dataset("digits", probe=_probe)
def load_digits(cfg: DatasetConfig) -> DatasetSplits:
    """A fixed stratified split (``test_fraction``, ``split_seed``) of the 16-level digit images.

    Pixels (0..16) are scaled to ``[0, 1]``; mean and std are then computed from the train split,
    so they depend on ``test_fraction`` and ``split_seed`` (about 0.31 and 0.38).
    """
    # Imported here: scikit-learn takes a second to import and only this dataset needs its data.
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = bunch.images[:, None]  # [N, 1, 8, 8]
    labels = bunch.target.astype(np.int64)
    train, test = stratified_split(labels, cfg.test_fraction, cfg.split_seed, "digits")
    return make_splits(
        "digits",
        (images[train], labels[train]),
        (images[test], labels[test]),
        scale=16.0,
        num_classes=10,
        class_names=tuple(str(name) for name in bunch.target_names),
    )
