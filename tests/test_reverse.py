"""Tests for hmmrnn.reverse: PCA known answers, npz round trip, plots, Reverse on a NoiseRNN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hmmrnn import model
from hmmrnn.model import NoiseRNN
from hmmrnn.reverse import (
    DYNAMICS_MODES,
    PLOTLY_JS_NAME,
    REVERSE,
    PCAResult,
    Reverse,
    plot_trajectory_2d,
    plot_trajectory_3d,
    run_pca,
)


def plane_data(rng, n=40, t=25):
    """Points a*u + b*v + c on a 2-D plane in R^5, with var(a) = 9 >> var(b) = 1."""
    basis, _ = np.linalg.qr(rng.standard_normal((5, 2)))
    u, v = basis.T
    a = 3.0 * rng.standard_normal((n, t))
    b = rng.standard_normal((n, t))
    c = np.array([1.0, -2.0, 0.5, 3.0, 0.0])
    hidden = a[..., None] * u + b[..., None] * v + c
    return hidden, u, v, c


@pytest.fixture
def result():
    rng = np.random.default_rng(1)
    hidden = rng.standard_normal((6, 50, 8)) * np.arange(8, 0, -1)
    obs = rng.integers(0, 3, size=(6, 50))
    return run_pca(hidden, 3, obs, outputs=3)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return NoiseRNN(input_size=6, hidden_size=10, output_size=3)


# ---------------------------------------------------------------------------------- PCA


def test_pca_of_points_on_a_plane():
    hidden, u, v, c = plane_data(np.random.default_rng(0))
    res = run_pca(hidden, 3)
    evr = res.explained_variance_ratio
    assert abs(evr[:2].sum() - 1.0) < 1e-6
    assert evr[2] < 1e-12
    # The first two components are an orthonormal basis of span(u, v).
    comps = res.components[:2]
    np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-12)
    plane = np.stack([u, v])
    np.testing.assert_allclose(comps @ plane.T @ plane, comps, atol=1e-9)
    np.testing.assert_allclose(res.mean, hidden.reshape(-1, 5).mean(0), atol=1e-12)
    # Projecting and reconstructing from two components gives the data back.
    recon = res.projected[..., :2].astype(np.float64) @ comps + res.mean
    np.testing.assert_allclose(recon, hidden, atol=1e-5)
    assert res.projected.shape == (40, 25, 3) and res.projected.dtype == np.float32


def test_pca_finds_direction_of_largest_variance():
    rng = np.random.default_rng(2)
    direction = np.array([1.0, 2.0, -2.0]) / 3.0  # unit; largest |entry| is positive (2/3)
    other = np.linalg.svd(direction[None])[2][1:]  # orthonormal complement
    m = 20000
    data = 10 * rng.standard_normal((m, 1)) * direction + rng.standard_normal((m, 2)) @ other
    res = run_pca(data, 1)
    # Sign convention: the entry of largest magnitude is positive, so no abs() needed.
    np.testing.assert_allclose(res.components[0], direction, atol=5e-3)
    assert res.components[0][np.abs(res.components[0]).argmax()] > 0
    assert res.explained_variance_ratio[0] == pytest.approx(100 / 102, abs=5e-3)
    assert res.projected.shape == (1, m, 1)


def test_pca_matches_sklearn():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, 6)) @ rng.standard_normal((6, 6))
    ours = run_pca(x, 4)
    ref = PCA(n_components=4).fit(x)
    np.testing.assert_allclose(ours.explained_variance_ratio, ref.explained_variance_ratio_)
    signs = np.sign(np.sum(ours.components * ref.components_, axis=1))
    np.testing.assert_allclose(ours.components, signs[:, None] * ref.components_, atol=1e-10)
    np.testing.assert_allclose(ours.projected[0], ref.transform(x) * signs, rtol=1e-5, atol=1e-5)


def test_pca_is_deterministic_and_accepts_tensors():
    rng = np.random.default_rng(4)
    hidden = rng.standard_normal((10, 7, 5)).astype(np.float32)
    a = run_pca(hidden, 3)
    b = run_pca(torch.from_numpy(hidden.copy()), 3)
    assert a == b
    assert a.projected.tobytes() == b.projected.tobytes()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hidden_states": np.zeros((2, 3, 4, 5))}, "shape"),
        ({"hidden_states": np.zeros((1, 4)), "n_components": 1}, "at least 2"),
        ({"n_components": 5}, "between 1 and the hidden size 4"),
        ({"n_components": 0}, "between 1"),
        ({"n_components": 2.0}, "integer"),
        ({"observations": np.zeros((3, 6), dtype=int)}, r"shape \(3, 5\)"),
        ({"observations": -np.ones((3, 5), dtype=int)}, ">= 0"),
        ({"dynamics_mode": "bogus"}, "dynamics_mode"),
        ({"hidden_states": np.full((3, 5, 4), np.nan)}, "NaN"),
    ],
)
def test_run_pca_rejects_bad_input(kwargs, message):
    args = {"hidden_states": np.random.default_rng(0).standard_normal((3, 5, 4)), "n_components": 2}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        run_pca(**args)


# ------------------------------------------------------------------------------ PCAResult


def test_npz_round_trip_is_exact(tmp_path, result):
    path = result.save(tmp_path / "pca.npz")
    assert path == tmp_path / "pca.npz"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pca.npz"]  # no temp left over
    back = PCAResult.load(path)
    assert back == result
    for name in ("components", "mean", "explained_variance_ratio", "projected", "observations"):
        assert getattr(back, name).dtype == getattr(result, name).dtype
        assert getattr(back, name).tobytes() == getattr(result, name).tobytes()
    assert back.dynamics_mode == "full" and back.outputs == 3


def test_npz_with_missing_arrays_is_rejected(tmp_path):
    np.savez(tmp_path / "x.npz", components=np.eye(2))
    with pytest.raises(ValueError, match="missing arrays"):
        PCAResult.load(tmp_path / "x.npz")


def test_result_validates_shapes(result):
    with pytest.raises(ValueError, match="observations must have shape"):
        PCAResult(
            result.components,
            result.mean,
            result.explained_variance_ratio,
            result.projected,
            result.observations[:, :-1],
        )
    with pytest.raises(ValueError, match="outputs must exceed"):
        PCAResult(
            result.components,
            result.mean,
            result.explained_variance_ratio,
            result.projected,
            result.observations,
            outputs=2,
        )
    assert result != PCAResult(
        result.components,
        result.mean,
        result.explained_variance_ratio,
        result.projected,
        result.observations,
        dynamics_mode="input_only",
    )


# ---------------------------------------------------------------------------------- plots


def test_plot_2d_writes_pdf(tmp_path, result):
    path = plot_trajectory_2d(result, tmp_path / "traj.pdf", num_points=120)
    data = path.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["traj.pdf"]


def test_plot_3d_html_is_small_and_offline(tmp_path):
    rng = np.random.default_rng(5)
    hidden = rng.standard_normal((100, 100, 20))
    res = run_pca(hidden, 3, rng.integers(0, 3, (100, 100)), outputs=3)
    path = plot_trajectory_3d(res, tmp_path / "traj.html", num_points=1000)
    html = path.read_text()
    assert path.stat().st_size < 1_000_000
    assert f'src="{PLOTLY_JS_NAME}"' in html
    js = tmp_path / PLOTLY_JS_NAME
    assert js.stat().st_size > 1_000_000
    # A second plot in the same directory reuses the bundle instead of rewriting it.
    mtime = js.stat().st_mtime_ns
    plot_trajectory_3d(res, tmp_path / "other.html", num_points=50)
    assert js.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.html", PLOTLY_JS_NAME, "traj.html"]


def test_steps_do_not_cross_sequence_boundaries(result):
    from hmmrnn.reverse import trajectory_figure_3d

    # 6 sequences x 50 steps; 120 points = 2 full sequences + 20 points -> 49 + 49 + 19 steps.
    fig = trajectory_figure_3d(result, num_points=120)
    lines = [tr for tr in fig.data if tr.type == "scatter3d"]
    n_steps = sum(len(tr.x) // 3 for tr in lines)
    assert n_steps == 49 + 49 + 19
    assert sorted(tr.name for tr in lines) == ["output 0", "output 1", "output 2"]


@pytest.mark.parametrize("plot", [plot_trajectory_2d, plot_trajectory_3d])
def test_plots_reject_bad_input(tmp_path, result, plot):
    with pytest.raises(ValueError, match="num_points must be at least 2"):
        plot(result, tmp_path / "p", num_points=1)
    one = run_pca(np.random.default_rng(0).standard_normal((4, 5, 3)), 1)
    with pytest.raises(ValueError, match="needs at least"):
        plot(one, tmp_path / "p", num_points=10)
    short = run_pca(np.random.default_rng(0).standard_normal((40, 1, 4)), 3)
    with pytest.raises(ValueError, match="seq_len >= 2"):
        plot(short, tmp_path / "p", num_points=10)
    assert list(tmp_path.iterdir()) == []


# -------------------------------------------------------------------------------- Reverse


def test_dynamics_modes_match_model():
    assert DYNAMICS_MODES == model.DYNAMICS_MODES


def test_same_seed_gives_identical_arrays(net):
    a = Reverse(net, num_seq=20, seq_len=15, seed=7).gen_data()
    b = Reverse(net, num_seq=20, seq_len=15, seed=7).gen_data()
    c = Reverse(net, num_seq=20, seq_len=15, seed=8).gen_data()
    assert a == b
    assert a.projected.tobytes() == b.projected.tobytes()
    assert not np.array_equal(a.projected, c.projected)


def test_gen_data_projects_the_generated_hidden_states(net):
    rev = REVERSE(net, num_seq=12, seq_len=9, seed=3)
    res = rev.gen_data("recurrence_only")
    gen = model.generate(
        net, 12, 9, dynamics_mode="recurrence_only", generator=torch.Generator().manual_seed(3)
    )
    np.testing.assert_array_equal(rev.hidden, gen.hidden.numpy())
    np.testing.assert_array_equal(res.observations, gen.observations)
    expected = (rev.hidden.astype(np.float64) - res.mean) @ res.components.T
    np.testing.assert_allclose(res.projected, expected, rtol=1e-5, atol=1e-5)
    assert res.dynamics_mode == "recurrence_only" and res.outputs == 3


def test_accepts_user_facing_rnn():
    from hmmrnn.rnn import RNN

    rnn = RNN(input_size=6, hidden_size=10, output_size=3, device="cpu", seed=0)
    a = Reverse(rnn, num_seq=5, seq_len=4, seed=2)
    b = Reverse(rnn.module, num_seq=5, seq_len=4, seed=2)
    assert a.module is rnn.module
    assert a.gen_data() == b.gen_data()


def test_run_analysis_writes_all_files(tmp_path, net):
    out = tmp_path / "reverse"
    res = Reverse(net, num_seq=30, seq_len=20, seed=1).run_analysis(save_path=out)
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "latent_trajectory_2d.pdf",
        "latent_trajectory_3d.html",
        "pca_results.npz",
        PLOTLY_JS_NAME,
    ]
    assert PCAResult.load(out / "pca_results.npz") == res
    assert (out / "latent_trajectory_3d.html").stat().st_size < 1_000_000


def test_reverse_plots_need_data(net):
    with pytest.raises(ValueError, match="call gen_data"):
        Reverse(net, num_seq=2, seq_len=3).plot_2d()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_components": 11}, "hidden size 10"),
        ({"outputs": 4}, "output_size 3"),
        ({"num_seq": 0}, "num_seq"),
        ({"seq_len": 2.5}, "seq_len"),
        ({"tau": 0.0}, "tau"),
    ],
)
def test_reverse_rejects_bad_arguments(net, kwargs, message):
    with pytest.raises(ValueError, match=message):
        Reverse(net, **kwargs)


def test_reverse_rejects_bad_mode_and_paths(tmp_path, net):
    rev = Reverse(net, num_seq=3, seq_len=4)
    with pytest.raises(ValueError, match="dynamics_mode must be one of"):
        rev.gen_data("sideways")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="must be a directory"):
        rev.run_analysis(save_path=tmp_path / "file")
    with pytest.raises(ValueError, match="num_points"):
        rev.run_analysis(save_path=tmp_path / "d", num_points=1)
    with pytest.raises(ValueError, match="n_components >= 3"):
        Reverse(net, num_seq=3, seq_len=4, n_components=2).run_analysis(save_path=tmp_path)
    with pytest.raises(ValueError, match="NoiseRNN"):
        Reverse(object())


def test_run_pca_is_the_same_for_any_threads_and_close_for_any_chunks(monkeypatch):
    from hmmrnn import reverse

    rng = np.random.default_rng(6)
    mix = rng.standard_normal((6, 6)) * np.arange(1, 7)
    hidden = (rng.standard_normal((7, 130, 6)) @ mix + 3.0).astype(np.float32)  # 910 rows
    flat = hidden.reshape(-1, 6).astype(np.float64)
    one_chunk = run_pca(hidden, 3)
    monkeypatch.setattr(reverse, "_CHUNK_ROWS", 128)  # 8 chunks of 4 sub-blocks
    monkeypatch.setattr(reverse, "_SUB_ROWS", 32)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            results.append(run_pca(hidden, 3))
    finally:
        torch.set_num_threads(threads)
    assert results[0] == results[1]  # bit for bit, worker threads or not
    res = results[0]
    np.testing.assert_allclose(res.mean, flat.mean(0), rtol=1e-12)
    evals, evecs = np.linalg.eigh(np.cov(flat, rowvar=False))
    top = evecs[:, ::-1][:, :3].T
    np.testing.assert_allclose(np.abs(np.sum(res.components * top, axis=1)), 1.0, atol=1e-6)
    np.testing.assert_allclose(
        res.explained_variance_ratio, evals[::-1][:3] / evals.sum(), rtol=1e-5
    )
    np.testing.assert_allclose(
        res.projected.reshape(-1, 3), (flat - res.mean) @ res.components.T, rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(res.components, one_chunk.components, atol=1e-5)
