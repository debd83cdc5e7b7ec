"""The benchmark baselines compute what the library computes, and the harness reports right.

Timings are not tested; these are correctness checks on tiny inputs.
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import baselines  # noqa: E402
import run_all  # noqa: E402

from hmmrnn.hmm import HMM  # noqa: E402
from hmmrnn.metrics import transition_counts  # noqa: E402
from hmmrnn.model import NoiseRNN, generate  # noqa: E402
from hmmrnn.training import Trainer  # noqa: E402

# ------------------------------------------------------------------------------ baselines


def test_loop_transition_counts_known_answer():
    obs = np.array([[0, 0, 1, 2], [2, 1, 1, 0]])
    expected = np.array([[1, 1, 0], [1, 1, 1], [0, 1, 0]])  # 0-0, 0-1, 1-2 | 2-1, 1-1, 1-0
    np.testing.assert_array_equal(baselines.loop_transition_counts(obs, 3), expected)
    np.testing.assert_array_equal(transition_counts(obs, 3), expected)


def test_loop_transition_counts_equal_library():
    obs = np.random.default_rng(0).integers(0, 4, size=(50, 17))
    np.testing.assert_array_equal(
        baselines.loop_transition_counts(obs, 4), transition_counts(obs, 4)
    )


def test_hmmlearn_sample_deterministic_chain_equals_ours():
    # Start in state 0, cycle 0 -> 1 -> 2 -> 0, emit (state + 1) mod 3: one possible sequence.
    hmm = HMM(
        states=3,
        outputs=3,
        start_prob=[1.0, 0.0, 0.0],
        transition_matrix=[[0, 1, 0], [0, 0, 1], [1, 0, 0]],
        emission_matrix=[[0, 1, 0], [0, 0, 1], [1, 0, 0]],
    )
    obs, states = baselines.hmmlearn_sample(
        hmm.start_prob, hmm.transition_matrix, hmm.emission_matrix, 4, 7, seed=3
    )
    expected_states = np.tile([0, 1, 2, 0, 1, 2, 0], (4, 1))
    np.testing.assert_array_equal(states, expected_states)
    np.testing.assert_array_equal(obs, (expected_states + 1) % 3)
    ours_obs, ours_states = hmm.sample(4, 7, rng=0)
    np.testing.assert_array_equal(ours_obs, obs)
    np.testing.assert_array_equal(ours_states, states)
    assert obs.dtype == np.int64 and obs.shape == (4, 7)


def test_hmmlearn_sample_statistics_match_ours():
    hmm = HMM(states=2, outputs=3, transition_matrix=[[0.9, 0.1], [0.3, 0.7]])
    obs_b, states_b = baselines.hmmlearn_sample(
        hmm.start_prob, hmm.transition_matrix, hmm.emission_matrix, 400, 20, seed=0
    )
    obs_o, states_o = hmm.sample(400, 20, rng=0)
    for s in (states_b, states_o):  # 7600 transitions: the 0.1 entry is within ~0.01
        counts = transition_counts(s, 2)
        np.testing.assert_allclose(
            counts / counts.sum(1, keepdims=True), hmm.transition_matrix, atol=0.03
        )
    assert set(np.unique(obs_b)) <= {0, 1, 2}


@pytest.mark.parametrize("bias", [False, True])
def test_rnn_loop_with_same_noise_equals_generate(bias):
    torch.manual_seed(0)
    module = NoiseRNN(5, 7, output_size=3, rnn_bias=bias, readout_bias=bias)
    n, seq_len, seed = 4, 6, 11
    gen = generate(module, n, seq_len, generator=torch.Generator().manual_seed(seed))
    # generate draws, in order: the noise (n, T, I), then the initial state (1, n, H).
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((n, seq_len, 5), generator=g)
    h0 = torch.randn((1, n, 7), generator=g)[0]
    loop = baselines.rnn_loop_generate(module, n, seq_len, noise=noise, h0=h0)
    torch.testing.assert_close(loop["hidden"], gen.hidden, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loop["logits"], gen.logits, rtol=1e-5, atol=1e-5)
    out = loop["outputs"]
    assert out.shape == (n, seq_len, 3) and torch.equal(out.sum(-1), torch.ones(n, seq_len))
    np.testing.assert_array_equal(loop["observations"], out.argmax(-1).numpy())


def test_rnn_loop_without_init_starts_from_zero():
    torch.manual_seed(1)
    module = NoiseRNN(3, 4)
    noise = torch.randn(2, 3, 3)
    loop = baselines.rnn_loop_generate(module, 2, 3, init=False, noise=noise)
    first = torch.relu(noise[:, 0] @ module.rnn.weight_ih_l0.detach().T)
    torch.testing.assert_close(loop["hidden"][:, 0], first)


def test_paper_style_loss_equals_trainer_loss():
    import geomloss

    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.one_hot(torch.randint(0, 3, (64, 30), generator=g), 3).float()
    b = torch.nn.functional.one_hot(torch.randint(0, 3, (64, 30), generator=g), 3).float()
    a, b = a.reshape(64, -1), b.reshape(64, -1)
    ours = Trainer(NoiseRNN(4, 5)).make_criterion()
    paper = geomloss.SamplesLoss(blur=0.2)
    torch.testing.assert_close(ours(a, b), paper(a, b), rtol=1e-5, atol=1e-6)
    assert paper(a, a).item() == pytest.approx(0.0, abs=1e-5)


def test_paper_style_train_step_updates_and_outputs_one_hot():
    import geomloss

    torch.manual_seed(0)
    model = baselines.PaperStyleRNN(4, 6, 3)
    out = model(torch.randn(5, 7, 4))
    assert out.shape == (5, 7, 3) and torch.equal(out.sum(-1), torch.ones(5, 7))
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    targets = torch.nn.functional.one_hot(torch.randint(0, 3, (16, 7)), 3).float()
    loss = baselines.paper_style_train_step(
        model, optimizer, geomloss.SamplesLoss(blur=0.2), targets
    )
    assert np.isfinite(loss) and loss > 0
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters(), strict=True))


def test_paper_style_figure_has_two_traces_per_step(tmp_path):
    projected = np.arange(30, dtype=np.float32).reshape(10, 3)
    fig = baselines.paper_style_figure_3d(projected, np.zeros(10, int), num_points=4)
    assert [t.type for t in fig.data] == ["scatter3d", "cone"] * 4
    assert list(fig.data[2].x) == [3.0, 6.0]  # step 1 joins points 1 (x=3) and 2 (x=6)
    path = baselines.write_html_inline(fig, tmp_path / "f.html")
    assert path.stat().st_size > 1_000_000  # the plotly.js bundle is inside


# ------------------------------------------------------------------------------ harness


def test_timed_reports_extra_memory_of_the_call():
    def allocate():
        a = np.ones(40_000_000 // 8)  # 40 MB, touched
        return float(a.sum())

    m = run_all.timed(allocate, reps=3)
    assert len(m["times"]) == 3 and m["seconds"] == sorted(m["times"])[1]
    assert m["last"] == 5_000_000.0
    if run_all.reset_peak():  # Linux: per-call peak
        assert 35e6 < m["extra_bytes"] < 80e6
    assert m["peak_bytes"] >= m["rss_before_bytes"]


def test_replace_between_markers_only_touches_the_block():
    text = f"# T\nintro\n{run_all.START_MARKER}\nold table\n{run_all.END_MARKER}\nafter\n"
    new = run_all.replace_between_markers(text, "| new |")
    assert new == f"# T\nintro\n{run_all.START_MARKER}\n| new |\n{run_all.END_MARKER}\nafter\n"
    assert run_all.replace_between_markers(new, "| new |") == new
    assert run_all.replace_between_markers("no markers", "x") is None
    swapped = f"{run_all.END_MARKER}\n{run_all.START_MARKER}"
    assert run_all.replace_between_markers(swapped, "x") is None
    twice = text + run_all.START_MARKER
    assert run_all.replace_between_markers(twice, "x") is None


def _speed(seconds, scale=1.0, n=10, **kw):
    return {
        "seconds": seconds,
        "seconds_scaled": seconds * scale,
        "scale": scale,
        "n": n,
        "peak_bytes": 1e8,
        "extra_bytes": 1e7,
        **kw,
    }


def test_build_rows_ratios_targets_and_extrapolation_labels():
    s = run_all.QUICK
    results = {
        "hmm_ours": _speed(0.05),
        "hmm_baseline": _speed(0.75, scale=10, n=3000),  # 7.5 s / 0.05 s = 150x
        "rnn_ours": _speed(2.0),
        "rnn_baseline": _speed(1.0, scale=30, n=1000),  # 30 s / 2 s = 15x < 30x
        "match_ours": _speed(10.0, n_iter=200),
        "match_dense": _speed(12.0, scale=25, n=2000, n_iter=150, extra_bytes_scaled=2e9),
        "test_ours": _speed(100.0, peak_bytes=2e9),
        "pca_ours": _speed(2.0),
        "pca_baseline": _speed(2.6, scale=10, n=90000),  # 26 s / 2 s = 13x
        "train_ours": _speed(4.0),
        "train_baseline": _speed(5.0),
        "html": {
            "ours_bytes": 500_000,
            "plotly_js_bytes": 4_600_000,
            "baseline_bytes": 6_000_000,
            "num_points": 3000,
        },
        "dryrun_complete": {"seconds": 2.0, "config": ".test/config/config.yaml"},
        "dryrun_sweep": {"error": "boom"},
    }
    row_list = run_all.build_rows(results, s)
    rows = {r.what.split(" (")[0]: r for r in row_list}
    assert len(rows) == len(row_list) == 10  # transition counts were not run: no row
    hmm = rows["HMM sampling"]
    assert hmm.result == "150x faster" and hmm.met is True
    assert "extrapolated x10 from 3000" in hmm.baseline
    assert rows["RNN generation"].met is False
    match = rows["Sinkhorn matching"]
    assert match.result == "30x faster" and match.met is True and "x25" in match.baseline
    memory = rows["Sinkhorn matching: extra memory"]
    assert memory.met is True and memory.baseline.startswith("2.00 GB (extrapolated")
    assert rows["Full test"].met is True and "extrapolated" in rows["Full test"].baseline
    assert rows["Hidden states for PCA"].result == "13x faster"
    assert rows["Hidden states for PCA"].met is True
    assert rows["One training step"].result == "1.25x as fast"
    assert rows["3D trajectory HTML"].met is True
    assert rows["Dry run after a complete run"].met is True
    sweep = rows["Dry run of the 144-model sweep"]
    assert sweep.met is None and sweep.result == "error: boom"
    assert "Transition counts" not in rows
    table = run_all.render_table(row_list, s, "test machine")
    assert table.count("\n| ") == 2 + len(row_list)  # header, separator, one line per row


def test_measurements_run_in_process_on_tiny_sizes():
    from dataclasses import replace

    tiny = replace(
        run_all.SMOKE,
        num_seq=40,
        hmm_baseline_seq=10,
        rnn_baseline_seq=4,
        match_n=40,
        dense_n=20,
        reps=1,
        slow_reps=1,
        dense_reps=1,
    )
    for name, scale in (
        ("hmm_ours", 1.0),
        ("hmm_baseline", 4.0),
        ("rnn_baseline", 10.0),
        ("transitions_ours", 1.0),
        ("transitions_baseline", 1.0),
        ("match_dense", 4.0),  # (40 / 20)^2
    ):
        out = run_all.MEASUREMENTS[name](tiny)
        assert out["scale"] == scale, name
        assert out["seconds_scaled"] == pytest.approx(out["seconds"] * scale), name
        assert out["peak_bytes"] > 0 and len(out["times"]) == 1, name
    assert out["converged"] is True and out["n_iter"] >= 1


def test_rnn_loop_long_trajectory_from_zero_equals_forward():
    # The PCA baseline: one long trajectory from h = 0, readout and Gumbel sample at the end.
    torch.manual_seed(2)
    module = NoiseRNN(5, 7, output_size=3)
    noise = torch.randn(1, 200, 5)
    loop = baselines.rnn_loop_generate(module, 1, 200, init=False, noise=noise)
    with torch.no_grad():
        _, hidden, logits = module(noise, init=False)
    torch.testing.assert_close(loop["hidden"], hidden, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(loop["logits"], logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(loop["outputs"].sum(-1), torch.ones(1, 200))
    assert loop["observations"].shape == (1, 200)


# ------------------------------------------------------------------------------ fidelity


def test_fidelity_benchmark_reports_the_rnn_and_an_exact_hmm_control(tmp_path, capsys):
    import fidelity
    import yaml

    from hmmrnn._utils import read_json

    config = {
        "results_dir": str(tmp_path / "results"),
        "defaults": {
            "data": {"num_seq": 90, "seq_len": 8},
            "rnn": {"input_size": 4, "hidden_size": 8},
            "training": {"batch_size": 16, "epochs": 2, "estimator": "halves"},
            "test": {"num_seq": 40},
        },
        "experiments": {"Tiny": {"preset": "HMMSmall"}},
    }
    path = tmp_path / "fidelity.yaml"
    path.write_text(yaml.safe_dump(config))
    status = fidelity.main(
        ["--config", str(path), "--threads", "1", "--json", str(tmp_path / "f.json")]
    )
    assert status == 1  # two epochs do not reach fidelity
    (row,) = read_json(tmp_path / "f.json")["rows"]
    control = row["control"]
    # Sets A and B are the RNN test's: every floor is the same number.
    for key in ("transition_sq_diff_max_floor", "kgram_tv_k1_floor", "kgram_tv_k4_floor"):
        assert control[key] == row[key]
    assert control["distance_mean_hmm"] == row["distance_mean_hmm"]
    assert control["distance_mean_rnn"] != row["distance_mean_rnn"]
    assert row["euclidean_gap_se"] > 0
    out = capsys.readouterr().out
    assert "exact HMM in place of the RNN" in out and "| Tiny |" in out


def test_fidelity_benchmark_seeds_give_one_row_each(tmp_path):
    import fidelity
    import yaml

    from hmmrnn._utils import read_json

    config = {
        "defaults": {
            "data": {"num_seq": 60, "seq_len": 6},
            "rnn": {"input_size": 3, "hidden_size": 4},
            "training": {"batch_size": 20, "epochs": 1},
            "test": {"num_seq": 20},
        },
        "experiments": {"Tiny": {"preset": "HMMMedium"}},
    }
    path = tmp_path / "fidelity.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["--config", str(path), "--threads", "1", "--no-control", "--json"]
    fidelity.main([*args, str(tmp_path / "f.json"), "--seeds", "3", "4"])
    rows = read_json(tmp_path / "f.json")["rows"]
    assert [r["experiment"] for r in rows] == ["Tiny (seed 3)", "Tiny (seed 4)"]
    assert all("control" not in r for r in rows)
    assert rows[0]["distance_mean_hmm"] != rows[1]["distance_mean_hmm"]  # other test sets
    # A seed given explicitly reproduces the experiment's own run.
    fidelity.main([*args, str(tmp_path / "g.json"), "--seeds", "0"])
    fidelity.main([*args, str(tmp_path / "h.json")])
    (g,) = read_json(tmp_path / "g.json")["rows"]
    (h,) = read_json(tmp_path / "h.json")["rows"]
    assert g["best_val_loss"] == h["best_val_loss"]
    assert g["euclidean_gap"] == h["euclidean_gap"]
    with pytest.raises(SystemExit):
        fidelity.main([*args, str(tmp_path / "x.json"), "--seeds", "-1"])


def _tiny_fidelity_config(tmp_path, epochs=1):
    import yaml

    config = {
        "defaults": {
            "data": {"num_seq": 60, "seq_len": 6},
            "rnn": {"input_size": 3, "hidden_size": 4},
            "training": {"batch_size": 20, "epochs": epochs},
            "test": {"num_seq": 20},
        },
        "experiments": {"Tiny": {"preset": "HMMMedium"}},
    }
    path = tmp_path / f"fidelity{epochs}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fidelity_test_draws_average_fresh_sets_and_saved_models_are_reused(tmp_path, capsys):
    import fidelity

    from hmmrnn._utils import read_json

    models = tmp_path / "models"
    base = ["--config", str(_tiny_fidelity_config(tmp_path)), "--threads", "1", "--json"]
    fidelity.main([*base, str(tmp_path / "a.json")])
    fidelity.main(
        [*base, str(tmp_path / "b.json"), "--test-draws", "0", "2", "--models", str(models)]
    )
    (a,) = read_json(tmp_path / "a.json")["rows"]
    (b,) = read_json(tmp_path / "b.json")["rows"]
    assert b["test_draws"] == [0, 2]
    draw0, draw2 = b["draw_summaries"]
    assert draw0["euclidean_gap"] == a["euclidean_gap"]  # draw 0 is the workflow's test
    assert draw2["distance_mean_hmm"] != draw0["distance_mean_hmm"]  # draw 2: fresh sets
    assert b["euclidean_gap"] == pytest.approx(
        (draw0["euclidean_gap"] + draw2["euclidean_gap"]) / 2
    )
    se = np.hypot(draw0["euclidean_gap_se"], draw2["euclidean_gap_se"]) / 2
    assert b["euclidean_gap_se"] == pytest.approx(se)
    assert b["control"]["distance_mean_hmm"] == b["distance_mean_hmm"]
    out = capsys.readouterr().out
    assert "mean of test draws 0, 2" in out
    assert " min (1, " in out  # the training threads, kept with the model
    assert (models / "Tiny.pth").is_file()

    # The saved model is reused: same model, same times, no training.
    fidelity.main([*base, str(tmp_path / "c.json"), "--test-draws", "2", "--models", str(models)])
    (c,) = read_json(tmp_path / "c.json")["rows"]
    assert "reusing" in capsys.readouterr().out
    assert c["train_seconds"] == b["train_seconds"]
    assert c["euclidean_gap"] == draw2["euclidean_gap"]

    # A model trained with other settings is refused before any work.
    other = ["--config", str(_tiny_fidelity_config(tmp_path, epochs=2)), "--threads", "1"]
    with pytest.raises(SystemExit):
        fidelity.main([*other, "--models", str(models)])
    assert "trained with other settings" in capsys.readouterr().err
    for bad in (["-1"], ["1", "1"]):
        with pytest.raises(SystemExit):
            fidelity.main([*other, "--test-draws", *bad])


def test_remembering_matcher_matches_each_pair_of_contents_once():
    import fidelity

    calls = []

    def matcher(x, y):
        calls.append((x.copy(), y.copy()))
        return len(calls)

    match = fidelity.remembering(matcher)
    x, y = np.arange(6).reshape(2, 3), np.ones((2, 3), dtype=int)
    assert match(x, y) == 1
    assert match(x.copy(), y.copy()) == 1  # same contents, other arrays
    assert match(y, x) == 2
    assert match(x, y + 1) == 3
    assert len(calls) == 3


def test_fidelity_readme_table_keeps_the_rows_of_experiments_not_rerun(tmp_path):
    import fidelity

    head = "| experiment | a | b |\n|---|---|---|"
    old = f"{head}\n| One | 1 | 1 |\n| Two | 2 | 2 |\n| Three | 3 | 3 |"
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{fidelity.START}\n{old}\n{fidelity.END}\noutro\n")
    assert fidelity.write_readme(f"{head}\n| Two | 20 | 20 |\n| Four | 4 | 4 |", readme)
    table = f"{head}\n| One | 1 | 1 |\n| Two | 20 | 20 |\n| Three | 3 | 3 |\n| Four | 4 | 4 |"
    assert readme.read_text() == f"intro\n{fidelity.START}\n{table}\n{fidelity.END}\noutro\n"
    # Other columns: the old rows cannot be merged, the new table replaces them.
    other = "| experiment | c |\n|---|---|\n| Two | x |"
    assert fidelity.write_readme(other, readme)
    assert readme.read_text() == f"intro\n{fidelity.START}\n{other}\n{fidelity.END}\noutro\n"
    plain = tmp_path / "plain.md"
    plain.write_text("no markers\n")
    assert not fidelity.write_readme(other, plain)
    assert plain.read_text() == "no markers\n"
