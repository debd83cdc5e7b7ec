"""Noise-driven ReLU RNN with straight-through Gumbel-softmax outputs, and batched generation.

The network maps i.i.d. Gaussian noise ``x_t ~ N(0, I)`` to one-hot symbol samples::

    h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   h_{-1} ~ N(0, I) (or 0)
    logits_t = W_out h_t + b_out
    y_t = one_hot(argmax(logits_t + g_t)),                g_t ~ Gumbel(0, 1)

so that the distribution of its output sequences can be fitted to a Hidden Markov Model's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["DYNAMICS_MODES", "Generated", "NoiseRNN", "generate", "sample_outputs"]

DYNAMICS_MODES = ("full", "recurrence_only", "input_only")


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer (got {value!r})")
    return int(value)


def _check_tau(tau) -> float:
    try:
        tau = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"tau must be a positive finite number (got {tau!r})") from None
    if not math.isfinite(tau) or tau <= 0:
        raise ValueError(f"tau must be a positive finite number (got {tau!r})")
    return tau


def _randn(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    """Standard normal draws from ``generator`` on its own device, then moved to ``device``.

    Drawing on the generator's device lets a CPU generator drive a CUDA model reproducibly.
    """
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    out = torch.randn(shape, generator=generator, device=generator.device, dtype=dtype)
    return out.to(device)


def _rand(shape, generator: torch.Generator | None, device, dtype) -> torch.Tensor:
    if generator is None:
        return torch.rand(shape, device=device, dtype=dtype)
    out = torch.rand(shape, generator=generator, device=generator.device, dtype=dtype)
    return out.to(device)


def sample_outputs(
    logits: torch.Tensor,
    tau: float = 1.0,
    gumbel: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Hard straight-through Gumbel-softmax samples, or softmax probabilities.

    Parameters
    ----------
    logits : torch.Tensor, shape (..., O)
    tau : float
        Softmax temperature of the relaxed sample that carries the gradient.
    gumbel : bool
        If False, return ``softmax(logits / tau)`` instead of samples.
    generator : torch.Generator, optional
        Source of the uniform draws behind the Gumbel noise.

    Returns
    -------
    torch.Tensor, shape (..., O)
        With ``gumbel=True`` the values are exactly one-hot; the gradient is the relaxed
        sample's.
    """
    if not gumbel:
        return torch.softmax(logits / tau, dim=-1)
    u = _rand(logits.shape, generator, logits.device, logits.dtype)
    # torch.rand can return exactly 0, whose log is -inf.
    u = u.clamp_min(torch.finfo(logits.dtype).tiny)
    noise = -torch.log(-torch.log(u))
    soft = torch.softmax((logits + noise) / tau, dim=-1)
    hard = F.one_hot(soft.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
    # Adding a term that is exactly zero in value (rather than hard - soft.detach() + soft)
    # keeps the forward values exactly 0/1 while the gradient flows through ``soft``.
    return hard + (soft - soft.detach())


class NoiseRNN(nn.Module):
    """ReLU Elman RNN driven by Gaussian noise, with a linear readout to symbol logits.

    Parameters
    ----------
    input_size : int
        Dimension of the noise input ``I``.
    hidden_size : int
        Number of hidden units ``H``.
    num_layers : int
        Stacked RNN layers.
    output_size : int
        Number of output symbols ``O``.
    rnn_bias, readout_bias : bool
        Whether the recurrent layers / the readout have bias terms.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        output_size: int = 3,
        rnn_bias: bool = False,
        readout_bias: bool = False,
    ) -> None:
        super().__init__()
        self.input_size = _check_positive_int("input_size", input_size)
        self.hidden_size = _check_positive_int("hidden_size", hidden_size)
        self.num_layers = _check_positive_int("num_layers", num_layers)
        self.output_size = _check_positive_int("output_size", output_size)
        for name, value in (("rnn_bias", rnn_bias), ("readout_bias", readout_bias)):
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"{name} must be a bool (got {value!r})")
        self.rnn_bias = bool(rnn_bias)
        self.readout_bias = bool(readout_bias)
        self.rnn = nn.RNN(
            self.input_size,
            self.hidden_size,
            self.num_layers,
            nonlinearity="relu",
            batch_first=True,
            bias=self.rnn_bias,
        )
        self.fc = nn.Linear(self.hidden_size, self.output_size, bias=self.readout_bias)

    def config(self) -> dict:
        """Constructor arguments, JSON-able, so that ``NoiseRNN(**m.config())`` rebuilds ``m``."""
        return {
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "output_size": self.output_size,
            "rnn_bias": self.rnn_bias,
            "readout_bias": self.readout_bias,
        }

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    def initial_state(
        self, batch: int, init: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Initial hidden state, shape (num_layers, batch, H): N(0, 1) draws or zeros."""
        shape = (self.num_layers, batch, self.hidden_size)
        w = self.fc.weight
        if init:
            return _randn(shape, generator, w.device, w.dtype)
        return torch.zeros(shape, device=w.device, dtype=w.dtype)

    def _check_input(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"x must be a torch.Tensor (got {type(x).__name__})")
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(
                f"x must have shape (num_seq, seq_len, {self.input_size}) (got {tuple(x.shape)})"
            )

    def _check_h0(self, h0: torch.Tensor, batch: int) -> None:
        expected = (self.num_layers, batch, self.hidden_size)
        if not isinstance(h0, torch.Tensor) or tuple(h0.shape) != expected:
            got = tuple(h0.shape) if isinstance(h0, torch.Tensor) else type(h0).__name__
            raise ValueError(f"h0 must have shape {expected} (got {got})")

    def forward(
        self,
        x: torch.Tensor,
        tau: float = 1.0,
        init: bool = True,
        gumbel: bool = True,
        h0: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Run the network on noise ``x``.

        Random draws happen in this order: ``h0`` (if ``init`` and no ``h0``), then the
        Gumbel noise; :func:`generate` relies on it.

        Parameters
        ----------
        x : torch.Tensor, shape (N, T, I)
            Input noise.
        tau : float
            Gumbel-softmax temperature (> 0).
        init : bool
            Draw the initial state from N(0, 1) (True) or start from zeros (False).
        gumbel : bool
            Return hard one-hot samples (True) or softmax probabilities (False).
        h0 : torch.Tensor, shape (num_layers, N, H), optional
            Explicit initial state; overrides ``init``.
        generator : torch.Generator, optional
            Source of all random draws.

        Returns
        -------
        outputs : torch.Tensor, shape (N, T, O)
        hidden : torch.Tensor, shape (N, T, H)
            Hidden states of the last layer.
        logits : torch.Tensor, shape (N, T, O)
        """
        self._check_input(x)
        tau = _check_tau(tau)
        if h0 is None:
            h0 = self.initial_state(x.shape[0], init, generator)
        else:
            self._check_h0(h0, x.shape[0])
        hidden, _ = self.rnn(x, h0)
        logits = self.fc(hidden)
        return sample_outputs(logits, tau, gumbel, generator), hidden, logits


@dataclass
class Generated:
    """Sequences generated by a :class:`NoiseRNN` (CPU tensors).

    Attributes
    ----------
    outputs : torch.Tensor, shape (N, T, O)
        One-hot samples (or softmax probabilities when generated with ``gumbel=False``).
    hidden : torch.Tensor or None, shape (N, T, H)
        Last-layer hidden states (None when not requested).
    logits : torch.Tensor, shape (N, T, O)
    observations : numpy.ndarray of int64, shape (N, T)
        Symbol indices (argmax of ``outputs``).
    inputs : torch.Tensor or None, shape (N, T, I)
        The noise that drove the network (only when requested).
    """

    outputs: torch.Tensor
    hidden: torch.Tensor | None
    logits: torch.Tensor
    observations: np.ndarray
    inputs: torch.Tensor | None = None


def _input_only_rnn(module: NoiseRNN) -> nn.RNN:
    """A copy of the recurrent layer whose recurrent weights are the identity.

    This is the paper's "input only" ablation: the hidden state keeps integrating the noise
    through ``h_t = relu(W_ih x_t + b_ih + h_{t-1} + b_hh)``, but the learned recurrent
    weights play no part.
    """
    rnn = copy.deepcopy(module.rnn)
    with torch.no_grad():
        for layer in range(module.num_layers):
            weight = getattr(rnn, f"weight_hh_l{layer}")
            weight.copy_(torch.eye(module.hidden_size, dtype=weight.dtype, device=weight.device))
    return rnn


def generate(
    module: NoiseRNN,
    num_seq: int,
    seq_len: int,
    *,
    tau: float = 1.0,
    init: bool = True,
    gumbel: bool = True,
    dynamics_mode: str = "full",
    generator: torch.Generator | None = None,
    batch_size: int | None = None,
    return_hidden: bool = True,
    return_inputs: bool = False,
) -> Generated:
    """Generate sequences with exactly the dynamics used in training.

    For each chunk of ``batch_size`` sequences the random draws are, in order: the noise
    ``x`` of shape (n, T, I), the initial state, the Gumbel noise — the same order as a
    training minibatch, so with one chunk ``generate`` reproduces
    ``module(torch.randn((N, T, I), generator=g), generator=g)`` bit for bit.

    Parameters
    ----------
    module : NoiseRNN
    num_seq, seq_len : int
        Number ``N`` and length ``T`` of the sequences.
    tau : float
        Gumbel-softmax temperature (> 0).
    init : bool
        Random N(0, 1) initial state (True) or zeros (False).
    gumbel : bool
        One-hot samples (True) or softmax probabilities (False) as ``outputs``.
    dynamics_mode : {"full", "recurrence_only", "input_only"}
        ``"full"``: the trained dynamics. ``"recurrence_only"``: the noise input is replaced
        by zeros (biases kept). ``"input_only"``: the recurrent weights are replaced by the
        identity, ``h_t = relu(W_ih x_t + b_ih + h_{t-1} + b_hh)`` (the paper's ablation).
    generator : torch.Generator, optional
        Source of all random draws; the global torch RNG when None.
    batch_size : int, optional
        Sequences per chunk (bounds memory); all at once when None. Results depend on it
        through the order of the draws.
    return_hidden, return_inputs : bool
        Keep the hidden states / the input noise (memory: N*T*H / N*T*I floats).

    Returns
    -------
    Generated
    """
    if not isinstance(module, NoiseRNN):
        raise ValueError(f"module must be a NoiseRNN (got {type(module).__name__})")
    num_seq = _check_positive_int("num_seq", num_seq)
    seq_len = _check_positive_int("seq_len", seq_len)
    tau = _check_tau(tau)
    if dynamics_mode not in DYNAMICS_MODES:
        raise ValueError(
            f"dynamics_mode must be one of {list(DYNAMICS_MODES)} (got {dynamics_mode!r})"
        )
    batch_size = num_seq if batch_size is None else _check_positive_int("batch_size", batch_size)

    w = module.fc.weight
    outputs, hiddens, logits_all, inputs = [], [], [], []
    was_training = module.training
    module.eval()
    input_only_rnn = _input_only_rnn(module) if dynamics_mode == "input_only" else None
    try:
        with torch.no_grad():
            for start in range(0, num_seq, batch_size):
                n = min(batch_size, num_seq - start)
                x = _randn((n, seq_len, module.input_size), generator, w.device, w.dtype)
                h0 = module.initial_state(n, init, generator)
                if dynamics_mode == "full":
                    hidden, _ = module.rnn(x, h0)
                elif dynamics_mode == "recurrence_only":
                    hidden, _ = module.rnn(torch.zeros_like(x), h0)
                else:
                    hidden, _ = input_only_rnn(x, h0)
                logits = module.fc(hidden)
                out = sample_outputs(logits, tau, gumbel, generator)
                outputs.append(out.cpu())
                logits_all.append(logits.cpu())
                if return_hidden:
                    hiddens.append(hidden.cpu())
                if return_inputs:
                    inputs.append(x.cpu())
    finally:
        module.train(was_training)
    outputs_t = torch.cat(outputs)
    return Generated(
        outputs=outputs_t,
        hidden=torch.cat(hiddens) if return_hidden else None,
        logits=torch.cat(logits_all),
        observations=outputs_t.argmax(dim=-1).numpy().astype(np.int64),
        inputs=torch.cat(inputs) if return_inputs else None,
    )
