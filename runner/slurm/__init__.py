"""SLURM support: the sbatch script, the SLURM commands, submission records, job verdicts, and
the array task's entry point on the nodes. ``runner.launchers.slurm`` puts them together."""
