"""Noise-driven ReLU RNN with straight-through Gumbel-softmax outputs, and batched generation.

The network maps i.i.d. Gaussian noise ``x_t ~ N(0, I)`` to one-hot symbol samples::

    h_t = relu(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   h_{-1} ~ N(0, I) (or 0)
    logits_t = W_out h_t + b_out
    y_t = one_hot(argmax(logits_t + g_t)),                g_t ~ Gumbel(0, 1)

so that the distribution of its output sequences can be fitted to a Hidden Markov Model's.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hmmrnn._utils import DYNAMICS_MODES, check_choice

__all__ = ["DYNAMICS_MODES", "Generated", "NoiseRNN", "generate", "sample_outputs"]


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
        With ``gumbel=True`` the values are exactly one-hot, at the argmax of the perturbed
        logits ``(logits + g) / tau`` (Gumbel-max); the gradient is the relaxed sample's.
    """
    if not gumbel:
        return torch.softmax(logits / tau, dim=-1)
    u = _rand(logits.shape, generator, logits.device, logits.dtype)
    # torch.rand can return exactly 0, whose log is -inf.
    u = u.clamp_min(torch.finfo(logits.dtype).tiny)
    noise = -torch.log(-torch.log(u))
    z = (logits + noise) / tau
    soft = torch.softmax(z, dim=-1)
    # The Gumbel-max sample. (The argmax of ``soft`` is the same unless rounding in the
    # softmax makes a tie; ``generate`` skips the softmax.)
    hard = F.one_hot(z.argmax(dim=-1), logits.shape[-1]).to(logits.dtype)
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
        Gumbel noise; :func:`generate` relies on it. The recurrence runs block by block with
        the same torch calls as in :func:`generate`, so that the two agree bit for bit; with
        autograd off (e.g. under ``torch.no_grad()``) it runs in place, on worker threads.

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
        hidden, logits = _recurrence(self, x, h0)
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


# --------------------------------------------------------------------------------------------
# The recurrence
#
# Training (autograd) and generation run the same torch calls on the same shapes and memory
# layouts, so that they give bit-identical results: the sequences are split into blocks
# (``_blocks``) and each block of n sequences is stepped through time with, per step and layer,
# states held feature-major (S_t = h_t.T, shape (H, n)):
#
#     P = W_ih @ X_t.T + (b_ih + b_hh)         (addmm, or mm without biases; X_t.T is a view)
#     P = P + W_hh @ S_{t-1}                   (addmm with beta = 1; ``+ S_{t-1}`` for input_only)
#     S_t = relu(P)
#     L_t = W_out @ S_t + b_out                (last layer; logits_t = L_t.T)
#
# With autograd these are out-of-place ops whose results are transposed and stacked. Without
# it they write in place into per-thread (H, n) buffers; logits and kept states are copied
# out transposed.
#
# Why feature-major: MKL's sgemm vectorises along the contiguous dimension of the result, and
# H = 150 is not a multiple of the vector width while n (512 in a block) is. Measured on one
# core: 100 vs 88 GFLOP/s for the recurrent product, 94 vs 82 for the input projection, and
# the readout (O = 3 rows) twice as fast. Copying kept states out costs ~60 us per step and
# block (a contiguous transpose, then a strided row copy), about what the products save.
# Why not one GEMM for the input projection of a whole chunk: on this 2-core machine MKL's sgemm
# runs at half speed once the product outgrows the caches (43 vs 85 GFLOP/s for n*T = 30720
# vs 1024 rows), while a per-step product keeps X_t and S_t in L2.
# Why blocks: MKL's result for a column depends on the number of columns in the call (other
# kernels for a few), so all paths must use the same partition; blocks of about ``_BLOCK_SEQ``
# sequences keep a step's working set (X_t, S_{t-1}, S_t: 0.4 MB at 512) in L2 and give
# the worker threads of generate() several blocks per chunk to share. Measured for 30000 x 30
# sequences (chunks of 4096): 1.33 / 1.30 / 1.30 / 1.33 s on one thread for blocks of 256 /
# 512 / 1024 / 2048 sequences; on two threads 2048 is 15% slower (too few blocks per chunk).

_NUMPY_DTYPES = {torch.float32: np.float32, torch.float64: np.float64, torch.int64: np.int64}


def _empty_cpu(shape, dtype: torch.dtype) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype)`` in memory from numpy's allocator where it can.

    numpy asks Linux for transparent huge pages for arrays of 4 MB and more; torch does so
    only with ``THP_MEM_ALLOC_ENABLE=1`` set before it is imported. generate() fills well over
    100 MB of fresh buffers per call, and the first touch of a 4 KB page costs a page fault
    (measured: 0.36 ms per MB, 59 vs 47 ms to draw 12.3M normals into a fresh buffer).
    """
    np_dtype = _NUMPY_DTYPES.get(dtype)
    if np_dtype is None:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(np.empty(shape, dtype=np_dtype))


_BLOCK_SEQ = 512
# torch's CPU normal_ fills uniforms in order and turns them into normals 16 at a time, so
# noise drawn in pieces that start at multiples of 16 values equals one draw (see
# _split_draws_ok).
_DRAW_QUANTUM = 16


def _quantum(values_per_seq: int) -> int:
    """Fewest sequences whose noise is a multiple of ``_DRAW_QUANTUM`` values."""
    return _DRAW_QUANTUM // math.gcd(_DRAW_QUANTUM, values_per_seq)


def _blocks(n: int, quantum: int = 1) -> list[tuple[int, int]]:
    """Split ``n`` sequences into about ``n / _BLOCK_SEQ`` contiguous blocks of near-equal size.

    Every block but the last holds a multiple of ``quantum`` sequences. The number of blocks
    is even (where there are several), so that two workers share a chunk evenly.
    """
    units, rest = divmod(n, quantum)
    count = -(-n // _BLOCK_SEQ)
    count = max(1, min(count + count % 2 if count > 1 else count, units))
    base, extra = divmod(units, count)
    bounds, start = [], 0
    for i in range(count):
        stop = start + (base + (1 if i < extra else 0)) * quantum
        if i == count - 1:
            stop += rest
        bounds.append((start, stop))
        start = stop
    return bounds


def _seq_blocks(x: torch.Tensor) -> list[tuple[int, int]]:
    """The block partition of the noise ``x`` (n, T, I), the same in every code path."""
    return _blocks(x.shape[0], _quantum(x.shape[1] * x.shape[2]))


@dataclass
class _Weights:
    """Per layer ``(W_ih, W_hh or None for the identity, (b_ih + b_hh)[:, None] or None)``;
    the readout ``W_out`` and ``b_out[:, None]`` (or None)."""

    layers: list[tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]]
    w_out: torch.Tensor
    b_out: torch.Tensor | None
    zero_input: bool  # recurrence_only: the first layer's input is zero

    @property
    def hidden_size(self) -> int:
        return self.layers[-1][0].shape[0]


def _weights(module: NoiseRNN, dynamics_mode: str = "full") -> _Weights:
    rnn = module.rnn
    layers = []
    for layer in range(module.num_layers):
        w_ih = getattr(rnn, f"weight_ih_l{layer}")
        w_hh = getattr(rnn, f"weight_hh_l{layer}")
        bias = None
        if module.rnn_bias:
            bias = (getattr(rnn, f"bias_ih_l{layer}") + getattr(rnn, f"bias_hh_l{layer}"))[:, None]
        # input_only: h_t = relu(W_ih x_t + b + h_{t-1}), the paper's identity recurrence.
        layers.append((w_ih, None if dynamics_mode == "input_only" else w_hh, bias))
    b_out = None if module.fc.bias is None else module.fc.bias[:, None]
    return _Weights(layers, module.fc.weight, b_out, zero_input=dynamics_mode == "recurrence_only")


def _project(layer, inp: torch.Tensor, out: torch.Tensor) -> None:
    """``out = W_ih @ inp + b``, in place; ``inp`` (I, n)."""
    w_ih, _, bias = layer
    if bias is None:
        torch.mm(w_ih, inp, out=out)
    else:
        torch.addmm(bias, w_ih, inp, out=out)


def _step(
    layer,
    inp: torch.Tensor | None,
    s_prev: torch.Tensor,
    zero_input: bool,
    out: torch.Tensor | None = None,
    projected: torch.Tensor | None = None,
) -> torch.Tensor:
    """One step of one layer on feature-major states: ``relu(W_ih @ inp + b + W_hh @ s_prev)``.

    Out of place (autograd) when ``out`` is None, else written into ``out`` (H, n), starting
    from ``projected`` (``W_ih @ inp + b``, computed ahead) when given; the same BLAS calls
    either way.
    """
    w_ih, w_hh, bias = layer
    if out is None:
        if zero_input:
            pre = torch.mm(w_hh, s_prev) if bias is None else torch.addmm(bias, w_hh, s_prev)
        else:
            pre = torch.mm(w_ih, inp) if bias is None else torch.addmm(bias, w_ih, inp)
            pre = pre + s_prev if w_hh is None else torch.addmm(pre, w_hh, s_prev)
        return torch.relu(pre)
    if zero_input:
        if bias is None:
            torch.mm(w_hh, s_prev, out=out)
        else:
            torch.addmm(bias, w_hh, s_prev, out=out)
        return out.relu_()
    if projected is None:
        _project(layer, inp, out)
    else:
        out.copy_(projected)
    if w_hh is None:
        out.add_(s_prev)
    else:
        out.addmm_(w_hh, s_prev)
    return out.relu_()


def _readout(w: _Weights, s: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Logits, transposed (O, n), of the feature-major states ``s`` (H, n)."""
    if w.b_out is None:
        return torch.mm(w.w_out, s, out=out) if out is not None else torch.mm(w.w_out, s)
    if out is not None:
        return torch.addmm(w.b_out, w.w_out, s, out=out)
    return torch.addmm(w.b_out, w.w_out, s)


def _block_autograd(w: _Weights, x: torch.Tensor, h0: torch.Tensor):
    """Hidden states (last layer) and logits of one block, out of place (autograd)."""
    s = [h.t() for h in h0.unbind(0)]
    hidden, logits = [], []
    for t in range(x.shape[1]):
        inp = x[:, t].t()
        for i, layer in enumerate(w.layers):
            s[i] = inp = _step(layer, inp, s[i], w.zero_input and i == 0)
        hidden.append(inp.t())
        logits.append(_readout(w, inp).t())
    return torch.stack(hidden, 1), torch.stack(logits, 1)


def _state_view(hidden: torch.Tensor) -> torch.Tensor:
    """The memory of a block's kept states ``hidden`` (n, T, H) as (T, H, n), for projections.

    :func:`_project_block` fills it before the block's recurrence, which reads it step by step
    and only then writes the states there (from its own buffer).
    """
    n, steps, hid = hidden.shape
    return hidden.view(-1).view(steps, hid, n)


def _project_block(w: _Weights, x: torch.Tensor, out: torch.Tensor) -> None:
    """The first layer's input projections of a block (n, T, I), ahead of its recurrence,
    into ``out`` (T, H, n)."""
    with torch.no_grad():
        for t in range(x.shape[1]):
            _project(w.layers[0], x[:, t].t(), out[t])


class _Scratch:
    """Per-thread buffers of :func:`_block_inplace`, reused across blocks (one allocation).

    Per layer the states of two steps, alternately (they stay in cache) — the last layer's
    of every step when its states are kept, to copy them out after the block — the readout
    (O, n) and, when states are kept, an (n, H) transpose.
    """

    def __init__(self) -> None:
        self.buf: torch.Tensor | None = None

    def views(self, w: _Weights, n: int, steps: int, keep: bool, like: torch.Tensor):
        hid, outs = w.hidden_size, w.w_out.shape[0]
        per_layer = [2] * (len(w.layers) - 1) + [steps if keep else 2]
        need = (sum(per_layer) * hid + outs + (hid if keep else 0)) * n
        buf = self.buf
        if (
            buf is None
            or buf.numel() < need
            or buf.dtype != like.dtype
            or buf.device != like.device
        ):
            # Room for a block a little larger than this one (blocks differ by a few rows).
            size = need * max(n, _BLOCK_SEQ + 2 * _DRAW_QUANTUM) // n
            buf = self.buf = torch.empty(size, dtype=like.dtype, device=like.device)
        offset = 0

        def take(*shape: int) -> torch.Tensor:
            nonlocal offset
            size = math.prod(shape)
            view = buf[offset : offset + size].view(shape)
            offset += size
            return view

        states = [take(k, hid, n) for k in per_layer]
        return states, take(outs, n), (take(n, hid) if keep else None)


def _block_inplace(
    w: _Weights,
    x: torch.Tensor | None,
    h0: torch.Tensor,
    hidden: torch.Tensor | None,
    logits: torch.Tensor,
    scratch: _Scratch,
) -> None:
    """:func:`_block_autograd` without autograd, writing into ``hidden`` and ``logits``.

    ``hidden`` (n, T, H) receives the last layer's states (None: not kept). ``x`` None: one
    layer whose input projections are already in ``hidden``'s memory (:func:`_state_view`).
    """
    n, steps = logits.shape[0], logits.shape[1]
    keep = hidden is not None
    states, readout, rows = scratch.views(w, n, steps, keep, logits)
    projections = _state_view(hidden) if x is None else None
    last = len(w.layers) - 1
    s = [h.t() for h in h0.unbind(0)]
    for t in range(steps):
        inp = None if x is None else x[:, t].t()
        for i, layer in enumerate(w.layers):
            out = states[i][t if (keep and i == last) else t % 2]
            ahead = None if projections is None else projections[t]
            s[i] = inp = _step(layer, inp, s[i], w.zero_input and i == 0, out, ahead)
        # Per step, while S_t is in cache (a readout per block, after the loop, is slower).
        _readout(w, inp, readout)
        logits[:, t].copy_(readout.t())
    if keep:
        # After the loop: until then ``hidden``'s memory may hold the projections. A
        # contiguous transpose takes torch's blocked path (4x faster than into strided rows).
        for t in range(steps):
            hidden[:, t].copy_(rows.copy_(states[last][t].t()))


class _Inline:
    """Runs each task when it is submitted (CUDA, or a single torch thread)."""

    workers = 1

    def submit(self, fn, /, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future


@contextmanager
def _block_runner(device: torch.device):
    """Where blocks run: ``torch.get_num_threads()`` worker threads on a CPU, else inline.

    On a CPU each worker steps whole blocks with single-threaded torch ops: GEMMs of a few
    hundred rows parallelise poorly, and OpenMP teams stall whenever another process holds a
    core (measured: 10 s instead of 1.7 s for 30000 x 30 sequences on a loaded 2-core machine).
    ``torch.set_num_threads(1)`` is process-wide: it is restored on exit, once the workers
    have finished.
    """
    threads = torch.get_num_threads()
    if device.type != "cpu" or threads < 2:
        yield _Inline()
        return
    torch.set_num_threads(1)
    pool = ThreadPoolExecutor(threads, thread_name_prefix="hmmrnn-block")
    pool.workers = threads
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    else:
        pool.shutdown(wait=True)
    finally:
        torch.set_num_threads(threads)


def _submit_blocks(
    runner, store, w, blocks, x, h0, hidden, logits, projections=None, on_done=None
) -> list[Future]:
    """Queue :func:`_block_inplace` for each block of a chunk.

    ``projections``: per block, the future of its :func:`_project_block` (then ``x`` is not
    read). ``on_done()`` runs once all blocks are done, in the thread that finished the last
    (so no worker waits for another).
    """
    remaining = [len(blocks)]
    lock = threading.Lock()

    def run(index: int, start: int, stop: int) -> None:
        if projections is not None:
            projections[index].result()
        scratch = getattr(store, "scratch", None)
        if scratch is None:
            scratch = store.scratch = _Scratch()
        with torch.no_grad():  # grad mode is per thread
            _block_inplace(
                w,
                None if projections is not None else x[start:stop],
                h0[:, start:stop],
                None if hidden is None else hidden[start:stop],
                logits[start:stop],
                scratch,
            )
        with lock:
            remaining[0] -= 1
            last = remaining[0] == 0
        if last and on_done is not None:
            with torch.no_grad():
                on_done()

    return [runner.submit(run, i, start, stop) for i, (start, stop) in enumerate(blocks)]


def _wait(futures) -> None:
    for future in futures:
        future.result()


def _recurrence(module: NoiseRNN, x: torch.Tensor, h0: torch.Tensor):
    """Last-layer hidden states and logits for input ``x`` (N, T, I), full dynamics."""
    w = _weights(module)
    blocks = _seq_blocks(x)
    if torch.is_grad_enabled() and (
        x.requires_grad or h0.requires_grad or any(p.requires_grad for p in module.parameters())
    ):
        parts = [_block_autograd(w, x[a:b], h0[:, a:b]) for a, b in blocks]
        if len(parts) == 1:
            return parts[0]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    n, steps = x.shape[:2]
    hidden = x.new_empty((n, steps, module.hidden_size))
    logits = x.new_empty((n, steps, module.output_size))
    with torch.no_grad(), _block_runner(x.device) as runner:
        _wait(_submit_blocks(runner, threading.local(), w, blocks, x, h0, hidden, logits))
    return hidden, logits


_SPLIT_DRAWS: dict[torch.dtype, bool] = {}


def _split_draws_ok(dtype: torch.dtype) -> bool:
    """Whether CPU normal draws in pieces equal one draw (values and generator state after).

    Pieces must start at multiples of ``_DRAW_QUANTUM`` values and hold at least that many:
    torch's CPU ``normal_`` (float32) fills uniforms in order, transforms them 16 at a time and
    redraws the last 16 of a tensor whose size is not a multiple of 16. Checked once per dtype,
    so a torch that draws otherwise just loses the overlap of drawing and computing.
    """
    ok = _SPLIT_DRAWS.get(dtype)
    if ok is None:
        q = _DRAW_QUANTUM
        whole_gen, split_gen = torch.Generator(), torch.Generator()
        whole_gen.manual_seed(12345)
        split_gen.manual_seed(12345)
        whole = torch.empty(7 * q + 5, dtype=dtype).normal_(generator=whole_gen)
        split = torch.empty_like(whole)
        for start, stop in ((0, q), (q, 4 * q), (4 * q, 7 * q + 5)):
            split[start:stop].normal_(generator=split_gen)
        ok = torch.equal(whole, split) and torch.equal(whole_gen.get_state(), split_gen.get_state())
        _SPLIT_DRAWS[dtype] = ok
    return ok


def _sample_into(
    logits: torch.Tensor,
    u: torch.Tensor | None,
    tau: float,
    out: torch.Tensor,
    observations: torch.Tensor,
) -> None:
    """:func:`sample_outputs` without autograd, from given uniforms ``u`` (overwritten).

    The same elementwise ops in the same order on tensors of the same shape, so the same
    values; ``u`` None: softmax probabilities (``gumbel=False``). Writes the samples to
    ``out`` (n, T, O) and their argmax to ``observations`` (n, T).
    """
    if u is None:
        out.copy_(torch.softmax(logits / tau, dim=-1))
        torch.argmax(out, dim=-1, out=observations)
        return
    noise = u.clamp_min_(torch.finfo(logits.dtype).tiny).log_().neg_().log_().neg_()
    z = noise.add_(logits)
    if tau != 1.0:  # x / 1.0 is x
        z.div_(tau)  # (logits + noise) / tau
    torch.argmax(z, dim=-1, out=observations)
    out.zero_().scatter_(-1, observations.unsqueeze(-1), 1.0)
    # The softmax of finite values is finite, so hard + (soft - soft.detach()) is hard. (A sum
    # that overflows only sends finite values down the exact slow path.)
    if not bool(torch.isfinite(z.sum())):
        soft = torch.softmax(z, dim=-1)
        out.add_(soft.sub_(soft))
        torch.argmax(out, dim=-1, out=observations)


def _draw_normal(out: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Fill ``out`` as ``_randn(out.shape, generator, ...)`` would (the same draws)."""
    if generator is None:
        return out.normal_()
    if generator.device == out.device:
        return out.normal_(generator=generator)
    return out.copy_(_randn(out.shape, generator, out.device, out.dtype))


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

    On a CPU the blocks of sequences of a chunk are stepped by ``torch.get_num_threads()``
    worker threads (one torch thread each) while this thread draws the next chunk's noise and
    samples the previous chunk's outputs; the results do not depend on the number of threads.

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
    check_choice("dynamics_mode", dynamics_mode, DYNAMICS_MODES)
    batch_size = num_seq if batch_size is None else _check_positive_int("batch_size", batch_size)
    chunk = min(batch_size, num_seq)

    device, dtype = module.device, module.fc.weight.dtype
    on_cpu = device.type == "cpu"
    n_in, n_hid, n_out = module.input_size, module.hidden_size, module.output_size
    # Results are written straight into these (CPU) tensors, chunk by chunk.
    outputs = _empty_cpu((num_seq, seq_len, n_out), dtype)
    logits_all = _empty_cpu((num_seq, seq_len, n_out), dtype)
    hidden_all = _empty_cpu((num_seq, seq_len, n_hid), dtype) if return_hidden else None
    inputs_all = _empty_cpu((num_seq, seq_len, n_in), dtype) if return_inputs else None
    observations = _empty_cpu((num_seq, seq_len), torch.int64)

    def sample(start: int, n: int, logits, hidden, x, u) -> None:
        """Sample a chunk's outputs once its blocks are done; copy device results."""
        out, obs = outputs[start : start + n], observations[start : start + n]
        if on_cpu:
            _sample_into(logits, u, tau, out, obs)
            return
        out_dev = torch.empty_like(logits)
        obs_dev = torch.empty(obs.shape, dtype=obs.dtype, device=device)
        _sample_into(logits, u, tau, out_dev, obs_dev)
        out.copy_(out_dev)
        obs.copy_(obs_dev)
        logits_all[start : start + n].copy_(logits)
        if hidden_all is not None:
            hidden_all[start : start + n].copy_(hidden)
        if inputs_all is not None:
            inputs_all[start : start + n].copy_(x)

    values_per_seq = seq_len * n_in
    quantum = _quantum(values_per_seq)
    starts = range(0, num_seq, chunk)
    chunk_sizes = [min(chunk, num_seq - start) for start in starts]

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), _block_runner(device) as runner:
            w = _weights(module, dynamics_mode)
            store = threading.local()
            inline = isinstance(runner, _Inline)
            # Drawing the noise takes a quarter of the time and cannot be parallelised (one
            # generator), so this thread only draws (the workers step through the blocks and
            # sample a chunk when its last block is done). With several chunks, the next
            # chunk is drawn while the workers step through this one. Within a chunk the
            # initial states are drawn after all of the noise, but the input projections need
            # no state: when they can go where the states go (the kept hidden states of a
            # 1-layer network), the noise is drawn block by block and each block projected at
            # once, so that drawing and computing overlap even for a single chunk, and the
            # noise needs only a few block-sized buffers.
            ahead_ok = (
                on_cpu
                and not inline
                and return_hidden
                and module.num_layers == 1
                and dynamics_mode != "recurrence_only"
                and (generator is None or generator.device.type == "cpu")
                and _split_draws_ok(dtype)
            )
            # Buffers are allocated once and reused: fresh multi-MB tensors per chunk cost
            # page faults (here the first touch of new memory costs up to ~1.5 ms per MB).
            slots: list[torch.Tensor] = []  # the noise of a whole chunk, alternately
            ring: list[list] = []  # [noise of one block, future of the projection reading it]
            drawn = 0

            def ring_slot(rows: int) -> list:
                nonlocal drawn
                if not ring:
                    shape = (max(rows, _BLOCK_SEQ + 2 * quantum), seq_len, n_in)
                    count = runner.workers + 1
                    ring.extend([_empty_cpu(shape, dtype), None] for _ in range(count))
                slot = ring[drawn % len(ring)]
                drawn += 1
                if slot[1] is not None:
                    slot[1].result()
                if slot[0].shape[0] < rows:
                    slot[0] = _empty_cpu((rows, seq_len, n_in), dtype)
                return slot

            in_flight: list[list[Future]] = []
            for index, (start, n) in enumerate(zip(starts, chunk_sizes, strict=True)):
                blocks = _blocks(n, quantum)
                if on_cpu:
                    logits = logits_all[start : start + n]
                    hidden = None if hidden_all is None else hidden_all[start : start + n]
                else:
                    logits = torch.empty((n, seq_len, n_out), dtype=dtype, device=device)
                    hidden = None
                    if return_hidden:
                        hidden = torch.empty((n, seq_len, n_hid), dtype=dtype, device=device)
                last_values = (blocks[-1][1] - blocks[-1][0]) * values_per_seq
                ahead = ahead_ok and len(blocks) > 1 and last_values >= _DRAW_QUANTUM
                if on_cpu and return_inputs:
                    x = inputs_all[start : start + n]
                elif ahead:
                    x = None  # block by block, in the ring
                else:
                    if not slots:
                        count = 1 if inline or len(chunk_sizes) == 1 else 2
                        shape = (chunk, seq_len, n_in)
                        slots.extend(
                            _empty_cpu(shape, dtype)
                            if on_cpu
                            else torch.empty(shape, dtype=dtype, device=device)
                            for _ in range(count)
                        )
                    if len(in_flight) >= len(slots):
                        _wait(in_flight[-len(slots)])  # that chunk's noise slot is reused now
                    x = slots[index % len(slots)][:n]
                projections = None
                if ahead:
                    projections = []
                    for a, b in blocks:
                        slot = None
                        if x is None:
                            slot = ring_slot(b - a)
                            xb = slot[0][: b - a]
                        else:
                            xb = x[a:b]
                        _draw_normal(xb, generator)
                        future = runner.submit(_project_block, w, xb, _state_view(hidden[a:b]))
                        if slot is not None:
                            slot[1] = future
                        projections.append(future)
                else:
                    _draw_normal(x, generator)
                h0 = module.initial_state(n, init, generator)
                u = _rand((n, seq_len, n_out), generator, device, dtype) if gumbel else None
                done = partial(sample, start, n, logits, hidden, x, u)
                in_flight.append(
                    _submit_blocks(
                        runner, store, w, blocks, x, h0, hidden, logits, projections, done
                    )
                )
            for futures in in_flight:
                _wait(futures)
    finally:
        module.train(was_training)
    return Generated(
        outputs=outputs,
        hidden=hidden_all,
        logits=logits_all,
        observations=observations.numpy(),
        inputs=inputs_all,
    )
