"""Screen uploaded sets for poisoning before they are merged.

Each client's set is scored by how well its labels agree with a classifier fitted on the *other*
clients' sets (multinomial logistic regression on pixels, scikit-learn). An honest set of any
partition agrees with the others on its classes; a label-flipped or garbage set does not. Sets
whose agreement is below ``ratio`` times the median agreement are dropped. With fewer than three
sets there is no majority to compare with, and nothing is dropped.

Up to ``folds`` sets, each is held out alone (leave-one-out). Beyond that the sets are dealt into
``folds`` groups at random and each group is scored by a classifier fitted on the other groups, so
the cost stays at ``folds`` fits however many clients upload (a thousand fits would take hours);
a minority of bad sets stays a minority of every group's training data.
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


def agreement_scores(sets: list[SyntheticSet], *, seed: int = 0, folds: int = 10) -> list[float]:
    """For each set, the accuracy on it of a classifier fitted on the sets outside its fold.

    Parameters
    ----------
    sets : list of SyntheticSet
        The uploads to score.
    seed : int
        Seeds the classifier and, beyond ``folds`` sets, the dealing of sets into folds.
    folds : int
        The most classifiers fitted; with at most this many sets every set is its own fold.
    """
    if folds < 2:
        raise ValueError("folds must be >= 2")
    features = [s.images.flatten(1).double().numpy() for s in sets]
    labels = [s.hard_labels.numpy() for s in sets]
    if len(sets) <= folds:
        fold_of = np.arange(len(sets))
    else:
        fold_of = np.random.default_rng(seed).permutation(len(sets)) % folds
    scores = [float("nan")] * len(sets)
    for fold in np.unique(fold_of):
        held = [i for i in range(len(sets)) if fold_of[i] == fold]
        x = np.concatenate([f for j, f in enumerate(features) if fold_of[j] != fold])
        y = np.concatenate([l for j, l in enumerate(labels) if fold_of[j] != fold])
        if len(np.unique(y)) < 2:
            continue
        classifier = LogisticRegression(max_iter=200, C=0.1, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(x, y)
        for i in held:
            known = np.isin(labels[i], classifier.classes_)
            # Classes no other client holds cannot be judged: score only what the others know.
            if known.any():
                scores[i] = float((classifier.predict(features[i][known]) == labels[i][known]).mean())
    return scores


def screen(sets: list[SyntheticSet], ratio: float, *, seed: int = 0, folds: int = 10) -> Screening:
    """Drop the sets whose agreement (:func:`agreement_scores` with ``folds``) falls below
    ``ratio`` x the median agreement."""
    if len(sets) < MIN_SETS:
        return Screening([None] * len(sets), [], None)
    scores = agreement_scores(sets, seed=seed, folds=folds)
    finite = [s for s in scores if np.isfinite(s)]
    if not finite:
        return Screening([None] * len(sets), [], None)
    threshold = ratio * float(np.median(finite))
    dropped = [i for i, s in enumerate(scores) if np.isfinite(s) and s < threshold]
    return Screening([round(s, 4) if np.isfinite(s) else None for s in scores], dropped, round(threshold, 4))
