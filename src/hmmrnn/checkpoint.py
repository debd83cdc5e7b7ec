"""Self-describing model checkpoints readable with ``torch.load(weights_only=True)``.

A checkpoint is a ``.pth`` file holding a dict with a format tag, the weights, the resolved
configuration (JSON-able), the training history, the seed and the package versions, so that
a model can be rebuilt and its provenance checked without the code that trained it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from hmmrnn._utils import atomic_path, package_versions

__all__ = [
    "FORMAT_TAG",
    "FORMAT_VERSION",
    "CheckpointError",
    "load_checkpoint",
    "model_from_checkpoint",
    "save_checkpoint",
]

FORMAT_TAG = "hmmrnn-checkpoint"
FORMAT_VERSION = 1
_REQUIRED_KEYS = ("state_dict", "config", "history", "seed", "versions")


class CheckpointError(ValueError):
    """A checkpoint file is missing, unreadable, or not an hmmrnn checkpoint."""


def _cpu_copy(obj: Any) -> Any:
    """Detached CPU copies of all tensors in nested dicts/lists, so the file is device-free."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: _cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_cpu_copy(v) for v in obj)
    return obj


def save_checkpoint(
    path: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    *,
    config: dict,
    history: dict | None = None,
    seed: int | None = None,
    extra: dict | None = None,
) -> Path:
    """Write a checkpoint atomically.

    Parameters
    ----------
    path : path-like
        Destination ``.pth`` file (parent directories are created).
    state_dict : dict of str to torch.Tensor
        Model weights.
    config : dict
        Resolved configuration; must be JSON-serialisable. :func:`model_from_checkpoint`
        reads the :class:`~hmmrnn.model.NoiseRNN` arguments from ``config["model"]``.
    history : dict, optional
        Training history, e.g. ``{"train_loss": [...], "val_loss": [...]}`` (plain types).
    seed : int, optional
        Seed the run was made with.
    extra : dict, optional
        Anything else made of tensors and plain Python types (optimizer state, ...).

    Returns
    -------
    pathlib.Path
        The written path.
    """
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise ValueError("state_dict must be a dict of tensors")
    if not isinstance(config, dict):
        raise ValueError(f"config must be a dict (got {type(config).__name__})")
    try:
        json.dumps(config)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"config must be JSON-serialisable ({exc})") from None
    if history is not None and not isinstance(history, dict):
        raise ValueError(f"history must be a dict or None (got {type(history).__name__})")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int or None (got {seed!r})")
    if extra is not None and not isinstance(extra, dict):
        raise ValueError(f"extra must be a dict or None (got {type(extra).__name__})")
    payload = {
        "format": FORMAT_TAG,
        "version": FORMAT_VERSION,
        "state_dict": _cpu_copy(dict(state_dict)),
        "config": config,
        "history": _cpu_copy(history) if history is not None else {},
        "seed": seed,
        "versions": package_versions(),
        "extra": _cpu_copy(extra) if extra is not None else {},
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Read and check a checkpoint written by :func:`save_checkpoint`.

    Returns
    -------
    dict
        Keys ``format, version, state_dict, config, history, seed, versions, extra``.

    Raises
    ------
    CheckpointError
        If the file is missing, truncated or corrupt, or not an hmmrnn checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types (RuntimeError, UnpicklingError, EOFError)
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated, corrupt or not a torch file "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_TAG:
        raise CheckpointError(
            f"{str(path)!r} is a torch file but not an hmmrnn checkpoint "
            f"(missing format tag {FORMAT_TAG!r})"
        )
    version = ckpt.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {version!r}; "
            f"this hmmrnn reads versions <= {FORMAT_VERSION}"
        )
    missing = [k for k in _REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise CheckpointError(f"checkpoint {str(path)!r} lacks the keys {missing}")
    ckpt.setdefault("extra", {})
    ckpt["path"] = str(path)
    return ckpt


def model_from_checkpoint(ckpt: dict | str | os.PathLike, device: Any = None):
    """Build a :class:`~hmmrnn.model.NoiseRNN` from a checkpoint and load its weights.

    Parameters
    ----------
    ckpt : dict or path-like
        A dict from :func:`load_checkpoint`, or a path to load.
    device : torch.device or str, optional
        Where to put the module (CPU when None).

    Returns
    -------
    NoiseRNN
        In eval mode.
    """
    from hmmrnn.model import NoiseRNN

    if not isinstance(ckpt, dict):
        ckpt = load_checkpoint(ckpt)
    where = ckpt.get("path", "<checkpoint dict>")
    model_cfg = ckpt.get("config", {}).get("model")
    if not isinstance(model_cfg, dict):
        raise CheckpointError(f"checkpoint {where!r} has no model configuration (config['model'])")
    try:
        module = NoiseRNN(**model_cfg)
        module.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"checkpoint {where!r}: weights do not fit the configured model ({exc})"
        ) from exc
    module.eval()
    return module.to(device) if device is not None else module
