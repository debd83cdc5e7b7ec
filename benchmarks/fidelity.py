"""Fidelity benchmark: train each preset with a recipe, then test HMM vs RNN samples.

For every experiment of a workflow configuration (default ``config/fidelity.yaml``) this
samples the training data, trains one RNN per learning rate (the lowest validation loss wins,
as in the workflow), generates fresh RNN sequences and compares them with two fresh HMM sample
sets through :func:`hmmrnn.testing.compare`. It prints a markdown table of the issue's
fidelity targets:

* every entry of ``(P_hmm - P_rnn) ** 2`` (symbol transition matrices) at most 0.001,
* 1- to 4-gram total variation at most 0.02,
* mean matched Euclidean distance within 1 % of the HMM-vs-HMM baseline,

with the wall time of training on this machine (and the load average, since the machine may
be shared), each gap with its standard error, and a control: the same test with a third,
independent HMM set in place of the RNN (a perfect emulator, so pure sampling noise).
``--write-readme`` puts the table between ``<!-- fidelity:start -->`` and
``<!-- fidelity:end -->`` in README.md, replacing the rows of the experiments run and keeping
the others (so one preset can be rerun alone).

Test draw 0 is the workflow's test stage. ``--test-draws 1 2 3`` tests on fresh HMM and RNN
sets instead and reports the mean over draws: numbers from sets that no recipe choice has
seen, with the gap's standard error divided by about the square root of the number of draws.
``--models DIR`` keeps each trained model in DIR and reuses it when its training settings are
unchanged, so new test draws do not retrain.

    python benchmarks/fidelity.py --presets HMMSmall HMMMedium --threads 2
    python benchmarks/fidelity.py --presets HMMMedium --seeds 0 1 2   # run-to-run variation
    python benchmarks/fidelity.py --models results/fidelity/models --test-draws 1 2 3
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from hmmrnn._utils import as_rng, write_json
from hmmrnn.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
)
from hmmrnn.config import expand_experiments, stage_seed
from hmmrnn.hmm import HMM, one_hot, split_labels
from hmmrnn.model import NoiseRNN
from hmmrnn.stages import (
    compare_model,
    compare_to_hmm,
    hmm_test_sets,
    module_kwargs,
    trainer_kwargs,
)
from hmmrnn.testing import sinkhorn_matcher
from hmmrnn.training import Trainer

ROOT = Path(__file__).resolve().parents[1]
TARGET_SQ = 1e-3
TARGET_TV = 0.02
TARGET_GAP = 0.01
START, END = "<!-- fidelity:start -->", "<!-- fidelity:end -->"


def train_experiment(cfg, log=print, device: str = "cpu") -> dict:
    """Sample data, train every learning rate; return the best module and timings."""
    hmm = HMM(**dataclasses.asdict(cfg.hmm))
    rng = as_rng(stage_seed(cfg.seed, "data"))
    obs, _ = hmm.sample(cfg.data.num_seq, cfg.data.seq_len, rng)
    split = split_labels(cfg.data.num_seq, cfg.data.split, rng)
    train, val = one_hot(obs[split == 0], hmm.outputs), one_hot(obs[split == 1], hmm.outputs)
    best = None
    seconds = 0.0
    load = os.getloadavg()[0]
    kwargs = trainer_kwargs(cfg.training, hmm, obs[split == 1])  # shared by every rate
    for index, lr in enumerate(cfg.training.learning_rates):
        seed = stage_seed(cfg.seed, "training", index)
        torch.manual_seed(seed)
        module = NoiseRNN(**module_kwargs(cfg.rnn, hmm.outputs))
        trainer = Trainer(module, learning_rate=lr, seed=seed, device=device, **kwargs)
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        result = trainer.fit(train, val)
        elapsed = time.perf_counter() - t0
        seconds += elapsed
        log(
            f"  lr {lr:g}: {result.epochs_run} epochs in {elapsed:.0f} s, best val loss "
            f"{result.best_val_loss:.4f} at epoch {result.best_epoch + 1} "
            f"(load {load0:.1f} -> {os.getloadavg()[0]:.1f})"
        )
        if best is None or result.best_val_loss < best[1].best_val_loss:
            module = module.cpu()  # evaluation samples on the CPU, like the workflow's test
            module.load_state_dict(result.best_state_dict)
            best = (module, result, lr)
    module, result, lr = best
    return {
        "hmm": hmm,
        "module": module,
        "learning_rate": lr,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "train_seconds": seconds,
        "load": (load + os.getloadavg()[0]) / 2,  # the machine may be shared
        "threads": torch.get_num_threads(),
    }


# The sections that decide what a model learns: a saved model is reused only if these match.
TRAINING_SECTIONS = ("seed", "hmm", "data", "rnn", "training")


def _training_settings(cfg) -> dict:
    full = json.loads(json.dumps(cfg.to_dict()))
    return {key: full[key] for key in TRAINING_SECTIONS}


def model_path(models: Path, name: str) -> Path:
    """Where ``--models`` keeps the model of row ``name`` ("Fully (seed 1)" -> Fully_seed_1.pth)."""
    return models / (re.sub(r"\W+", "_", name).strip("_") + ".pth")


def saved_model(path: Path | None, cfg) -> dict | None:
    """The checkpoint at ``path``, if any; raise if it was trained otherwise than ``cfg``."""
    if path is None or not path.exists():
        return None
    ckpt = load_checkpoint(path)
    saved, wanted = ckpt["config"].get("experiment") or {}, _training_settings(cfg)
    differ = [key for key in TRAINING_SECTIONS if saved.get(key) != wanted[key]]
    if differ:
        raise CheckpointError(
            f"{path} was trained with other settings (sections {differ} differ from the "
            "configuration); delete it to retrain"
        )
    return ckpt


def train_or_load(cfg, path: Path | None, log=print, device: str = "cpu") -> dict:
    """:func:`train_experiment`, or the model saved at ``path`` by an earlier run.

    A saved model is reused only when it was trained with the same training settings
    (:data:`TRAINING_SECTIONS`); otherwise this raises, naming the file, before any work.
    Its training times are those measured when it was trained.
    """
    ckpt = saved_model(path, cfg)
    if ckpt is not None:
        log(f"  reusing {path}")
        return {
            "hmm": HMM(**dataclasses.asdict(cfg.hmm)),
            "module": model_from_checkpoint(ckpt),
            **ckpt["extra"]["training"],
        }
    trained = train_experiment(cfg, log=log, device=device)
    if path is not None:
        timings = {k: v for k, v in trained.items() if k not in ("hmm", "module")}
        save_checkpoint(
            path,
            trained["module"].state_dict(),
            config={"model": trained["module"].config(), "experiment": _training_settings(cfg)},
            seed=cfg.seed,
            extra={"training": timings},
        )
    return trained


def remembering(matcher):
    """``matcher`` that matches each pair of array contents once.

    The control matches the same HMM sets A and B as the RNN test (regenerated from the
    same seed); remembering saves that second matching, about 45 s for 30000 against 30000
    sequences on 2 cores.
    """
    done = {}

    def match(obs_x: np.ndarray, obs_y: np.ndarray):
        key = tuple(
            (a.shape, str(a.dtype), hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest())
            for a in (obs_x, obs_y)
        )
        if key not in done:
            done[key] = matcher(obs_x, obs_y)
        return done[key]

    return match


def evaluate_draw(cfg, hmm: HMM, module: NoiseRNN, draw: int = 0, control: bool = True):
    """Summaries of the RNN test and, if ``control``, of the exact-HMM control for one draw.

    Draw ``d`` samples HMM sets A and B and the RNN set from ``stage_seed(seed, "test", 2d)``
    (draw 0 is the workflow's test stage) and the control's third HMM set, a perfect
    emulator whose numbers are pure sampling noise, from ``stage_seed(seed, "test", 2d + 1)``.
    """
    seed = stage_seed(cfg.seed, "test", 2 * draw)
    t = cfg.test
    matcher = remembering(
        sinkhorn_matcher(hmm.outputs, epsilon=t.epsilon, max_iter=t.max_iter, tol=t.tol)
    )
    summary = compare_model(hmm, module, t, cfg.test_seq_len, seed, matcher=matcher).summary()
    if not control:
        return summary, None
    obs_a, obs_b, _ = hmm_test_sets(hmm, t, cfg.test_seq_len, seed)
    obs_c, _ = hmm.sample(
        t.num_seq, cfg.test_seq_len, as_rng(stage_seed(cfg.seed, "test", 2 * draw + 1))
    )
    return summary, compare_to_hmm(hmm, obs_a, obs_b, obs_c, t, matcher).summary()


def mean_summary(summaries: list[dict]) -> dict:
    """The mean of each metric over test draws; the gap's s.e. is that of the mean gap.

    Draws are independent, so the variance of the mean gap is the sum of the draws'
    variances over the number of draws squared. A metric missing (None) in any draw is None.
    """
    out = {}
    for key in summaries[0]:
        values = [s[key] for s in summaries]
        if any(v is None for v in values):
            out[key] = None
        elif key == "euclidean_gap_se":
            out[key] = math.sqrt(sum(v * v for v in values)) / len(values)
        else:
            out[key] = float(np.mean(values))
    return out


def passes(row: dict) -> dict:
    tv = max(v for k, v in row.items() if k.startswith("kgram_tv_k") and k.endswith("_rnn"))
    return {
        "transition": row["transition_sq_diff_max"] <= TARGET_SQ,
        "kgram": tv <= TARGET_TV,
        "euclidean": abs(row["euclidean_gap"]) <= TARGET_GAP,
    }


def _mark(ok: bool) -> str:
    return "pass" if ok else "FAIL"


def _failed(ok: dict) -> str:
    failed = [name for name, good in ok.items() if not good]
    return "meets all" if not failed else "fails " + ", ".join(failed)


def table(rows: list[dict], draws=(0,)) -> str:
    """Markdown table of the fidelity targets (and of the exact-HMM control, where run).

    With test draws other than the workflow's (draw 0 alone) the header names them. Each
    training time is given with the torch threads it ran on (a reused model's, from its file).
    """
    with_control = any("control" in r for r in rows)
    sets = "" if list(draws) == [0] else f"; mean of test draws {', '.join(map(str, draws))}"
    head = (
        "| experiment | train time (threads, load) | epochs | max (ΔP)² ≤ 1e-3 (floor) | "
        f"k-gram TV k=1..4 ≤ 0.02 (floor) | Euclidean gap ≤ 1 % (± s.e.{sets}) | "
        "loglik/step RNN vs HMM |"
    )
    rule = "|---|---|---|---|---|---|---|"
    if with_control:
        head += " exact HMM in place of the RNN: max (ΔP)², max TV, gap |"
        rule += "---|"
    lines = [head, rule]
    for r in rows:
        ok = passes(r)
        tv = " / ".join(f"{r[f'kgram_tv_k{k}_rnn']:.3f}" for k in range(1, 5))
        fl = " / ".join(f"{r[f'kgram_tv_k{k}_floor']:.3f}" for k in range(1, 5))
        ll = (
            f"{r['loglik_per_step_rnn']:.4f} vs {r['loglik_per_step_hmm']:.4f}"
            if r.get("loglik_per_step_rnn") is not None
            else "n/a"
        )
        line = (
            f"| {r['experiment']} | {r['train_seconds'] / 60:.1f} min "
            f"({r.get('threads') or '?'}, {r['load']:.1f}) | "
            f"{r['epochs_run']} | {r['transition_sq_diff_max']:.2e} "
            f"({r['transition_sq_diff_max_floor']:.0e}) {_mark(ok['transition'])} | "
            f"{tv} ({fl}) {_mark(ok['kgram'])} | {100 * r['euclidean_gap']:+.2f} "
            f"± {100 * r['euclidean_gap_se']:.2f} % {_mark(ok['euclidean'])} | {ll} |"
        )
        c = r.get("control")
        if c is not None:
            tv_c = max(c[f"kgram_tv_k{k}_rnn"] for k in range(1, 5))
            line += (
                f" {c['transition_sq_diff_max']:.1e}, {tv_c:.3f}, "
                f"{100 * c['euclidean_gap']:+.2f} %: {_failed(passes(c))} |"
            )
        elif with_control:
            line += " - |"
        lines.append(line)
    return "\n".join(lines)


def _row_name(line: str) -> str | None:
    """The experiment named by a table row, None for the header, rule or other text."""
    cells = line.split("|")
    if len(cells) < 3 or not line.startswith("|") or set(cells[1].strip()) <= {"-"}:
        return None
    name = cells[1].strip()
    return None if name == "experiment" else name


def merge_tables(old: str, new: str) -> str:
    """``new``'s header and rows, plus the rows of ``old`` for experiments ``new`` lacks.

    Rerunning one preset then updates its row and keeps the others; an old row keeps its
    place, a new experiment goes at the end. When the headers differ (other columns) the old
    rows cannot be kept and ``new`` is returned as it is.
    """
    old_lines, new_lines = old.strip().splitlines(), new.strip().splitlines()
    if not old_lines or old_lines[0] != new_lines[0]:
        return new.strip()
    fresh = {_row_name(line): line for line in new_lines[2:]}
    rows = []
    for line in old_lines[2:]:
        name = _row_name(line)
        if name is not None:
            rows.append(fresh.pop(name, line))
    return "\n".join(new_lines[:2] + rows + list(fresh.values()))


def write_readme(text: str, path: Path) -> bool:
    """Merge ``text`` into the table between the fidelity markers (see :func:`merge_tables`).

    False (and no change) if the markers are absent.
    """
    readme = path.read_text()
    pattern = re.compile(re.escape(START) + r"\n?(.*?)\n?" + re.escape(END), re.DOTALL)
    found = pattern.search(readme)
    if not found:
        return False
    from hmmrnn._utils import atomic_path

    merged = merge_tables(found.group(1), text)
    with atomic_path(path) as tmp:
        tmp.write_text(pattern.sub(lambda _: f"{START}\n{merged}\n{END}", readme))
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "config" / "fidelity.yaml")
    parser.add_argument("--presets", nargs="+", help="experiment names to run (default: all)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--device", default="cpu", help="where to train: cpu (default) or cuda")
    parser.add_argument("--json", type=Path, help="also write every summary to this JSON file")
    parser.add_argument(
        "--write-readme",
        action="store_true",
        help="update README.md's table: the rows of these experiments, the others kept",
    )
    parser.add_argument(
        "--no-control", action="store_true", help="skip the exact-HMM control (one test less)"
    )
    parser.add_argument(
        "--test-draws",
        nargs="+",
        type=int,
        default=[0],
        help="test on these independent draws of test sets and report the mean (default: 0, "
        "the workflow's test stage)",
    )
    parser.add_argument(
        "--models",
        type=Path,
        help="keep trained models in this folder and reuse those whose training settings match",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        help="train and test each experiment with each of these seeds (default: its own)",
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    experiments = expand_experiments(yaml.safe_load(args.config.read_text()))
    names = args.presets or list(experiments)
    unknown = sorted(set(names) - set(experiments))
    if unknown:
        parser.error(f"unknown experiment(s) {unknown} (expected some of {sorted(experiments)})")

    if args.seeds and min(args.seeds) < 0:
        parser.error(f"--seeds must be non-negative integers (got {args.seeds})")
    draws = args.test_draws
    if min(draws) < 0 or len(set(draws)) != len(draws):
        parser.error(f"--test-draws must be distinct non-negative integers (got {draws})")
    runs = []  # (row name, config)
    for name in names:
        if not args.seeds:
            runs.append((name, experiments[name]))
        for seed in args.seeds or ():
            runs.append(
                (f"{name} (seed {seed})", dataclasses.replace(experiments[name], seed=seed))
            )

    paths = {name: args.models and model_path(args.models, name) for name, _ in runs}
    for name, cfg in runs:  # a saved model trained otherwise fails here, before any training
        try:
            saved_model(paths[name], cfg)
        except CheckpointError as exc:
            parser.error(str(exc))

    rows = []
    for name, cfg in runs:
        print(f"{name}: training ({platform.node()}, {args.threads} threads)", flush=True)
        trained = train_or_load(cfg, paths[name], device=args.device)
        tests, controls = [], []
        for draw in draws:
            summary, ctrl = evaluate_draw(
                cfg, trained["hmm"], trained["module"], draw, not args.no_control
            )
            tests.append(summary)
            controls.append(ctrl)
        timings = {k: v for k, v in trained.items() if k not in ("hmm", "module")}
        row = {"experiment": name, **timings, **mean_summary(tests)}
        row["test_draws"] = list(draws)
        row["draw_summaries"] = tests
        if not args.no_control:
            row["control"] = {**mean_summary(controls), "draw_summaries": controls}
        rows.append(row)
        print(table([row], draws).splitlines()[-1], flush=True)

    text = table(rows, draws)
    print()
    print(text)
    if args.json:
        write_json(args.json, {"config": str(args.config), "threads": args.threads, "rows": rows})
    if args.write_readme:
        readme = ROOT / "README.md"
        if write_readme(text, readme):
            print(f"updated {readme}")
        else:
            print(f"{readme} has no {START} ... {END} markers; table not written")
    all_ok = all(all(passes(r).values()) for r in rows)
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
