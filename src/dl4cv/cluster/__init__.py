"""DVC experiments on a Dask cluster whose workers share no folder with the caller: each task
clones the team's Git remote at the caller's commit, pulls what the DVC remote has, runs
`dvc exp run`, and pushes the experiment back (python -m dl4cv.cluster)."""
