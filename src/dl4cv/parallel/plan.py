"""Which stages a `dvc repro` would run, and after which: read from DVC itself.

A stage is in the plan when `dvc status` finds it changed, or when a stage it depends on is in
the plan (that one's new outputs may change it). Every planned stage still goes through
`dvc repro --single-item`, which skips it when it turns out unchanged, exactly as a serial
`dvc repro` does; a stage outside the plan is up to date now and stays so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class PlanError(Exception):
    """dvc.yaml or a target DVC cannot resolve: one line for the user."""


@dataclass(frozen=True)
class Plan:
    """Stages to run, in an order DVC would run them, each with the planned stages it needs."""

    order: tuple[str, ...]
    needs: dict[str, tuple[str, ...]]
    up_to_date: int  # stages of the pipeline left out: nothing to do

    def __len__(self) -> int:
        return len(self.order)


def make_plan(root: Path, targets: Sequence[str] = ()) -> Plan:
    """The plan for `dvc repro [targets]` in the repository at `root`."""
    import networkx as nx
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            graph = repo.index.graph  # an edge stage -> a stage it depends on
            names = {stage: stage.addressing for stage in graph}
            if targets:
                by_name = {name: stage for stage, name in names.items()}
                unknown = [t for t in targets if t not in by_name]
                if unknown:
                    raise PlanError(f"{unknown[0]}: no such stage in dvc.yaml (dvc stage list)")
                wanted = set()
                for target in targets:
                    wanted |= {by_name[target], *nx.descendants(graph, by_name[target])}
                graph = graph.subgraph(wanted)
            changed = set(repo.status())
    except DvcException as exc:
        raise PlanError(f"dvc: {exc}") from exc
    planned = {s for s in graph if names[s] in changed}
    for stage in list(planned):
        planned |= set(nx.ancestors(graph, stage))  # the stages that depend on it
    order = [s for s in reversed(list(nx.topological_sort(graph))) if s in planned]
    needs = {
        names[s]: tuple(sorted(names[d] for d in graph.successors(s) if d in planned))
        for s in order
    }
    return Plan(tuple(names[s] for s in order), needs, len(graph) - len(order))
