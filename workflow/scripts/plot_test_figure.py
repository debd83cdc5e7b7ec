"""Draw one HMM-vs-RNN comparison figure from the saved test results."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.plot_test_figure(
    name=snakemake.wildcards.figure,
    summary_path=snakemake.input.summary,
    tables_path=snakemake.input.tables,
    path=snakemake.output[0],
    dpi=snakemake.params.dpi,
)
