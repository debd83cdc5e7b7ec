"""Sample HMM sequences for one experiment and write them to parquet."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.generate_data(
    hmm=snakemake.params.hmm,
    data=snakemake.params.data,
    seed=snakemake.params.seed,
    path=snakemake.output[0],
)
