"""Build a folder of wheels that installs dl4cv on an offline Linux x86-64 machine.

    python scripts/wheelhouse.py --python 3.12 --have have.txt --out wheelhouse

The requirement tree is read from this venv's installed metadata (so the versions are the ones
constraints.txt pinned and the tests ran with), its markers evaluated for the target Python,
and cut where the target already has a package in a version it accepts (`--have`: what
`pip list --format=freeze` prints there, or one name per line) or where it is not wanted
(`--skip`, default TensorFlow: a GPU server trains with KERAS_BACKEND=jax). Packages PyPI has
no wheel for (antlr4-python3-runtime) are built here, and must be pure Python. dl4cv itself is
not in it: install the clone editable, so that edits to src/ take effect.
"""

from __future__ import annotations

import argparse
import importlib.metadata as metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

TENSORFLOW = ("tensorflow", "tensorflow-cpu")
NO_WHEEL = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-]+)")


def read_have(path: Path) -> dict[str, str | None]:
    """{name: version or None} from `pip list --format=freeze` / `pip freeze` output or a
    plain list of names."""
    have: dict[str, str | None] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            have[canonicalize_name(name.strip())] = version.strip() or None
    return have


def closure(
    root: str, python: str, cut: set[str]
) -> tuple[dict[str, str | None], dict[str, list[SpecifierSet]]]:
    """{name: installed version} of `root`'s runtime requirements for Linux x86-64 and Python
    `python`, not descending into names in `cut` (version None: not installed here), and the
    version ranges each name is asked for."""
    env = default_environment() | {
        "python_version": python,
        "python_full_version": f"{python}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    found: dict[str, str | None] = {}
    asked: dict[str, list[SpecifierSet]] = {}
    extras: dict[str, set[str]] = {}  # the extras each name is asked with (dask[distributed])
    todo = [(canonicalize_name(root), frozenset[str]())]
    while todo:
        name, wanted = todo.pop()
        if name in cut or (name in found and wanted <= extras.get(name, set())):
            continue
        extras.setdefault(name, set()).update(wanted)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            found[name] = None
            continue
        found[name] = dist.version
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or any(
                req.marker.evaluate(env | {"extra": extra}) for extra in ("", *wanted)
            ):
                todo.append((canonicalize_name(req.name), frozenset(req.extras)))
                asked.setdefault(canonicalize_name(req.name), []).append(req.specifier)
    return found, asked


def usable(have: dict[str, str | None], asked: dict[str, list[SpecifierSet]]) -> set[str]:
    """What the target has in a version every requirement accepts (or in an unknown version):
    OpenCV 5 on the target, say, lacks the face detector dl4cv needs (<5), so 4.x is packed."""
    return {
        name
        for name, version in have.items()
        if version is None
        or all(spec.contains(version, prereleases=True) for spec in asked.get(name, []))
    }


def platforms(glibc: int) -> list[str]:
    tags = [f"manylinux_2_{minor}_x86_64" for minor in range(glibc, 4, -1)]
    return [*tags, "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]


def pip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)


def download(pins: list[str], out: Path, python: str, glibc: int) -> None:
    """Wheels for the target; a pin with none is built here as a pure-Python wheel."""
    target = ["--python-version", python, "--implementation", "cp", "--only-binary=:all:"]
    for tag in platforms(glibc):
        target += ["--platform", tag]
    pending = list(pins)
    while pending:
        done = pip("download", "--no-deps", "--quiet", "-d", str(out), *target, *pending)
        if done.returncode == 0:
            return
        missing = NO_WHEEL.search(done.stderr)
        if not missing:
            sys.exit(f"wheelhouse: pip download failed:\n{done.stderr.strip()}")
        name = canonicalize_name(re.split(r"[=<>~!]", missing.group(1), maxsplit=1)[0])
        pin = next(p for p in pending if canonicalize_name(p.split("==")[0]) == name)
        build = pip("wheel", "--no-deps", "--quiet", "-w", str(out), pin)
        built = sorted(out.glob(f"{name.replace('-', '_')}-*.whl"), key=lambda p: p.name.lower())
        if build.returncode or not built or not built[-1].name.endswith("-py3-none-any.whl"):
            sys.exit(f"wheelhouse: {pin} has no wheel for Linux x86-64 and is not pure Python")
        pending.remove(pin)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="target Python, e.g. 3.12")
    parser.add_argument("--out", type=Path, required=True, help="folder to write the wheels to")
    parser.add_argument("--have", type=Path, help="what the target has: pip list --format=freeze")
    parser.add_argument("--skip", nargs="*", default=list(TENSORFLOW), help="names to leave out")
    parser.add_argument("--glibc", type=int, default=35, help="the target's glibc 2.N: N")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python):
        sys.exit(f"wheelhouse: --python: expected a version like 3.12, got {args.python!r}")
    if args.have and not args.have.is_file():
        sys.exit(f"wheelhouse: --have {args.have}: no such file")
    have = read_have(args.have) if args.have else {}
    skip = {canonicalize_name(n) for n in args.skip}
    _, asked = closure("dl4cv", args.python, skip)
    kept = usable(have, asked)
    wanted, _ = closure("dl4cv", args.python, kept | skip)
    del wanted["dl4cv"]
    args.out.mkdir(parents=True, exist_ok=True)
    pins = sorted(f"{name}=={version}" if version else name for name, version in wanted.items())
    download(pins, args.out, args.python, args.glibc)
    wheels = sorted(args.out.glob("*.whl"))
    size = sum(p.stat().st_size for p in wheels) / 2**20
    print(f"{len(wheels)} wheels, {size:.1f} MiB in {args.out} (left out: {len(kept)} the target")
    print(f"has, and {' '.join(args.skip) or 'nothing else'}). Install there with")
    print(f"  python3 -m pip install --no-index --no-deps {args.out}/*.whl")
    print("then dl4cv itself, from the clone: pip install --no-deps --no-build-isolation -e .")


if __name__ == "__main__":
    main()
