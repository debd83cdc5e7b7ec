"""End-to-end: the tiny .test configuration through Snakemake, and what reruns after a change."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TEST_CONFIG = ROOT / ".test" / "config" / "config.yaml"

pytestmark = pytest.mark.slow


def copy_workflow(dest: Path) -> Path:
    """A private copy of the workflow (no results, no .snakemake) to run in."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", dest / "Snakefile")
    shutil.copytree(ROOT / "profiles" / "default", dest / "profiles" / "default")
    for folder in ("workflow", "config", ".test"):
        shutil.copytree(
            ROOT / folder, dest / folder, ignore=shutil.ignore_patterns("results", "__pycache__")
        )
    return dest


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str, configfile: Path | str = ".test/config/config.yaml"):
    """(rule, output) pairs a dry run would execute, without the `all` target rule."""
    # Targets go first: --configfile takes every following word as a file.
    proc = snakemake(workdir, "-n", *args, "--configfile", str(configfile))
    text = proc.stdout + proc.stderr
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule )", text):
        m = re.match(r"(?:local)?rule (\w+):", block)
        if m and m.group(1) != "all":
            out = re.search(r"output: (.*)", block)
            jobs.append((m.group(1), out.group(1) if out else ""))
    return jobs


def with_config(workdir: Path, name: str, change) -> Path:
    cfg = yaml.safe_load(TEST_CONFIG.read_text())
    change(cfg)
    path = workdir / ".test" / "config" / name
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The .test configuration run to completion once."""
    workdir = copy_workflow(tmp_path_factory.mktemp("workflow"))
    snakemake(workdir, "--configfile", ".test/config/config.yaml")
    return workdir


EXPECTED = [
    "config.json",
    "summary.json",
    "training_results.json",
    "test_results.json",
    "test_results.parquet",
    "pca_results.npz",
    "data/hmm_sequences.parquet",
    "models/rnn.pth",
    "figs/loss_curves.pdf",
    "figs/euclidean_distances.pdf",
    "figs/observation_volatilities.pdf",
    "figs/output_frequencies.pdf",
    "figs/transition_matrices.pdf",
    "figs/fidelity.pdf",
    "figs/latent_trajectory_2d.pdf",
    "figs/latent_trajectory_3d.html",
    "figs/plotly.min.js",
]


def test_run_writes_every_output(finished):
    for experiment in ("small", "cyclic"):
        for rel in EXPECTED:
            path = finished / "results" / experiment / rel
            assert path.is_file() and path.stat().st_size > 0, path
        summary = json.loads((finished / "results" / experiment / "summary.json").read_text())
        assert summary["experiment"] == experiment
        assert summary["config"]["seed"] == {"small": 1, "cyclic": 2}[experiment]
        training = summary["training"]
        assert training["best_learning_rate"] in (0.01, 0.003)
        assert len(training["candidates"]) == 2
    batch = json.loads((finished / "results" / "batch_results.json").read_text())
    assert [row["experiment"] for row in batch["table"]] == ["cyclic", "small"]
    assert (finished / "results" / "batch_results.csv").read_text().startswith("experiment,")
    assert (finished / "results" / "batch_fidelity.pdf").stat().st_size > 0
    # Nothing half-written left behind.
    assert not list((finished / "results").rglob("*.tmp"))


def test_selected_model_is_the_candidate_with_the_best_validation_loss(finished):
    import torch

    exp = finished / "results" / "small"
    results = json.loads((exp / "training_results.json").read_text())
    best = min(results["candidates"], key=lambda c: c["best_val_loss"])
    assert results["best_learning_rate"] == best["learning_rate"]
    chosen = torch.load(exp / "models" / "rnn.pth", weights_only=True)
    candidate = torch.load(exp / "models" / f"lr_{best['learning_rate']:g}.pth", weights_only=True)
    assert chosen["state_dict"].keys() == candidate["state_dict"].keys()
    assert all(
        torch.equal(chosen["state_dict"][k], candidate["state_dict"][k])
        for k in chosen["state_dict"]
    )


def test_second_run_has_nothing_to_do(finished):
    assert planned_jobs(finished) == []


def test_plotting_parameter_reruns_only_the_affected_figures(finished):
    cfg = with_config(finished, "plots3d.yaml", lambda c: c["plots"].update(num_points_3d=80))
    assert {rule for rule, _ in planned_jobs(finished, configfile=cfg)} == {
        "plot_latent_trajectory_3d"
    }
    cfg = with_config(finished, "dpi.yaml", lambda c: c["plots"].update(dpi=60))
    rules = {rule for rule, _ in planned_jobs(finished, configfile=cfg)}
    assert rules == {
        "plot_test_figure",
        "plot_loss_curves",
        "plot_latent_trajectory_2d",
        "plot_batch_fidelity",
    }


def test_hmm_change_reruns_that_experiment_only(finished):
    def change(c):
        c["experiments"]["small"]["hmm"] = {"stay_prob": 0.9}

    jobs = planned_jobs(finished, configfile=with_config(finished, "hmm.yaml", change))
    outputs = " ".join(out for _, out in jobs)
    assert "results/small/data/hmm_sequences.parquet" in outputs
    assert "results/cyclic/" not in outputs
    assert {rule for rule, _ in jobs} >= {"generate_data", "train_rnn", "test_rnn", "pca"}


def test_one_figure_on_a_clean_tree_builds_only_what_it_needs(tmp_path):
    workdir = copy_workflow(tmp_path / "clean")
    jobs = planned_jobs(workdir, "results/small/figs/transition_matrices.pdf")
    assert sorted(rule for rule, _ in jobs) == sorted(
        ["generate_data", "train_rnn", "train_rnn", "select_model", "test_rnn", "plot_test_figure"]
    )
    assert all("results/small/" in out for _, out in jobs)


def test_same_seed_gives_identical_data_and_model(finished, tmp_path):
    import torch

    from hmmrnn.io import read_sequences

    other = copy_workflow(tmp_path / "again")
    snakemake(other, "results/small/models/rnn.pth", "--configfile", ".test/config/config.yaml")
    a = read_sequences(finished / "results/small/data/hmm_sequences.parquet")
    b = read_sequences(other / "results/small/data/hmm_sequences.parquet")
    np.testing.assert_array_equal(a.observations, b.observations)
    np.testing.assert_array_equal(a.split, b.split)
    ma = torch.load(finished / "results/small/models/rnn.pth", weights_only=True)["state_dict"]
    mb = torch.load(other / "results/small/models/rnn.pth", weights_only=True)["state_dict"]
    assert all(torch.equal(ma[k], mb[k]) for k in ma)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["experiments"]["small"].update(hmm={"stay_prob": 1.5}), r"stay_prob"),
        (lambda c: c["experiments"]["small"].update(preset="Huge"), r"Huge"),
        (lambda c: c["experiments"]["small"].update(training={"epochs": "many"}), r"epochs"),
        (lambda c: c.update(colour="blue"), r"colour"),
        (
            lambda c: c["experiments"]["small"].update(
                hmm={"transition_matrix": [[0.5, 0.4], [0.5, 0.5]]}
            ),
            r"transition_matrix",
        ),
    ],
)
def test_bad_configuration_stops_before_any_job(tmp_path, change, message):
    workdir = copy_workflow(tmp_path / "bad")
    cfg = with_config(workdir, "bad.yaml", change)
    proc = snakemake(workdir, "--configfile", str(cfg), check=False)
    assert proc.returncode != 0
    assert re.search(message, proc.stdout + proc.stderr)
    assert not (workdir / "results").exists()


def test_report_contains_every_figure(finished):
    snakemake(finished, "--configfile", ".test/config/config.yaml", "--report", "report.html")
    assert (finished / "report.html").stat().st_size > 10_000


def test_code_style():
    ruff = [sys.executable, "-m", "ruff"]
    paths = ["src", "tests", "benchmarks", "workflow/scripts"]
    for cmd in (
        ruff + ["check", *paths],
        ruff + ["format", "--check", *paths],
        [sys.executable, "-m", "snakefmt", "--check", "Snakefile", "workflow/rules"],
    ):
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}{proc.stderr}"


def test_lint_passes():
    proc = snakemake(ROOT, "--lint", "--configfile", str(TEST_CONFIG), check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (
        "Congratulations" in proc.stdout + proc.stderr
        or "no lints" in (proc.stdout + proc.stderr).lower()
    )
