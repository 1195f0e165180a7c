"""The SyntheticSet contract: validation, atomic save, hostile files, merge, grids (the wire form: test_wire)."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedcond import io as fio
from fedcond.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from fedcond.synthetic import (
    FORMAT_VERSION,
    StoredImages,
    SyntheticSet,
    default_metadata,
    merge_synthetic_sets,
)
from sets import assert_one_line, make_factorised_set, make_set, rejects


def save_content(path: Path, **changes: object) -> Path:
    """Write a file in the saved layout with some entries changed (``None`` removes one)."""
    synthetic = make_set()
    content: dict[str, object] = {
        "format": FORMAT_VERSION,
        "images": synthetic.images,
        "labels": synthetic.labels,
        "num_classes": synthetic.num_classes,
        "metadata_json": json.dumps(synthetic.metadata),
    }
    for key, value in changes.items():
        if value is None:
            del content[key]
        else:
            content[key] = value
    torch.save(content, path)
    return path


# --- properties ---------------------------------------------------------------------------------


def test_properties_hard_and_soft() -> None:
    hard = make_set(num_classes=3, per_class=2)
    assert len(hard) == 6 and hard.image_shape == (3, 8, 8) and not hard.is_soft
    assert hard.class_counts().tolist() == [2, 2, 2]
    soft = make_set(soft=True)
    assert soft.is_soft
    assert torch.equal(soft.hard_labels, hard.labels)
    assert soft.class_counts().tolist() == [2, 2, 2]


def test_clone_and_to_are_independent() -> None:
    synthetic = make_set()
    synthetic.images.requires_grad_(True)
    copy = synthetic.clone()
    assert not copy.images.requires_grad
    copy.images.zero_()
    copy.metadata["dataset"] = "other"
    assert synthetic.images.abs().sum() > 0 and synthetic.metadata["dataset"] == "digits"
    moved = synthetic.to("cpu")
    assert moved.images.device.type == "cpu" and moved.metadata == synthetic.metadata
    assert moved.metadata is not synthetic.metadata


def test_default_metadata() -> None:
    metadata = default_metadata(mean=(0.1, 0.2), method="matching", client=3)
    assert metadata["mean"] == [0.1, 0.2] and metadata["method"] == "matching"
    assert metadata["client"] == 3
    assert metadata["privacy"] == {"epsilon": None, "delta": None} and metadata["timings"] == {}
    assert {"dataset", "std", "feature_map", "discrepancy", "ipc", "seed"} <= metadata.keys()


# --- validate -----------------------------------------------------------------------------------


def _sparse(s: SyntheticSet) -> None:
    s.images = s.images.to_sparse()


def _deep(s: SyntheticSet) -> None:
    nested: list[object] = []
    s.metadata["deep"] = nested
    for _ in range(40):
        nested.append([])
        nested = nested[0]  # type: ignore[assignment]


def _set_nonfinite(s: SyntheticSet) -> None:
    s.images[0, 0, 0, :2] = float("nan")
    s.images[1, 0, 0, 0] = float("inf")


def _make_empty(s: SyntheticSet) -> None:
    s.images, s.labels = s.images[:0], s.labels[:0]


def _setter(name: str, value: object) -> Callable[[SyntheticSet], None]:
    return lambda s: setattr(s, name, value)


def _metadata(key: object, value: object) -> Callable[[SyntheticSet], None]:
    return lambda s: s.metadata.__setitem__(key, value)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        pytest.param(_make_empty, "synthetic set is empty", id="empty"),
        pytest.param(
            lambda s: setattr(s, "images", s.images.numpy()),
            "images must be a torch.Tensor, got ndarray",
            id="images not a tensor",
        ),
        pytest.param(_sparse, "images must be a dense tensor", id="images sparse"),
        pytest.param(
            lambda s: setattr(s, "images", s.images[0]),
            r"images must be 4-D .* got shape \(3, 8, 8\)",
            id="images 3-D",
        ),
        pytest.param(
            lambda s: setattr(s, "images", s.images.double()),
            "images must be float32, got torch.float64",
            id="images float64",
        ),
        pytest.param(_setter("images", torch.zeros(6, 3, 0, 8)), "positive", id="zero-size images"),
        pytest.param(_set_nonfinite, "images contain 3 non-finite values", id="images NaN"),
        pytest.param(
            _setter("labels", [0, 1, 2, 0, 1, 2]),
            "labels must be a torch.Tensor, got list",
            id="labels not a tensor",
        ),
        pytest.param(
            lambda s: setattr(s, "labels", s.labels.int()),
            r"labels must be int64 \(hard\) or float32 \(soft\), got torch.int32",
            id="labels int32",
        ),
        pytest.param(
            lambda s: setattr(s, "labels", s.labels.view(6, 1)),
            r"hard labels must be 1-D \[M\], got shape \(6, 1\)",
            id="hard labels 2-D",
        ),
        pytest.param(
            lambda s: setattr(s, "labels", s.labels.float()),
            "soft labels must be 2-D",
            id="soft labels 1-D",
        ),
        pytest.param(
            lambda s: setattr(s, "labels", s.labels[:5]), "6 images but 5 labels", id="count mismatch"
        ),
        pytest.param(
            lambda s: s.labels.__setitem__(0, 3),
            r"hard labels must lie in \[0, 3\), got values from 0 to 3",
            id="label too large",
        ),
        pytest.param(
            lambda s: s.labels.__setitem__(0, -1), "got values from -1 to 2", id="label negative"
        ),
        pytest.param(_setter("num_classes", 0), r"num_classes must be in \[1, ", id="num_classes 0"),
        pytest.param(
            _setter("num_classes", 10**12), r"num_classes must be in \[1, ", id="num_classes huge"
        ),
        pytest.param(
            _setter("num_classes", True), "num_classes must be an int, got bool", id="num_classes bool"
        ),
        pytest.param(
            _setter("num_classes", "3"), "num_classes must be an int, got str", id="num_classes str"
        ),
        pytest.param(_setter("metadata", []), "metadata must be a dict, got list", id="metadata list"),
        pytest.param(
            _metadata("model", object()), r"metadata\['model'\] is a object", id="metadata object"
        ),
        pytest.param(_metadata("mean", (0.5,)), r"metadata\['mean'\] is a tuple", id="metadata tuple"),
        pytest.param(
            lambda s: s.metadata["timings"].__setitem__("t", {1}),
            r"metadata\['timings'\]\['t'\] is a set",
            id="metadata nested set",
        ),
        pytest.param(
            _metadata("seed", float("nan")), r"metadata\['seed'\] is nan", id="metadata NaN"
        ),
        pytest.param(_metadata(1, "x"), "metadata has a non-string key 1", id="metadata int key"),
        pytest.param(_deep, "nested more than 32 levels deep", id="metadata too deep"),
        pytest.param(
            _metadata("blob", "x" * 2**20), "bytes as JSON, more than the limit", id="metadata too big"
        ),
    ],
)
def test_validate_rejects(mutate: Callable[[SyntheticSet], None], match: str) -> None:
    synthetic = make_set()
    mutate(synthetic)
    with rejects(match) as err:
        synthetic.validate()
    assert_one_line(err)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        pytest.param(
            _setter("labels", torch.full((6, 4), 0.25)),
            "soft labels have 4 columns but num_classes is 3",
            id="wrong width",
        ),
        pytest.param(
            lambda s: s.labels.__setitem__((0, 0), -0.1),
            "soft labels contain 1 negative entries",
            id="negative",
        ),
        pytest.param(
            lambda s: s.labels.__setitem__((2, 1), float("nan")),
            "soft labels contain 1 non-finite values",
            id="non-finite",
        ),
        pytest.param(
            lambda s: s.labels.__setitem__(4, torch.tensor([0.5, 0.5, 0.1])),
            r"soft label rows must sum to 1 \(within 0.001\); row 4 sums to 1\.1",
            id="row sum",
        ),
    ],
)
def test_validate_rejects_soft_labels(mutate: Callable[[SyntheticSet], None], match: str) -> None:
    synthetic = make_set(soft=True)
    mutate(synthetic)
    with rejects(match) as err:
        synthetic.validate()
    assert_one_line(err)


def test_soft_rows_within_tolerance_pass() -> None:
    synthetic = make_set(soft=True)
    synthetic.labels[0] *= 1.0009
    assert synthetic.validate() is synthetic


def test_validate_against_expectations() -> None:
    synthetic = make_set(num_classes=3, per_class=2)
    assert synthetic.validate(num_classes=3, max_per_class=2, image_shape=(3, 8, 8)) is synthetic
    with rejects("set has 3 classes but 10 expected"):
        synthetic.validate(num_classes=10)
    with rejects(r"images are 3x8x8 but 1x28x28 expected"):
        synthetic.validate(image_shape=(1, 28, 28))
    synthetic.labels[1] = 2
    with rejects("class 2 has 3 images, more than max_per_class=2"):
        synthetic.validate(max_per_class=2)


def test_max_per_class_caps_a_soft_labelled_set_as_a_whole() -> None:
    # A teacher may move an image's mass to another class: an honest soft-labelled set can hold
    # three images whose argmax is class 2, so only the set's total is capped.
    synthetic = make_set(soft=True)
    synthetic.labels[0] = torch.tensor([0.1, 0.1, 0.8])
    assert synthetic.validate(max_per_class=2) is synthetic
    with rejects(f"{len(synthetic)} soft-labelled images, more than max_per_class=1 x 3 classes"):
        synthetic.validate(max_per_class=1)


def test_size_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SyntheticSet, "max_elements", 100)
    with rejects("images hold 1152 values, more than the limit of 100"):
        make_set().validate()
    wide = SyntheticSet(torch.zeros(6, 1, 2, 2), torch.full((6, 50), 1 / 50), num_classes=50)
    with rejects("labels hold 300 values, more than the limit of 100"):
        wide.validate()


# --- save / load --------------------------------------------------------------------------------


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_save_load_round_trip(tmp_path: Path, soft: bool) -> None:
    synthetic = make_set(soft=soft)
    synthetic.metadata["timings"] = {"condense_s": 1.5}
    synthetic.metadata["privacy"] = {"epsilon": 2.0, "delta": 1e-5}
    path = tmp_path / "set.pt"
    synthetic.save(path)
    loaded = SyntheticSet.load(path, num_classes=3, max_per_class=2, image_shape=(3, 8, 8))
    assert torch.equal(loaded.images, synthetic.images)
    assert torch.equal(loaded.labels, synthetic.labels)
    assert loaded.labels.dtype == synthetic.labels.dtype
    assert loaded.num_classes == 3 and loaded.is_soft == soft
    assert loaded.metadata == synthetic.metadata
    assert sorted(os.listdir(tmp_path)) == ["set.pt"]


def test_save_stores_only_the_view(tmp_path: Path) -> None:
    big = make_set(per_class=200)
    view = SyntheticSet(big.images[:3], big.labels[:3], 3, {})
    view.save(tmp_path / "view.pt")
    assert (tmp_path / "view.pt").stat().st_size < big.images.nbytes // 10
    assert SyntheticSet.load(tmp_path / "view.pt").metadata == {}


def test_load_checks_expectations(tmp_path: Path) -> None:
    path = tmp_path / "set.pt"
    make_set().save(path)
    with rejects(rf"^{path}: class 0 has 2 images, more than max_per_class=1$"):
        SyntheticSet.load(path, max_per_class=1)
    with rejects(rf"^{path}: set has 3 classes but 4 expected$"):
        SyntheticSet.load(path, num_classes=4)


def test_failed_save_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "set.pt"
    make_set().save(path)
    before = path.read_bytes()
    invalid = make_set(num_classes=5)
    invalid.metadata["model"] = object()
    with rejects("is a object"):
        invalid.save(path)

    def broken_save(*args: object, **kwargs: object) -> None:
        raise RuntimeError("serialisation failed")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError, match="serialisation failed"):
        make_set(num_classes=5).save(path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["set.pt"]


class _Reduce:
    """Unpickling this would run a shell command creating ``sentinel``."""

    def __init__(self, sentinel: Path) -> None:
        self.sentinel = sentinel

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.sentinel}",)


class _Plain:
    pass


def test_load_never_runs_pickled_code(tmp_path: Path) -> None:
    sentinel = tmp_path / "executed"
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"format": FORMAT_VERSION, "images": _Reduce(sentinel)}, protocol=2))
    zipped = tmp_path / "zipped.pt"
    torch.save({"format": FORMAT_VERSION, "images": _Reduce(sentinel)}, zipped)
    with rejects(rf"^{raw}: not a synthetic set file \(not a readable zip archive"):
        SyntheticSet.load(raw)
    with rejects(rf"^{zipped}: not a synthetic set file \(refused by the weights-only unpickler: ") as err:
        SyntheticSet.load(zipped)
    assert_one_line(err)
    assert "weights_only" not in str(err.value)
    assert not sentinel.exists()


def test_load_rejects_compressed_archives(tmp_path: Path) -> None:
    """A deflated entry could inflate to ~1000x the file's size inside torch.load (a zip bomb)."""
    real, bomb = tmp_path / "real.pt", tmp_path / "bomb.pt"
    make_set().save(real)
    with zipfile.ZipFile(real) as source, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry.filename, source.read(entry))
    with rejects(rf"^{bomb}: not a synthetic set file \(entry '.*' is compressed\)$"):
        SyntheticSet.load(bomb)


def test_load_rejects_class_instances(tmp_path: Path) -> None:
    path = tmp_path / "plain.pt"
    torch.save({"format": FORMAT_VERSION, "images": _Plain()}, path)
    with rejects(r"refused by the weights-only unpickler: .*_Plain") as err:
        SyntheticSet.load(path)
    assert_one_line(err)


def test_load_rejects_corrupt_files(tmp_path: Path) -> None:
    real = tmp_path / "real.pt"
    make_set().save(real)
    data = real.read_bytes()
    cases = {
        "random.pt": np.random.default_rng(0).bytes(4096),
        "truncated.pt": data[: len(data) // 2],
        "empty.pt": b"",
        "text.pt": b"images,labels\n1,2\n",
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with rejects(rf"^{tmp_path / name}: not a synthetic set file \(") as err:
            SyntheticSet.load(tmp_path / name)
        assert_one_line(err)
        chained = err.value.__cause__ or (None if err.value.__suppress_context__ else err.value.__context__)
        assert chained is None


def test_load_rejects_missing_paths(tmp_path: Path) -> None:
    with rejects(rf"{tmp_path / 'absent.pt'}: cannot read file \(No such file"):
        SyntheticSet.load(tmp_path / "absent.pt")
    with rejects(rf"{tmp_path}: cannot read file"):
        SyntheticSet.load(tmp_path)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        pytest.param(
            {"format": "fedcond.synthetic-set/99"},
            "unsupported format 'fedcond.synthetic-set/99', expected 'fedcond.synthetic-set/1'",
            id="wrong format",
        ),
        pytest.param({"format": torch.zeros(2)}, "unsupported format tensor", id="format not str"),
        pytest.param({"labels": None}, "missing keys labels", id="missing key"),
        pytest.param({"owner": "mallory"}, "unexpected keys 'owner'", id="extra key"),
        pytest.param(
            {"metadata_json": {"a": 1}},
            "metadata_json must be a str, got dict",
            id="metadata not str",
        ),
        pytest.param(
            {"metadata_json": "{not json"},
            r"metadata_json is not valid JSON \(JSONDecodeError",
            id="metadata bad JSON",
        ),
        pytest.param(
            {"metadata_json": "[1, 2]"}, "metadata must be a dict, got list", id="metadata not dict"
        ),
        pytest.param(
            {"metadata_json": '{"seed": NaN}'}, r"metadata\['seed'\] is nan", id="metadata NaN"
        ),
        pytest.param(
            {"num_classes": "3"}, "num_classes must be an int, got str", id="num_classes str"
        ),
        pytest.param(
            {"images": [1.0, 2.0]}, "images must be a torch.Tensor, got list", id="images list"
        ),
        pytest.param(
            {"images": torch.zeros(6, 3, 8, 8, dtype=torch.float16)},
            "images must be float32",
            id="images float16",
        ),
        pytest.param(
            {"labels": torch.tensor([0, 1, 2, 0, 1, 7])},
            r"hard labels must lie in \[0, 3\)",
            id="labels out of range",
        ),
    ],
)
def test_load_rejects_bad_structure(tmp_path: Path, changes: dict[str, object], match: str) -> None:
    path = save_content(tmp_path / "set.pt", **changes)
    with rejects(rf"^{path}: .*{match}") as err:
        SyntheticSet.load(path)
    assert_one_line(err)


def test_load_rejects_non_dict(tmp_path: Path) -> None:
    torch.save([1, 2], tmp_path / "list.pt")
    with rejects("expected a dict, file holds a list"):
        SyntheticSet.load(tmp_path / "list.pt")


def test_load_rejects_oversized_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SyntheticSet, "max_elements", 1)
    monkeypatch.setattr(SyntheticSet, "max_metadata_bytes", 1)
    monkeypatch.setattr("fedcond.synthetic._FILE_OVERHEAD_BYTES", 100)
    path = tmp_path / "big.pt"
    path.write_bytes(b"\0" * 1000)
    with rejects("file is 1000 bytes, more than a synthetic set may take"):
        SyntheticSet.load(path)


# --- atomic writes ------------------------------------------------------------------------------


def test_atomic_writes(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a.bin", b"\x00\x01")
    atomic_write_text(tmp_path / "b.txt", "héllo")
    atomic_write_json(tmp_path / "c.json", {"z": 1, "a": [1.5, None]})
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    assert (tmp_path / "c.json").read_text() == '{\n  "z": 1,\n  "a": [\n    1.5,\n    null\n  ]\n}\n'
    with pytest.raises(ValueError):
        atomic_write_json(tmp_path / "d.json", {"x": float("nan")})
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.txt", "c.json"]


def test_atomic_write_failure_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f.txt"
    atomic_write_text(path, "old")

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(fio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_atomic_write_keeps_mode(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write_text(path, "new")
    assert path.stat().st_mode & 0o777 == 0o640 and path.read_text() == "new"


# --- merge --------------------------------------------------------------------------------------


def test_merge() -> None:
    a, b = make_set(per_class=1), make_set(per_class=2)
    b.metadata["dataset"] = "other"
    merged = merge_synthetic_sets([a, b])
    assert len(merged) == 9 and merged.class_counts().tolist() == [3, 3, 3]
    assert torch.equal(merged.images[:3], a.images) and torch.equal(merged.labels[3:], b.labels)
    assert merged.metadata == {**a.metadata, "merged_from": 2}
    assert "merged_from" not in a.metadata
    soft = merge_synthetic_sets([make_set(soft=True)] * 3)
    assert soft.is_soft and len(soft) == 18 and soft.metadata["merged_from"] == 3


def test_merge_of_hard_and_soft_sets_is_soft_with_one_hot_rows() -> None:
    hard, soft = make_set(per_class=1), make_set(soft=True)
    merged = merge_synthetic_sets([hard, soft])
    assert merged.is_soft and merged.labels.shape == (9, 3)
    assert torch.equal(merged.labels[:3], torch.eye(3)) and torch.equal(merged.labels[3:], soft.labels)
    assert torch.equal(merged.hard_labels[:3], hard.labels)


def test_merge_rejects_mismatches() -> None:
    base = make_set()
    with rejects("no synthetic sets to merge"):
        merge_synthetic_sets([])
    with rejects("set 1 has 4 classes, set 0 has 3"):
        merge_synthetic_sets([base, make_set(num_classes=4)])
    with rejects("set 1 has 1x8x8 images, set 0 has 3x8x8"):
        merge_synthetic_sets([base, make_set(shape=(1, 8, 8))])


# --- save_grid ----------------------------------------------------------------------------------


def test_save_grid_size(tmp_path: Path) -> None:
    synthetic = make_set(num_classes=3, per_class=4, shape=(3, 10, 12))
    synthetic.labels[:2] = 2  # class counts 2, 4, 6
    path = tmp_path / "grid.png"
    synthetic.save_grid(path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == (6 * (36 + 2) + 2, 3 * (30 + 2) + 2)  # enlarged x3 to >= 32 px
    synthetic.save_grid(path, max_per_class=3)
    with Image.open(path) as image:
        assert image.size == (3 * (36 + 2) + 2, 3 * (30 + 2) + 2)
    make_set(soft=True, num_classes=4, per_class=1, shape=(1, 5, 5)).save_grid(path, captions=False)
    with Image.open(path) as image:
        assert image.size == (1 * (35 + 2) + 2, 4 * (35 + 2) + 2)  # x7
    with pytest.raises(ValueError, match="max_per_class must be positive"):
        synthetic.save_grid(path, max_per_class=0)
    assert sorted(os.listdir(tmp_path)) == ["grid.png"]


def test_soft_label_grids_write_each_image_top_class_and_probability_under_it(tmp_path: Path) -> None:
    synthetic = make_set(soft=True, num_classes=3, per_class=2, shape=(1, 8, 8))
    synthetic.images.fill_(10.0)  # white cells, so only captions darken the image
    assert synthetic.top_labels() == [(k, pytest.approx(float(synthetic.labels[i].max()))) for i, k in enumerate(synthetic.hard_labels.tolist())]
    path = tmp_path / "grid.png"
    synthetic.save_grid(path)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    cell = 32 + 2
    assert pixels.shape == (3 * (cell + 12) + 2, 2 * cell + 2)  # a 12-pixel caption band under each row
    for row in range(3):
        band = pixels[row * (cell + 12) + cell : row * (cell + 12) + cell + 12]
        assert (band < 128).sum() > 20, f"row {row} has no caption"
    synthetic.save_grid(path, captions=False)
    with Image.open(path) as image:
        assert (np.asarray(image.convert("L")) == 255).all()
    hard = make_set(num_classes=3, per_class=2)
    assert hard.top_labels() == [(k, 1.0) for k in hard.labels.tolist()]


def test_save_grid_denormalises_and_clips(tmp_path: Path) -> None:
    synthetic = SyntheticSet(
        images=torch.tensor([0.0, 10.0]).view(2, 1, 1, 1).expand(2, 1, 4, 4).contiguous(),
        labels=torch.tensor([0, 1]),
        num_classes=2,
        metadata=default_metadata(mean=[0.5], std=[0.25]),
    )
    path = tmp_path / "grid.png"
    synthetic.save_grid(path)
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L"))
    assert pixels.shape == (2 * (32 + 2) + 2, 32 + 2 + 2)  # 4x4 cells enlarged x8
    assert pixels[3, 3] == 128  # 0 * 0.25 + 0.5
    assert pixels[40, 3] == 255  # 10 * 0.25 + 0.5, clipped to 1
    synthetic.metadata["std"] = [0.25, 0.25]
    with rejects("mean and std must both be lists of 1 numbers"):
        synthetic.save_grid(path)


# ------------------------------------------------------------------ the stored (factorised) form
def test_stored_form_is_checked_against_the_images() -> None:
    synthetic = make_factorised_set()
    assert synthetic.validate() is synthetic and len(synthetic) == 12 and synthetic.stored.images.shape[0] == 3
    synthetic.images[0, 0, 0, 0] += 1.0  # changed in place after condensing: no longer what travels
    with rejects("stored images no longer decode to the set's images"):
        synthetic.validate()


@pytest.mark.parametrize(
    ("stored", "match"),
    [
        pytest.param(lambda s: StoredImages(s.images, 1), "a factor of at least 2, got 1", id="factor 1"),
        pytest.param(lambda s: StoredImages(s.images, 3), "factor 3 does not divide the image size 8x8", id="factor 3"),
        pytest.param(lambda s: StoredImages(s.images[:2], 2), "2 stored images at factor 2 decode to 8 images, the set has 12", id="count"),
        pytest.param(lambda s: StoredImages(s.images[:, :1], 2), "stored images are 1x8x8, the set's 3x8x8", id="shape"),
        pytest.param(lambda s: StoredImages(s.images.double(), 2), "4-D float32", id="dtype"),
        pytest.param(lambda s: s.images, "stored must be StoredImages or None, got Tensor", id="not stored images"),
    ],
)
def test_validate_rejects_bad_stored_forms(stored: Callable[[StoredImages], object], match: str) -> None:
    synthetic = make_factorised_set()
    synthetic.stored = stored(synthetic.stored)  # type: ignore[assignment]
    with rejects(match) as err:
        synthetic.validate()
    assert_one_line(err)


def test_stored_form_follows_copies_and_is_dropped_by_merges_and_files(tmp_path: Path) -> None:
    synthetic = make_factorised_set()
    for copy in (synthetic.clone(), synthetic.to("cpu")):
        assert copy.stored is not None and copy.stored.factor == 2
        assert torch.equal(copy.stored.images, synthetic.stored.images)
    clone = synthetic.clone()
    clone.stored.images.zero_()
    assert synthetic.stored.images.abs().sum() > 0  # a clone's stored images are its own
    assert merge_synthetic_sets([synthetic, make_factorised_set()]).stored is None
    synthetic.save(tmp_path / "set.pt")
    loaded = SyntheticSet.load(tmp_path / "set.pt")
    assert loaded.stored is None and torch.equal(loaded.images, synthetic.images)
