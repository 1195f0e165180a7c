"""The Flower wire form of a synthetic set: round trips, Flower's own serialisation, hostile records."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from flwr.app import Array, ArrayRecord

from fedcond.errors import ModelRecordError
from fedcond.federated.wire import array_record_bytes, check_model_record, from_array_record, to_array_record
from fedcond.synthetic import SyntheticSet, default_metadata
from sets import assert_one_line, make_factorised_set, make_set, rejects
from simulations.attacks import poison


@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_array_record_round_trip(soft: bool) -> None:
    synthetic = make_set(soft=soft)
    record = to_array_record(synthetic)
    assert isinstance(record, ArrayRecord) and set(record.keys()) == {"images", "labels"}
    assert record["images"].numpy().dtype == np.float32
    received = from_array_record(
        record, num_classes=3, max_per_class=2, image_shape=(3, 8, 8)
    )
    assert torch.equal(received.images, synthetic.images)
    assert torch.equal(received.labels, synthetic.labels)
    assert received.metadata == default_metadata()
    custom = from_array_record(record, num_classes=3, metadata={"client": 7})
    assert custom.metadata == {"client": 7}


def test_array_record_survives_flower_serialisation() -> None:
    record = to_array_record(make_set())
    rebuilt = ArrayRecord(
        {name: Array.inflate(array.deflate(), dict(array.slice_array())) for name, array in record.items()}
    )
    received = from_array_record(rebuilt, num_classes=3)
    assert torch.equal(received.images, make_set().images)


def _record(images: np.ndarray | Array, labels: np.ndarray | Array, **extra: np.ndarray) -> ArrayRecord:
    arrays = {"images": images, "labels": labels, **extra}
    return ArrayRecord(
        {name: value if isinstance(value, Array) else Array(value) for name, value in arrays.items()}
    )


def _forged(declared: str, shape: tuple[int, ...], descr: str, data: bytes) -> Array:
    """An Array declaring ``declared``/``shape`` whose .npy header says ``descr``/``shape``."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return Array(dtype=declared, shape=shape, stype="numpy.ndarray", data=buffer.getvalue() + data)


def _hostile_records() -> list[object]:
    good = make_set()
    images, labels = good.images.numpy(), good.labels.numpy()
    nan_images = images.copy()
    nan_images[0, 0, 0, 0] = np.nan
    crowded = labels.copy()
    crowded[:3] = 0
    huge_shape = (2**40, 3, 8, 8)
    object_labels = pickle.dumps(list(labels))
    soft = make_set(soft=True).labels.numpy()
    negative, unnormalised, nan_soft = soft.copy(), soft * 1.5, soft.copy()
    negative[0, :2] = [-0.5, 1.5]
    nan_soft[1, 0] = np.nan
    return [
        pytest.param(_record(images, negative), "soft labels contain 1 negative entries", id="negative soft labels"),
        pytest.param(_record(images, unnormalised), "soft label rows must sum to 1", id="soft labels not summing to 1"),
        pytest.param(_record(images, nan_soft), "soft labels contain 1 non-finite values", id="NaN soft labels"),
        pytest.param(_record(images, soft[:, :2].copy()), "soft labels have 2 columns but num_classes is 3", id="soft labels too narrow"),
        pytest.param(_record(nan_images, labels), "images contain 1 non-finite", id="NaN images"),
        pytest.param(
            _record(images, labels, payload=labels),
            r"exactly the arrays 'images' and 'labels' \(or 'stored', 'factor' and 'labels'\), got 'images', 'labels', 'payload'",
            id="extra key",
        ),
        pytest.param(ArrayRecord({"images": Array(images)}), "got 'images'$", id="missing key"),
        pytest.param(
            _record(images, labels + 1),
            r"\[0, 3\), got values from 1 to 3",
            id="labels out of range",
        ),
        pytest.param(
            _record(images, crowded),
            "class 0 has 3 images, more than max_per_class=2",
            id="too many per class",
        ),
        pytest.param(
            _record(images.astype(np.float64), labels),
            "'images' has dtype 'float64', expected float32",
            id="float64 images",
        ),
        pytest.param(
            _record(images, labels.astype(np.int32)),
            "'labels' has dtype 'int32', expected int64 or float32",
            id="int32 labels",
        ),
        pytest.param(
            _record(images, _forged("object", (6,), "|O", object_labels)),
            "'labels' has dtype 'object'",
            id="object labels",
        ),
        pytest.param(
            _record(images, _forged("int64", (6,), "|O", object_labels)),
            r"declares int64 \(6,\) but holds dtype\('O'\)",
            id="disguised object labels",
        ),
        pytest.param(
            _record(images[:, :1], labels), "images are 1x8x8 but 3x8x8 expected", id="wrong shape"
        ),
        pytest.param(
            _record(_forged("float32", huge_shape, "<f4", b"\0" * 64), labels),
            f"holds {2**40 * 192} values, more than the limit",
            id="huge header",
        ),
        pytest.param(
            _record(_forged("float32", (6, 3, 8, 8), "<f8", b"\0" * 6 * 192 * 8), labels),
            r"declares float32 .* but holds dtype\('float64'\)",
            id="dtype liar",
        ),
        pytest.param(
            _record(_forged("float32", (6, 3, 8, 8), "<f4", b"\0" * 100), labels),
            "has 100 data bytes but its shape needs 4608",
            id="short data",
        ),
        pytest.param(
            _record(Array("float32", (6, 3, 8, 8), "numpy.ndarray", b"not numpy"), labels),
            "'images' is not a valid .npy payload",
            id="garbage",
        ),
        pytest.param(
            _record(Array("float32", (6, 3, 8, 8), "pickle", pickle.dumps(images)), labels),
            "'images' has serialisation 'pickle'",
            id="pickle stype",
        ),
    ]


@pytest.mark.parametrize(("record", "match"), _hostile_records())
def test_from_array_record_rejects_hostile_records(record: ArrayRecord, match: str) -> None:
    with rejects(match) as err:
        from_array_record(record, num_classes=3, max_per_class=2, image_shape=(3, 8, 8))
    assert_one_line(err)


def test_from_array_record_rejects_non_records() -> None:
    with rejects("expected an ArrayRecord, got dict"):
        from_array_record({"images": 1}, num_classes=3)  # type: ignore[arg-type]


def test_to_array_record_refuses_invalid_set() -> None:
    synthetic = make_set()
    synthetic.images[0, 0, 0, 0] = float("inf")
    with rejects("1 non-finite"):
        to_array_record(synthetic)


def test_from_array_record_accepts_fortran_order() -> None:
    good = make_set()
    record = _record(np.asfortranarray(good.images.numpy()), good.labels.numpy())
    received = from_array_record(record, num_classes=3)
    assert torch.equal(received.images, good.images) and received.images.is_contiguous()




@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_a_factorised_set_travels_as_its_stored_form(soft: bool) -> None:
    synthetic = make_factorised_set(soft=soft)
    record = to_array_record(synthetic)
    assert set(record.keys()) == {"stored", "factor", "labels"}
    assert int(record["factor"].numpy()) == 2 and record["stored"].numpy().shape == (3, 3, 8, 8)
    decoded = to_array_record(SyntheticSet(synthetic.images, synthetic.labels, 3, synthetic.metadata))
    image_bytes = len(decoded["images"].data) - 128  # minus the .npy header
    assert len(record["stored"].data) - 128 == image_bytes // 4  # a quarter of the pixels at factor 2
    assert array_record_bytes(record) < array_record_bytes(decoded) / 2
    received = from_array_record(record, num_classes=3, max_per_class=4, image_shape=(3, 8, 8), factor=2)
    assert torch.equal(received.images, synthetic.images) and torch.equal(received.labels, synthetic.labels)
    assert received.stored is not None and received.stored.factor == 2
    assert torch.equal(received.stored.images, synthetic.stored.images)
    assert from_array_record(decoded, num_classes=3, factor=2).stored is None  # a decoded record is still accepted


def _stored_record(stored: np.ndarray | Array, factor: np.ndarray | Array, labels: np.ndarray) -> ArrayRecord:
    arrays = {"stored": stored, "factor": factor, "labels": labels}
    return ArrayRecord({name: value if isinstance(value, Array) else Array(value) for name, value in arrays.items()})


def _hostile_stored_records() -> list[object]:
    good = make_factorised_set()
    stored, labels = good.stored.images.numpy(), good.labels.numpy()
    two = np.array(2, dtype=np.int64)
    crowded = labels.copy()
    crowded[:5] = 0
    return [
        pytest.param(_stored_record(stored, np.array(4, dtype=np.int64), np.zeros(48, np.int64)), "factor 4 but 2 expected", id="other factor"),
        pytest.param(_stored_record(stored, np.array([2], dtype=np.int64), labels), "'factor' must be a scalar", id="factor not scalar"),
        pytest.param(_stored_record(stored, np.array(2.0), labels), "'factor' has dtype 'float64', expected int64", id="float factor"),
        pytest.param(_stored_record(stored, np.array(2, dtype=np.int64), labels[:8]), "3 stored images decode to 12 images but 8 labels", id="too few labels"),
        pytest.param(_stored_record(stored[0], two, labels), r"stored images must be 4-D \[N, C, H, W\], got shape \(3, 8, 8\)", id="3-D stored"),
        pytest.param(_stored_record(stored, two, crowded), "class 0 has 5 images, more than max_per_class=4", id="too many per class"),
        pytest.param(_stored_record(stored[:, :1].copy(), two, labels), "images are 1x8x8 but 3x8x8 expected", id="wrong shape"),
        pytest.param(ArrayRecord({"stored": Array(stored), "labels": Array(labels)}), "got 'labels', 'stored'$", id="no factor"),
    ]


@pytest.mark.parametrize(("record", "match"), _hostile_stored_records())
def test_from_array_record_rejects_hostile_stored_records(record: ArrayRecord, match: str) -> None:
    with rejects(match) as err:
        from_array_record(record, num_classes=3, max_per_class=4, image_shape=(3, 8, 8), factor=2)
    assert_one_line(err)


@pytest.mark.parametrize(("factor", "match"), [(1, "factor 1 does not tile 8x8"), (3, "factor 3 does not tile 8x8")])
def test_a_factor_that_cannot_tile_is_refused_before_decoding(factor: int, match: str) -> None:
    good = make_factorised_set()
    record = _stored_record(good.stored.images.numpy(), np.array(factor, dtype=np.int64), good.labels.numpy())
    with rejects(match):
        from_array_record(record, num_classes=3)


def test_stored_records_are_bounded_by_their_decoded_size(monkeypatch: pytest.MonkeyPatch) -> None:
    record = to_array_record(make_factorised_set())
    monkeypatch.setattr(SyntheticSet, "max_elements", 3 * 3 * 8 * 8 * 2)  # the stored images fit, 4x of them do not
    with rejects("stored images decode to 2304 values, more than the limit of 1152"):
        from_array_record(record, num_classes=3)


def test_poisoned_stored_records_keep_their_form() -> None:
    record = to_array_record(make_factorised_set())
    flipped = from_array_record(poison(record, "label-flip", num_classes=3), num_classes=3, factor=2)
    assert flipped.stored is not None and torch.equal(flipped.labels, 2 - make_factorised_set().labels)
    noise = from_array_record(poison(record, "garbage", num_classes=3), num_classes=3, factor=2)
    assert noise.stored is not None and not torch.equal(noise.stored.images, make_factorised_set().stored.images)


def test_record_bytes_count_the_arrays_payloads() -> None:
    synthetic = make_set()
    record = to_array_record(synthetic)
    payload = synthetic.images.numel() * 4 + synthetic.labels.numel() * 8
    assert payload < array_record_bytes(record) < payload + 2 * 256  # plus two .npy headers


# ------------------------------------------------------------------ model weights in a fit reply
MODEL = {"conv.weight": np.ones((4, 1, 3, 3), np.float32), "bn.num_batches_tracked": np.array(7, np.int64)}


def _model(**replaced: np.ndarray | Array) -> ArrayRecord:
    arrays = {**MODEL, **replaced}
    return ArrayRecord({k: v if isinstance(v, Array) else Array(v) for k, v in arrays.items()})


def test_model_record_that_fits_the_global_model_passes() -> None:
    check_model_record(_model(**{"conv.weight": np.full((4, 1, 3, 3), -2.5, np.float32)}), _model())


@pytest.mark.parametrize(
    ("record", "match"),
    [
        pytest.param(_model(**{"conv.weight": np.full((4, 1, 3, 3), np.inf, np.float32)}), "'conv.weight' holds values that are not finite", id="inf"),
        pytest.param(_model(**{"conv.weight": np.ones((4, 1, 3, 4), np.float32)}), "holds 48 values, more than the limit of 36", id="bigger"),
        pytest.param(_model(**{"conv.weight": np.ones((36,), np.float32)}), r"shape \(36,\), the global model's is \(4, 1, 3, 3\)", id="reshaped"),
        pytest.param(_model(**{"conv.weight": np.ones((4, 1, 3, 3), np.float16)}), "dtype 'float16', expected float32", id="float16"),
        pytest.param(_model(**{"conv.weight": _forged("float32", (4, 1, 3, 3), "<f4", b"\0" * 10**6)}), "data bytes but its shape needs 144", id="padded"),
        pytest.param(_model(extra=np.zeros(1, np.float32)), "unexpected 'extra'", id="extra key"),
        pytest.param(ArrayRecord({"conv.weight": Array(MODEL["conv.weight"])}), "missing bn.num_batches_tracked", id="missing key"),
    ],
)
def test_model_record_that_does_not_fit_is_refused(record: ArrayRecord, match: str) -> None:
    with pytest.raises(ModelRecordError, match=match) as err:
        check_model_record(record, _model())
    assert_one_line(err)
