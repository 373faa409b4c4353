"""The book's figures (`book/figures.yaml`): for each experiment, the numbers the book reports
and the rule that decides whether ours match them. Read by the report and the seeds' spread."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import Field

from dl4cv.config import ConfigError, build
from dl4cv.config.base import KEY, Chapter, Number, keyed, spec

FIGURES_FILE = Path("book") / "figures.yaml"


@spec
class Comparison:
    """One of the book's numbers and the rule that decides whether ours matches it."""

    metric: str  # dotted path into metrics.json, e.g. per_class.panda.precision
    compare: Literal["at_least", "at_most", "equal", "info"]
    book: Number | str | None = None  # null: an `info` row that only shows our number
    tolerance: Number = Field(0.0, ge=0)
    note: str = ""

    def __post_init__(self) -> None:
        if not all(self.metric.split(".")):
            raise ConfigError(
                f"metric: expected a dotted path such as per_class.panda.precision, "
                f"got {self.metric!r}"
            )
        if self.compare != "info" and self.book is None:
            raise ConfigError(
                f"book: compare: {self.compare} needs the book's value "
                "(use compare: info to only show ours)"
            )
        if self.compare in ("at_least", "at_most") and isinstance(self.book, str):
            raise ConfigError(
                f"book: compare: {self.compare} needs a number, got {self.book!r} (str)"
            )


@spec
class BookEntry:
    """One pipeline experiment as the book reports it."""

    id: Annotated[str, KEY]
    book_id: str  # the book's experiment; several pipeline ids may share one
    chapter: Chapter
    title: str
    book_figure: str  # what the book shows, in words
    data_note: str | None = None  # where our copy of the data differs from the book's
    comparisons: tuple[Comparison, ...] = ()


@spec
class Figures:
    experiments: keyed(BookEntry)


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
