#!/bin/bash
# Book-profile knn_animals and shallownet_animals on CPU, before (1c74f9a) and after (HEAD).
set -e
export PATH=/work/main/.venv/bin:$PATH DL4CV_MIRROR=/work/shared/datasets TF_CPP_MIN_LOG_LEVEL=2 DL4CV_WARM=0
for side in before after; do
  cd /work/$side
  export PYTHONPATH=/work/$side/src MLFLOW_TRACKING_URI=sqlite:////work/$side/mlflow.db
  echo "== $side $(git rev-parse --short HEAD) $(date +%T)"
  for s in download preprocess split; do python stages/$s.py animals 2>&1 | tail -1; done
  for e in knn_animals shallownet_animals; do
    python stages/train.py $e 2>&1 | tail -1
    python stages/evaluate.py $e 2>&1 | tail -1
  done
  echo "== $side done $(date +%T)"
done
