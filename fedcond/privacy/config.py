"""The ``privacy`` section of a config, owned by private release: the (epsilon, delta) target and the audit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fedcond.config import register_config_section
from fedcond.errors import check, check_choice

if TYPE_CHECKING:
    from fedcond.config import Config

RELEASE_MODES = ("once", "per-iteration")


@register_config_section("privacy")
@dataclass
class PrivacyConfig:
    """Differentially private condensation: off while ``epsilon`` is null (epsilon = infinity)."""

    #: Target (epsilon, delta) of the release, under add-or-remove-one adjacency; the noise is
    #: calibrated to it with Flower's RDP accountant.
    epsilon: float | None = None
    delta: float = 1e-5
    #: L2 bound of each sample's embeddings (all pool networks together); the class count rides along.
    clip: float = 1.0
    #: ``once``: one release over every sample for a pool of ``condense.pool_networks`` networks;
    #: ``per-iteration``: a fresh network, Poisson sample (``sample_rate``) and release every iteration.
    mode: str = "once"
    sample_rate: float = 0.01
    #: ``fedcond audit``: members and non-members drawn (each, at most), and the epochs of the
    #: reference model trained on the members.
    audit_samples: int = 5000
    audit_reference_epochs: int = 50

    def validate(self, config: Config) -> None:
        """Check the section and what privacy mode asks of ``condense``."""
        c = config.condense
        check(0 < self.delta < 1, "privacy.delta must be in (0, 1)")
        check(self.clip > 0, "privacy.clip must be > 0")
        check_choice("privacy.mode", self.mode, RELEASE_MODES)
        check(0 < self.sample_rate <= 1, "privacy.sample_rate must be in (0, 1]")
        check(
            self.audit_samples >= 10 and self.audit_reference_epochs >= 1,
            "privacy.audit_samples must be >= 10, audit_reference_epochs >= 1",
        )
        if self.epsilon is None:
            return
        check(0 < self.epsilon < float("inf"), "privacy.epsilon must be a positive finite number (null: no privacy mode)")
        check(c.method == "matching", "privacy mode condenses by matching; condense.method must be matching")
        check(
            c.init != "real",
            "privacy mode refuses condense.init: real (the set would start from, and publish, real images); use noise",
        )
        check(c.discrepancy == "mmd-linear", "privacy mode releases noised class means: condense.discrepancy must be mmd-linear")
        check(
            c.feature_map in ("random-embedding", "pixels"),
            "privacy mode needs a data-independent feature map: random-embedding or pixels",
        )
        check(
            c.label_source == "hard",
            "privacy mode releases hard labels: a teacher or learned labels would see the private data outside "
            "the accountant; set condense.labels: hard",
        )
        check(
            c.robustness.method is None,
            "privacy mode releases noised statistics of the real data as they are: condense.robustness must be null",
        )
        check(
            c.checkpoint_every == 0,
            "privacy mode does not checkpoint (a resumed run would release again); set condense.checkpoint_every 0",
        )
        if self.mode == "once":
            check(c.pool_networks >= 1, "privacy.mode once releases statistics for a pool: set condense.pool_networks >= 1")
        else:
            check(c.pool_networks == 0, "privacy.mode per-iteration draws a fresh network each iteration: set condense.pool_networks 0")

    def real_target(self, config: Config) -> str | None:
        """The real-side target privacy mode puts behind the matching loop: noised statistics only."""
        if self.epsilon is None:
            return None
        # Registered by fedcond.privacy.targets, which the package imports with this module.
        return "private-once" if self.mode == "once" else "private-per-iteration"
