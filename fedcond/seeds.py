"""Every sub-seed of a run, derived in one place from the run seed and the names of its parts.

A run has one seed (``Config.seed``); each random draw that must be reproducible on its own (an
iteration of the condenser, a pool network, an evaluation run, a client's local training, a
memory update, a private release) gets a seed derived from it and from named parts::

    derive_seed(config.seed, "iteration", 12)
    derive_seed(config.seed, "evaluation-run", 0)

Different names or parts give unrelated seeds (a hash, not arithmetic that could collide across
purposes), the same ones always give the same seed, on every platform and Python version.
"""

from __future__ import annotations

import hashlib
import json

#: Seeds are non-negative and fit torch's and numpy's 63-bit seed range.
SEED_BITS = 63


def derive_seed(seed: int, name: str, *parts: int | str, bits: int = SEED_BITS) -> int:
    """The seed of the part ``name`` (with ``parts``, e.g. an index) of the run seeded ``seed``.

    Parameters
    ----------
    seed
        The run seed.
    name
        What the seed is for: ``"iteration"``, ``"pool-network"``, ``"evaluation-run"``,
        ``"client-fit"``, ``"memory-update"``, ``"private-release"``, ...
    *parts
        Integers or strings that tell instances apart (an iteration, a client and a round).
    bits
        Width of the seed (32 for libraries that take a 32-bit seed, such as scikit-learn).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    key = json.dumps([seed, name, *parts], separators=(",", ":"))
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8, person=b"fedcond-seed").digest()
    if not 1 <= bits <= SEED_BITS:
        raise ValueError(f"bits must be in [1, {SEED_BITS}], got {bits}")
    return int.from_bytes(digest, "big") >> (64 - bits)
