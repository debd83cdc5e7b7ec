"""Run the trained RNN, collect its hidden states and fit a PCA."""

import torch

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
stages.pca(
    model_path=snakemake.input.model,
    reverse=snakemake.params.pca,
    seq_len=snakemake.params.seq_len,
    seed=snakemake.params.seed,
    path=snakemake.output[0],
)
