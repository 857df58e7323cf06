"""Running the pipeline's commands on an engine: local processes or a Slurm cluster (submitit)."""
