"""The real-side seam: the loop runs any registered target, and the config decides which one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from fedcond import condense
from fedcond import config as config_module
from fedcond.condense.targets import REAL_TARGETS, RealSide, RealTarget, register_real_target, select_real_target
from fedcond.config import Config
from fedcond.errors import ConfigError
from fedcond.features import embed_in_chunks


@pytest.fixture
def scratch_registries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_SECTIONS", dict(config_module._SECTIONS))
    monkeypatch.setattr(REAL_TARGETS, "_items", dict(REAL_TARGETS._items))


def test_the_config_picks_the_engines_targets(make_config) -> None:
    assert select_real_target(make_config()) == "fresh"
    assert select_real_target(make_config(condense={"pool_networks": 2})) == "pool"
    private = make_config(condense={"init": "noise", "discrepancy": "mmd-linear", "pool_networks": 2}, privacy={"epsilon": 1.0})
    assert select_real_target(private) == "private-once"
    per_iteration = make_config(
        condense={"init": "noise", "discrepancy": "mmd-linear"}, privacy={"epsilon": 1.0, "mode": "per-iteration"}
    )
    assert select_real_target(per_iteration) == "private-per-iteration"


def test_a_new_kind_of_real_statistics_is_one_class_and_its_registration(digits, make_config, scratch_registries) -> None:
    draws = []

    @register_real_target("whole-class-means")
    class WholeClassMeans(RealTarget):
        """Every class's mean embedding over all its samples, under a fresh network each iteration."""

        def draw(self, generator: torch.Generator) -> RealSide:
            self.real.feature_map.refresh()
            draws.append(len(draws))
            return RealSide(
                [embed_in_chunks(self.real.feature_map, self.real.images[idx], self.real.labels[idx]).mean(0, keepdim=True)
                 for idx in (self.real.per_class[k] for k in self.classes)]
            )  # fmt: skip

        def metadata(self) -> dict[str, str]:
            return {"target": "whole-class-means"}

    @config_module.register_config_section("experiment")
    @dataclass
    class ExperimentConfig:
        whole_classes: bool = False

        def validate(self, config: Config) -> None: ...

        def real_target(self, config: Config) -> str | None:
            return "whole-class-means" if self.whole_classes else None

    config = make_config(condense={"discrepancy": "mmd-linear", "iterations": 4}, experiment={"whole_classes": True})
    synthetic = condense(digits.train, config)
    assert draws == [0, 1, 2, 3] and synthetic.metadata["target"] == "whole-class-means"
    losses = [loss for _, loss in synthetic.metadata["loss_trace"]]
    assert losses[-1] < losses[0]  # the loop really optimised against it


def test_two_sections_claiming_the_target_is_an_error(make_config, scratch_registries) -> None:
    @config_module.register_config_section("greedy")
    @dataclass
    class GreedyConfig:
        def validate(self, config: Config) -> None: ...

        def real_target(self, config: Config) -> str:
            return "pool"

    # Found when the config is validated, before any data is loaded.
    with pytest.raises(ConfigError, match="disagree on what condensation matches against"):
        make_config(condense={"init": "noise", "discrepancy": "mmd-linear", "pool_networks": 2}, privacy={"epsilon": 1.0})


def test_a_private_config_that_names_another_target_fails_at_load() -> None:
    default = Path(__file__).resolve().parents[1] / "configs" / "default.yaml"  # real_target: trained-pool
    with pytest.raises(ConfigError, match="condense wants 'trained-pool', privacy wants 'private-once'"):
        Config.load(default, ["privacy.epsilon=1.0", "condense.discrepancy=mmd-linear", "condense.init=noise"])


def test_a_private_target_refuses_to_resume(digits, make_config, tmp_path) -> None:
    config = make_config(condense={"init": "noise", "discrepancy": "mmd-linear", "pool_networks": 2}, privacy={"epsilon": 1.0})
    checkpoint = tmp_path / "checkpoint.pt"
    checkpoint.write_bytes(b"left over from a non-private run")
    with pytest.raises(ConfigError, match="'private-once' cannot be checkpointed or resumed"):
        condense(digits.train, config, checkpoint=checkpoint)
