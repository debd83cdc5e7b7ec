"""The README's Python example runs as written (the seed's notebook workflow, small sizes)."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_library_example_runs(tmp_path, monkeypatch):
    (code,) = [b for b in python_blocks() if "from hmmrnn import HMM" in b]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    results, pca, rnn = namespace["results"], namespace["pca"], namespace["rnn"]
    # The example trained, tested and analysed a real model.
    assert len(rnn.train_losses) == 5 and np.isfinite(rnn.train_losses).all()
    assert results.summary()["distance_mean_hmm"] >= 0
    assert pca.projected.shape == (100, 30, 3)
