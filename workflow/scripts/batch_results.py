"""Tabulate all experiments' summaries (JSON and CSV)."""

from hmmrnn import stages
from hmmrnn._utils import configure_logging

configure_logging(snakemake.log[0])
stages.batch_results(
    list(snakemake.input.summaries),
    json_path=snakemake.output.json,
    table_path=snakemake.output.table,
)
