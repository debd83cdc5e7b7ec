"""Training a :class:`~hmmrnn.model.NoiseRNN` so its output-sequence distribution matches data.

The loss is a Sinkhorn divergence (geomloss) between a minibatch of generated one-hot
sequences and a minibatch of data sequences, each flattened to points in ``R^(T*O)``.
Training is reproducible (one ``torch.Generator`` drives noise, initial states, Gumbel noise
and shuffling) and preemption-safe (periodic atomic checkpoints that :meth:`Trainer.fit`
resumes from bit for bit).
"""

from __future__ import annotations

import copy
import hashlib
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hmmrnn._utils import check_choice, remove_stale_temps, torch_generator
from hmmrnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hmmrnn.config import KEEP_WEIGHTS_DEFAULTS
from hmmrnn.loss import (
    MAX_EXPECTED_KGRAM_VALUES,
    KGramPenalty,
    SinkhornLoss,
    check_estimator,
)
from hmmrnn.model import NoiseRNN, _check_positive_int, _check_tau, _randn, generate

__all__ = ["Trainer", "TrainingResult", "as_one_hot_tensor", "sweep_learning_rates"]

logger = logging.getLogger("hmmrnn.training")

GEOMLOSS_LOSSES = ("sinkhorn", "hausdorff", "energy", "gaussian", "laplacian")
GEOMLOSS_BACKENDS = ("tensorized", "online", "multiscale", "auto")
LR_SCHEDULES = ("constant", "cosine")
KEEP_WEIGHTS = ("best", "last", "score", "average")
# Settings that may change between an interrupted run and its resumption.
_RESUMABLE_CHANGES = (
    "epochs",
    "checkpoint_path",
    "checkpoint_every",
    "early_stopping_patience",
    "log_every",
    "verbose",
    "keep_weights",
)


@dataclass
class TrainingResult:
    """Outcome of :meth:`Trainer.fit`.

    Attributes
    ----------
    train_loss, val_loss : list of float
        Per-epoch mean losses (length ``epochs_run``).
    best_epoch : int
        0-based index of the epoch whose weights are kept: the lowest validation loss, the
        last epoch with ``Trainer(keep_weights="last")`` or ``"average"``, or the lowest
        selection score with ``keep_weights="score"`` (-1 if no epoch ran).
    best_val_loss : float
        ``val_loss[best_epoch]``; with ``keep_weights="average"``, the validation loss of the
        averaged weights.
    best_state_dict : dict of str to torch.Tensor
        CPU copy of the weights at the end of ``best_epoch`` (not a view of live weights);
        with ``keep_weights="average"``, their mean over the last ``average_epochs`` epochs.
    epochs_run : int
    stopped_early : bool
    epoch_seconds : list of float
        Wall time of each epoch (not reproducible; excluded from comparisons).
    learning_rate : float
    select_scores : dict of int to float
        With ``keep_weights="score"``: the selection score of each scored epoch (0-based).
    """

    train_loss: list[float]
    val_loss: list[float]
    best_epoch: int
    best_val_loss: float
    best_state_dict: dict[str, torch.Tensor]
    epochs_run: int
    stopped_early: bool
    epoch_seconds: list[float] = field(default_factory=list)
    learning_rate: float = math.nan
    select_scores: dict[int, float] = field(default_factory=dict)


def as_one_hot_tensor(seq: Any, name: str, output_size: int | None = None) -> torch.Tensor:
    """Check a one-hot sequence array (N, T, O) and return it as a float32 CPU tensor."""
    if isinstance(seq, torch.Tensor):
        t = seq.detach().to("cpu", torch.float32)
    elif isinstance(seq, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(seq, dtype=np.float32))
    else:
        raise ValueError(f"{name} must be a numpy array or torch tensor (got {type(seq).__name__})")
    if t.ndim != 3 or 0 in t.shape:
        raise ValueError(
            f"{name} must be a non-empty one-hot array (num_seq, seq_len, outputs) "
            f"(got shape {tuple(t.shape)})"
        )
    if output_size is not None and t.shape[2] != output_size:
        raise ValueError(
            f"{name} has {t.shape[2]} symbols in its last axis; the model outputs {output_size}"
        )
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return t.contiguous()


def _fingerprint(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _resolve_device(device: Any) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except (TypeError, RuntimeError):
        raise ValueError(
            f"device must be a torch device or name like 'cpu' (got {device!r})"
        ) from None


class Trainer:
    """Fit a :class:`NoiseRNN` to one-hot sequences with a Sinkhorn-divergence loss.

    Parameters
    ----------
    module : NoiseRNN
        Trained in place (moved to ``device``).
    batch_size : int
        Sequences per minibatch (training and validation).
    epochs : int
        Total number of epochs (a resumed run continues up to this number).
    learning_rate : float
        Adam step size.
    tau : float
        Gumbel-softmax temperature.
    grad_clip : float or None
        Maximum gradient norm (no clipping when None).
    init : bool
        Random N(0, 1) initial hidden state (True) or zeros.
    loss, p, blur, scaling, debias, backend
        Arguments of ``geomloss.SamplesLoss``.
    fused_loss : bool
        Compute geomloss's tensorized Sinkhorn divergence with a compiled soft-min kernel on
        the CPU (:class:`hmmrnn.loss.SinkhornLoss`: the same loss and gradient to float
        rounding, several times faster at large batches). False calls geomloss unchanged.
    estimator : {"batch", "halves"}
        How the Sinkhorn divergence is estimated from a minibatch of generated and one of
        target sequences (:class:`hmmrnn.loss.SinkhornLoss`). ``"batch"`` (geomloss, the
        paper) compares each minibatch with itself in the debiasing terms, which rewards a
        model whose samples are more alike than the data's: the trained RNN is less variable
        than its HMM (higher likelihood under the HMM than the HMM's own samples, Euclidean
        distances below the HMM baseline). ``"halves"`` compares independent halves of the
        minibatches instead, so the loss is zero in expectation at the data distribution and
        that bias is gone. Needs ``loss="sinkhorn"`` with ``debias=True``.
    criterion : callable, optional
        ``criterion(generated, target) -> scalar tensor`` on (B, T*O) tensors; replaces the
        geomloss loss (then ``estimator`` must be ``"batch"``).
    betas, weight_decay
        Adam arguments.
    seed : int
        Seeds the trainer's ``torch.Generator`` (noise, initial states, Gumbel, shuffling).
    device : str or torch.device, optional
        CUDA when available if None, else CPU.
    checkpoint_path : path-like, optional
        Resumable training state, written atomically every ``checkpoint_every`` epochs and at
        the end; :meth:`fit` resumes from it when it exists.
    checkpoint_every : int
    early_stopping_patience : int, optional
        Stop after this many epochs without a lower validation loss.
    log_every : int
        Log a progress line every ``log_every`` epochs.
    verbose : bool
        Also print the progress lines to stdout.
    recurrent_identity : float
        Added times the identity to every layer's recurrent weights ``W_hh`` when a fit starts
        from scratch (not on resume). A value near 1 gives the network slowly decaying
        memory from the first step, which lets it learn persistent (sticky) output statistics
        instead of sitting on the plateau where only symbol frequencies match.
        0 keeps the module's own initialisation (the paper's setting).
    lr_schedule : {"constant", "cosine"}
        ``"cosine"`` decays the step size from ``learning_rate`` to ``lr_min`` over all
        ``epochs`` (per optimizer step); then ``epochs`` cannot change on resume.
    lr_min : float
        Final step size of the cosine schedule.
    max_val_seq : int, optional
        Evaluate the validation loss on only the first ``max_val_seq`` sequences (faster
        epochs); all of them when None.
    activity_penalty, activity_limit : float
        Adds ``activity_penalty * mean(relu(|h_t| - activity_limit) ** 2)`` over sequences
        and steps (``h_t``: the last layer's hidden state) to the training and validation
        loss. It leaves trajectories whose norm stays below the limit alone and stops the
        unbounded growth of activity that training otherwise learns after an identity start
        (which makes the network nearly deterministic and dominates the PCA). 0 disables it
        (the paper's objective). The N(0, I) initial state has norm about
        ``sqrt(hidden_size)`` (12 at 150 units).
    keep_weights : {"best", "last", "score", "average"}
        Which weights the result carries as ``best_state_dict`` (with ``best_epoch`` and
        ``best_val_loss``): those of the epoch with the lowest validation loss (the paper's
        choice), those of the last epoch, among the last ``select_epochs`` epochs those
        whose generated sequences get the lowest ``select_score``, or the mean of the
        weights at the end of each of the last ``average_epochs`` epochs (Polyak-Ruppert /
        stochastic weight averaging). Under a decaying schedule
        the minibatch Sinkhorn validation loss bottoms out early and tracks fidelity poorly,
        so ``"last"`` can emulate the HMM more closely; but the statistics of the generated
        sequences still move from epoch to epoch at the end (Fully: their mean HMM
        log-likelihood per step by up to 0.006 nats between consecutive epochs at step size
        2e-4), and ``"score"`` keeps an epoch where they are right, while ``"average"``
        averages the fluctuation out. Early stopping always watches the lowest validation
        loss; it cannot be combined with ``"score"`` or ``"average"``.
    average_epochs : int, optional
        How many final epochs ``keep_weights="average"`` averages (default 10; only with it;
        at most ``epochs``).
    select_score : callable, optional
        ``select_score(observations) -> float`` on generated symbol indices of shape
        (select_seq, seq_len), lower is better; needed by, and only by,
        ``keep_weights="score"`` (e.g. :func:`hmmrnn.metrics.fidelity_score`).
    select_epochs : int, optional
        How many final epochs ``keep_weights="score"`` chooses from (default 10; only with it).
    select_seq : int, optional
        Sequences generated to score each of those epochs, with the same noise every epoch
        (a stream of its own, so training itself is unchanged; default 8192; only with it).
    kgram_penalty : float
        Weight of a :class:`hmmrnn.loss.KGramPenalty` added to the training and validation
        loss: the chi-square distance between the 1- to ``kgram_max_k``-gram frequencies of
        each minibatch of samples (between its halves) and those of the training data. The
        Sinkhorn divergence barely moves when a rare symbol or a short flicker is misplaced;
        this term does. 0 disables it (the paper's objective).
    kgram_max_k : int
        Longest k-gram of the penalty (at most the sequence length).
    kgram_switch_lags : int
        The penalty also compares the rates of switch pairs at lags 1..this with the data's
        (see :class:`hmmrnn.loss.KGramPenalty`); 0 (default) does not. Needs
        ``kgram_penalty > 0``; at most the sequence length minus 2.
    kgram_expected : bool
        Evaluate the penalty at the expected k-gram frequencies and switch-pair rates given
        each sequence's noise (its per-step output probabilities, ``softmax(logits)``; exact
        because the outputs do not feed back) instead of at the sampled symbols. Same
        penalty in expectation, less noise, and the exact gradient in the logits instead of
        the straight-through one. Needs ``kgram_penalty > 0``.
    """

    def __init__(
        self,
        module: NoiseRNN,
        *,
        batch_size: int = 1024,
        epochs: int = 100,
        learning_rate: float = 1e-3,
        tau: float = 1.0,
        grad_clip: float | None = 0.9,
        init: bool = True,
        loss: str = "sinkhorn",
        p: int = 2,
        blur: float = 0.2,
        scaling: float = 0.5,
        debias: bool = True,
        backend: str = "tensorized",
        fused_loss: bool = True,
        estimator: str = "batch",
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        betas: Sequence[float] = (0.9, 0.9),
        weight_decay: float = 0.0,
        seed: int = 0,
        device: Any = None,
        checkpoint_path: str | os.PathLike | None = None,
        checkpoint_every: int = 10,
        early_stopping_patience: int | None = None,
        log_every: int = 1,
        verbose: bool = False,
        recurrent_identity: float = 0.0,
        lr_schedule: str = "constant",
        lr_min: float = 0.0,
        max_val_seq: int | None = None,
        activity_penalty: float = 0.0,
        activity_limit: float = 30.0,
        keep_weights: str = "best",
        select_score: Callable[[np.ndarray], float] | None = None,
        select_epochs: int | None = None,
        select_seq: int | None = None,
        average_epochs: int | None = None,
        kgram_penalty: float = 0.0,
        kgram_max_k: int = 4,
        kgram_switch_lags: int = 0,
        kgram_expected: bool = False,
    ) -> None:
        if not isinstance(module, NoiseRNN):
            raise ValueError(f"module must be a NoiseRNN (got {type(module).__name__})")
        self.module = module
        self.batch_size = _check_positive_int("batch_size", batch_size)
        self.epochs = _check_positive_int("epochs", epochs)
        self.learning_rate = _positive_float("learning_rate", learning_rate)
        self.tau = _check_tau(tau)
        self.grad_clip = None if grad_clip is None else _positive_float("grad_clip", grad_clip)
        self.init = _check_bool("init", init)
        self.loss = check_choice("loss", loss, GEOMLOSS_LOSSES)
        if p not in (1, 2) or isinstance(p, bool):
            raise ValueError(f"p must be 1 or 2 (got {p!r})")
        self.p = int(p)
        self.blur = _positive_float("blur", blur)
        self.scaling = _positive_float("scaling", scaling)
        if not self.scaling < 1:
            raise ValueError(f"scaling must be in (0, 1) (got {scaling!r})")
        self.debias = _check_bool("debias", debias)
        self.backend = check_choice("backend", backend, GEOMLOSS_BACKENDS)
        self.fused_loss = _check_bool("fused_loss", fused_loss)
        self.estimator = check_estimator(estimator, self.loss, self.debias)
        if criterion is not None and not callable(criterion):
            raise ValueError(f"criterion must be callable or None (got {criterion!r})")
        if criterion is not None and self.estimator == "halves":
            raise ValueError("estimator 'halves' applies to the built-in loss, not to criterion")
        self.criterion = criterion
        try:
            betas = tuple(float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas must be two numbers in [0, 1) (got {betas!r})") from None
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be two numbers in [0, 1) (got {betas!r})")
        self.betas = betas
        self.weight_decay = float(weight_decay)
        if not math.isfinite(self.weight_decay) or self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0 (got {weight_decay!r})")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int (got {seed!r})")
        self.seed = int(seed)
        # Validation draws its noise from its own stream, restarted every epoch.
        self._val_seed = int(np.random.SeedSequence(self.seed, spawn_key=(1,)).generate_state(1)[0])
        self.device = _resolve_device(device)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)
        self.checkpoint_every = _check_positive_int("checkpoint_every", checkpoint_every)
        self.early_stopping_patience = (
            None
            if early_stopping_patience is None
            else _check_positive_int("early_stopping_patience", early_stopping_patience)
        )
        self.log_every = _check_positive_int("log_every", log_every)
        self.verbose = _check_bool("verbose", verbose)
        self.recurrent_identity = _nonnegative_float("recurrent_identity", recurrent_identity)
        self.lr_schedule = check_choice("lr_schedule", lr_schedule, LR_SCHEDULES)
        self.lr_min = _nonnegative_float("lr_min", lr_min)
        if self.lr_min > self.learning_rate:
            raise ValueError(
                f"lr_min must be at most learning_rate = {self.learning_rate} (got {lr_min!r})"
            )
        self.max_val_seq = (
            None if max_val_seq is None else _check_positive_int("max_val_seq", max_val_seq)
        )
        self.activity_penalty = _nonnegative_float("activity_penalty", activity_penalty)
        self.activity_limit = _positive_float("activity_limit", activity_limit)
        self.keep_weights = check_choice("keep_weights", keep_weights, KEEP_WEIGHTS)
        if select_score is not None and not callable(select_score):
            raise ValueError(f"select_score must be callable or None (got {select_score!r})")
        if (select_score is None) != (self.keep_weights != "score"):
            raise ValueError(
                "keep_weights='score' needs select_score, and select_score needs "
                f"keep_weights='score' (got keep_weights={self.keep_weights!r}, "
                f"select_score={select_score!r})"
            )
        if self.keep_weights in ("score", "average") and self.early_stopping_patience is not None:
            raise ValueError(
                f"keep_weights={self.keep_weights!r} works on the last epochs of all epochs; it "
                f"cannot be combined with early stopping (got early_stopping_patience="
                f"{self.early_stopping_patience})"
            )
        self.select_score = select_score
        self.select_epochs = self._only_with("score", "select_epochs", select_epochs)
        self.select_seq = self._only_with("score", "select_seq", select_seq)
        self.average_epochs = self._only_with("average", "average_epochs", average_epochs)
        if self.average_epochs is not None and self.average_epochs > self.epochs:
            raise ValueError(
                f"average_epochs must be at most epochs = {self.epochs} (got {self.average_epochs})"
            )
        # Selection generates its sequences from a stream of its own, the same every epoch.
        self._select_seed = int(
            np.random.SeedSequence(self.seed, spawn_key=(2,)).generate_state(1)[0]
        )
        self.kgram_penalty = _nonnegative_float("kgram_penalty", kgram_penalty)
        self.kgram_max_k = _check_positive_int("kgram_max_k", kgram_max_k)
        lags = kgram_switch_lags
        if isinstance(lags, bool) or not isinstance(lags, int) or lags < 0:
            raise ValueError(f"kgram_switch_lags must be an integer >= 0 (got {lags!r})")
        if lags and not self.kgram_penalty:
            raise ValueError(
                f"kgram_switch_lags = {lags} needs kgram_penalty > 0 (its weight; "
                f"got {self.kgram_penalty})"
            )
        self.kgram_switch_lags = lags
        if not isinstance(kgram_expected, bool):
            raise ValueError(f"kgram_expected must be True or False (got {kgram_expected!r})")
        if kgram_expected and not self.kgram_penalty:
            raise ValueError(
                f"kgram_expected = True needs kgram_penalty > 0 (got {self.kgram_penalty})"
            )
        self.kgram_expected = kgram_expected
        self._kgram: KGramPenalty | None = None  # built from the training data by fit()

    def _only_with(self, mode: str, name: str, value: Any) -> int | None:
        """A setting of one keep_weights mode: refused under the others, defaulted under it."""
        if self.keep_weights != mode:
            if value is not None:
                raise ValueError(
                    f"{name} is only used with keep_weights={mode!r} (got {name}={value!r}, "
                    f"keep_weights={self.keep_weights!r})"
                )
            return None
        return _check_positive_int(name, KEEP_WEIGHTS_DEFAULTS[name] if value is None else value)

    # ------------------------------------------------------------------ configuration
    def config(self) -> dict:
        """Resolved training settings (JSON-able)."""
        return {
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "learning_rate": self.learning_rate,
            "tau": self.tau,
            "grad_clip": self.grad_clip,
            "init": self.init,
            "loss": "custom" if self.criterion is not None else self.loss,
            "p": self.p,
            "blur": self.blur,
            "scaling": self.scaling,
            "debias": self.debias,
            "backend": self.backend,
            "fused_loss": self.fused_loss,
            "estimator": self.estimator,
            "betas": list(self.betas),
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "device": self.device.type,
            "checkpoint_path": None if self.checkpoint_path is None else str(self.checkpoint_path),
            "checkpoint_every": self.checkpoint_every,
            "early_stopping_patience": self.early_stopping_patience,
            "log_every": self.log_every,
            "verbose": self.verbose,
            "recurrent_identity": self.recurrent_identity,
            "lr_schedule": self.lr_schedule,
            "lr_min": self.lr_min,
            "max_val_seq": self.max_val_seq,
            "activity_penalty": self.activity_penalty,
            "activity_limit": self.activity_limit,
            "keep_weights": self.keep_weights,
            "select_epochs": self.select_epochs,
            "select_seq": self.select_seq,
            "average_epochs": self.average_epochs,
            "kgram_penalty": self.kgram_penalty,
            "kgram_max_k": self.kgram_max_k,
            "kgram_switch_lags": self.kgram_switch_lags,
            "kgram_expected": self.kgram_expected,
        }

    def learning_rate_at(self, step: int, total_steps: int) -> float:
        """Step size of optimizer step ``step`` (0-based) out of ``total_steps``."""
        if self.lr_schedule == "constant" or total_steps <= 1:
            return self.learning_rate
        frac = min(step / (total_steps - 1), 1.0)
        return self.lr_min + 0.5 * (self.learning_rate - self.lr_min) * (
            1 + math.cos(math.pi * frac)
        )

    def make_criterion(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        if self.criterion is not None:
            return self.criterion
        return SinkhornLoss(
            self.loss,
            p=self.p,
            blur=self.blur,
            scaling=self.scaling,
            debias=self.debias,
            backend=self.backend,
            fused=self.fused_loss,
            estimator=self.estimator,
        )

    # ------------------------------------------------------------------ training
    def _batch_loss(self, criterion, target: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        m = self.module
        n, seq_len = target.shape[:2]
        # Same draw order as hmmrnn.model.generate: noise, initial state, Gumbel.
        x = _randn((n, seq_len, m.input_size), gen, self.device, torch.float32)
        out, hidden, logits = m(x, tau=self.tau, init=self.init, gumbel=True, generator=gen)
        loss = criterion(out.reshape(n, -1), target.reshape(n, -1))
        if self.activity_penalty:
            excess = torch.relu(hidden.norm(dim=-1) - self.activity_limit)
            loss = loss + self.activity_penalty * excess.square().mean()
        if self._kgram is not None and self.kgram_expected:
            # Gumbel-max samples follow softmax(logits) whatever tau is.
            loss = loss + self._kgram(torch.softmax(logits, -1), probabilities=True)
        elif self._kgram is not None:
            loss = loss + self._kgram(out)
        return loss

    def evaluate(self, data: torch.Tensor, generator: torch.Generator, criterion=None) -> float:
        """Size-weighted mean loss over ``data`` (N, T, O) in chunks, with fresh noise."""
        criterion = criterion or self.make_criterion()
        was_training = self.module.training
        self.module.eval()
        total = 0.0
        try:
            with torch.no_grad():
                for start in range(0, data.shape[0], self.batch_size):
                    target = data[start : start + self.batch_size]
                    loss = self._batch_loss(criterion, target, generator)
                    total += loss.item() * target.shape[0]
        finally:
            self.module.train(was_training)
        return total / data.shape[0]

    def fit(self, train: Any, val: Any) -> TrainingResult:
        """Train on one-hot ``train`` (N, T, O) and track the loss on ``val`` (M, T, O).

        Resumes from ``checkpoint_path`` when it exists. Leaves the module holding the weights
        of the last epoch run; the best ones are in the result. The validation loss of every
        epoch uses the same noise (a stream of its own), so the best epoch is chosen on the
        weights rather than on the luck of the draw.

        Returns
        -------
        TrainingResult
        """
        m = self.module
        train_t = as_one_hot_tensor(train, "train", m.output_size)
        val_t = as_one_hot_tensor(val, "val", m.output_size)
        if train_t.shape[1] != val_t.shape[1]:
            raise ValueError(
                f"train and val sequences must have the same length "
                f"(got {train_t.shape[1]} and {val_t.shape[1]})"
            )
        if self.max_val_seq is not None:
            val_t = val_t[: self.max_val_seq]
        if self.estimator == "halves" or self.kgram_penalty:
            what = "estimator 'halves'" if self.estimator == "halves" else "kgram_penalty"
            for name, size in (("train", train_t.shape[0]), ("val", val_t.shape[0])):
                if self.batch_size == 1 or size % self.batch_size == 1:
                    raise ValueError(
                        f"{what} needs at least 2 sequences in every minibatch: "
                        f"{size} {name} sequences in batches of {self.batch_size} leave one "
                        f"alone; change batch_size"
                    )
        if self.kgram_penalty and self.kgram_max_k > train_t.shape[1]:
            raise ValueError(
                f"kgram_max_k must be at most the sequence length {train_t.shape[1]} "
                f"(got {self.kgram_max_k})"
            )
        if self.kgram_switch_lags > train_t.shape[1] - 2:
            raise ValueError(
                f"kgram_switch_lags must be at most the sequence length minus 2 "
                f"({train_t.shape[1] - 2}) (got {self.kgram_switch_lags})"
            )
        if self.kgram_expected:
            seq_len, outputs = train_t.shape[1:]
            size = self.batch_size * (seq_len - self.kgram_max_k + 1) * outputs**self.kgram_max_k
            if size > MAX_EXPECTED_KGRAM_VALUES:
                raise ValueError(
                    f"kgram_expected holds batch_size x windows x outputs ** kgram_max_k = "
                    f"{size} values per step (at most {MAX_EXPECTED_KGRAM_VALUES}); lower "
                    f"batch_size or kgram_max_k, or set kgram_expected to False"
                )
        fingerprint = _fingerprint(train_t, val_t)
        self._seq_len = train_t.shape[1]
        train_t, val_t = train_t.to(self.device), val_t.to(self.device)
        # Built from the data on the training device, so its targets need no copy per step.
        self._kgram = None
        if self.kgram_penalty:
            self._kgram = KGramPenalty(
                train_t,
                max_k=self.kgram_max_k,
                weight=self.kgram_penalty,
                switch_lags=self.kgram_switch_lags,
            )
        m.to(self.device)
        gen = torch_generator(self.seed, self.device)
        optimizer = torch.optim.Adam(
            m.parameters(), lr=self.learning_rate, betas=self.betas, weight_decay=self.weight_decay
        )
        criterion = self.make_criterion()
        state = {
            "epoch": 0,
            "train_loss": [],
            "val_loss": [],
            "epoch_seconds": [],
            "best_epoch": -1,
            "best_val_loss": math.inf,
            "best_state": _cpu_state(m),
            "epochs_since_best": 0,
            "stopped_early": False,
            "select_scores": {},
            "select_epoch": -1,
            "select_state": None,
            "average_sum": None,  # float64 sums of the weights of the averaged epochs
            "average_count": 0,
        }
        if self.checkpoint_path is not None:
            # A run killed while saving its checkpoint leaves the half-written file behind.
            for tmp in remove_stale_temps(self.checkpoint_path):
                logger.info("removed %s, left by an interrupted checkpoint save", tmp)
        resuming = self.checkpoint_path is not None and self.checkpoint_path.exists()
        if not resuming and self.recurrent_identity:
            with torch.no_grad():
                for layer in range(m.num_layers):
                    w = getattr(m.rnn, f"weight_hh_l{layer}")
                    w.add_(self.recurrent_identity * torch.eye(m.hidden_size, device=w.device))
            state["best_state"] = _cpu_state(m)
        if resuming:
            state = self._resume(optimizer, gen, fingerprint)
            logger.info("resumed from %s at epoch %d", self.checkpoint_path, state["epoch"])
            if state["epoch"] > self.epochs:
                logger.warning(
                    "checkpoint %s already holds %d epochs (> epochs=%d); nothing to do",
                    self.checkpoint_path,
                    state["epoch"],
                    self.epochs,
                )

        n_train = train_t.shape[0]
        steps_per_epoch = math.ceil(n_train / self.batch_size)
        total_steps = steps_per_epoch * self.epochs
        while state["epoch"] < self.epochs and not state["stopped_early"]:
            epoch = state["epoch"]
            t0 = time.perf_counter()
            m.train()
            order = torch.randperm(n_train, generator=gen, device=gen.device).to(self.device)
            total = 0.0
            for i, start in enumerate(range(0, n_train, self.batch_size)):
                lr = self.learning_rate_at(epoch * steps_per_epoch + i, total_steps)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                target = train_t[order[start : start + self.batch_size]]
                loss = self._batch_loss(criterion, target, gen)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.grad_clip is not None:
                    nn.utils.clip_grad_norm_(m.parameters(), self.grad_clip)
                optimizer.step()
                total += loss.item() * target.shape[0]
            train_loss = total / n_train
            # The same validation noise every epoch, so that differences between epochs (and
            # the choice of the best weights) reflect the weights rather than fresh noise.
            val_loss = self.evaluate(val_t, torch_generator(self._val_seed, self.device), criterion)
            if not (math.isfinite(train_loss) and math.isfinite(val_loss)):
                raise FloatingPointError(
                    f"non-finite loss at epoch {epoch + 1} (train {train_loss}, val {val_loss}); "
                    f"try a lower learning_rate (now {self.learning_rate})"
                )
            seconds = time.perf_counter() - t0
            state["train_loss"].append(train_loss)
            state["val_loss"].append(val_loss)
            state["epoch_seconds"].append(seconds)
            state["epoch"] = epoch + 1
            if val_loss < state["best_val_loss"]:
                state.update(
                    best_val_loss=val_loss,
                    best_epoch=epoch,
                    best_state=_cpu_state(m),
                    epochs_since_best=0,
                )
            else:
                state["epochs_since_best"] += 1
            if self.keep_weights == "score" and epoch >= self.epochs - self.select_epochs:
                self._score_epoch(state, epoch)
            if self.keep_weights == "average" and epoch >= self.epochs - self.average_epochs:
                self._add_to_average(state)
            patience = self.early_stopping_patience
            if patience is not None and state["epochs_since_best"] >= patience:
                state["stopped_early"] = True
            if (epoch + 1) % self.log_every == 0 or state["epoch"] == self.epochs:
                line = (
                    f"epoch {epoch + 1}/{self.epochs} train_loss {train_loss:.5f} "
                    f"val_loss {val_loss:.5f} ({seconds:.1f} s)"
                )
                logger.info(line)
                if self.verbose:
                    print(line, flush=True)
            if state["stopped_early"]:
                logger.info(
                    "early stop: no val_loss improvement for %d epochs", state["epochs_since_best"]
                )
            if self.checkpoint_path is not None and (epoch + 1) % self.checkpoint_every == 0:
                self._save(state, optimizer, gen, fingerprint)
        if self.checkpoint_path is not None:
            self._save(state, optimizer, gen, fingerprint)

        if self.keep_weights == "last" and state["epoch"] > 0:
            kept = (state["epoch"] - 1, state["val_loss"][-1], _cpu_state(m))
        elif self.keep_weights == "score" and state["select_epoch"] >= 0:
            chosen = state["select_epoch"]
            kept = (chosen, state["val_loss"][chosen], copy.deepcopy(state["select_state"]))
            logger.info(
                "kept epoch %d of the last %d (selection score %.5g)",
                chosen + 1,
                self.select_epochs,
                state["select_scores"][chosen],
            )
        elif self.keep_weights == "average" and state["average_count"] > 0:
            kept = self._averaged(state, val_t, criterion)
        else:
            kept = (state["best_epoch"], state["best_val_loss"], copy.deepcopy(state["best_state"]))
        return TrainingResult(
            train_loss=list(state["train_loss"]),
            val_loss=list(state["val_loss"]),
            best_epoch=kept[0],
            best_val_loss=kept[1],
            best_state_dict=kept[2],
            epochs_run=state["epoch"],
            stopped_early=state["stopped_early"],
            epoch_seconds=list(state["epoch_seconds"]),
            learning_rate=self.learning_rate,
            select_scores=dict(state["select_scores"]),
        )

    def _add_to_average(self, state: dict) -> None:
        # Summed in float64 on the CPU: the order of additions then barely matters, and a
        # resumed run continues the same sums.
        weights = {
            k: v.detach().to("cpu", torch.float64) for k, v in self.module.state_dict().items()
        }
        if state["average_sum"] is None:
            state["average_sum"] = weights
        else:
            for k, v in weights.items():
                state["average_sum"][k] += v
        state["average_count"] += 1

    def _averaged(self, state: dict, val_t: torch.Tensor, criterion) -> tuple:
        """(last epoch, validation loss of the mean weights, mean weights) for the result."""
        count = state["average_count"]
        last = _cpu_state(self.module)
        mean = {k: (v / count).to(last[k].dtype) for k, v in state["average_sum"].items()}
        self.module.load_state_dict(mean)
        val_loss = self.evaluate(val_t, torch_generator(self._val_seed, self.device), criterion)
        self.module.load_state_dict(last)  # the module keeps the last epoch's weights
        first = state["epoch"] - count + 1
        logger.info(
            "kept the mean of the weights of epochs %d-%d (val_loss %.5f; last epoch %.5f)",
            first,
            state["epoch"],
            val_loss,
            state["val_loss"][-1],
        )
        return state["epoch"] - 1, val_loss, mean

    def _score_epoch(self, state: dict, epoch: int) -> None:
        """Score the weights at the end of ``epoch``; keep them if they score lowest so far."""
        generated = generate(
            self.module,
            self.select_seq,
            self._seq_len,
            tau=self.tau,
            init=self.init,
            generator=torch_generator(self._select_seed, self.device),
            batch_size=min(self.select_seq, 4096),
            return_hidden=False,
        )
        score = float(self.select_score(generated.observations))
        if not math.isfinite(score):
            raise FloatingPointError(f"select_score returned {score} at epoch {epoch + 1}")
        state["select_scores"][epoch] = score
        best = state["select_epoch"]
        if best < 0 or score < state["select_scores"][best]:
            state.update(select_epoch=epoch, select_state=_cpu_state(self.module))
        logger.info("epoch %d selection score %.5g", epoch + 1, score)

    # ------------------------------------------------------------------ checkpoints
    def _resume_key(self, fingerprint: str) -> dict:
        # A decaying schedule is laid out over all epochs, so their number is then fixed.
        free = _RESUMABLE_CHANGES if self.lr_schedule == "constant" else _RESUMABLE_CHANGES[1:]
        cfg = {k: v for k, v in self.config().items() if k not in free}
        return {"model": self.module.config(), "training": cfg, "data_sha256": fingerprint}

    def _save(self, state: dict, optimizer, gen: torch.Generator, fingerprint: str) -> None:
        trainer_state = {
            "optimizer": optimizer.state_dict(),
            "generator_state": gen.get_state(),
            "epoch": state["epoch"],
            "epoch_seconds": list(state["epoch_seconds"]),
            "best_epoch": state["best_epoch"],
            "best_val_loss": state["best_val_loss"],
            "best_state": state["best_state"],
            "epochs_since_best": state["epochs_since_best"],
            "stopped_early": state["stopped_early"],
            "select_scores": dict(state["select_scores"]),
            "select_epoch": state["select_epoch"],
            "select_state": state["select_state"],
            "average_sum": state["average_sum"],
            "average_count": state["average_count"],
        }
        save_checkpoint(
            self.checkpoint_path,
            self.module.state_dict(),
            config={**self._resume_key(fingerprint), "trainer": self.config()},
            history={"train_loss": list(state["train_loss"]), "val_loss": list(state["val_loss"])},
            seed=self.seed,
            extra={"trainer_state": trainer_state},
        )

    def _resume(self, optimizer, gen: torch.Generator, fingerprint: str) -> dict:
        path = self.checkpoint_path
        ckpt = load_checkpoint(path)
        ts = ckpt["extra"].get("trainer_state")
        if not isinstance(ts, dict):
            raise CheckpointError(f"checkpoint {str(path)!r} holds no trainer state to resume")
        expected = self._resume_key(fingerprint)
        saved = {k: ckpt["config"].get(k) for k in expected}
        if saved != expected:
            diffs = _diff(saved, expected)
            raise CheckpointError(
                f"checkpoint {str(path)!r} was written by a run with other settings or data "
                f"({'; '.join(diffs)}); delete it to start afresh"
            )
        epoch = int(ts["epoch"])
        count = int(ts.get("average_count", 0))
        if self.keep_weights == "average":
            # Changing keep_weights or epochs on resume must not average a different window.
            expected_count = max(0, epoch - (self.epochs - self.average_epochs))
            if count != expected_count:
                raise CheckpointError(
                    f"checkpoint {str(path)!r} holds the sum of {count} epochs' weights, but "
                    f"keep_weights='average' over the last {self.average_epochs} of "
                    f"{self.epochs} epochs needs {expected_count} after epoch {epoch}; "
                    "delete it to start afresh"
                )
        self.module.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ts["optimizer"])
        gen.set_state(ts["generator_state"])
        return {
            "epoch": epoch,
            "train_loss": list(ckpt["history"]["train_loss"]),
            "val_loss": list(ckpt["history"]["val_loss"]),
            "epoch_seconds": list(ts["epoch_seconds"]),
            "best_epoch": int(ts["best_epoch"]),
            "best_val_loss": float(ts["best_val_loss"]),
            "best_state": ts["best_state"],
            "epochs_since_best": int(ts["epochs_since_best"]),
            "stopped_early": bool(ts["stopped_early"]),
            "select_scores": {int(k): float(v) for k, v in ts.get("select_scores", {}).items()},
            "select_epoch": int(ts.get("select_epoch", -1)),
            "select_state": ts.get("select_state"),
            "average_sum": ts.get("average_sum"),
            "average_count": count,
        }


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def _diff(saved: dict, expected: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(saved) | set(expected)):
        a, b = saved.get(key), expected.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: checkpoint {a!r} vs now {b!r}")
    return out


def _positive_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive finite number (got {value!r})") from None
    if isinstance(value, bool) or not math.isfinite(out) or out <= 0:
        raise ValueError(f"{name} must be a positive finite number (got {value!r})")
    return out


def _nonnegative_float(name: str, value: Any) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})") from None
    if isinstance(value, bool) or not math.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (got {value!r})")
    return out


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool (got {value!r})")
    return bool(value)


def sweep_learning_rates(
    make_module: Callable[[], NoiseRNN],
    learning_rates: Sequence[float],
    train: Any,
    val: Any,
    **trainer_kwargs: Any,
) -> tuple[float, dict[float, TrainingResult]]:
    """Train one fresh module per learning rate and keep the lowest validation loss.

    Parameters
    ----------
    make_module : callable
        Returns a new, identically initialised :class:`NoiseRNN` for each learning rate.
    learning_rates : sequence of float
    train, val : array-like, shape (N, T, O) and (M, T, O)
    **trainer_kwargs
        Passed to :class:`Trainer`. A ``checkpoint_path`` gets a ``.lr<value>`` infix per
        learning rate so that each run resumes from its own file.

    Returns
    -------
    best_lr : float
    results_by_lr : dict of float to TrainingResult
    """
    if isinstance(learning_rates, (int, float)) or len(learning_rates) == 0:
        raise ValueError(f"learning_rates must be a non-empty sequence (got {learning_rates!r})")
    if "learning_rate" in trainer_kwargs:
        raise ValueError("pass learning rates through learning_rates, not learning_rate")
    lrs = [_positive_float("learning rate", lr) for lr in learning_rates]
    if len(set(lrs)) != len(lrs):
        raise ValueError(f"learning_rates contains duplicates (got {list(learning_rates)})")
    base_ckpt = trainer_kwargs.pop("checkpoint_path", None)
    results: dict[float, TrainingResult] = {}
    for lr in lrs:
        kwargs = dict(trainer_kwargs)
        if base_ckpt is not None:
            base = Path(base_ckpt)
            kwargs["checkpoint_path"] = base.with_name(f"{base.stem}.lr{lr:g}{base.suffix}")
        logger.info("learning rate %g", lr)
        results[lr] = Trainer(make_module(), learning_rate=lr, **kwargs).fit(train, val)
    best_lr = min(lrs, key=lambda lr: results[lr].best_val_loss)
    return best_lr, results
