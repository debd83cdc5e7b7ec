"""Straightforward implementations that the benchmarks time our library against.

Each function computes the same thing as a vectorised function of ``hmmrnn`` the way a
first implementation would (and the way the paper's code did): one sequence at a time, one
torch call per time step, Python loops over counts, a plotly trace per trajectory step.
They are written here, for the benchmarks, and checked against the library in
``tests/test_benchmarks.py``; they are deliberately *not* optimised.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "PaperStyleRNN",
    "hmmlearn_sample",
    "loop_transition_counts",
    "paper_style_figure_3d",
    "paper_style_train_step",
    "rnn_loop_generate",
    "write_html_inline",
]


def hmmlearn_sample(
    start_prob: np.ndarray,
    transition_matrix: np.ndarray,
    emission_matrix: np.ndarray,
    num_seq: int,
    seq_len: int,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Sample HMM sequences with ``hmmlearn``, one ``CategoricalHMM.sample`` call per sequence.

    Parameters
    ----------
    start_prob : numpy.ndarray, shape (S,)
    transition_matrix : numpy.ndarray, shape (S, S)
    emission_matrix : numpy.ndarray, shape (S, O)
    num_seq, seq_len : int
    seed : int
        Seeds one ``numpy.random.RandomState`` shared by all calls.

    Returns
    -------
    observations, states : numpy.ndarray of int64, shape (num_seq, seq_len)
    """
    from hmmlearn.hmm import CategoricalHMM

    emission_matrix = np.asarray(emission_matrix, dtype=np.float64)
    model = CategoricalHMM(n_components=len(start_prob), n_features=emission_matrix.shape[1])
    model.startprob_ = np.asarray(start_prob, dtype=np.float64)
    model.transmat_ = np.asarray(transition_matrix, dtype=np.float64)
    model.emissionprob_ = emission_matrix
    random_state = np.random.RandomState(seed)
    observations = np.zeros((num_seq, seq_len), dtype=np.int64)
    states = np.zeros((num_seq, seq_len), dtype=np.int64)
    for i in range(num_seq):
        obs, hidden = model.sample(seq_len, random_state=random_state)
        observations[i] = obs[:, 0]
        states[i] = hidden
    return observations, states


def rnn_loop_generate(
    module: nn.Module,
    num_seq: int,
    seq_len: int,
    *,
    tau: float = 1.0,
    init: bool = True,
    generator: torch.Generator | None = None,
    noise: torch.Tensor | None = None,
    h0: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """Generate sequences one sequence and one time step at a time, with torch ops per step.

    This mirrors the structure of the paper's generator: the hidden states, logits and
    outputs live in preallocated (num_seq, seq_len, .) tensors; every step draws its input
    with ``torch.normal(mean=0, std=1, size=(I,)).float().to(device)`` and writes
    ``h[i, t] = relu(x @ W_ih.T + h[i, t - 1] @ W_hh.T)`` into the preallocated tensor; after
    each sequence, its readout ``logits[i] = h[i] @ W_out.T`` and its hard Gumbel-softmax
    sample ``F.gumbel_softmax(logits[i], tau, hard=True, eps=1e-10)`` are computed in one call
    each. For the PCA the paper ran one long trajectory the same way (``num_seq=1``).

    ``module`` is a single-layer ReLU RNN with ``.rnn`` (``torch.nn.RNN``) and ``.fc``
    (``torch.nn.Linear``), e.g. :class:`hmmrnn.model.NoiseRNN` or :class:`PaperStyleRNN`.

    Parameters
    ----------
    noise : torch.Tensor, shape (num_seq, seq_len, I), optional
        Inputs to use instead of fresh draws (for checking against the batched code).
    h0 : torch.Tensor, shape (num_seq, H), optional
        Initial states; N(0, 1) draws (``init``) or zeros otherwise.

    Returns
    -------
    dict
        ``hidden`` (num_seq, seq_len, H), ``logits`` (num_seq, seq_len, O), ``outputs``
        (hard Gumbel-softmax one-hot, same shape), ``observations`` (num_seq, seq_len) int64.
    """
    rnn = module.rnn
    if rnn.num_layers != 1:
        raise ValueError(f"the loop baseline supports one layer (got {rnn.num_layers})")
    ih, hh = rnn.weight_ih_l0.detach(), rnn.weight_hh_l0.detach()
    bias = None
    if rnn.bias:
        bias = (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach()
    fc = module.fc.weight.detach()
    fc_bias = None if module.fc.bias is None else module.fc.bias.detach()
    hidden_size, input_size = ih.shape
    device = ih.device

    h = torch.zeros((num_seq, seq_len, hidden_size), device=device)
    logits = torch.zeros((num_seq, seq_len, fc.shape[0]), device=device)
    outs = torch.zeros((num_seq, seq_len, fc.shape[0]), device=device)
    with torch.no_grad():
        for i in range(num_seq):
            if h0 is not None:
                h_init = h0[i].to(device)
            elif init:
                h_init = (
                    torch.normal(mean=0.0, std=1.0, size=(hidden_size,), generator=generator)
                    .float()
                    .to(device)
                )
            else:
                h_init = torch.zeros(hidden_size, device=device)
            for t in range(seq_len):
                if noise is not None:
                    x = noise[i, t].float().to(device)
                else:
                    x = (
                        torch.normal(mean=0.0, std=1.0, size=(input_size,), generator=generator)
                        .float()
                        .to(device)
                    )
                h_prev = h_init if t == 0 else h[i, t - 1]
                pre = x @ ih.T + h_prev @ hh.T
                if bias is not None:
                    pre = pre + bias
                h[i, t] = torch.relu(pre)
            logits[i] = h[i] @ fc.T if fc_bias is None else h[i] @ fc.T + fc_bias
            outs[i] = F.gumbel_softmax(logits[i], tau=tau, hard=True, eps=1e-10, dim=-1)
    return {
        "hidden": h,
        "logits": logits,
        "outputs": outs,
        "observations": outs.argmax(dim=-1).cpu().numpy().astype(np.int64),
    }


def loop_transition_counts(observations: np.ndarray, outputs: int) -> np.ndarray:
    """Transition counts ``C[a, b]`` pooled over sequences, by a loop over sequences and steps.

    Parameters
    ----------
    observations : numpy.ndarray of int, shape (N, T)
    outputs : int

    Returns
    -------
    numpy.ndarray of int64, shape (outputs, outputs)
    """
    counts = np.zeros((outputs, outputs), dtype=np.int64)
    num_seq, seq_len = observations.shape
    for i in range(num_seq):
        for t in range(1, seq_len):
            counts[observations[i, t - 1], observations[i, t]] += 1
    return counts


class PaperStyleRNN(nn.Module):
    """ReLU RNN + linear readout + ``F.gumbel_softmax`` with a fresh ``torch.normal`` h0.

    The training-time model as first written: no generator, the global torch RNG.
    """

    def __init__(self, input_size: int, hidden_size: int, output_size: int = 3) -> None:
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.rnn = nn.RNN(
            input_size, hidden_size, 1, nonlinearity="relu", batch_first=True, bias=False
        )
        self.fc = nn.Linear(hidden_size, output_size, bias=False)

    def forward(self, x: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        h0 = torch.normal(mean=0.0, std=1.0, size=(1, x.shape[0], self.hidden_size))
        out, _ = self.rnn(x, h0)
        return F.gumbel_softmax(self.fc(out), tau=tau, hard=True, dim=-1)


def paper_style_train_step(
    model: PaperStyleRNN,
    optimizer: torch.optim.Optimizer,
    criterion,
    targets: torch.Tensor,
    *,
    tau: float = 1.0,
    grad_clip: float = 0.9,
) -> float:
    """One training step as first written: fresh noise, forward, Sinkhorn loss, Adam, clip.

    Parameters
    ----------
    targets : torch.Tensor, shape (B, T, O)
        One-hot data minibatch.
    criterion : callable
        ``geomloss.SamplesLoss(blur=0.2)`` (the library's defaults otherwise).

    Returns
    -------
    float
        The loss.
    """
    batch, seq_len = targets.shape[:2]
    noise = torch.normal(mean=0.0, std=1.0, size=(batch, seq_len, model.input_size))
    optimizer.zero_grad()
    outputs = model(noise, tau)
    loss = criterion(outputs.reshape(batch, -1), targets.reshape(batch, -1))
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def paper_style_figure_3d(
    projected: np.ndarray, observations: np.ndarray, num_points: int, cone_scale: float = 0.1
):
    """3-D trajectory with one line trace and one cone trace per step (float64 coordinates).

    Parameters
    ----------
    projected : numpy.ndarray, shape (M, >=3)
        Trajectory points (first three principal components used).
    observations : numpy.ndarray of int, shape (M,)
        Output emitted at each point (colours the step that starts there).
    num_points : int
        Number of steps drawn.
    """
    import plotly.graph_objects as go

    palette = ["red", "blue", "green", "orange", "purple", "brown", "pink", "gray"]
    traces = []
    for i in range(min(num_points, len(projected) - 1)):
        colour = palette[int(observations[i]) % len(palette)]
        p0, p1 = projected[i, :3].astype(np.float64), projected[i + 1, :3].astype(np.float64)
        d = (p1 - p0) * cone_scale
        traces.append(
            go.Scatter3d(
                x=[p0[0], p1[0]],
                y=[p0[1], p1[1]],
                z=[p0[2], p1[2]],
                mode="lines",
                line={"color": colour, "width": 2},
                showlegend=False,
            )
        )
        traces.append(
            go.Cone(
                x=[p0[0]],
                y=[p0[1]],
                z=[p0[2]],
                u=[d[0]],
                v=[d[1]],
                w=[d[2]],
                colorscale=[[0, colour], [1, colour]],
                showscale=False,
                sizemode="absolute",
                anchor="tail",
            )
        )
    return go.Figure(data=traces)


def write_html_inline(fig, path: str | os.PathLike) -> Path:
    """``fig.write_html(path, include_plotlyjs=True)``: the page carries the plotly.js bundle."""
    path = Path(path)
    fig.write_html(str(path), include_plotlyjs=True)
    return path
