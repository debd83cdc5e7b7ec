"""Tests for hmmrnn.io: exact parquet round trips, pandas compatibility, atomic failing writes."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hmmrnn.hmm import HMM, split_labels
from hmmrnn.io import SequenceData, read_sequences, write_sequences


@pytest.fixture
def data():
    h = HMM(4, 5, transition_method="fully", stay_prob=0.6, emission_method="gaussian")
    obs, states = h.sample(60, 9, rng=0)
    split = split_labels(60, (0.5, 0.25, 0.25), rng=1)
    return h, obs, states, split


def test_round_trip_exact(tmp_path, data):
    h, obs, states, split = data
    meta = {"seed": np.int64(7), "note": "x", "nested": {"a": [1, 2.5]}, "arr": np.arange(3)}
    path = tmp_path / "sub" / "seqs.parquet"
    write_sequences(path, obs, states, split, h, metadata=meta)
    d = read_sequences(path)
    assert isinstance(d, SequenceData)
    assert d.observations.dtype == d.states.dtype == np.int64
    assert d.split.dtype == np.int8
    assert d.observations.tobytes() == obs.tobytes()
    assert d.states.tobytes() == states.tobytes()
    assert d.split.tobytes() == split.tobytes()
    assert d.hmm == h.to_dict()
    assert d.metadata == {"seed": 7, "note": "x", "nested": {"a": [1, 2.5]}, "arr": [0, 1, 2]}
    model = d.hmm_model()
    assert model.transition_matrix.tobytes() == h.transition_matrix.tobytes()
    assert model.emission_matrix.tobytes() == h.emission_matrix.tobytes()
    np.testing.assert_array_equal(d.subset("train"), obs[split == 0])
    np.testing.assert_array_equal(d.subset(2), obs[split == 2])
    np.testing.assert_array_equal(d.states_subset("val"), states[split == 1])
    with pytest.raises(ValueError, match="split must be one of .* .got 'dev'"):
        d.subset("dev")
    # no temporary files left beside the result
    assert [p.name for p in path.parent.iterdir()] == ["seqs.parquet"]


def test_hmm_as_dict_and_no_metadata(tmp_path, data):
    h, obs, states, split = data
    write_sequences(tmp_path / "a.parquet", obs, states, split, h.to_dict())
    d = read_sequences(tmp_path / "a.parquet")
    assert d.hmm == h.to_dict() and d.metadata == {}


def test_schema_is_compact_and_self_describing(tmp_path, data):
    h, obs, states, split = data
    path = tmp_path / "a.parquet"
    write_sequences(path, obs, states, split, h, metadata={"k": 1})
    schema = pq.read_schema(path)
    assert schema.field("sequence").type == pa.int32()
    assert schema.field("observations").type == pa.list_(pa.uint8(), 9)
    assert schema.field("states").type == pa.list_(pa.uint8(), 9)
    assert pa.types.is_dictionary(schema.field("split").type)
    assert set(schema.metadata) >= {b"hmmrnn.hmm", b"hmmrnn.metadata"}


def test_pandas_reads_it(tmp_path, data):
    h, obs, states, split = data
    path = tmp_path / "a.parquet"
    write_sequences(path, obs, states, split, h)
    df = pd.read_parquet(path)
    assert list(df.columns) == ["sequence", "split", "observations", "states"]
    assert df["sequence"].tolist() == list(range(60))
    assert df["split"].astype(str).tolist() == [["train", "val", "test"][i] for i in split]
    np.testing.assert_array_equal(np.stack(df["observations"].to_numpy()), obs)
    np.testing.assert_array_equal(np.stack(df["states"].to_numpy()), states)


def test_read_orders_rows_by_sequence(tmp_path, data):
    h, obs, states, split = data
    path = tmp_path / "a.parquet"
    write_sequences(path, obs, states, split, h)
    table = pq.read_table(path)
    pq.write_table(table.take(np.arange(59, -1, -1)), path)  # same metadata, reversed rows
    d = read_sequences(path)
    np.testing.assert_array_equal(d.observations, obs)
    np.testing.assert_array_equal(d.split, split)


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"observations": np.zeros((60, 8), int)}, r"same shape .got \(60, 8\) and \(60, 9\)"),
        (
            {"observations": np.full((60, 9), 5)},
            r"observations must lie in \[0, 5\) .got values \[5\]",
        ),
        ({"states": np.full((60, 9), -1)}, r"states must lie in \[0, 4\) .got values \[-1\]"),
        ({"observations": np.zeros((60, 9))}, "observations must hold integers .got dtype float64"),
        ({"observations": np.zeros(60, int)}, r"observations must be 2-D .* .got shape \(60,\)"),
        ({"split": np.zeros(59, np.int8)}, r"split must have shape \(60,\) .got shape \(59,\)"),
        ({"split": np.full(60, 3)}, r"split labels must be integers in \{0, 1, 2\} .got \[3\]"),
        ({"metadata": {"f": object()}}, "metadata must be JSON-serialisable"),
        ({"metadata": [1, 2]}, "metadata must be a dict or None .got list"),
        ({"hmm": {"states": 0}}, "states must be a positive integer .got 0"),
    ],
)
def test_bad_writes_raise_and_leave_no_file(tmp_path, data, change, pattern):
    h, obs, states, split = data
    kwargs = {"observations": obs, "states": states, "split": split, "hmm": h} | change
    with pytest.raises(ValueError, match=pattern):
        write_sequences(tmp_path / "bad.parquet", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_more_than_256_symbols_rejected(tmp_path):
    h = HMM(2, 300, emission_method="gaussian")
    obs = np.array([[0, 299]])
    with pytest.raises(
        ValueError, match=r"observations must lie in \[0, 256\) .got values \[299\]"
    ):
        write_sequences(tmp_path / "big.parquet", obs, np.zeros((1, 2), int), np.zeros(1, int), h)
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_previous_file(tmp_path, data):
    h, obs, states, split = data
    path = tmp_path / "a.parquet"
    write_sequences(path, obs, states, split, h)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_sequences(path, obs, states, np.full(60, 7), h)
    assert path.read_bytes() == before


def test_foreign_parquet_gives_clear_error(tmp_path):
    path = tmp_path / "other.parquet"
    pd.DataFrame({"x": [1, 2]}).to_parquet(path)
    with pytest.raises(ValueError, match="has no hmmrnn metadata .*hmmrnn.hmm"):
        read_sequences(path)
