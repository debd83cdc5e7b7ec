"""Draw the cross-experiment fidelity figure."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.plot_batch_fidelity(snakemake.input[0], snakemake.output[0], dpi=snakemake.params.dpi)
