"""The HTML pages of the reports, kept as Jinja2 templates (templates/) and escaped by Jinja2:
notes, metric names and ids come from files anyone can edit."""

from __future__ import annotations

import base64
from functools import cache
from typing import Any

import jinja2

from dl4cv.report.verdicts import slug


def render(template: str, **context: Any) -> str:
    return _environment().get_template(template).render(**context) + "\n"


def verdict_css(verdict: str) -> str:
    """`not comparable (quick profile)` -> `v-not-comparable-quick-profile`."""
    return "v-" + slug(verdict).replace("_", "-")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("dl4cv.report"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a name missing from the context is an error
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["base64"] = lambda data: base64.b64encode(data).decode("ascii")
    env.filters["css"] = verdict_css
    return env
