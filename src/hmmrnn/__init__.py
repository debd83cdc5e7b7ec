"""hmmrnn: train noise-driven RNNs to emulate Hidden Markov Models and reverse-engineer them.

The public classes load lazily, so that ``import hmmrnn.config`` (which Snakemake does while
parsing the workflow) does not pay for importing torch.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "HMM": "hmmrnn.hmm",
    "RNN": "hmmrnn.rnn",
    "NoiseRNN": "hmmrnn.model",
    "Trainer": "hmmrnn.training",
    "Test": "hmmrnn.testing",
    "TEST": "hmmrnn.testing",
    "TestResults": "hmmrnn.testing",
    "Reverse": "hmmrnn.reverse",
    "REVERSE": "hmmrnn.reverse",
    "PCAResult": "hmmrnn.reverse",
    "Sinkhorn": "hmmrnn.sinkhorn",
    "SINKHORN": "hmmrnn.sinkhorn",
    "Manager": "hmmrnn.manager",
    "MANAGER": "hmmrnn.manager",
    "ExperimentConfig": "hmmrnn.config",
    "DefaultConfig": "hmmrnn.config",
    "HMMSmall": "hmmrnn.config",
    "HMMMedium": "hmmrnn.config",
    "HMMLarge": "hmmrnn.config",
    "HMMVeryLarge": "hmmrnn.config",
    "Fully": "hmmrnn.config",
    "Cyclic": "hmmrnn.config",
    "PRESETS": "hmmrnn.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hmmrnn' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
