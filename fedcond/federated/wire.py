"""What travels between fedcond's ServerApp and ClientApp: every record key, the task names, and the
``ArrayRecord`` codec of a :class:`~fedcond.synthetic.SyntheticSet`.

A train message's content is a ``RecordDict``::

    "config"     ConfigRecord   task ("condense" | "fit"), fedcond-config (the experiment YAML),
                                server-round, proximal-mu (FedProx)
    "model"      ArrayRecord    the global model, when a condense task condenses against it
    "arrays"     ArrayRecord    the global model of a fit task (Flower's FedAvg key)

A condense reply carries ``"synthetic"`` (the set, encoded here) and ``"metrics"`` (num-examples,
num-synthetic, condense-seconds, upload-bytes, partition-id, and epsilon/delta of a private
release); a fit reply carries ``"arrays"`` (the locally trained weights) and ``"metrics"``
(num-examples, train-seconds, upload-bytes).

A received set is untrusted: :func:`from_array_record` reads each ``.npy`` payload's header and
checks dtype, shape and size before allocating anything, then validates the set.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord

from fedcond.errors import SyntheticSetError
from fedcond.synthetic import SyntheticSet, compact_cpu, default_metadata, exception_text, quote_untrusted

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
PARTITION_ID = "partition-id"
EPSILON = "epsilon"
DELTA = "delta"

# ---------------------------------------------------------------------- the synthetic-set codec
#: Arrays of a synthetic set's record, and their wire dtypes (no cast is ever applied).
SET_ARRAYS = ("images", "labels")
IMAGE_DTYPES = ("float32",)
LABEL_DTYPES = ("int64", "float32")


def to_array_record(synthetic: SyntheticSet) -> ArrayRecord:
    """The Flower wire form of ``synthetic``: NumPy arrays ``"images"`` and ``"labels"``, validated first.

    ``num_classes`` and ``metadata`` do not travel in the record: the receiver states the
    ``num_classes`` it expects in :func:`from_array_record`.

    Parameters
    ----------
    synthetic
        The set to send.
    """
    synthetic.validate()
    return ArrayRecord(
        {
            "images": Array(compact_cpu(synthetic.images).numpy()),
            "labels": Array(compact_cpu(synthetic.labels).numpy()),
        }
    )


def from_array_record(
    record: ArrayRecord,
    *,
    num_classes: int,
    metadata: dict[str, Any] | None = None,
    max_per_class: int | None = None,
    image_shape: tuple[int, int, int] | None = None,
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
        The receiver's limits, checked by :meth:`SyntheticSet.validate`.

    Raises
    ------
    SyntheticSetError
        Anything malformed, oversized or out of range, in one line.
    """
    if not isinstance(record, ArrayRecord):
        raise SyntheticSetError(f"expected an ArrayRecord, got {type(record).__name__}")
    keys = set(record.keys())
    if keys != set(SET_ARRAYS):
        raise SyntheticSetError(
            "record must hold exactly the arrays 'images' and 'labels', got "
            + (", ".join(sorted(quote_untrusted(key) for key in keys)) or "none")
        )
    limit = SyntheticSet.max_elements
    images = _decode_wire_array("images", record["images"], IMAGE_DTYPES, limit)
    labels = _decode_wire_array("labels", record["labels"], LABEL_DTYPES, limit)
    synthetic = SyntheticSet(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        num_classes=num_classes,
        metadata=default_metadata() if metadata is None else metadata,
    )
    return synthetic.validate(num_classes=num_classes, max_per_class=max_per_class, image_shape=image_shape)


def array_record_bytes(record: ArrayRecord) -> int:
    """Bytes of the arrays in ``record``, as Flower's own ``Result`` counts them (``len(Array.data)``)."""
    return sum(len(array.data) for array in record.values())


def _decode_wire_array(name: str, array: Array, dtypes: tuple[str, ...], max_elements: int) -> np.ndarray:
    """Decode one received ``.npy`` payload, checking dtype and size before allocating.

    ``Array.numpy()`` would allocate whatever shape the payload's header claims before noticing
    that the data is short, so the header is read and checked here first.
    """
    if array.stype != "numpy.ndarray":
        raise SyntheticSetError(f"record array {name!r} has serialisation {quote_untrusted(array.stype)}")
    if array.dtype not in dtypes:
        raise SyntheticSetError(
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
        raise SyntheticSetError(f"record array {name!r} is not a valid .npy payload ({exception_text(err)})") from None
    if dtype != np.dtype(array.dtype) or tuple(shape) != tuple(array.shape):
        raise SyntheticSetError(
            f"record array {name!r} declares {array.dtype} {quote_untrusted(tuple(array.shape))} "
            f"but holds {quote_untrusted(dtype)} {quote_untrusted(tuple(shape))}"
        )
    count = math.prod(shape)
    if count > max_elements:
        raise SyntheticSetError(f"record array {name!r} holds {count} values, more than the limit of {max_elements}")
    offset = buffer.tell()
    if len(array.data) - offset != count * dtype.itemsize:
        raise SyntheticSetError(
            f"record array {name!r} has {len(array.data) - offset} data bytes but its shape needs {count * dtype.itemsize}"
        )
    values = np.frombuffer(array.data, dtype=dtype, count=count, offset=offset)
    return values.reshape(shape, order="F" if fortran_order else "C").copy(order="C")
