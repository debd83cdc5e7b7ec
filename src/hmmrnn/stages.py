"""The workflow's stages as plain functions: paths and config sections in, files out.

Each Snakemake script is a thin call into one of these, so the same steps can be run and
tested without Snakemake. Every file is written atomically (temp file, then rename), so a
failed or killed job never leaves an output that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hmmrnn._utils import atomic_path, read_json, remove_stale_temps, torch_generator, write_json
from hmmrnn.config import DataConfig, ReverseConfig, RNNConfig, TestConfig, TrainingConfig
from hmmrnn.metrics import fidelity_score

logger = logging.getLogger("hmmrnn.stages")

PathLike = str | os.PathLike


TEST_FIGURES = (
    "euclidean_distances",
    "observation_volatilities",
    "output_frequencies",
    "transition_matrices",
    "fidelity",
)
FIGURES = (
    "loss_curves.pdf",
    *(f"{f}.pdf" for f in TEST_FIGURES),
    "latent_trajectory_2d.pdf",
    "latent_trajectory_3d.html",
)


def experiment_outputs(results_dir: str, name: str) -> list[str]:
    """Every final output of one experiment, relative to the workflow's working directory."""
    base = f"{results_dir.rstrip('/')}/{name}"
    return [f"{base}/summary.json", f"{base}/config.json", *(f"{base}/figs/{f}" for f in FIGURES)]


def _section(cls: type, values: Mapping[str, Any]) -> Any:
    return cls(**dict(values))


# ---------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------


def generate_data(*, hmm: Mapping[str, Any], data: Mapping[str, Any], seed: int, path: PathLike):
    """Sample ``data.num_seq`` HMM sequences, split them and write the parquet file."""
    from hmmrnn._utils import as_rng
    from hmmrnn.hmm import HMM, split_labels
    from hmmrnn.io import write_sequences

    model = HMM(**hmm)
    cfg = _section(DataConfig, data)
    rng = as_rng(seed)
    observations, states = model.sample(cfg.num_seq, cfg.seq_len, rng)
    split = split_labels(cfg.num_seq, cfg.split, rng)
    write_sequences(path, observations, states, split, model, metadata={"seed": seed})
    logger.info("wrote %d x %d sequences to %s", cfg.num_seq, cfg.seq_len, path)


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------


def trainer_kwargs(training: TrainingConfig, hmm=None, val=None) -> dict[str, Any]:
    """Trainer keyword arguments of a training section (all but the learning-rate list).

    ``keep_weights: fidelity`` becomes the Trainer's ``keep_weights="score"`` with
    :func:`hmmrnn.metrics.fidelity_score` of the generating ``hmm`` and the validation
    symbols ``val`` (num_seq, seq_len), which it then needs.
    """
    selection = {}
    if training.keep_weights == "fidelity":
        if hmm is None or val is None:
            raise ValueError(
                "keep_weights 'fidelity' scores generated sequences under the HMM against the "
                "validation data: pass hmm and val"
            )
        score = fidelity_score(hmm, val, max_k=min(training.kgram_max_k, np.shape(val)[1]))
        selection = {"keep_weights": "score", "select_score": score}
    return {
        "batch_size": training.batch_size,
        "epochs": training.epochs,
        "tau": training.tau,
        "grad_clip": training.grad_clip,
        "init": training.init,
        "loss": training.loss,
        "p": training.p,
        "blur": training.blur,
        "scaling": training.scaling,
        "debias": training.debias,
        "estimator": training.estimator,
        "betas": tuple(training.betas),
        "weight_decay": training.weight_decay,
        "checkpoint_every": training.checkpoint_every,
        "early_stopping_patience": training.early_stopping_patience,
        "recurrent_identity": training.recurrent_identity,
        "lr_schedule": training.lr_schedule,
        "lr_min": training.lr_min,
        "max_val_seq": training.max_val_seq,
        "activity_penalty": training.activity_penalty,
        "activity_limit": training.activity_limit,
        "keep_weights": training.keep_weights,
        "select_epochs": training.select_epochs,
        "select_seq": training.select_seq,
        "average_epochs": training.average_epochs,
        "kgram_penalty": training.kgram_penalty,
        "kgram_max_k": training.kgram_max_k,
        "kgram_switch_lags": training.kgram_switch_lags,
        "kgram_expected": training.kgram_expected,
        **selection,
    }


def module_kwargs(rnn: RNNConfig, outputs: int) -> dict[str, Any]:
    return {
        "input_size": rnn.input_size,
        "hidden_size": rnn.hidden_size,
        "num_layers": rnn.num_layers,
        "output_size": outputs,
        "rnn_bias": rnn.rnn_bias,
        "readout_bias": rnn.readout_bias,
    }


def _fingerprint(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def train_candidate(
    *,
    data_path: PathLike,
    rnn: Mapping[str, Any],
    training: Mapping[str, Any],
    learning_rate: float,
    seed: int,
    model_path: PathLike,
    history_path: PathLike,
    checkpoint_dir: PathLike | None = None,
    device: str = "auto",
) -> None:
    """Train one RNN at one learning rate; write its best weights and loss history.

    With ``checkpoint_dir``, progress is checkpointed there under a name that fingerprints
    the data file, the settings and the seed, so a rerun after preemption resumes, while a
    run with any other setting starts afresh.
    """
    import torch

    from hmmrnn.checkpoint import save_checkpoint
    from hmmrnn.hmm import one_hot
    from hmmrnn.io import read_sequences
    from hmmrnn.model import NoiseRNN
    from hmmrnn.training import Trainer

    rnn_cfg = _section(RNNConfig, rnn)
    train_cfg = _section(TrainingConfig, training)
    data = read_sequences(data_path)
    outputs = int(data.hmm["outputs"])
    train = one_hot(data.subset("train"), outputs)
    val_obs = data.subset("val")
    val = one_hot(val_obs, outputs)
    if len(train) == 0 or len(val) == 0:
        raise ValueError(
            f"{data_path}: training needs non-empty train and val splits "
            f"(got {len(train)} and {len(val)} sequences)"
        )

    for path in (model_path, history_path):  # this job is their only writer
        remove_stale_temps(path)
    torch.manual_seed(seed)  # weight initialisation
    module = NoiseRNN(**module_kwargs(rnn_cfg, outputs))
    checkpoint = None
    if checkpoint_dir is not None:
        stat = os.stat(data_path)
        key = _fingerprint(rnn, training, learning_rate, seed, stat.st_size, stat.st_mtime_ns)
        checkpoint = Path(checkpoint_dir) / f"lr_{learning_rate:g}-{key}.pt"
    resolved_device = None if device == "auto" else device
    trainer = Trainer(
        module,
        learning_rate=learning_rate,
        seed=seed,
        device=resolved_device,
        checkpoint_path=checkpoint,
        **trainer_kwargs(train_cfg, data.hmm_model(), val_obs),
    )
    result = trainer.fit(train, val)
    history = {
        "learning_rate": learning_rate,
        "train_loss": list(result.train_loss),
        "val_loss": list(result.val_loss),
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "seed": seed,
        # keep_weights: fidelity; [0-based epoch, score] of each scored epoch
        "select_scores": [[k, v] for k, v in sorted(result.select_scores.items())],
    }
    save_checkpoint(
        model_path,
        result.best_state_dict,
        config={
            "model": module.config(),
            "training": {**dict(training), "learning_rate": learning_rate},
        },
        history=history,
        seed=seed,
    )
    write_json(history_path, history)
    if checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()  # the outputs now hold everything the checkpoint did
    kept = {
        "last": "the last",
        "fidelity": "best fidelity score of the last epochs",
        "average": "the last; the weights are the mean over the last epochs",
    }
    logger.info(
        "kept the weights of epoch %d (%s; val loss %.5f)",
        result.best_epoch + 1,
        kept.get(train_cfg.keep_weights, "lowest val loss"),
        result.best_val_loss,
    )


def select_model(
    *,
    model_paths: Sequence[PathLike],
    history_paths: Sequence[PathLike],
    model_path: PathLike,
    results_path: PathLike,
) -> None:
    """Copy the candidate with the lowest validation loss; record every candidate's result."""
    histories = [read_json(p) for p in history_paths]
    losses = [h["best_val_loss"] for h in histories]
    if not all(math.isfinite(x) for x in losses):
        raise ValueError(f"non-finite validation losses {losses} in {list(history_paths)}")
    best = int(np.argmin(losses))
    with atomic_path(model_path) as tmp:
        tmp.write_bytes(Path(model_paths[best]).read_bytes())
    write_json(
        results_path,
        {
            "best_learning_rate": histories[best]["learning_rate"],
            "best_val_loss": losses[best],
            "best_epoch": histories[best]["best_epoch"],
            "candidates": [
                {k: h[k] for k in ("learning_rate", "best_val_loss", "best_epoch", "epochs_run")}
                for h in histories
            ],
            "train_loss": histories[best]["train_loss"],
            "val_loss": histories[best]["val_loss"],
        },
    )


def plot_loss_curves(history_paths: Sequence[PathLike], path: PathLike, dpi: int = 150) -> None:
    from hmmrnn.rnn import plot_loss_curves as draw

    curves = {}
    for p in history_paths:
        h = read_json(p)
        curves[f"lr={h['learning_rate']:g}"] = (h["train_loss"], h["val_loss"])
    draw(curves, path, dpi=dpi)


# ---------------------------------------------------------------------------------------------
# Testing
# ---------------------------------------------------------------------------------------------


def trained_dynamics(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The sampling settings a model was trained with (initial state, Gumbel temperature), so
    that test and PCA sequences come from exactly the trained dynamics."""
    training = checkpoint.get("config", {}).get("training", {})
    return {"init": bool(training.get("init", True)), "tau": float(training.get("tau", 1.0))}


def hmm_test_sets(hmm, test: TestConfig, seq_len: int, seed: int):
    """The test stage's HMM sets A and B (N, T) from ``seed``, and the generator after them."""
    from hmmrnn._utils import as_rng

    rng = as_rng(seed)
    obs_a, _ = hmm.sample(test.num_seq, seq_len, rng)
    obs_b, _ = hmm.sample(test.num_seq, seq_len, rng)
    return obs_a, obs_b, rng


def compare_to_hmm(hmm, obs_a, obs_b, obs_other, test: TestConfig, matcher=None):
    """:func:`hmmrnn.testing.compare` with the matching settings of the test section.

    ``matcher`` replaces the Sinkhorn matching those settings describe (see ``compare``).
    """
    from hmmrnn.testing import compare

    return compare(
        hmm,
        obs_a,
        obs_b,
        obs_other,
        hmm.outputs,
        epsilon=test.epsilon,
        max_iter=test.max_iter,
        tol=test.tol,
        max_kgram=test.max_kgram,
        matcher=matcher,
    )


def compare_model(
    hmm, module, test: TestConfig, seq_len: int, seed: int, matcher=None, **dynamics: Any
):
    """Sample two HMM sets and one RNN set from ``seed`` and compare them (the test stage).

    ``dynamics`` are extra sampling settings for the RNN (``init``, ``tau``); ``matcher`` as
    in :func:`compare_to_hmm`.
    """
    from hmmrnn.model import generate

    obs_a, obs_b, rng = hmm_test_sets(hmm, test, seq_len, seed)
    generated = generate(
        module,
        test.num_seq,
        seq_len,
        dynamics_mode=test.dynamics_mode,
        generator=torch_generator(int(rng.integers(2**63))),
        batch_size=4096,
        return_hidden=False,
        **dynamics,
    )
    return compare_to_hmm(hmm, obs_a, obs_b, generated.observations, test, matcher)


def test_model(
    *,
    model_path: PathLike,
    data_path: PathLike,
    test: Mapping[str, Any],
    seq_len: int,
    seed: int,
    summary_path: PathLike,
    tables_path: PathLike,
) -> None:
    """Compare fresh HMM samples (two independent sets) with RNN samples; save the results."""
    from hmmrnn.checkpoint import load_checkpoint, model_from_checkpoint
    from hmmrnn.io import read_sequences

    cfg = _section(TestConfig, test)
    hmm = read_sequences(data_path).hmm_model()
    checkpoint = load_checkpoint(model_path)
    module = model_from_checkpoint(checkpoint)
    results = compare_model(hmm, module, cfg, seq_len, seed, **trained_dynamics(checkpoint))
    results.save(summary_path, tables_path)


def plot_test_figure(
    *, name: str, summary_path: PathLike, tables_path: PathLike, path: PathLike, dpi: int = 150
) -> None:
    from hmmrnn import plots
    from hmmrnn.testing import TestResults

    drawers = {
        "euclidean_distances": plots.plot_euclidean_distances,
        "observation_volatilities": plots.plot_volatilities,
        "output_frequencies": plots.plot_frequencies,
        "transition_matrices": plots.plot_transition_matrices,
        "fidelity": plots.plot_fidelity,
    }
    if name not in drawers:
        raise ValueError(f"unknown test figure {name!r} (expected one of {sorted(drawers)})")
    drawers[name](TestResults.load(summary_path, tables_path), path, dpi=dpi)


# ---------------------------------------------------------------------------------------------
# Reverse engineering
# ---------------------------------------------------------------------------------------------


def pca(
    *, model_path: PathLike, reverse: Mapping[str, Any], seq_len: int, seed: int, path: PathLike
) -> None:
    from hmmrnn.checkpoint import load_checkpoint, model_from_checkpoint
    from hmmrnn.reverse import Reverse

    cfg = _section(ReverseConfig, reverse)
    checkpoint = load_checkpoint(model_path)
    analyzer = Reverse(
        model_from_checkpoint(checkpoint),
        num_seq=cfg.num_seq,
        seq_len=seq_len,
        n_components=cfg.n_components,
        seed=seed,
        **trained_dynamics(checkpoint),
    )
    result = analyzer.gen_data(dynamics_mode=cfg.dynamics_mode)
    result.save(path)


def plot_latent_2d(pca_path: PathLike, path: PathLike, *, num_points: int, dpi: int = 150):
    from hmmrnn.reverse import PCAResult, plot_trajectory_2d

    plot_trajectory_2d(PCAResult.load(pca_path), path, num_points=num_points, dpi=dpi)


def plot_latent_3d(pca_path: PathLike, path: PathLike, *, js_path: PathLike, num_points: int):
    from hmmrnn.reverse import PCAResult, plot_trajectory_3d

    plot_trajectory_3d(PCAResult.load(pca_path), path, num_points=num_points)
    if not Path(js_path).exists():
        raise FileNotFoundError(f"plotly.js was not written beside {path} (expected {js_path})")


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------


def summarize_experiment(
    *,
    name: str,
    config_path: PathLike,
    training_path: PathLike,
    test_path: PathLike,
    pca_path: PathLike,
    path: PathLike,
) -> None:
    from hmmrnn._utils import package_versions

    training = read_json(training_path)
    with np.load(pca_path, allow_pickle=False) as npz:
        explained = npz["explained_variance_ratio"].tolist()
    write_json(
        path,
        {
            "experiment": name,
            "config": read_json(config_path),
            "training": {k: v for k, v in training.items() if k not in ("train_loss", "val_loss")},
            "test": read_json(test_path),
            "pca": {"explained_variance_ratio": explained},
            "versions": package_versions(),
        },
    )


def _flat_row(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers worth comparing across experiments, as one flat table row."""
    cfg, test = summary["config"], summary["test"]
    row: dict[str, Any] = {
        "experiment": summary["experiment"],
        "states": cfg["hmm"]["states"],
        "outputs": cfg["hmm"]["outputs"],
        "hidden_size": cfg["rnn"]["hidden_size"],
        "input_size": cfg["rnn"]["input_size"],
        "seed": cfg["seed"],
        "best_learning_rate": summary["training"]["best_learning_rate"],
        "best_val_loss": summary["training"]["best_val_loss"],
    }
    for key, value in test["summary"].items():
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            row[key] = value
    return row


def batch_results(summary_paths: Sequence[PathLike], *, json_path: PathLike, table_path: PathLike):
    """One table over all experiments (CSV) plus every summary (JSON)."""
    summaries = [read_json(p) for p in summary_paths]
    table = pd.DataFrame([_flat_row(s) for s in summaries])
    with atomic_path(table_path) as tmp:
        table.to_csv(tmp, index=False)
    write_json(json_path, {"experiments": summaries, "table": table.to_dict(orient="records")})


# The cross-experiment figure: each fidelity number next to its sampling-noise floor.
BATCH_FIDELITY_METRICS = (
    "euclidean_gap",
    "euclidean_gap_se",
    "transition_sq_diff_max",
    "transition_sq_diff_max_floor",
    "kgram_tv_k1_rnn",
    "kgram_tv_k1_floor",
    "kgram_tv_k2_rnn",
    "kgram_tv_k2_floor",
    "run_length_tv_mean_rnn",
    "run_length_tv_mean_floor",
    "loglik_per_step_gap",
)


def plot_batch_fidelity(json_path: PathLike, path: PathLike, dpi: int = 150) -> None:
    from hmmrnn.plots import plot_fidelity_table

    rows = read_json(json_path)["table"]
    metrics = [m for m in BATCH_FIDELITY_METRICS if any(m in row for row in rows)]
    plot_fidelity_table(rows, path, metrics=metrics, dpi=dpi)
