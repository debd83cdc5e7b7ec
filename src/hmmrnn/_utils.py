"""Small shared helpers: atomic file writes, explicit random generators, progress logging."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger("hmmrnn")

SeedLike = int | np.random.Generator | None

# Read once: os.umask can only be queried by setting it.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success.

    A failure (exception, SIGTERM, SIGKILL) never leaves a half-written file under the final
    name, so Snakemake and later runs cannot mistake it for a complete output.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp creates 0600 files; give the result the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that :func:`atomic_path` left next to ``path``.

    Only a SIGKILL (or a power cut) mid-write leaves one. Call this where the one writer of
    ``path`` starts, e.g. a training job resuming its checkpoint; never where several
    processes may write ``path`` at once, as one would delete another's file in progress.

    Returns
    -------
    list of pathlib.Path
        The files removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically. NumPy scalars and arrays are converted."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serialisable")


def as_rng(seed: SeedLike) -> np.random.Generator:
    """Return a ``numpy.random.Generator``: pass one through, or seed a new one from an int.

    ``None`` gives an unseeded generator (fresh OS entropy); use it only interactively.
    """
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is None or isinstance(seed, (int, np.integer)):
        return np.random.default_rng(seed)
    raise TypeError(f"seed must be an int, a numpy.random.Generator or None (got {type(seed)!r})")


def torch_generator(seed: int | None, device: Any = "cpu"):
    """A ``torch.Generator`` on ``device`` seeded with ``seed`` (random seed when None)."""
    import torch

    gen = torch.Generator(device=device)
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def progress(iterable: Iterable, *, total: int | None = None, desc: str = "", log_every: int = 1):
    """Iterate with a tqdm bar on a TTY; otherwise log one line every ``log_every`` items.

    Snakemake redirects stderr to the rule's log file, where a bar would be unreadable, so
    off a TTY the progress goes through the ``hmmrnn`` logger instead.
    """
    if sys.stderr.isatty():
        from tqdm.auto import tqdm

        yield from tqdm(iterable, total=total, desc=desc)
        return
    n = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    for i, item in enumerate(iterable, start=1):
        yield item
        if i % log_every == 0 or (n is not None and i == n):
            logger.info("%s %d/%s", desc, i, n if n is not None else "?")


def configure_logging(log_file: str | os.PathLike | None = None, level: int = logging.INFO) -> None:
    """Send ``hmmrnn`` log records to ``log_file`` (or stderr) with timestamps."""
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("hmmrnn")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if log_file:
        # Workflow scripts log to the rule's log file; make a crash land there too.
        previous = sys.excepthook

        def hook(kind, value, tb):
            root.error("failed", exc_info=(kind, value, tb))
            previous(kind, value, tb)

        sys.excepthook = hook


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide numerical results, for checkpoints and summaries."""
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for name in ("hmmrnn", "torch", "numpy", "geomloss", "scikit-learn", "pandas", "pyarrow"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


# How hidden states are generated (hmmrnn.model.generate, hmmrnn.reverse).
DYNAMICS_MODES = ("full", "recurrence_only", "input_only")


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices``, else a ValueError naming both."""
    choices = list(choices)
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices} (got {value!r})")
    return value
