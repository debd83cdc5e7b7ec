"""User-facing RNN wrapper: construction from a seed, training, generation, saving, plotting."""

from __future__ import annotations

import copy
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hmmrnn._utils import atomic_path, torch_generator
from hmmrnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from hmmrnn.model import NoiseRNN, generate
from hmmrnn.training import Trainer, TrainingResult, _diff, _resolve_device, sweep_learning_rates

__all__ = ["RNN", "plot_loss_curves"]

logger = logging.getLogger("hmmrnn.rnn")


class RNN:
    """A noise-driven ReLU RNN emulating an HMM (wraps :class:`~hmmrnn.model.NoiseRNN`).

    Parameters
    ----------
    input_size, hidden_size, num_layers, output_size : int
        Architecture (noise dimension ``I``, hidden units ``H``, layers, symbols ``O``).
    biased : pair of bool
        Bias in the recurrent layer and in the readout.
    device : str or torch.device, optional
        CUDA when available if None, else CPU.
    seed : int
        Seeds the weight initialisation (without touching the global torch RNG), training and,
        by default, :meth:`gen_seq`.

    Attributes
    ----------
    module : NoiseRNN
    best_loss : float
        Best validation loss of the last :meth:`train` call (inf before training).
    learning_rate : float or None
        Learning rate of the weights now loaded (the sweep winner after a sweep).
    results : dict of float to TrainingResult
        Results of the last :meth:`train` call, by learning rate.
    """

    def __init__(
        self,
        input_size: int = 100,
        hidden_size: int = 150,
        num_layers: int = 1,
        output_size: int = 3,
        biased: Sequence[bool] = (False, False),
        device: Any = None,
        seed: int = 0,
    ) -> None:
        if (
            isinstance(biased, (str, bytes))
            or len(biased) != 2
            or not all(isinstance(b, (bool, np.bool_)) for b in biased)
        ):
            raise ValueError(f"biased must be a pair of bools (rnn, readout) (got {biased!r})")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an int (got {seed!r})")
        self.seed = int(seed)
        self.device = _resolve_device(device)
        # fork_rng keeps the caller's global RNG stream untouched by the seeded initialisation.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.module = NoiseRNN(
                input_size,
                hidden_size,
                num_layers,
                output_size,
                rnn_bias=bool(biased[0]),
                readout_bias=bool(biased[1]),
            )
        self.module.to(self.device)
        self._train_losses: list[float] = []
        self._val_losses: list[float] = []
        self.best_loss = math.inf
        self.learning_rate: float | None = None
        self.results: dict[float, TrainingResult] = {}

    # ------------------------------------------------------------------ attributes
    input_size = property(lambda self: self.module.input_size)
    hidden_size = property(lambda self: self.module.hidden_size)
    num_layers = property(lambda self: self.module.num_layers)
    output_size = property(lambda self: self.module.output_size)
    rnn = property(lambda self: self.module.rnn, doc="The underlying ``torch.nn.RNN``.")
    fc = property(lambda self: self.module.fc, doc="The readout ``torch.nn.Linear``.")

    @property
    def biased(self) -> tuple[bool, bool]:
        return (self.module.rnn_bias, self.module.readout_bias)

    @property
    def train_losses(self) -> list[float]:
        """Per-epoch training losses of the loaded weights' run."""
        return list(self._train_losses)

    @property
    def val_losses(self) -> list[float]:
        """Per-epoch validation losses of the loaded weights' run."""
        return list(self._val_losses)

    def config(self) -> dict:
        """JSON-able description: model arguments, seed, learning rate, best loss."""
        return {
            "model": self.module.config(),
            "seed": self.seed,
            "learning_rate": self.learning_rate,
            "best_loss": None if math.isinf(self.best_loss) else self.best_loss,
        }

    def __repr__(self) -> str:
        cfg = self.module.config()
        return f"RNN({', '.join(f'{k}={v}' for k, v in cfg.items())}, seed={self.seed})"

    # ------------------------------------------------------------------ forward / training
    def forward(self, *args, **kwargs):
        """Delegate to :meth:`NoiseRNN.forward`: ``(outputs, hidden, logits)``."""
        return self.module(*args, **kwargs)

    __call__ = forward

    def train(
        self,
        train_seq: Any,
        val_seq: Any,
        batch_size: int = 4096,
        lr: float | Sequence[float] = 0.001,
        tau: float = 1.0,
        epochs: int = 1000,
        grad_clip: float | None = 0.9,
        init: bool = True,
        criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        verbose: bool = False,
        **trainer_kwargs: Any,
    ) -> tuple[list[float], list[float], dict[str, torch.Tensor], float]:
        """Train on one-hot sequences and load the best weights (lowest validation loss).

        Parameters
        ----------
        train_seq, val_seq : numpy.ndarray or torch.Tensor, shape (N, T, O) and (M, T, O)
            One-hot sequences.
        batch_size, tau, epochs, grad_clip, init
            See :class:`~hmmrnn.training.Trainer`.
        lr : float or sequence of float
            A sequence runs a sweep: each learning rate trains a copy of the current weights
            and the lowest validation loss wins.
        criterion : callable, optional
            ``criterion(generated, target)`` on (B, T*O) tensors; Sinkhorn divergence if None.
        verbose : bool
            Print one line per epoch.
        **trainer_kwargs
            Further :class:`~hmmrnn.training.Trainer` arguments (``seed`` defaults to this
            RNN's seed, ``device`` to its device).

        Returns
        -------
        train_losses, val_losses : list of float
        best_state : dict of str to torch.Tensor
        best_loss : float
        """
        kwargs = dict(
            batch_size=batch_size,
            epochs=epochs,
            tau=tau,
            grad_clip=grad_clip,
            init=init,
            criterion=criterion,
            verbose=verbose,
            **trainer_kwargs,
        )
        kwargs.setdefault("seed", self.seed)
        kwargs.setdefault("device", self.device)
        if isinstance(lr, (Sequence, np.ndarray)) and not isinstance(lr, str):
            lrs = [float(v) for v in lr]
        else:
            lrs = [lr]
        if len(lrs) == 1:
            result = Trainer(self.module, learning_rate=lrs[0], **kwargs).fit(train_seq, val_seq)
            self.results = {result.learning_rate: result}
        else:
            start = copy.deepcopy(self.module)
            best_lr, self.results = sweep_learning_rates(
                lambda: copy.deepcopy(start), lrs, train_seq, val_seq, **kwargs
            )
            result = self.results[best_lr]
        self.module.load_state_dict(result.best_state_dict)
        self.module.eval()
        self._train_losses = list(result.train_loss)
        self._val_losses = list(result.val_loss)
        self.best_loss = result.best_val_loss
        self.learning_rate = result.learning_rate
        return self.train_losses, self.val_losses, result.best_state_dict, self.best_loss

    # ------------------------------------------------------------------ generation
    def gen_seq(
        self,
        time_steps: int,
        num_seq: int = 1,
        dynamics_mode: str = "full",
        seed: int | torch.Generator | None = None,
        tau: float = 1.0,
        *,
        init: bool = True,
        gumbel: bool = True,
        batch_size: int | None = None,
    ) -> dict[str, np.ndarray]:
        """Generate sequences with the training dynamics (see :func:`hmmrnn.model.generate`).

        Parameters
        ----------
        time_steps : int
            Sequence length ``T``.
        num_seq : int
            Number of sequences ``N``.
        dynamics_mode : {"full", "recurrence_only", "input_only"}
        seed : int or torch.Generator, optional
            Randomness; this RNN's seed when None (so repeated calls repeat the sequences).
        tau : float
            Gumbel-softmax temperature.

        Returns
        -------
        dict
            ``h`` (N, T, H), ``logits`` (N, T, O) and ``outs`` (N, T, O) float32 arrays.
        """
        if isinstance(seed, torch.Generator):
            gen = seed
        else:
            gen = torch_generator(self.seed if seed is None else seed, self.device)
        res = generate(
            self.module,
            num_seq,
            time_steps,
            tau=tau,
            init=init,
            gumbel=gumbel,
            dynamics_mode=dynamics_mode,
            generator=gen,
            batch_size=batch_size,
        )
        return {"h": res.hidden.numpy(), "logits": res.logits.numpy(), "outs": res.outputs.numpy()}

    # ------------------------------------------------------------------ persistence
    def save_model(self, path: str | os.PathLike, config: dict | None = None) -> Path:
        """Write the current weights and history as an hmmrnn checkpoint (atomically).

        ``config`` (JSON-able) is stored next to the model's own configuration.
        """
        cfg = dict(config or {})
        if "model" in cfg and cfg["model"] != self.module.config():
            raise ValueError(
                f"config['model'] {cfg['model']!r} contradicts the model {self.module.config()!r}"
            )
        cfg.update(self.config())
        return save_checkpoint(
            path,
            self.module.state_dict(),
            config=cfg,
            history={"train_loss": self.train_losses, "val_loss": self.val_losses},
            seed=self.seed,
        )

    def load_model(self, path: str | os.PathLike) -> RNN:
        """Load weights and history from a checkpoint of the same architecture."""
        self._apply_checkpoint(load_checkpoint(path))
        return self

    def _apply_checkpoint(self, ckpt: dict) -> None:
        where = ckpt.get("path", "<checkpoint>")
        saved = ckpt["config"].get("model")
        if saved != self.module.config():
            diffs = _diff(saved, self.module.config()) if isinstance(saved, dict) else [repr(saved)]
            raise CheckpointError(
                f"checkpoint {where!r} holds a different architecture: {'; '.join(diffs)}"
            )
        try:
            self.module.load_state_dict(ckpt["state_dict"])
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {where!r}: weights do not fit ({exc})") from exc
        self.module.eval()
        history = ckpt.get("history") or {}
        self._train_losses = [float(v) for v in history.get("train_loss", [])]
        self._val_losses = [float(v) for v in history.get("val_loss", [])]
        best = ckpt["config"].get("best_loss")
        self.best_loss = math.inf if best is None else float(best)
        self.learning_rate = ckpt["config"].get("learning_rate")

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, device: Any = None) -> RNN:
        """Build an RNN with the architecture and seed stored in a checkpoint, and load it."""
        ckpt = load_checkpoint(path)
        cfg = ckpt["config"].get("model")
        if not isinstance(cfg, dict):
            raise CheckpointError(f"checkpoint {str(path)!r} has no model configuration")
        try:
            obj = cls(
                input_size=cfg["input_size"],
                hidden_size=cfg["hidden_size"],
                num_layers=cfg["num_layers"],
                output_size=cfg["output_size"],
                biased=(cfg["rnn_bias"], cfg["readout_bias"]),
                device=device,
                seed=ckpt["seed"] if ckpt["seed"] is not None else 0,
            )
        except (KeyError, ValueError) as exc:
            msg = f"checkpoint {str(path)!r}: bad model configuration ({exc})"
            raise CheckpointError(msg) from exc
        obj._apply_checkpoint(ckpt)
        return obj

    def plot_losses(
        self, save_path: str | os.PathLike, title: str | None = None, dpi: int = 150
    ) -> Path:
        """Plot the training and validation loss curves to ``save_path``."""
        if not self._train_losses:
            raise ValueError("no loss history to plot: train the model first")
        return plot_loss_curves(
            self._train_losses, self._val_losses, save_path, title=title, dpi=dpi
        )


def plot_loss_curves(
    train_loss: Sequence[float] | Mapping[str, tuple[Sequence[float], Sequence[float]]],
    val_loss: Sequence[float] | str | os.PathLike | None = None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
    dpi: int = 150,
) -> Path:
    """Plot training (dashed) and validation (solid) loss per epoch, atomically to ``path``.

    Either ``plot_loss_curves(train, val, path)`` or, for several runs (e.g. learning rates),
    ``plot_loss_curves({label: (train, val)}, path)``. The best validation epoch is marked.
    The format follows the suffix of ``path`` (pdf, png, svg, ...); ``dpi`` applies to raster
    formats.

    Returns
    -------
    pathlib.Path
    """
    from matplotlib.figure import Figure

    if isinstance(train_loss, Mapping):
        if path is None and isinstance(val_loss, (str, os.PathLike)):
            path, val_loss = val_loss, None
        if val_loss is not None:
            raise ValueError("with a dict of curves, pass no separate val_loss")
        curves = dict(train_loss)
    else:
        curves = {"": (train_loss, val_loss)}
    if path is None:
        raise ValueError("path is required")
    if not curves:
        raise ValueError("no loss curves to plot")
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower()
    if not fmt:
        raise ValueError(f"path needs a file suffix that names the format (got {str(path)!r})")

    # A bare Figure (no pyplot) needs no backend selection and leaves no global state behind.
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    for i, (label, pair) in enumerate(curves.items()):
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"curve {label!r} must be a (train_loss, val_loss) pair")
        train, val = (np.asarray([] if c is None else c, dtype=float) for c in pair)
        color = f"C{i % 10}"
        prefix = f"{label} " if label else ""
        epochs = np.arange(1, len(train) + 1)
        if train.size:
            ax.plot(epochs, train, "--", color=color, label=f"{prefix}train")
        if val.size:
            ax.plot(np.arange(1, len(val) + 1), val, "-", color=color, label=f"{prefix}validation")
            best = int(np.nanargmin(val))
            ax.plot(best + 1, val[best], "o", color=color)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss")
    ax.set_title(title or "Training and validation loss")
    ax.grid(True, alpha=0.3)
    ax.legend()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path
