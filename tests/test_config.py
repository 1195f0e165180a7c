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
        ({"condense": {"init": "zeros"}}, "condense.init must be one of real, herding, k-center, noise"),
        ({"condense": {"dsa_strategy": "color_warp"}}, "warp"),
        ({"condense": {"discrepancy": "gradient-matching"}}, "pick a matching pair"),
        ({"condense": {"soft_labels": True}}, "(soft_labels: true) needs"),
        ({"condense": {"labels": "learned"}}, "labels: learned"),
        ({"condense": {"labels": "soft"}}, "condense.labels must be one of"),
        ({"condense": {"labels": "teacher", "soft_labels": True}}, "drop soft_labels"),
        ({"condense": {"teacher": {"temperature": 0}}}, "teacher.temperature must be > 0"),
        ({"condense": {"teacher": {"model": "vgg"}}}, "vgg"),
        ({"evaluation": {"loss": "mse"}}, "evaluation.loss must be one of"),
        ({"evaluation": {"online_relabel": True}}, "online_relabel needs a teacher"),
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
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"condense:\n  ipc: \xff\xfe\x00\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(byte 17 is 0xff\)") as info:
        Config.load(binary)
    assert "\n" not in str(info.value)
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"condense:\n  ipc: \x00\n")  # UTF-8, but not text YAML accepts
    with pytest.raises(ConfigError, match="not valid YAML"):
        Config.load(nul)
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
    if "fashion-mnist-" in path.name and "-ipc" in path.name:  # the benchmarks read the size from the file name
        assert f"ipc{config.condense.ipc}." in path.name


# ---------------------------------------------------------------------- sections of the layers
def test_layers_sections_are_found_and_keep_their_keys() -> None:
    config = Config.from_dict({"federated": {"num_clients": 3}, "privacy": {"delta": 1e-6}})
    assert config.federated.num_clients == 3 and config.privacy.delta == 1e-6
    assert config.continual.mem_size == 100  # a section not given holds its layer's defaults
    data = config.to_dict()
    assert {"seed", "dataset", "condense", "evaluation", "federated", "continual", "privacy"} <= set(data)
    assert Config.from_dict(data) == config
    with pytest.raises(ConfigError, match=r"unknown config key 'federatd'; valid keys in config: .*federated"):
        Config.from_dict({"federatd": {}})
    with pytest.raises(ConfigError, match=r"unknown config key federated.'rounds_'"):
        Config.from_dict({"federated": {"rounds_": 2}})


def test_replacing_a_layers_section_keeps_the_others() -> None:
    import dataclasses

    config = Config.from_dict({"federated": {"num_clients": 3}})
    private = dataclasses.replace(config, privacy=dataclasses.replace(config.privacy, epsilon=1.0), seed=4)
    assert private.privacy.epsilon == 1.0 and private.federated.num_clients == 3 and private.seed == 4
    assert config.privacy.epsilon is None
    assert config.replace(seed=5).federated.num_clients == 3
    with pytest.raises(TypeError, match="no section 'quantum'"):
        Config(quantum=1)


def test_a_user_section_registers_and_validates(monkeypatch) -> None:
    from dataclasses import dataclass

    from fedcond import config as config_module

    monkeypatch.setattr(config_module, "_SECTIONS", dict(config_module._SECTIONS))

    @config_module.register_config_section("tuning")
    @dataclass
    class TuningConfig:
        trials: int = 4

        def validate(self, config: Config) -> None:
            if self.trials < 1:
                raise ConfigError("tuning.trials must be at least 1")

    assert Config.from_dict({"tuning": {"trials": 9}}).tuning.trials == 9
    with pytest.raises(ConfigError, match="tuning.trials must be an integer, got 'many'"):
        Config.from_dict({"tuning": {"trials": "many"}})
    with pytest.raises(ConfigError, match="tuning.trials must be at least 1"):
        Config.from_dict({"tuning": {"trials": 0}})
    with pytest.raises(ValueError, match="already declared"):
        config_module.register_config_section("condense")(TuningConfig)


def test_validation_builds_no_network(monkeypatch) -> None:
    from fedcond.models import MODELS, register_model

    built = []

    def counting(*, channels: int, num_classes: int, image_size: tuple[int, int], width: int = 8):
        built.append(width)
        raise AssertionError("validation must not build a network")

    monkeypatch.setattr(MODELS, "_items", dict(MODELS._items))
    register_model("counting")(counting)
    Config.from_dict({"condense": {"model": "counting", "model_params": {"width": 16}}, "evaluation": {"model": "counting"}})
    assert built == []
    with pytest.raises(ConfigError, match="model 'counting' has no option.*depth; options: width"):
        Config.from_dict({"condense": {"model": "counting", "model_params": {"depth": 2}}})
    with pytest.raises(ConfigError, match="model 'counting': option 'width' must be an integer; got 'wide'"):
        Config.from_dict({"condense": {"model": "counting", "model_params": {"width": "wide"}}})


def test_one_coercer_words_every_kind_of_value() -> None:
    cases = [
        ({"condense": {"lr_images": "fast"}}, "condense.lr_images must be a number, got 'fast'"),
        ({"condense": {"lr_images": float("inf")}}, "condense.lr_images must be a finite number, got inf"),
        ({"evaluation": {"cross_models": 3}}, "evaluation.cross_models must be a list, got int"),
        ({"condense": {"model_params": [1]}}, "condense.model_params must be a mapping, got list"),
        ({"federated": {"max_per_class": "x"}}, "federated.max_per_class must be an integer, got 'x'"),
        ({"condense": {"discrepancy_params": {"bandwidths": []}}}, "parameter 'bandwidths' must be a non-empty list"),
        ({"condense": {"feature_map": "gradients", "discrepancy": "gradient-matching",
                       "feature_params": {"inner_steps": 2.5}}}, "parameter 'inner_steps' must be an integer; got 2.5"),
    ]  # fmt: skip
    for data, fragment in cases:
        with pytest.raises(ConfigError) as info:
            Config.from_dict(data)
        assert fragment in str(info.value) and "\n" not in str(info.value)
