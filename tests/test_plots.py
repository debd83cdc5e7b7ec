"""Tests for hmmrnn.plots: every figure is a non-empty PDF, written atomically."""

from types import SimpleNamespace

import numpy as np
import pytest

from hmmrnn import plots
from hmmrnn.testing import Test, compare


def nearest_matcher(obs_x, obs_y):
    ham = (obs_x[None, :, :] != obs_y[:, None, :]).sum(axis=2)
    index = ham.argmin(axis=1)
    return SimpleNamespace(index=index, distinct_fraction=1.0, n_iter=0, converged=True)


@pytest.fixture(scope="module")
def results():
    rng = np.random.default_rng(0)
    a = np.repeat(rng.integers(0, 3, (40, 6)), 3, axis=1)  # sticky: runs of length >= 3
    b = np.repeat(rng.integers(0, 3, (40, 6)), 3, axis=1)
    rnn = rng.integers(0, 2, (40, 18))  # never emits output 2 -> NaN transition row
    return compare(None, a, b, rnn, outputs=3, matcher=nearest_matcher, max_kgram=3)


def assert_pdf(path):
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 1000


def test_save_all_writes_every_pdf_and_no_temp_files(tmp_path, results):
    t = Test(None, None, outputs=3)
    written = t.gen_plots(results, tmp_path / "figs")
    names = sorted(p.name for p in (tmp_path / "figs").iterdir())
    assert names == sorted(plots.FILENAMES) == sorted(p.name for p in written)
    assert "fidelity.pdf" in names and "transition_matrices.pdf" in names
    for p in written:
        assert_pdf(p)


def test_plot_from_saved_files_with_style(tmp_path, results):
    json_path, pq_path = tmp_path / "r.json", tmp_path / "r.parquet"
    results.save(json_path, pq_path)
    out = plots.plot_fidelity((json_path, pq_path), tmp_path / "f.pdf", dpi=50, figsize=(6, 3))
    assert_pdf(out)
    out = plots.plot_transition_matrices((json_path, pq_path), tmp_path / "t.pdf", figsize=(6, 3))
    assert_pdf(out)
    with pytest.raises(ValueError, match="TestResults"):
        plots.plot_volatilities(str(json_path), tmp_path / "v.pdf")


def test_failed_plot_leaves_no_file(tmp_path, results, monkeypatch):
    from matplotlib.figure import Figure

    def boom(self, *args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.plot_frequencies(results, tmp_path / "f.pdf")
    assert list(tmp_path.iterdir()) == []


def test_plot_fidelity_table(tmp_path, results):
    rows = [
        {"experiment": "HMMTwo", **results.summary()},
        {"experiment": "HMMFour", "euclidean_gap": 0.3, "kgram_tv_k1_rnn": None},
    ]
    out = plots.plot_fidelity_table(
        rows, tmp_path / "table.pdf", metrics=["euclidean_gap", "kgram_tv_k1_rnn"]
    )
    assert_pdf(out)
    assert_pdf(plots.plot_fidelity_table(rows, tmp_path / "all.pdf"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.pdf", "table.pdf"]
    with pytest.raises(ValueError, match="at least one row"):
        plots.plot_fidelity_table([], tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="'experiment'"):
        plots.plot_fidelity_table([{"name": "a", "x": 1.0}], tmp_path / "x.pdf")
    with pytest.raises(ValueError, match="no numeric metrics"):
        plots.plot_fidelity_table([{"experiment": "a", "x": "text"}], tmp_path / "x.pdf")


def test_no_pyplot_figures_left_open(tmp_path, results):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    plots.save_all(results, tmp_path)
    assert plt.get_fignums() == before
