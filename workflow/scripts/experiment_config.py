"""Write the resolved configuration of one experiment."""

from hmmrnn._utils import configure_logging, write_json

configure_logging(snakemake.log[0])
write_json(snakemake.output[0], snakemake.params.config)
