"""params.yaml survives DVC's own writer: `dvc exp run -S` changes the edited line and no other.

DVC rewrites the whole file through ruamel's round-trip dumper, which reflows long lines, drops
`null`s and restyles lists; the file is laid out so that none of that changes a byte.
"""

from __future__ import annotations

import difflib
import shutil
from pathlib import Path

import pytest
import yaml
from dvc.utils.hydra import apply_overrides
from dvc.utils.serialize import load_yaml, modify_yaml

from dl4cv.config import load_params, parse_params
from tests.conftest import REPO

PARAMS = REPO / "params.yaml"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the repository's params.yaml, for DVC to rewrite."""
    return Path(shutil.copyfile(PARAMS, tmp_path / "params.yaml"))


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), n=0, lineterm="")
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


def test_dvc_round_trip_leaves_the_file_byte_identical(copy: Path):
    with modify_yaml(copy):
        pass  # what DVC does to the file around any change
    assert copy.read_bytes() == PARAMS.read_bytes()


def test_a_set_param_changes_exactly_its_own_line(copy: Path):
    # The code path of `dvc exp run -S` (dvc/repo/experiments/queue/base.py: _update_params).
    apply_overrides(copy, ["experiments.lenet_mnist.optimizer.learning_rate=0.015"])

    assert changed_lines(PARAMS.read_text(), copy.read_text()) == [
        "-    optimizer: {name: sgd, learning_rate: 0.01}",
        "+    optimizer: {name: sgd, learning_rate: 0.015}",
    ]
    expected = yaml.safe_load(PARAMS.read_text())
    expected["experiments"]["lenet_mnist"]["optimizer"]["learning_rate"] = 0.015
    assert yaml.safe_load(copy.read_text()) == expected


def test_dl4cv_reads_the_values_dvc_reads():
    """The layout (empty nulls, a |- block, block lists) means the same to PyYAML, which
    dl4cv.config reads it with, and to ruamel, which DVC compares params with."""
    assert load_params(PARAMS) == parse_params(load_yaml(PARAMS), source=str(PARAMS))
