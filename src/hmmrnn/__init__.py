"""hmmrnn: train noise-driven RNNs to emulate Hidden Markov Models and reverse-engineer them."""

__version__ = "0.1.0"
