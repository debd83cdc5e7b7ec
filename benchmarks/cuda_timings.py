"""Timings of the CUDA path at paper scale (run on a GPU machine; prints a markdown table).

python benchmarks/cuda_timings.py
"""

from __future__ import annotations

import time

import torch

from hmmrnn.hmm import HMM, one_hot
from hmmrnn.model import NoiseRNN, generate
from hmmrnn.sinkhorn import Sinkhorn
from hmmrnn.training import Trainer


def timed(fn, repeats=3):
    fn()  # warm-up: kernels, cuDNN plans, allocator
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    hmm = HMM(states=3, outputs=3, emission_method="linear")
    obs, _ = hmm.sample(30000, 30, rng=0)
    data = one_hot(obs, 3)
    module = NoiseRNN(input_size=100, hidden_size=150, output_size=3).cuda()
    rows = []

    def epoch():
        Trainer(module, batch_size=4096, epochs=1, learning_rate=1e-3, seed=0, device="cuda").fit(
            data[:4096], data[4096:8192]
        )

    rows.append(("training epoch: 1 step + 1 validation batch at 4096 (T=30)", timed(epoch)))
    gen = torch.Generator(device="cuda")
    rows.append(
        (
            "generate 30000 x 30",
            timed(lambda: generate(module, 30000, 30, generator=gen.manual_seed(0))),
        )
    )
    for n in (10000, 30000):
        x = data[:n].reshape(n, -1)
        b, _ = hmm.sample(n, 30, rng=1)
        y = one_hot(b, 3).reshape(n, -1)
        rows.append(
            (
                f"Sinkhorn matching n = {n}",
                timed(lambda x=x, y=y: Sinkhorn(device="cuda").match(x, y), repeats=1),
            )
        )
    print(f"GPU: {torch.cuda.get_device_name()} (torch {torch.__version__})\n")
    print("| step | seconds |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
