"""What travels between fedcond's ServerApp and ClientApp: every record key, the task names, and the
``ArrayRecord`` codec of a :class:`~fedcond.synthetic.SyntheticSet`.

A train message's content is a ``RecordDict``::

    "config"     ConfigRecord   task ("condense" | "fit"), fedcond-config (the experiment YAML),
                                server-round, proximal-mu (FedProx)
    "model"      ArrayRecord    the global model, when a condense task condenses against it
    "arrays"     ArrayRecord    the global model of a fit task (Flower's FedAvg key)

A condense reply carries ``"synthetic"`` (the set, encoded here) and ``"metrics"`` (num-examples,
num-synthetic, condense-seconds, upload-bytes, label-bytes, partition-id, and, where they apply,
iterations-run and time-budget-hit of a matching run, epsilon/delta of a private release); a fit reply carries ``"arrays"`` (the locally trained weights), ``"metrics"``
(num-examples, train-seconds, upload-bytes) and ``"client"`` (a ConfigRecord: partition-id).

A received set is untrusted: :func:`from_array_record` reads each ``.npy`` payload's header and
checks dtype, shape and size before allocating anything, then validates the set. Received model
weights are too: :func:`check_model_record` holds them against the global model.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from fedcond.condense.parameterisation import decode
from fedcond.errors import FedcondError, ModelRecordError, SyntheticSetError
from fedcond.synthetic import StoredImages, SyntheticSet, compact_cpu, default_metadata, exception_text, quote_untrusted

# ---------------------------------------------------------------------- record names
#: The ConfigRecord of every train message.
CONFIG_RECORD = "config"
#: The global model a condense task condenses against (FedDM/FedAF-style rounds).
MODEL_RECORD = "model"
#: The global model of a fit task, and the weights a fit reply returns (Flower's strategies' key).
ARRAYS_RECORD = "arrays"
#: The synthetic set of a condense reply.
SET_RECORD = "synthetic"
#: The MetricRecord of every reply.
METRICS_RECORD = "metrics"
#: The ConfigRecord of a fit reply naming the client (partition-id): not a metric, so Flower's
#: aggregators do not average it into the round's train metrics.
CLIENT_RECORD = "client"

# ---------------------------------------------------------------------- keys of the config record
TASK_KEY = "task"
#: The whole experiment config as YAML: the server is its one source of truth.
CONFIG_KEY = "fedcond-config"
SERVER_ROUND_KEY = "server-round"
PROXIMAL_MU_KEY = "proximal-mu"

#: The tasks a train message asks for.
CONDENSE_TASK = "condense"
FIT_TASK = "fit"
TASKS = (CONDENSE_TASK, FIT_TASK)

# ---------------------------------------------------------------------- keys of the metrics record
NUM_EXAMPLES = "num-examples"
NUM_SYNTHETIC = "num-synthetic"
CONDENSE_SECONDS = "condense-seconds"
TRAIN_SECONDS = "train-seconds"
UPLOAD_BYTES = "upload-bytes"
#: Bytes of the labels' array as sent, inside upload-bytes (hard: an int64 per image; soft: a
#: float32 per class per image; plus the .npy header, as Flower counts ``len(Array.data)``).
LABEL_BYTES = "label-bytes"
#: Iterations a matching run made, and 1 when ``condense.max_seconds`` stopped it early (else 0).
ITERATIONS_RUN = "iterations-run"
TIME_BUDGET_HIT = "time-budget-hit"
PARTITION_ID = "partition-id"
EPSILON = "epsilon"
DELTA = "delta"
#: The metrics of a fit reply, exactly: Flower's aggregation needs the same keys in every reply.
FIT_METRICS = (NUM_EXAMPLES, TRAIN_SECONDS, UPLOAD_BYTES)

# ---------------------------------------------------------------------- the synthetic-set codec
#: Arrays of a synthetic set's record, and their wire dtypes (no cast is ever applied).
SET_ARRAYS = ("images", "labels")
#: Arrays of a factorised set's record: the stored images, their factor (an int64 scalar), and
#: the labels of the decoded images. A quarter of the image bytes at factor 2.
STORED_SET_ARRAYS = ("stored", "factor", "labels")
IMAGE_DTYPES = ("float32",)
LABEL_DTYPES = ("int64", "float32")
FACTOR_DTYPES = ("int64",)


def to_array_record(synthetic: SyntheticSet) -> ArrayRecord:
    """The Flower wire form of ``synthetic``, validated first.

    A set with a stored (factorised) form travels as it: arrays ``"stored"``, ``"factor"`` and
    ``"labels"`` (:data:`STORED_SET_ARRAYS`), decoded by the receiver; any other set as arrays
    ``"images"`` and ``"labels"``. ``num_classes`` and ``metadata`` do not travel in the record:
    the receiver states the ``num_classes`` it expects in :func:`from_array_record`.

    Parameters
    ----------
    synthetic
        The set to send.
    """
    synthetic.validate()
    labels = Array(compact_cpu(synthetic.labels).numpy())
    if synthetic.stored is not None:
        return ArrayRecord(
            {
                "stored": Array(compact_cpu(synthetic.stored.images).numpy()),
                "factor": Array(np.array(synthetic.stored.factor, dtype=np.int64)),
                "labels": labels,
            }
        )
    return ArrayRecord({"images": Array(compact_cpu(synthetic.images).numpy()), "labels": labels})


def from_array_record(
    record: ArrayRecord,
    *,
    num_classes: int,
    metadata: dict[str, Any] | None = None,
    max_per_class: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
    factor: int | None = None,
) -> SyntheticSet:
    """Decode a received record and validate it against the receiver's expectations.

    Parameters
    ----------
    record
        Must hold exactly ``"images"`` (float32) and ``"labels"`` (int64 or float32); other dtypes
        are rejected rather than cast.
    num_classes
        Classes the receiver's label space has.
    metadata
        The set's metadata (default: :func:`~fedcond.synthetic.default_metadata`).
    max_per_class, image_shape
        The receiver's limits, checked by :meth:`SyntheticSet.validate` on the decoded images.
    factor
        The only factor a factorised record may have (the run's ``condense.factor``); ``None``
        accepts any that tiles the images. A record of decoded images is accepted either way.

    Raises
    ------
    SyntheticSetError
        Anything malformed, oversized or out of range, in one line.
    """
    if not isinstance(record, ArrayRecord):
        raise SyntheticSetError(f"expected an ArrayRecord, got {type(record).__name__}")
    keys = set(record.keys())
    if keys not in (set(SET_ARRAYS), set(STORED_SET_ARRAYS)):
        raise SyntheticSetError(
            "record must hold exactly the arrays 'images' and 'labels' (or 'stored', 'factor' and 'labels'), got "
            + (", ".join(sorted(quote_untrusted(key) for key in keys)) or "none")
        )
    limit = SyntheticSet.max_elements
    labels = _decode_wire_array("labels", record["labels"], LABEL_DTYPES, limit)
    stored = None
    if "stored" in keys:
        stored = _stored_images(record, factor, len(labels))
        images = decode(stored.images, stored.factor)
    else:
        images = torch.from_numpy(_decode_wire_array("images", record["images"], IMAGE_DTYPES, limit))
    synthetic = SyntheticSet(
        images=images,
        labels=torch.from_numpy(labels),
        num_classes=num_classes,
        metadata=default_metadata() if metadata is None else metadata,
        stored=stored,
    )
    return synthetic.validate(num_classes=num_classes, max_per_class=max_per_class, image_shape=image_shape)


def _stored_images(record: ArrayRecord, expected: int | None, num_labels: int) -> StoredImages:
    """The stored images and factor of a factorised record, checked before anything is decoded:
    the factor, that it tiles the images, and that the decoded set fits the size limit and the labels."""
    factor_values = _decode_wire_array("factor", record["factor"], FACTOR_DTYPES, 1)
    if factor_values.shape != ():
        raise SyntheticSetError(f"record array 'factor' must be a scalar, got shape {quote_untrusted(factor_values.shape)}")
    factor = int(factor_values)
    if expected is not None and factor != expected:
        raise SyntheticSetError(f"stored images have factor {factor} but {expected} expected")
    stored = _decode_wire_array("stored", record["stored"], IMAGE_DTYPES, SyntheticSet.max_elements)
    if stored.ndim != 4:
        raise SyntheticSetError(f"stored images must be 4-D [N, C, H, W], got shape {quote_untrusted(stored.shape)}")
    height, width = stored.shape[2:]
    if factor < 2 or height % factor or width % factor:
        raise SyntheticSetError(f"factor {factor} does not tile {height}x{width} stored images")
    tiles = factor * factor
    if stored.size * tiles > SyntheticSet.max_elements:
        raise SyntheticSetError(
            f"stored images decode to {stored.size * tiles} values, more than the limit of {SyntheticSet.max_elements}"
        )
    if len(stored) * tiles != num_labels:
        raise SyntheticSetError(f"{len(stored)} stored images decode to {len(stored) * tiles} images but {num_labels} labels")
    return StoredImages(torch.from_numpy(stored), factor)


def check_model_record(record: ArrayRecord, reference: ArrayRecord) -> None:
    """Check model weights received from a client against the global model they should update.

    Every array is decoded from its header first (no allocation beyond what the global model's
    shape needs), so an oversized or truncated payload is refused before it costs memory.

    Parameters
    ----------
    record
        The client's weights (a fit reply's ``"arrays"``).
    reference
        The global model the server sent: the keys, dtypes and shapes the reply must have.

    Raises
    ------
    ModelRecordError
        Other keys, a dtype or shape that differs, bytes that do not match the shape, or a value
        that is not finite, in one line.
    """
    if not isinstance(record, ArrayRecord):
        raise ModelRecordError(f"expected an ArrayRecord, got {type(record).__name__}")
    keys, expected = list(record.keys()), list(reference.keys())
    if set(keys) != set(expected):
        missing, extra = sorted(set(expected) - set(keys)), sorted(set(keys) - set(expected))
        raise ModelRecordError(
            "weights do not match the global model: "
            + "; ".join(part for part in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(quote_untrusted(k) for k in extra[:3])}" if extra else "",
            ) if part)
        )  # fmt: skip
    for key in expected:
        want = reference[key]
        values = _decode_wire_array(key, record[key], (want.dtype,), math.prod(want.shape), error=ModelRecordError)
        if tuple(values.shape) != tuple(want.shape):
            raise ModelRecordError(
                f"record array {key!r} has shape {quote_untrusted(tuple(values.shape))}, the global model's is {tuple(want.shape)}"
            )
        if values.dtype.kind in "fc" and not np.isfinite(values).all():
            raise ModelRecordError(f"record array {key!r} holds values that are not finite")


def array_record_bytes(record: ArrayRecord) -> int:
    """Bytes of the arrays in ``record``, as Flower's own ``Result`` counts them (``len(Array.data)``)."""
    return sum(len(array.data) for array in record.values())


def _decode_wire_array(
    name: str, array: Array, dtypes: tuple[str, ...], max_elements: int, error: type[FedcondError] = SyntheticSetError
) -> np.ndarray:
    """Decode one received ``.npy`` payload, checking dtype and size before allocating.

    ``Array.numpy()`` would allocate whatever shape the payload's header claims before noticing
    that the data is short, so the header is read and checked here first.
    """
    if array.stype != "numpy.ndarray":
        raise error(f"record array {name!r} has serialisation {quote_untrusted(array.stype)}")
    if array.dtype not in dtypes:
        raise error(
            f"record array {name!r} has dtype {quote_untrusted(array.dtype)}, expected {' or '.join(dtypes)}"
        )
    buffer = io.BytesIO(array.data)
    try:
        version = np.lib.format.read_magic(buffer)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(buffer)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(buffer)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as err:
        # The header parser raises ValueError, SyntaxError or tokenize.TokenError on garbage.
        raise error(f"record array {name!r} is not a valid .npy payload ({exception_text(err)})") from None
    if dtype != np.dtype(array.dtype) or tuple(shape) != tuple(array.shape):
        raise error(
            f"record array {name!r} declares {array.dtype} {quote_untrusted(tuple(array.shape))} "
            f"but holds {quote_untrusted(dtype)} {quote_untrusted(tuple(shape))}"
        )
    count = math.prod(shape)
    if count > max_elements:
        raise error(f"record array {name!r} holds {count} values, more than the limit of {max_elements}")
    offset = buffer.tell()
    if len(array.data) - offset != count * dtype.itemsize:
        raise error(
            f"record array {name!r} has {len(array.data) - offset} data bytes but its shape needs {count * dtype.itemsize}"
        )
    values = np.frombuffer(array.data, dtype=dtype, count=count, offset=offset)
    return values.reshape(shape, order="F" if fortran_order else "C").copy(order="C")
