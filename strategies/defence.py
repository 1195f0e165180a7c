"""Screen uploaded sets for poisoning before they are merged.

Each client's set is scored by how well its labels agree with a classifier fitted on all the
*other* clients' sets (multinomial logistic regression on pixels, scikit-learn). An honest set
of any partition agrees with the others on its classes; a label-flipped or garbage set does not.
Sets whose agreement is below ``ratio`` times the median agreement are dropped. With fewer than
three sets there is no majority to compare with, and nothing is dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from fedcond.synthetic import SyntheticSet

MIN_SETS = 3


@dataclass(frozen=True)
class Screening:
    """Agreement of every set (None when not scored), and the indices of the sets dropped."""

    scores: list[float | None]
    dropped: list[int]
    threshold: float | None


def agreement_scores(sets: list[SyntheticSet], *, seed: int = 0) -> list[float]:
    """For each set, the accuracy on it of a classifier fitted on the union of the others."""
    features = [s.images.flatten(1).double().numpy() for s in sets]
    labels = [s.hard_labels.numpy() for s in sets]
    scores = []
    for i in range(len(sets)):
        x = np.concatenate([f for j, f in enumerate(features) if j != i])
        y = np.concatenate([l for j, l in enumerate(labels) if j != i])
        if len(np.unique(y)) < 2:
            scores.append(float("nan"))
            continue
        classifier = LogisticRegression(max_iter=200, C=0.1, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(x, y)
        known = np.isin(labels[i], classifier.classes_)
        # Classes no other client holds cannot be judged: score only what the others know.
        scores.append(float((classifier.predict(features[i][known]) == labels[i][known]).mean()) if known.any() else float("nan"))
    return scores


def screen(sets: list[SyntheticSet], ratio: float, *, seed: int = 0) -> Screening:
    """Drop the sets whose agreement falls below ``ratio`` x the median agreement."""
    if len(sets) < MIN_SETS:
        return Screening([None] * len(sets), [], None)
    scores = agreement_scores(sets, seed=seed)
    finite = [s for s in scores if np.isfinite(s)]
    if not finite:
        return Screening([None] * len(sets), [], None)
    threshold = ratio * float(np.median(finite))
    dropped = [i for i, s in enumerate(scores) if np.isfinite(s) and s < threshold]
    return Screening([round(s, 4) if np.isfinite(s) else None for s in scores], dropped, round(threshold, 4))
