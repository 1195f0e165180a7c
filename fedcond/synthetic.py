"""The synthetic set: the small condensed dataset that is saved, shared and sent to a Flower server.

This module holds the container, its checks and its file format; the Flower wire form (an
``ArrayRecord``) is the Flower side's, in :mod:`fedcond.federated.wire`. A synthetic set that
arrives from a file or over the network is untrusted input: :meth:`SyntheticSet.load` (and the
wire decoder) read it without unpickling arbitrary objects, bound its size before materialising
any data, and :meth:`SyntheticSet.validate` rejects (never repairs) anything malformed with a
one-line :class:`~fedcond.errors.SyntheticSetError`.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import torch

from fedcond.errors import SyntheticSetError
from fedcond.io import atomic_write_bytes

FORMAT_VERSION = "fedcond.synthetic-set/1"

#: Keys of the dict stored in a synthetic-set file.
_FILE_KEYS = frozenset({"format", "images", "labels", "num_classes", "metadata_json"})
#: Grid cells are enlarged (nearest neighbour) to at least this many pixels on their longer side.
GRID_MIN_CELL = 32
_GRID_PADDING = 2
#: Pixels under each grid row for the captions of soft labels (PIL's default font is 11 px high).
_CAPTION_BAND = 12
#: How far a soft-label row may sum from 1.
_SOFT_LABEL_TOLERANCE = 1e-3
_MAX_METADATA_DEPTH = 32
#: Room for the zip container and pickle of a file, on top of its tensor bytes and metadata.
_FILE_OVERHEAD_BYTES = 2**20
#: Longest excerpt of untrusted content quoted in an error message.
_QUOTE_CHARS = 80
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def default_metadata(**overrides: Any) -> dict[str, Any]:
    """The metadata every synthetic set carries, with ``overrides`` applied (extra keys allowed).

    ``mean``/``std`` given as tuples (as :class:`~fedcond.data.base.ImageDataset` holds them) are
    stored as lists of floats, since metadata must survive a JSON round trip unchanged.
    """
    metadata: dict[str, Any] = {
        "dataset": None,
        "mean": None,
        "std": None,
        "method": None,
        "feature_map": None,
        "discrepancy": None,
        "ipc": None,
        "seed": None,
        "timings": {},
        "privacy": {"epsilon": None, "delta": None},
    }
    metadata.update(overrides)
    for key in ("mean", "std"):
        if isinstance(metadata[key], tuple):
            metadata[key] = [float(value) for value in metadata[key]]
    return metadata


@dataclass(frozen=True, eq=False)
class StoredImages:
    """The factorised form a set's images decode from (IDC's multi-formation, ``condense.factor``).

    Each stored image is a grid of ``factor`` x ``factor`` tiles that decodes to ``factor``² images
    (:func:`fedcond.condense.parameterisation.decode`). It is what the condenser optimised, and a
    quarter of the decoded bytes at factor 2: the form a set travels in when it has one.

    Parameters
    ----------
    images
        ``[N, C, H, W]`` float32 stored images; the set holds ``N * factor²`` decoded ones.
    factor
        Tiles per side, at least 2 (factor 1 has no stored form: the images are stored as they are).
    """

    images: torch.Tensor
    factor: int


@dataclass(eq=False)
class SyntheticSet:
    """Synthetic images with hard or soft labels, plus JSON metadata describing how they were made.

    Construction does not validate (condensation updates sets in place); call :meth:`validate`,
    which :meth:`save`, :meth:`load` and the Flower wire codec always do.

    Parameters
    ----------
    images
        ``[M, C, H, W]`` float32.
    labels
        Hard: ``[M]`` int64 in ``[0, num_classes)``; soft: ``[M, num_classes]`` float32 whose rows
        are probability distributions.
    num_classes
        Classes of the label space (a set may hold images of only some of them).
    metadata
        JSON-serialisable facts of how the set was made: dataset, normalisation (``mean``,
        ``std``), method, feature map, discrepancy, ipc, seed, timings, and ``privacy``
        (``epsilon``/``delta``, null when not private). See :func:`default_metadata`.
    stored
        The factorised images ``images`` decode from, when the condenser made them so (else
        ``None``). :meth:`validate` checks that they still decode to ``images``; an operation that
        makes new images (a merge, a file round trip) drops it, which is always correct.
    """

    images: torch.Tensor
    labels: torch.Tensor
    num_classes: int
    metadata: dict[str, Any] = field(default_factory=default_metadata)
    stored: StoredImages | None = None

    #: Most values allowed in ``images`` (and in ``labels``): 2**28 float32 values are 1 GiB, so a
    #: hostile file or upload cannot make a receiver allocate without bound.
    max_elements: ClassVar[int] = 2**28
    #: Most classes a set may declare (``class_counts`` allocates one counter per class).
    max_classes: ClassVar[int] = 2**20
    #: Largest metadata, as compact JSON, in bytes.
    max_metadata_bytes: ClassVar[int] = 2**20

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def is_soft(self) -> bool:
        """Whether labels are class probabilities ``[M, K]`` rather than class indices ``[M]``."""
        return self.labels.ndim == 2

    @property
    def hard_labels(self) -> torch.Tensor:
        """Class indices ``[M]``: the labels, or the most probable class of soft labels."""
        return self.labels.argmax(dim=1) if self.is_soft else self.labels

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        _, channels, height, width = self.images.shape
        return int(channels), int(height), int(width)

    def top_labels(self) -> list[tuple[int, float]]:
        """Each image's most probable class and its probability (hard labels: probability 1)."""
        if not self.is_soft:
            return [(int(k), 1.0) for k in self.labels.tolist()]
        probability, label = self.labels.max(dim=1)
        return [(int(k), float(q)) for k, q in zip(label.tolist(), probability.tolist())]

    def class_counts(self) -> torch.Tensor:
        """Images per class ``[num_classes]`` (soft labels counted by their most probable class)."""
        return torch.bincount(self.hard_labels, minlength=self.num_classes)

    def validate(
        self,
        *,
        num_classes: int | None = None,
        max_per_class: int | None = None,
        image_shape: tuple[int, int, int] | None = None,
    ) -> SyntheticSet:
        """Check every invariant, and the receiver's expectations if given; return ``self``.

        Sizes are checked before any pass over the data, so that an oversized set is rejected
        without the work it would cost. ``max_per_class`` caps each class's images for hard labels;
        soft labels have no one class per image (a teacher may put an image's mass on another
        class), so for them it caps the whole set at ``max_per_class`` x the number of classes.
        """
        self._validate_images()
        self._validate_labels()
        self._validate_num_classes(num_classes)
        if self.is_soft:
            self._validate_soft_label_values()
        else:
            self._validate_hard_label_values()
        if image_shape is not None and self.image_shape != tuple(image_shape):
            raise SyntheticSetError(
                f"images are {_shape_text(self.image_shape)} "
                f"but {_shape_text(image_shape)} expected"
            )
        non_finite = int((~torch.isfinite(self.images)).sum())
        if non_finite:
            raise SyntheticSetError(f"images contain {non_finite} non-finite values (NaN or Inf)")
        if self.stored is not None:
            self._validate_stored(self.stored)
        if max_per_class is not None and self.is_soft:
            cap = max_per_class * self.num_classes
            if len(self) > cap:
                raise SyntheticSetError(
                    f"{len(self)} soft-labelled images, more than max_per_class={max_per_class} x "
                    f"{self.num_classes} classes"
                )
        elif max_per_class is not None:
            counts = self.class_counts()
            over = torch.nonzero(counts > max_per_class, as_tuple=True)[0]
            if len(over):
                label = int(over[0])
                raise SyntheticSetError(
                    f"class {label} has {int(counts[label])} images, more than "
                    f"max_per_class={max_per_class}"
                )
        self._validate_metadata()
        return self

    def _validate_images(self) -> None:
        images = self.images
        if not isinstance(images, torch.Tensor):
            raise SyntheticSetError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.layout != torch.strided:
            raise SyntheticSetError(f"images must be a dense tensor, got layout {images.layout}")
        if images.ndim != 4:
            raise SyntheticSetError(
                f"images must be 4-D [M, C, H, W], got shape {tuple(images.shape)}"
            )
        if images.dtype != torch.float32:
            raise SyntheticSetError(f"images must be float32, got {images.dtype}")
        if images.numel() > self.max_elements:
            raise SyntheticSetError(
                f"images hold {images.numel()} values, more than the limit of {self.max_elements}"
            )
        if len(images) == 0:
            raise SyntheticSetError("synthetic set is empty")
        if min(images.shape[1:]) < 1:
            raise SyntheticSetError(
                "image channels, height and width must be positive, "
                f"got shape {tuple(images.shape)}"
            )

    def _validate_stored(self, stored: StoredImages) -> None:
        """The stored form's shape and factor, and that it still decodes to ``images`` (a set whose
        images were changed in place after condensing would otherwise travel as something else)."""
        # Imported here: the condense package imports this module.
        from fedcond.condense.parameterisation import decode

        if not isinstance(stored, StoredImages):
            raise SyntheticSetError(f"stored must be StoredImages or None, got {type(stored).__name__}")
        factor, images = stored.factor, stored.images
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 2:
            raise SyntheticSetError(f"stored images need a factor of at least 2, got {quote_untrusted(factor)}")
        if not isinstance(images, torch.Tensor) or images.dtype != torch.float32 or images.ndim != 4:
            raise SyntheticSetError("stored images must be a 4-D float32 tensor [N, C, H, W]")
        if tuple(images.shape[1:]) != self.image_shape:
            raise SyntheticSetError(
                f"stored images are {_shape_text(tuple(images.shape[1:]))}, the set's {_shape_text(self.image_shape)}"
            )
        _, height, width = self.image_shape
        if height % factor or width % factor:
            raise SyntheticSetError(f"factor {factor} does not divide the image size {height}x{width}")
        if len(images) * factor * factor != len(self):
            raise SyntheticSetError(
                f"{len(images)} stored images at factor {factor} decode to {len(images) * factor * factor} images, "
                f"the set has {len(self)}"
            )
        decoded = decode(images.detach().to(self.images.device), factor)
        if not torch.allclose(decoded, self.images.detach(), rtol=1e-5, atol=1e-6):
            raise SyntheticSetError("stored images no longer decode to the set's images (were the images changed?)")

    def _validate_labels(self) -> None:
        labels = self.labels
        if not isinstance(labels, torch.Tensor):
            raise SyntheticSetError(f"labels must be a torch.Tensor, got {type(labels).__name__}")
        if labels.layout != torch.strided:
            raise SyntheticSetError(f"labels must be a dense tensor, got layout {labels.layout}")
        if labels.dtype == torch.int64:
            if labels.ndim != 1:
                raise SyntheticSetError(
                    f"hard labels must be 1-D [M], got shape {tuple(labels.shape)}"
                )
        elif labels.dtype == torch.float32:
            if labels.ndim != 2:
                raise SyntheticSetError(
                    f"soft labels must be 2-D [M, num_classes], got shape {tuple(labels.shape)}"
                )
        else:
            raise SyntheticSetError(
                f"labels must be int64 (hard) or float32 (soft), got {labels.dtype}"
            )
        if labels.numel() > self.max_elements:
            raise SyntheticSetError(
                f"labels hold {labels.numel()} values, more than the limit of {self.max_elements}"
            )
        if len(labels) != len(self.images):
            raise SyntheticSetError(f"{len(self.images)} images but {len(labels)} labels")

    def _validate_num_classes(self, expected: int | None) -> None:
        num_classes = self.num_classes
        if not isinstance(num_classes, int) or isinstance(num_classes, bool):
            raise SyntheticSetError(
                f"num_classes must be an int, got {type(num_classes).__name__}"
            )
        if not 1 <= num_classes <= self.max_classes:
            raise SyntheticSetError(
                f"num_classes must be in [1, {self.max_classes}], got {num_classes}"
            )
        if expected is not None and num_classes != expected:
            raise SyntheticSetError(f"set has {num_classes} classes but {expected} expected")

    def _validate_hard_label_values(self) -> None:
        low, high = int(self.labels.min()), int(self.labels.max())
        if low < 0 or high >= self.num_classes:
            raise SyntheticSetError(
                f"hard labels must lie in [0, {self.num_classes}), got values from {low} to {high}"
            )

    def _validate_soft_label_values(self) -> None:
        labels = self.labels
        if labels.shape[1] != self.num_classes:
            raise SyntheticSetError(
                f"soft labels have {labels.shape[1]} columns but num_classes is {self.num_classes}"
            )
        non_finite = int((~torch.isfinite(labels)).sum())
        if non_finite:
            raise SyntheticSetError(f"soft labels contain {non_finite} non-finite values")
        negative = int((labels < 0).sum())
        if negative:
            raise SyntheticSetError(f"soft labels contain {negative} negative entries")
        deviation = (labels.sum(dim=1, dtype=torch.float64) - 1.0).abs()
        worst = int(deviation.argmax())
        if float(deviation[worst]) > _SOFT_LABEL_TOLERANCE:
            raise SyntheticSetError(
                f"soft label rows must sum to 1 (within {_SOFT_LABEL_TOLERANCE:g}); "
                f"row {worst} sums to {float(labels[worst].sum(dtype=torch.float64)):.6g}"
            )

    def _validate_metadata(self) -> None:
        if not isinstance(self.metadata, dict):
            raise SyntheticSetError(f"metadata must be a dict, got {type(self.metadata).__name__}")
        _check_json_value(self.metadata, "metadata", depth=0)
        size = len(json.dumps(self.metadata, allow_nan=False).encode("utf-8"))
        if size > self.max_metadata_bytes:
            raise SyntheticSetError(
                f"metadata is {size} bytes as JSON, "
                f"more than the limit of {self.max_metadata_bytes}"
            )

    def save(self, path: str | Path) -> None:
        """Write the set to ``path`` as one torch file, atomically.

        The set is validated first, so that every file written can be loaded back. The file holds
        the decoded images; a stored (factorised) form is not written.
        """
        self.validate()
        content = {
            "format": FORMAT_VERSION,
            "images": compact_cpu(self.images),
            "labels": compact_cpu(self.labels),
            "num_classes": int(self.num_classes),
            "metadata_json": json.dumps(self.metadata, allow_nan=False),
        }
        buffer = io.BytesIO()
        torch.save(content, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        num_classes: int | None = None,
        max_per_class: int | None = None,
        image_shape: tuple[int, int, int] | None = None,
    ) -> SyntheticSet:
        """Read a set written by :meth:`save` and validate it against the given expectations.

        Only tensors and plain containers are unpickled (``weights_only=True``); any failure
        becomes a :class:`SyntheticSetError` naming ``path``.
        """
        path = Path(path)
        # Largest valid content: 4-byte images and 8-byte (int64) labels, max_elements each.
        limit = 12 * cls.max_elements + cls.max_metadata_bytes + _FILE_OVERHEAD_BYTES
        try:
            file = open(path, "rb")
        except OSError as err:
            raise SyntheticSetError(f"{path}: cannot read file ({err.strerror or err})") from None
        with file:
            size = os.fstat(file.fileno()).st_size
            if size > limit:
                raise SyntheticSetError(
                    f"{path}: file is {size} bytes, more than a synthetic set may take ({limit})"
                )
            problem = _archive_problem(file, size)
            if problem is not None:
                raise SyntheticSetError(f"{path}: not a synthetic set file ({problem})")
            file.seek(0)
            try:
                content = torch.load(file, map_location="cpu", weights_only=True)
            except Exception as err:
                # torch raises many exception types for malformed or hostile files (zip, pickle,
                # the weights-only allow-list, storages); each means "not a valid file".
                raise SyntheticSetError(
                    f"{path}: not a synthetic set file ({_load_failure_text(err)})"
                ) from None
        synthetic = cls._from_file_content(path, content)
        try:
            return synthetic.validate(
                num_classes=num_classes, max_per_class=max_per_class, image_shape=image_shape
            )
        except SyntheticSetError as err:
            raise SyntheticSetError(f"{path}: {err}") from None

    @classmethod
    def _from_file_content(cls, path: Path, content: Any) -> SyntheticSet:
        """Unpack the dict :meth:`save` writes, checking its structure (not yet its values)."""
        if not isinstance(content, dict):
            raise SyntheticSetError(
                f"{path}: expected a dict, file holds a {type(content).__name__}"
            )
        missing = sorted(_FILE_KEYS.difference(content))
        if missing:
            raise SyntheticSetError(f"{path}: missing keys {', '.join(missing)}")
        unexpected = sorted(quote_untrusted(key) for key in content.keys() - _FILE_KEYS)
        if unexpected:
            raise SyntheticSetError(f"{path}: unexpected keys {', '.join(unexpected)}")
        file_format = content["format"]
        if not isinstance(file_format, str) or file_format != FORMAT_VERSION:
            raise SyntheticSetError(
                f"{path}: unsupported format {quote_untrusted(file_format)}, expected {FORMAT_VERSION!r}"
            )
        metadata_json = content["metadata_json"]
        if not isinstance(metadata_json, str):
            raise SyntheticSetError(
                f"{path}: metadata_json must be a str, got {type(metadata_json).__name__}"
            )
        try:
            metadata = json.loads(metadata_json)
        except (ValueError, RecursionError) as err:
            raise SyntheticSetError(
                f"{path}: metadata_json is not valid JSON ({exception_text(err)})"
            ) from None
        return cls(
            images=content["images"],
            labels=content["labels"],
            num_classes=content["num_classes"],
            metadata=metadata,
        )

    def save_grid(self, path: str | Path, *, max_per_class: int | None = None, captions: bool | None = None) -> None:
        """Write a PNG with one row per class (by most probable class for soft labels), atomically.

        Each row shows up to ``max_per_class`` images (default: all), in set order; unused cells
        are white. Images are denormalised with metadata ``mean``/``std`` when present and
        clipped to ``[0, 1]``. With ``captions`` (default: when the labels are soft) each image
        has its most probable class and that class's probability written under it.
        """
        from torchvision.transforms.functional import to_pil_image
        from torchvision.utils import make_grid

        if max_per_class is not None and max_per_class < 1:
            raise ValueError(f"max_per_class must be positive, got {max_per_class}")
        self.validate()
        images = self.images.detach().cpu()
        mean, std = self.metadata.get("mean"), self.metadata.get("std")
        if mean is not None or std is not None:
            channels = images.shape[1]
            if not (_is_number_list(mean, channels) and _is_number_list(std, channels)):
                raise SyntheticSetError(
                    f"metadata mean and std must both be lists of {channels} numbers "
                    "to denormalise the images"
                )
            scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
            shift = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
            images = images * scale + shift
        images = images.clamp(0.0, 1.0)
        # Small images (8x8 digits) are enlarged, pixel for pixel, so the grid can be looked at.
        zoom = max(1, math.ceil(GRID_MIN_CELL / max(self.image_shape[1:])))
        if zoom > 1:
            images = torch.nn.functional.interpolate(images, scale_factor=zoom, mode="nearest")
        labels = self.hard_labels.cpu()
        members = [torch.nonzero(labels == label, as_tuple=True)[0][:max_per_class] for label in range(self.num_classes)]
        columns = max(len(row) for row in members)
        cells = torch.ones((self.num_classes * columns, *images.shape[1:]))
        for index, row in enumerate(members):
            cells[index * columns : index * columns + len(row)] = images[row]
        pixels = make_grid(cells, nrow=columns, padding=_GRID_PADDING, pad_value=1.0)
        # Rounded to bytes as torchvision's save_image does.
        grid = to_pil_image(pixels.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8))
        if self.is_soft if captions is None else captions:
            top = self.top_labels()
            texts = [[f"{top[i][0]} {top[i][1]:.2f}" for i in row.tolist()] for row in members]
            grid = _captioned(grid, texts, cell=images.shape[2:])
        buffer = io.BytesIO()
        grid.save(buffer, format="png")
        atomic_write_bytes(path, buffer.getvalue())

    def to(self, device: torch.device | str) -> SyntheticSet:
        """The set on ``device`` (tensors already there are shared, as with ``Tensor.to``)."""
        return SyntheticSet(
            images=self.images.to(device),
            labels=self.labels.to(device),
            num_classes=self.num_classes,
            metadata=copy.deepcopy(self.metadata),
            stored=None if self.stored is None else StoredImages(self.stored.images.to(device), self.stored.factor),
        )

    def clone(self) -> SyntheticSet:
        """An independent copy, detached from any autograd graph."""
        return SyntheticSet(
            images=self.images.detach().clone(),
            labels=self.labels.detach().clone(),
            num_classes=self.num_classes,
            metadata=copy.deepcopy(self.metadata),
            stored=None if self.stored is None else StoredImages(self.stored.images.detach().clone(), self.stored.factor),
        )


def _captioned(grid: Any, texts: list[list[str]], cell: tuple[int, int]) -> Any:
    """``grid`` (a PIL image of one row of cells per class) with a caption band under each row."""
    from PIL import Image, ImageDraw

    height, width = (int(v) + _GRID_PADDING for v in cell)
    out = Image.new("RGB", (grid.width, grid.height + len(texts) * _CAPTION_BAND), "white")
    draw = ImageDraw.Draw(out)
    for row, captions in enumerate(texts):
        top = row * height
        out.paste(grid.crop((0, top, grid.width, top + height)), (0, top + row * _CAPTION_BAND))
        for column, text in enumerate(captions):
            draw.text((column * width + _GRID_PADDING, top + row * _CAPTION_BAND + height), text, fill="black")
    return out


def merge_synthetic_sets(sets: list[SyntheticSet]) -> SyntheticSet:
    """The union of sets of the same classes and image shape (e.g. one per federated client).

    Labels stay hard when every set's are hard; when any set has soft labels the union has soft
    labels, and hard ones become one-hot rows (a client that learned soft labels and one that did
    not can still be trained on together). The result lives on the first set's device and carries
    the first set's metadata plus ``"merged_from"``: the number of sets merged.

    Parameters
    ----------
    sets
        The sets to concatenate, in order.

    Raises
    ------
    SyntheticSetError
        No sets, or sets of different classes or image shapes.
    """
    if not sets:
        raise SyntheticSetError("no synthetic sets to merge")
    first = sets[0]
    for index, other in enumerate(sets[1:], start=1):
        if other.num_classes != first.num_classes:
            raise SyntheticSetError(
                f"cannot merge: set {index} has {other.num_classes} classes, "
                f"set 0 has {first.num_classes}"
            )
        if other.image_shape != first.image_shape:
            raise SyntheticSetError(
                f"cannot merge: set {index} has {_shape_text(other.image_shape)} images, "
                f"set 0 has {_shape_text(first.image_shape)}"
            )
    device = first.images.device
    soft = any(s.is_soft for s in sets)
    labels = [
        s.labels if s.is_soft or not soft else torch.nn.functional.one_hot(s.labels, first.num_classes).float()
        for s in sets
    ]
    merged = SyntheticSet(
        images=torch.cat([s.images.detach().to(device) for s in sets]),
        labels=torch.cat([label.detach().to(device) for label in labels]),
        num_classes=first.num_classes,
        metadata={**copy.deepcopy(first.metadata), "merged_from": len(sets)},
    )
    return merged.validate()


def _archive_problem(file: BinaryIO, size: int) -> str | None:
    """Why ``file`` is not a zip archive that torch can read without inflating it; ``None`` if it is.

    :func:`torch.save` stores entries uncompressed. A compressed entry could inflate inside
    :func:`torch.load` to a thousand times the file's size (a zip bomb) before any check of ours,
    and the legacy non-zip format is never written by :meth:`SyntheticSet.save`.
    """
    try:
        with zipfile.ZipFile(file) as archive:
            entries = archive.infolist()
    except Exception as err:
        # zipfile raises several exception types on hostile input; each means "not readable".
        return f"not a readable zip archive: {_first_sentence(str(err))}"
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED:
            return f"entry {quote_untrusted(entry.filename)} is compressed"
    claimed = sum(entry.file_size for entry in entries)
    if claimed > size:
        return f"entries claim {claimed} bytes in a file of {size}"
    return None


def _check_json_value(value: Any, where: str, depth: int) -> None:
    """Accept only values that survive a JSON round trip unchanged (so no tuples, no NaN)."""
    if depth > _MAX_METADATA_DEPTH:
        raise SyntheticSetError(f"{where} is nested more than {_MAX_METADATA_DEPTH} levels deep")
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise SyntheticSetError(f"{where} is {value}, which JSON cannot represent")
        return
    if isinstance(value, list):
        for index, item in enumerate(value):
            _check_json_value(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise SyntheticSetError(f"{where} has a non-string key {quote_untrusted(key)}")
            _check_json_value(item, f"{where}[{quote_untrusted(key)}]", depth + 1)
        return
    raise SyntheticSetError(
        f"{where} is a {type(value).__name__}, not a JSON value "
        "(null, bool, number, string, list or dict with string keys)"
    )


def compact_cpu(tensor: torch.Tensor) -> torch.Tensor:
    """A detached, contiguous CPU copy that owns just its data (a view drags its whole storage)."""
    return tensor.detach().cpu().clone(memory_format=torch.contiguous_format)


def _is_number_list(value: Any, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(size) for size in shape)


def quote_untrusted(value: Any) -> str:
    """``repr`` of untrusted ``value``, shortened: always one line and bounded in length."""
    text = repr(value)
    return text if len(text) <= _QUOTE_CHARS else text[: _QUOTE_CHARS - 3] + "..."


def exception_text(err: BaseException) -> str:
    """``err``'s type and the first sentence of its message."""
    sentence = _first_sentence(str(err))
    return f"{type(err).__name__}: {sentence}" if sentence else type(err).__name__


def _load_failure_text(err: Exception) -> str:
    """Why :func:`torch.load` refused a file, without torch's advice to retry unsafely."""
    message = str(err)
    if not message.startswith("Weights only load failed"):
        return exception_text(err)
    details = [line for line in message.splitlines() if "nsupported" in line]
    if not details:
        return "refused by the weights-only unpickler"
    detail = details[0].split("WeightsUnpickler error:")[-1]
    return f"refused by the weights-only unpickler: {_first_sentence(detail)}"


def _first_sentence(text: str) -> str:
    """The first sentence of ``text``'s first non-empty line, without terminal escapes, bounded."""
    lines = _ANSI_ESCAPE.sub("", text).strip().splitlines()
    sentence = lines[0].split(". ")[0].strip().rstrip(".") if lines else ""
    return sentence if len(sentence) <= 200 else sentence[:197] + "..."
