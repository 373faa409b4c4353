"""Which stages a `dvc repro` would run, and after which: read from DVC itself; and how they
are cut into tasks.

A stage is in the plan when `dvc status` finds it changed, or when a stage it depends on is in
the plan (that one's new outputs may change it). Every planned stage still goes through
`dvc repro --single-item`, which skips it when it turns out unchanged, exactly as a serial
`dvc repro` does; a stage outside the plan is up to date now and stays so.

A task is one `dvc repro --single-item` of one or more stages. Each start of DVC costs about
a second of a core (its imports, reading dvc.yaml, dvc.lock and params.yaml) and takes its
repository lock twice: a short stage that continues a chain without delaying another stage
(evaluate after train) runs in the task of the stages it needs, after them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

SHORT_SECONDS = 5.0  # a stage this quick joins the task of the stages it needs


class PlanError(Exception):
    """dvc.yaml or a target DVC cannot resolve: one line for the user."""


@dataclass(frozen=True)
class Plan:
    """Stages to run in an order DVC would run them, cut into tasks: each task, named by its
    first stage, runs its stages in order once the tasks it needs have succeeded."""

    order: tuple[str, ...]
    tasks: dict[str, tuple[str, ...]]
    needs: dict[str, tuple[str, ...]]  # task -> the tasks it needs
    up_to_date: int  # stages of the pipeline left out: nothing to do

    def __len__(self) -> int:
        return len(self.order)


def make_plan(
    root: Path, targets: Sequence[str] = (), seconds: Mapping[str, float] | None = None
) -> Plan:
    """The plan for `dvc repro [targets]` in the repository at `root`; `seconds`: how long
    stages took before (stages not in it are guessed, `guess_seconds`)."""
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
    order = [names[s] for s in reversed(list(nx.topological_sort(graph))) if s in planned]
    needs = {
        names[s]: sorted(names[d] for d in graph.successors(s) if d in planned)
        for s in graph
        if s in planned
    }
    tasks, task_needs = cut_tasks(order, needs, seconds or {})
    return Plan(tuple(order), tasks, task_needs, len(graph) - len(order))


def cut_tasks(
    order: Sequence[str], needs: Mapping[str, Sequence[str]], seconds: Mapping[str, float]
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Stages (in dependency order) into tasks. A short stage joins the task of the stages it
    needs when it continues that task's chain without delaying anyone: it needs the task's
    last stage, and every other stage that needs that one needs it too (evaluate after train,
    which the report needs both of). Any other stage starts a task. Returns each task's
    stages and the tasks each needs."""
    dependents: dict[str, set[str]] = {stage: set() for stage in order}
    for stage in order:
        for need in needs[stage]:
            dependents[need].add(stage)
    task_of: dict[str, str] = {}
    tasks: dict[str, list[str]] = {}
    for stage in order:
        owners = {task_of[need] for need in needs[stage]}
        task = owners.pop() if len(owners) == 1 else None
        last = tasks[task][-1] if task else None
        joins = (
            task is not None
            and seconds.get(stage, guess_seconds(stage)) <= SHORT_SECONDS
            and last in needs[stage]
            and all(stage in needs[other] for other in dependents[last] - {stage})
        )
        if not joins:
            task = stage
            tasks[task] = []
        tasks[task].append(stage)
        task_of[stage] = task
    task_needs = {
        task: tuple(sorted({task_of[n] for s in stages for n in needs[s]} - {task}))
        for task, stages in tasks.items()
    }
    return {task: tuple(stages) for task, stages in tasks.items()}, task_needs


def critical_paths(plan: Plan, seconds: Mapping[str, float]) -> dict[str, float]:
    """For each task, the longest chain of work that starts with it: its stages' expected
    seconds plus the longest such chain of a task that needs it. Started longest first, the
    long trainings do not end up alone at the end of the run."""
    dependents: dict[str, list[str]] = {task: [] for task in plan.tasks}
    for task, needs in plan.needs.items():
        for need in needs:
            dependents[need].append(task)
    chain: dict[str, float] = {}
    for task in reversed(list(plan.tasks)):  # tasks are in dependency order
        after = max((chain[d] for d in dependents[task]), default=0.0)
        own = sum(seconds.get(s, guess_seconds(s)) for s in plan.tasks[task])
        chain[task] = own + after
    return chain


def guess_seconds(stage: str) -> float:
    """A stage never timed here: trainings and exercises take long, the rest a second."""
    return 30.0 if stage.startswith(("train@", "exercise")) else 1.0
