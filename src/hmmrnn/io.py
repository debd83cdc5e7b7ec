"""Parquet storage of HMM sequence data sets.

File layout (one row per sequence)
----------------------------------
``sequence``
    int32 id, ``0 .. N-1`` in the order the arrays were given.
``split``
    dictionary-encoded string ``"train"`` / ``"val"`` / ``"test"`` (a pandas ``category``).
``observations``, ``states``
    fixed-size lists of uint8 of length ``seq_len`` (values must be < 256).

The schema metadata holds the HMM parameters (:meth:`hmmrnn.hmm.HMM.to_dict`, JSON) under
``hmmrnn.hmm`` and free-form user metadata (JSON) under ``hmmrnn.metadata``, so one file is a
self-describing data set. ``pandas.read_parquet`` reads it directly.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hmmrnn._utils import _json_default, atomic_path
from hmmrnn.hmm import HMM, SPLIT_NAMES, _check_observations

HMM_KEY = b"hmmrnn.hmm"
METADATA_KEY = b"hmmrnn.metadata"
FORMAT_KEY = b"hmmrnn.format"
FORMAT_VERSION = "sequences/1"


@dataclass(frozen=True)
class SequenceData:
    """A data set read by :func:`read_sequences`.

    Attributes
    ----------
    observations : numpy.ndarray
        int64 ``(N, T)``.
    states : numpy.ndarray
        int64 ``(N, T)``, hidden states of the HMM.
    split : numpy.ndarray
        int8 ``(N,)``: 0 = train, 1 = val, 2 = test.
    hmm : dict
        HMM parameters as produced by :meth:`hmmrnn.hmm.HMM.to_dict`.
    metadata : dict
        User metadata given to :func:`write_sequences` (``{}`` if none).
    """

    observations: np.ndarray
    states: np.ndarray
    split: np.ndarray
    hmm: dict
    metadata: dict

    def hmm_model(self) -> HMM:
        """The :class:`~hmmrnn.hmm.HMM` that generated the data."""
        return HMM.from_dict(self.hmm)

    def subset(self, split: str | int) -> np.ndarray:
        """Observations ``(n, T)`` of one split, ``"train"``/``"val"``/``"test"`` or 0/1/2."""
        return self.observations[self.split == _split_index(split)]

    def states_subset(self, split: str | int) -> np.ndarray:
        """Hidden states ``(n, T)`` of one split."""
        return self.states[self.split == _split_index(split)]


def _split_index(split: str | int) -> int:
    if split in SPLIT_NAMES:
        return SPLIT_NAMES.index(split)
    if isinstance(split, (int, np.integer)) and not isinstance(split, bool) and 0 <= split <= 2:
        return int(split)
    raise ValueError(f"split must be one of {SPLIT_NAMES} or 0, 1, 2 (got {split!r})")


def _as_uint8_matrix(name: str, values: Any, limit: int) -> np.ndarray:
    return _check_observations(values, limit, name).astype(np.uint8)


def _fixed_size_list(arr: np.ndarray) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(arr.ravel(), type=pa.uint8()), arr.shape[1])


def write_sequences(
    path: str | os.PathLike,
    observations: Any,
    states: Any,
    split: Any,
    hmm: HMM | dict,
    metadata: dict | None = None,
) -> None:
    """Write a data set to a parquet file, atomically.

    Parameters
    ----------
    path : str or path-like
        Destination ``.parquet`` file; parent folders are created.
    observations : array_like of int, shape (N, T)
        Values in ``[0, hmm.outputs)``.
    states : array_like of int, shape (N, T)
        Values in ``[0, hmm.states)``.
    split : array_like of int, shape (N,)
        0 = train, 1 = val, 2 = test.
    hmm : HMM or dict
        The generating model or its :meth:`~hmmrnn.hmm.HMM.to_dict`.
    metadata : dict, optional
        JSON-serialisable information to keep with the data (NumPy values become lists/numbers).

    Raises
    ------
    ValueError
        On any inconsistent input; nothing is written then.
    """
    model = hmm if isinstance(hmm, HMM) else HMM.from_dict(hmm)
    # States and symbols are stored as uint8, hence the 256 limit on top of the model's sizes.
    obs = _as_uint8_matrix("observations", observations, min(model.outputs, 256))
    sts = _as_uint8_matrix("states", states, min(model.states, 256))
    if obs.shape != sts.shape:
        raise ValueError(
            f"observations and states must have the same shape (got {obs.shape} and {sts.shape})"
        )
    if obs.shape[1] == 0:
        raise ValueError(f"sequences must have length >= 1 (got shape {obs.shape})")
    lab = np.asarray(split)
    if lab.shape != (obs.shape[0],):
        raise ValueError(f"split must have shape ({obs.shape[0]},) (got shape {lab.shape})")
    if lab.dtype.kind not in "iu" or np.any((lab < 0) | (lab > 2)):
        raise ValueError(
            f"split labels must be integers in {{0, 1, 2}} (got {np.unique(lab)} of {lab.dtype})"
        )
    if metadata is not None and not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict or None (got {type(metadata).__name__})")
    try:
        metadata_json = json.dumps(metadata or {}, default=_json_default)
    except (TypeError, ValueError) as err:
        raise ValueError(f"metadata must be JSON-serialisable ({err})") from None

    table = pa.table(
        {
            "sequence": pa.array(np.arange(obs.shape[0], dtype=np.int32)),
            "split": pa.DictionaryArray.from_arrays(
                pa.array(lab.astype(np.int8)), pa.array(SPLIT_NAMES, type=pa.string())
            ),
            "observations": _fixed_size_list(obs),
            "states": _fixed_size_list(sts),
        }
    )
    table = table.replace_schema_metadata(
        {
            FORMAT_KEY: FORMAT_VERSION.encode(),
            HMM_KEY: json.dumps(model.to_dict()).encode(),
            METADATA_KEY: metadata_json.encode(),
        }
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _column_matrix(table: pa.Table, name: str, path: Any) -> np.ndarray:
    column = table.column(name).combine_chunks()
    if not pa.types.is_fixed_size_list(column.type) or column.null_count:
        raise ValueError(f"{path}: column {name!r} is not a fixed-size list without nulls")
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.int64).reshape(len(column), column.type.list_size)


def read_sequences(path: str | os.PathLike) -> SequenceData:
    """Read a data set written by :func:`write_sequences`.

    Returns
    -------
    SequenceData
        Arrays exactly as written (int64 observations/states, int8 split), rows in
        ``sequence`` order, plus the HMM parameters and metadata.

    Raises
    ------
    ValueError
        If the file lacks the hmmrnn metadata or columns.
    """
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    if HMM_KEY not in meta:
        raise ValueError(
            f"{os.fspath(path)} has no hmmrnn metadata (schema key {HMM_KEY.decode()!r}); "
            "it was not written by hmmrnn.io.write_sequences"
        )
    missing = [
        c for c in ("sequence", "split", "observations", "states") if c not in table.schema.names
    ]
    if missing:
        raise ValueError(f"{os.fspath(path)} lacks columns {missing}")
    table = table.sort_by("sequence")

    names = table.column("split").cast(pa.string()).to_numpy(zero_copy_only=False)
    split = np.full(len(names), -1, dtype=np.int8)
    for i, name in enumerate(SPLIT_NAMES):
        split[names == name] = i
    if np.any(split < 0):
        raise ValueError(f"{os.fspath(path)}: unknown split names {sorted(set(names[split < 0]))}")

    return SequenceData(
        observations=_column_matrix(table, "observations", path),
        states=_column_matrix(table, "states", path),
        split=split,
        hmm=json.loads(meta[HMM_KEY]),
        metadata=json.loads(meta.get(METADATA_KEY, b"{}")),
    )
