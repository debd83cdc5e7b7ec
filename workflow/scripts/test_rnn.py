"""Compare HMM and RNN samples: matched distances, volatilities, frequencies, fidelity."""

import torch

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
torch.set_num_threads(snakemake.threads)
stages.test_model(
    model_path=snakemake.input.model,
    data_path=snakemake.input.data,
    test=snakemake.params.test,
    seq_len=snakemake.params.seq_len,
    seed=snakemake.params.seed,
    summary_path=snakemake.output.summary,
    tables_path=snakemake.output.tables,
)
