"""What every stage stands on: the project's paths (paths), writes that never leave half a
file (fileio), the one-line errors (errors), the Keras backend (backend), a GPU shared by
default (gpus) and the server that keeps the heavy imports warm (warmstart)."""
