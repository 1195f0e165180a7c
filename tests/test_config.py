"""The config object: strict keys, typed values, registry names, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedcond.config import Config, apply_override
from fedcond.errors import ConfigError


def test_defaults_validate() -> None:
    config = Config.from_dict({})
    assert config.dataset.name == "digits"
    assert config.condense.discrepancy == "mmd-gaussian"


def test_yaml_and_overrides(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("condense:\n  ipc: 5\n  discrepancy: mmd-linear\nevaluation:\n  runs: 2\n")
    config = Config.load(path, ["condense.ipc=3", "evaluation.cross_models=[mlp, lenet]", "condense.lr_images=1e-2"])
    assert config.condense.ipc == 3
    assert config.condense.discrepancy == "mmd-linear"
    assert config.evaluation.runs == 2
    assert config.evaluation.cross_models == ["mlp", "lenet"]
    assert config.condense.lr_images == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"condense": {"ipcc": 3}}, "unknown config key condense.'ipcc'"),
        ({"bogus": 1}, "unknown config key 'bogus'"),
        ({"condense": {"ipc": "ten"}}, "condense.ipc must be an integer"),
        ({"condense": {"ipc": 0}}, "condense.ipc must be at least 1"),
        ({"condense": {"dsa": "yes"}}, "condense.dsa must be true or false"),
        ({"condense": {"discrepancy": "mmd-gausian"}}, "unknown discrepancy 'mmd-gausian'; choose from:"),
        ({"condense": {"method": "magic"}}, "unknown condense method 'magic'"),
        ({"condense": {"feature_map": "nope"}}, "unknown feature map 'nope'"),
        ({"evaluation": {"model": "vgg99"}}, "unknown model 'vgg99'"),
        ({"dataset": {"name": "imagenet"}}, "unknown dataset 'imagenet'"),
        ({"condense": {"init": "zeros"}}, "condense.init must be one of real, noise"),
        ({"condense": {"dsa_strategy": "color_warp"}}, "warp"),
        ({"condense": {"discrepancy": "gradient-matching"}}, "pick a matching pair"),
        ({"condense": {"soft_labels": True}}, "soft_labels needs"),
        ({"device": "tpu"}, "device"),
        ({"condense": 3}, "condense must be a mapping"),
    ],
)
def test_bad_configs_name_the_problem(data, fragment) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_unknown_key_lists_valid_keys() -> None:
    with pytest.raises(ConfigError, match="valid keys in condense: .*ipc"):
        Config.from_dict({"condense": {"ipcc": 3}})


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="key=value"):
        apply_override({}, "condense.ipc")


def test_missing_or_invalid_yaml(tmp_path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        Config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("condense: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.load(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="mapping"):
        Config.load(scalar)


def test_shipped_configs_validate() -> None:
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        Config.load(path)


@pytest.mark.parametrize("path", sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = Config.load(path)
    if "fashion-mnist-fast-ipc" in path.name:  # the benchmark reads the size from the file name
        assert f"ipc{config.condense.ipc}." in path.name
