"""The book's figures (`book/figures.yaml`): for each experiment, the numbers the book reports
and the rule that decides whether ours match them. Read by the report and the seeds' spread."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from dl4cv.config import ConfigError, build

FIGURES_FILE = Path("book") / "figures.yaml"


@dataclass(frozen=True)
class Comparison:
    """One of the book's numbers and the rule that decides whether ours matches it."""

    metric: str  # dotted path into metrics.json, e.g. per_class.panda.precision
    compare: Literal["at_least", "at_most", "equal", "info"]
    book: float | str | None = None  # null: an `info` row that only shows our number
    tolerance: float = 0.0
    note: str = ""

    def __post_init__(self) -> None:
        if not all(self.metric.split(".")):
            raise ConfigError(
                f"metric: expected a dotted path such as per_class.panda.precision, "
                f"got {self.metric!r}"
            )
        if self.tolerance < 0:
            raise ConfigError(f"tolerance: expected a number >= 0, got {self.tolerance}")
        if self.compare != "info" and self.book is None:
            raise ConfigError(
                f"book: compare: {self.compare} needs the book's value "
                "(use compare: info to only show ours)"
            )
        if self.compare in ("at_least", "at_most") and isinstance(self.book, str):
            raise ConfigError(
                f"book: compare: {self.compare} needs a number, got {self.book!r} (str)"
            )


@dataclass(frozen=True)
class BookEntry:
    """One pipeline experiment as the book reports it."""

    id: str = field(metadata={"from_key": True})
    book_id: str  # the book's experiment; several pipeline ids may share one
    chapter: int
    title: str
    book_figure: str  # what the book shows, in words
    data_note: str | None = None  # where our copy of the data differs from the book's
    comparisons: tuple[Comparison, ...] = ()


@dataclass(frozen=True)
class Figures:
    experiments: dict[str, BookEntry]


def load_figures(path: str | Path = FIGURES_FILE) -> dict[str, BookEntry]:
    """The figures file, validated: a bad entry fails naming the file, the id and the key."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (run from the repository root)") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: not readable as YAML: {exc}") from None
    return build(Figures, raw, str(path)).experiments
