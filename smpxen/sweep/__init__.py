"""Experiments as one command: `smpxen sweep` runs a machine config over a grid of
config values (smpxen/sweep/grid.py), one `smpxen up` per run (runner.py), locally
or on a dask cluster (dask_exec.py), into a results directory with one report per
run and a tidy summary.csv (main.py, summary.py); `smpxen plot` draws it (plot.py).
experiments/ holds the shipped experiment files; README.md, "Sweeps and experiments",
shows the commands."""
