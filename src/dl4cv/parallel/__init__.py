"""The stages of dvc.yaml, several at a time: DVC judges and records each one, Dask decides
when and where it runs (`python -m dl4cv.parallel`, `make repro JOBS=N`)."""
