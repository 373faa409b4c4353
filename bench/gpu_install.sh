#!/usr/bin/env bash
# On the GPU machine (offline): join the parts of a tar of `mirror/` (the datasets) and
# `wheelhouse/` (make wheelhouse), install the wheels and this checkout into the machine's
# Python, and copy the checkout to DEST, where the benchmarks then run undisturbed.
#   bash bench/gpu_install.sh PARTS_DIR DEST     (PARTS_DIR holds all.part.00, .01, ...)
# Leaves DEST/mirror (use as DL4CV_MIRROR) and `python` on the PATH as a wrapper of python3.
set -euo pipefail
parts=$1 dest=$2
mkdir -p "$dest"
cat "$parts"/all.part.* | tar xf - -C "$dest"
python3 -m pip install -q --no-index --no-deps --no-compile "$dest"/wheelhouse/*.whl
mkdir -p "$dest/repo"
tar cf - --exclude=./.gpu . | tar xf - -C "$dest/repo"  # the checkout, not the parts
cd "$dest/repo"
python3 -m pip install -q --no-index --no-deps --no-build-isolation -e .
# dvc.yaml runs `python`: a wrapper, not a symlink (a symlink outside the venv loses its packages)
printf '#!/bin/sh\nexec %s "$@"\n' "$(python3 -c 'import sys; print(sys.executable)')" \
    > /usr/local/bin/python
chmod +x /usr/local/bin/python
echo "installed: $(python -c 'import dl4cv, dvc, distributed, keras; print(dvc.__version__, distributed.__version__, keras.__version__)')"
