"""Launch the LongVideo-R1 recipe stages locally or on Slurm: `python -m launch STAGE ...`."""
