"""Dataset loaders, on data the tests write themselves (plus the real Fashion-MNIST when installed)."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fedcond.config import DatasetConfig
from fedcond.data import (
    DATASETS,
    DatasetSplits,
    ImageDataset,
    cifar,
    dataset_availability,
    denormalise,
    load_dataset,
    mnist,
    normalise,
    paths,
    register_dataset,
    registry,
    stratified_split,
)
from fedcond.errors import ConfigError, DataError, DatasetUnavailableError

IDX_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
SYSTEM_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(autouse=True)
def _empty_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep every test away from the user's download cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))


def cfg(name: str, data_root: Path | str | None = None, **kwargs: object) -> DatasetConfig:
    return DatasetConfig(name=name, data_root=str(data_root) if data_root is not None else None, **kwargs)


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message


# ---------------------------------------------------------------------------- registry


def test_unknown_dataset_is_a_config_error_listing_choices() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset(cfg("imagenet-9000"))
    message = str(info.value)
    assert "imagenet-9000" in message
    for name in ("cifar10", "digits", "fashion-mnist", "image-folder", "mnist", "npz"):
        assert name in message
    with pytest.raises(ConfigError):
        dataset_availability("imagenet-9000")


def test_builtin_datasets_are_registered() -> None:
    assert {"cifar10", "digits", "fashion-mnist", "image-folder", "mnist", "npz"} <= set(DATASETS.names())


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "DATASETS", registry.Registry("dataset"))
    monkeypatch.setattr(registry, "_PROBES", {})


def _tiny_dataset(name: str, size: int = 4) -> ImageDataset:
    return ImageDataset(
        images=torch.zeros(2, 1, size, size),
        labels=torch.tensor([0, 1]),
        num_classes=2,
        name=name,
        mean=(0.0,),
        std=(1.0,),
    )


@pytest.mark.usefixtures("isolated_registry")
def test_custom_dataset_registers_and_loads() -> None:
    @register_dataset("tiny", probe=lambda c: (c.data_root is not None, "needs a root"))
    def load_tiny(c: DatasetConfig) -> DatasetSplits:
        return DatasetSplits(train=_tiny_dataset("tiny"), test=_tiny_dataset("tiny"))

    @register_dataset("unchecked")
    def load_unchecked(c: DatasetConfig) -> DatasetSplits:
        return DatasetSplits(train=_tiny_dataset("u"), test=_tiny_dataset("u", size=5))

    assert len(load_dataset(cfg("tiny")).train) == 2
    assert dataset_availability("tiny") == (False, "needs a root")
    assert dataset_availability("tiny", data_root="/x") == (True, "needs a root")
    usable, message = dataset_availability("unchecked")
    assert usable and "not checked" in message
    with pytest.raises(DataError, match="train images"):  # train and test sizes disagree
        load_dataset(cfg("unchecked"))
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("tiny")(load_tiny)


@pytest.mark.usefixtures("isolated_registry")
def test_loader_returning_the_wrong_type_is_a_type_error() -> None:
    register_dataset("wrong")(lambda c: (1, 2))
    with pytest.raises(TypeError, match="DatasetSplits"):
        load_dataset(cfg("wrong"))


def test_normalise_and_denormalise_round_trip() -> None:
    images = torch.rand(3, 2, 4, 4)
    mean, std = (0.5, 0.25), (0.2, 0.4)
    normalised = normalise(images, mean, std)
    assert torch.allclose(normalised[:, 1], (images[:, 1] - 0.25) / 0.4)
    assert torch.allclose(denormalise(normalised, mean, std), images, atol=1e-6)
    assert torch.allclose(normalise(images[0], mean, std), normalised[0])  # a single [C, H, W] image
    normalise(images, mean, std, inplace=True)
    assert torch.equal(images, normalised)


# ---------------------------------------------------------------------------- digits


def test_digits_shapes_dtypes_and_normalisation() -> None:
    splits = load_dataset(cfg("digits"))
    train, test = splits.train, splits.test
    assert train.images.shape[1:] == test.images.shape[1:] == (1, 8, 8)
    assert train.images.dtype == torch.float32 and train.labels.dtype == torch.int64
    assert len(train) + len(test) == 1797
    assert len(test) == pytest.approx(0.25 * 1797, abs=1)
    assert train.num_classes == 10 and train.class_names == tuple("0123456789")
    assert train.images.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert train.images.std(dim=(0, 2, 3)).sub(1).abs().max() < 1e-3
    assert test.mean == train.mean and 0.2 < train.mean[0] < 0.4


def test_digits_split_is_the_stratified_sklearn_split() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    splits = load_dataset(cfg("digits", test_fraction=0.3, split_seed=7))
    train_idx, test_idx = stratified_split(bunch.target, 0.3, 7, "digits")
    assert set(train_idx).isdisjoint(test_idx) and len(train_idx) + len(test_idx) == 1797
    pixels = denormalise(splits.train.images, splits.train.mean, splits.train.std)
    expected = torch.from_numpy(bunch.images[train_idx] / 16).float().unsqueeze(1)
    assert torch.allclose(pixels, expected, atol=1e-5)
    assert torch.equal(splits.test.labels, torch.from_numpy(bunch.target[test_idx]))
    # Stratified: every class has (almost exactly) its share in the test split.
    shares = splits.test.class_counts().double() / torch.bincount(torch.from_numpy(bunch.target)).double()
    assert shares.sub(0.3).abs().max() < 0.02


def test_digits_split_is_reproducible_and_follows_the_seed() -> None:
    first, again = load_dataset(cfg("digits", split_seed=3)), load_dataset(cfg("digits", split_seed=3))
    other = load_dataset(cfg("digits", split_seed=4))
    assert torch.equal(first.test.images, again.test.images)
    assert torch.equal(first.test.labels, again.test.labels)
    assert not torch.equal(first.test.labels, other.test.labels)


# ---------------------------------------------------------------------------- IDX: mnist, fashion-mnist


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx_dataset(directory: Path, *, gz: bool, n_train: int = 20, n_test: int = 10) -> dict:
    """Fake MNIST-format files with random pixels; returns the arrays written."""
    rng = np.random.default_rng(0)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 6, 6), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        arrays[split] = (images, labels)
        for stem, array in zip(IDX_STEMS[split], (images, labels)):
            if gz:
                with gzip.open(directory / f"{stem}.gz", "wb") as f:
                    f.write(idx_bytes(array))
            else:
                (directory / stem).write_bytes(idx_bytes(array))
    return arrays


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
@pytest.mark.parametrize("layout", ["flat", "torchvision"])
@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_idx_datasets_load_from_data_root(
    tmp_path: Path, name: str, folder: str, layout: str, gz: bool
) -> None:
    directory = tmp_path if layout == "flat" else tmp_path / folder / "raw"
    arrays = write_idx_dataset(directory, gz=gz)
    splits = load_dataset(cfg(name, tmp_path))
    source = mnist.MNIST if name == "mnist" else mnist.FASHION_MNIST
    for part, (images, labels) in zip((splits.train, splits.test), (arrays["train"], arrays["test"])):
        assert part.images.shape == (len(images), 1, 6, 6) and part.images.dtype == torch.float32
        assert part.mean == (source.mean,) and part.std == (source.std,)
        expected = (torch.from_numpy(images).float().unsqueeze(1) / 255 - source.mean) / source.std
        assert torch.allclose(part.images, expected, atol=1e-5)
        assert torch.equal(part.labels, torch.from_numpy(labels.astype(np.int64)))
    assert splits.train.num_classes == 10 and len(splits.train.class_names) == 10


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-7])


def _bad_magic(path: Path) -> None:
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])


def _cut_gzip(path: Path) -> None:
    gz = path.with_name(path.name + ".gz")
    gz.write_bytes(gzip.compress(path.read_bytes())[:-20])
    path.unlink()


@pytest.mark.parametrize("damage", [_truncate, _bad_magic, _cut_gzip])
def test_corrupt_idx_file_is_a_one_line_data_error_naming_it(tmp_path: Path, damage) -> None:
    write_idx_dataset(tmp_path, gz=False)
    damage(tmp_path / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError) as info:
        load_dataset(cfg("fashion-mnist", tmp_path))
    assert "t10k-images-idx3-ubyte" in str(info.value)
    assert_one_line(str(info.value))


def test_idx_label_count_mismatch_is_a_data_error(tmp_path: Path) -> None:
    write_idx_dataset(tmp_path, gz=False)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(3, dtype=np.uint8)))
    with pytest.raises(DataError, match="3 labels for 20 images"):
        load_dataset(cfg("mnist", tmp_path))


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mnist, "SYSTEM_DATASETS_DIR", tmp_path / "share")
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(cfg("fashion-mnist"))
    message = str(info.value)
    assert_one_line(message)
    assert message.startswith(f"fashion-mnist not found in {tmp_path / 'share' / 'fashion-mnist'}")
    assert "apt-get install dataset-fashion-mnist" in message
    assert "dataset.data_root=DIR" in message and "dataset.download=true" in message
    assert dataset_availability("fashion-mnist") == (False, message.removeprefix("fashion-mnist "))


def test_missing_mnist_in_data_root_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(cfg("mnist", tmp_path))
    message = str(info.value)
    assert_one_line(message)
    assert str(tmp_path) in message and "dataset.download=true" in message
    assert "apt-get" not in message  # no Debian package for MNIST


def test_download_goes_through_torchvision_into_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torchvision.datasets

    calls = []

    class FakeFashionMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, download))
            write_idx_dataset(Path(root) / "FashionMNIST" / "raw", gz=True)

    monkeypatch.setattr(mnist, "SYSTEM_DATASETS_DIR", tmp_path / "share")
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    config = cfg("fashion-mnist", download=True)
    usable, message = dataset_availability(config)
    assert usable and "downloads into" in message
    splits = load_dataset(config)
    assert len(splits.train) == 20 and calls == [(str(paths.cache_dir()), True)]
    load_dataset(config)  # found in the cache now: no second download
    assert len(calls) == 1
    assert dataset_availability("fashion-mnist")[1].startswith("IDX files in")


def test_failed_download_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(**kwargs: object) -> None:
        raise RuntimeError("Error downloading t10k-images-idx3-ubyte.gz:\nTried mirrors")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(cfg("mnist", tmp_path, download=True))
    assert_one_line(str(info.value))
    assert "download" in str(info.value) and "Error downloading" in str(info.value)


@pytest.mark.skipif(not SYSTEM_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_loads_fast() -> None:
    start = time.perf_counter()
    splits = load_dataset(cfg("fashion-mnist"))
    assert time.perf_counter() - start < 10
    assert splits.train.images.shape == (60000, 1, 28, 28) and len(splits.test) == 10000
    assert splits.train.class_counts().tolist() == [6000] * 10
    assert abs(float(splits.train.images.mean())) < 0.01 and abs(float(splits.train.images.std()) - 1) < 0.01
    assert dataset_availability("fashion-mnist") == (True, f"IDX files in {SYSTEM_FASHION_MNIST}")


# ---------------------------------------------------------------------------- cifar10


def write_cifar(directory: Path, *, per_batch: int = 2, bytes_keys: bool = True) -> dict[str, tuple]:
    """Tiny batches in the real layout: a dict with ``data`` uint8 [n, 3072] and ``labels`` list."""
    rng = np.random.default_rng(1)
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in cifar.TRAIN_BATCHES + cifar.TEST_BATCHES:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
        entry = {key("batch_label"): key(name), key("data"): data, key("labels"): labels}
        (directory / name).write_bytes(pickle.dumps(entry, protocol=2 if bytes_keys else 4))
        written[name] = (data, labels)
    return written


@pytest.mark.parametrize("bytes_keys", [True, False], ids=["bytes-keys", "str-keys"])
def test_cifar10_loads_pickle_batches(tmp_path: Path, bytes_keys: bool) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py", bytes_keys=bytes_keys)
    splits = load_dataset(cfg("cifar10", tmp_path))
    assert splits.train.images.shape == (10, 3, 32, 32) and splits.test.images.shape == (2, 3, 32, 32)
    assert splits.train.mean == cifar.MEAN and splits.train.class_names[0] == "airplane"
    data, labels = written["test_batch"]
    pixels = torch.from_numpy(data.reshape(2, 3, 32, 32)).float() / 255
    assert torch.allclose(splits.test.images, normalise(pixels, cifar.MEAN, cifar.STD), atol=1e-5)
    assert splits.test.labels.tolist() == labels
    expected_train = [label for name in cifar.TRAIN_BATCHES for label in written[name][1]]
    assert splits.train.labels.tolist() == expected_train


def test_cifar10_reads_batches_naming_numpy_1_modules(tmp_path: Path) -> None:
    # The official batches were pickled by numpy 1, whose reconstructor lives in numpy.core.
    write_cifar(tmp_path)
    for name in cifar.TRAIN_BATCHES + cifar.TEST_BATCHES:
        path = tmp_path / name
        old = path.read_bytes().replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
        assert b"numpy.core.multiarray\n_reconstruct" in old
        path.write_bytes(old)
    assert len(load_dataset(cfg("cifar10", tmp_path)).test) == 2


def test_cifar10_accepts_the_batch_folder_itself(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    assert len(load_dataset(cfg("cifar10", tmp_path)).train) == 10
    assert dataset_availability("cifar10", str(tmp_path)) == (True, f"pickle batches in {tmp_path}")


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.mark.parametrize(
    "entry, match",
    [
        ({b"data": _Exploit(), b"labels": []}, "refusing to load"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "uint8 array"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "2 integers"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, "labels outside"),
        ([1, 2, 3], "not a dict"),
    ],
)
def test_malformed_cifar_batch_is_a_data_error(tmp_path: Path, entry: object, match: str) -> None:
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(entry))
    with pytest.raises(DataError, match=match) as info:
        load_dataset(cfg("cifar10", tmp_path))
    assert "data_batch_3" in str(info.value)
    assert_one_line(str(info.value))


def test_truncated_cifar_batch_is_a_data_error(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes((tmp_path / "test_batch").read_bytes()[:500])
    with pytest.raises(DataError, match="test_batch is not a readable CIFAR batch"):
        load_dataset(cfg("cifar10", tmp_path))


def test_missing_cifar10_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(cfg("cifar10", tmp_path))
    assert_one_line(str(info.value))
    assert "cifar-10-batches-py" in str(info.value) and "dataset.download=true" in str(info.value)
    assert dataset_availability("cifar10", str(tmp_path))[0] is False


# ---------------------------------------------------------------------------- npz


@pytest.mark.parametrize(
    "layout, shape",
    [("NHW", (12, 5, 6)), ("NHWC", (12, 5, 6, 3)), ("NCHW", (12, 3, 5, 6))],
)
def test_npz_loads_official_splits_in_any_layout(tmp_path: Path, layout: str, shape: tuple) -> None:
    rng = np.random.default_rng(2)
    x_train = rng.integers(0, 256, size=shape, dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(4, *shape[1:]), dtype=np.uint8)
    y_train, y_test = np.arange(12) % 3, np.array([0, 1, 2, 4])
    path = tmp_path / "set.npz"
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    splits = load_dataset(cfg("npz", path))
    channels = 1 if layout == "NHW" else 3
    assert splits.train.images.shape == (12, channels, 5, 6)
    assert splits.test.images.shape == (4, channels, 5, 6)
    assert splits.train.num_classes == 5  # max label + 1, over train and test
    assert splits.train.images.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    nchw = x_train.transpose(0, 3, 1, 2) if layout == "NHWC" else x_train.reshape(12, -1, 5, 6)
    pixels = denormalise(splits.train.images, splits.train.mean, splits.train.std)
    assert torch.allclose(pixels, torch.from_numpy(nchw).float() / 255, atol=1e-4)


def test_npz_without_test_arrays_is_split_stratified(tmp_path: Path) -> None:
    x = np.random.default_rng(3).random((40, 4, 4)).astype(np.float32)
    y = np.repeat(np.arange(4), 10)
    path = tmp_path / "set.npz"
    np.savez(path, x_train=x, y_train=y, class_names=np.array(["a", "b", "c", "d"]))
    splits = load_dataset(cfg("npz", path, test_fraction=0.5, split_seed=1))
    assert len(splits.train) == len(splits.test) == 20
    assert splits.test.class_counts().tolist() == [5, 5, 5, 5]
    assert splits.train.class_names == ("a", "b", "c", "d")
    assert dataset_availability("npz", str(path))[0] is True


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x_train": np.zeros((4, 3, 3), np.uint8)}, "must hold x_train, y_train"),
        ({"x_train": np.zeros((2, 3, 3), np.uint8), "y_train": np.array([0, -1])}, "negative"),
        ({"x_train": np.zeros((2, 3, 3), np.uint8), "y_train": np.array([0.0, 1.0])}, "integer array"),
        ({"x_train": np.zeros((2, 3, 3), np.uint8), "y_train": np.array([0, 1, 1])}, "3 labels for 2"),
        ({"x_train": np.full((2, 3, 3), np.nan), "y_train": np.array([0, 1])}, "NaN"),
        ({"x_train": np.zeros((2, 3, 3), np.int64), "y_train": np.array([0, 1])}, "uint8"),
        ({"x_train": np.zeros((2, 5, 5, 5), np.uint8), "y_train": np.array([0, 1])}, "C in 1, 3, 4"),
        ({"x_train": np.array([[1], "a"], dtype=object), "y_train": np.array([0, 1])}, "cannot read x_train"),
    ],
)
def test_malformed_npz_is_a_data_error(tmp_path: Path, arrays: dict, match: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=match):
        load_dataset(cfg("npz", path))


def test_npz_that_is_not_an_archive_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(cfg("npz", path))
    assert dataset_availability("npz", str(path))[0] is False


# ---------------------------------------------------------------------------- image-folder


def write_folder(root: Path, mode: str, per_class: int = 4) -> None:
    rng = np.random.default_rng(4)
    channels = 3 if mode == "RGB" else 1
    for c, name in enumerate(("cat", "dog", "eel")):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            size = (6, 5) if i else (8, 7)  # a second size: resized to the first image's
            pixels = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(root / name / f"{i}.png")


@pytest.mark.parametrize("mode, channels", [("RGB", 3), ("L", 1)])
def test_image_folder_loads_and_splits_stratified(tmp_path: Path, mode: str, channels: int) -> None:
    write_folder(tmp_path, mode)
    splits = load_dataset(cfg("image-folder", tmp_path, test_fraction=0.25))
    # ImageFolder sorts files, so each class's "0.png" (8x7: width 8, height 7) sets the size.
    assert splits.train.images.shape == (9, channels, 7, 8)
    assert splits.test.images.shape == (3, channels, 7, 8)
    assert splits.train.class_names == ("cat", "dog", "eel")
    assert splits.test.class_counts().tolist() == [1, 1, 1]
    assert splits.train.images.std(dim=(0, 2, 3)).sub(1).abs().max() < 0.1
    assert dataset_availability("image-folder", str(tmp_path)) == (True, f"3 classes in {tmp_path}")


def test_image_folder_with_too_few_images_is_a_data_error(tmp_path: Path) -> None:
    write_folder(tmp_path, "L", per_class=1)
    with pytest.raises(DataError, match="cannot split"):
        load_dataset(cfg("image-folder", tmp_path))


def test_image_folder_without_class_folders_is_a_data_error(tmp_path: Path) -> None:
    (tmp_path / "loose.png").write_bytes(b"")
    assert dataset_availability("image-folder", str(tmp_path))[0] is False
    with pytest.raises(DataError, match="class folder"):
        load_dataset(cfg("image-folder", tmp_path))


def test_unreadable_image_is_a_data_error(tmp_path: Path) -> None:
    write_folder(tmp_path, "RGB")
    (tmp_path / "dog" / "2.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="2.png is not a readable image"):
        load_dataset(cfg("image-folder", tmp_path))


# ---------------------------------------------------------------------------- missing data


@pytest.mark.parametrize("name", ["mnist", "cifar10", "npz", "image-folder"])
@pytest.mark.parametrize("root", [None, "missing"])
def test_missing_data_is_unavailable_with_one_line_saying_how(
    tmp_path: Path, name: str, root: str | None
) -> None:
    config = cfg(name, tmp_path / root if root else None)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset(config)
    message = str(info.value)
    assert_one_line(message)
    assert message.startswith(name) and "dataset.data_root=" in message
    assert dataset_availability(config) == (False, message.removeprefix(f"{name} "))


def test_availability_never_loads_the_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(path: Path) -> None:
        raise AssertionError(f"read {path}")

    monkeypatch.setattr(mnist, "read_idx", fail)
    monkeypatch.setattr(cifar, "read_batch", fail)
    for name in DATASETS:
        usable, message = dataset_availability(name)
        assert isinstance(usable, bool)
        assert_one_line(message)
    assert dataset_availability("digits") == (True, "bundled with scikit-learn")

