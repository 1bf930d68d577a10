"""Write ``constraints.txt``: one ``name==version`` pin per direct dependency, from a working venv.

``make install`` and both Docker images install with ``-c constraints.txt``, so a fresh machine, the
CPU image and the CUDA image get the versions the test suite last passed with. The pins cover every
direct dependency of the project (``pyproject.toml``: dependencies and every extra) and of the SDK
(``clients/python/pyproject.toml``); transitive dependencies are left to pip.

Run it with the venv whose versions you want to pin, after the tests passed there::

    .venv/bin/python deploy/pin_constraints.py            # rewrite constraints.txt
    .venv/bin/python deploy/pin_constraints.py --check    # exit 1 if constraints.txt is out of date

Versions come from the installed distributions, without their local label (``torch 2.13.0+cpu`` is
pinned as ``torch==2.13.0``, which pip matches with the CPU and the CUDA build alike). A dependency
that is not installed here is pinned from its own ``==`` requirement in a pyproject (``vllm==0.32.0``
of the ``cuda`` extra, on a CPU machine); one with neither is an error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import sys
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "constraints.txt"
PYPROJECTS = (REPO / "pyproject.toml", REPO / "clients" / "python" / "pyproject.toml")

HEADER = """\
# Pins of every direct dependency of the server and the SDK (all extras), shared by `make install`
# and both Docker images (pip install -c constraints.txt). Generated from a venv where the tests pass:
#   .venv/bin/python deploy/pin_constraints.py        (--check: fail if out of date)
"""


def direct_requirements(pyprojects: tuple[Path, ...] = PYPROJECTS) -> dict[str, list[Requirement]]:
    """Every requirement of the given pyprojects (dependencies and all extras), by canonical name.

    The projects themselves (one may depend on the other) are left out.
    """
    own: set[str] = set()
    found: dict[str, list[Requirement]] = {}
    for path in pyprojects:
        project = tomllib.loads(path.read_text())["project"]
        own.add(canonicalize_name(project["name"]))
        specs = list(project.get("dependencies", []))
        for extra in project.get("optional-dependencies", {}).values():
            specs.extend(extra)
        for spec in specs:
            req = Requirement(spec)
            found.setdefault(canonicalize_name(req.name), []).append(req)
    return {name: reqs for name, reqs in sorted(found.items()) if name not in own}


def _pinned_in_pyproject(reqs: list[Requirement]) -> str | None:
    for req in reqs:
        for spec in req.specifier:
            if spec.operator == "==" and "*" not in spec.version:
                return spec.version
    return None


def pins(requirements: dict[str, list[Requirement]]) -> dict[str, str]:
    """``{name: version}`` for each requirement: the installed public version, else a pyproject ``==``.

    Raises:
        SystemExit: a requirement is neither installed nor pinned with ``==`` in a pyproject.
    """
    out: dict[str, str] = {}
    missing = []
    for name, reqs in requirements.items():
        try:
            out[name] = Version(importlib.metadata.version(name)).public
        except importlib.metadata.PackageNotFoundError:
            pinned = _pinned_in_pyproject(reqs)
            if pinned is None:
                missing.append(name)
            else:
                out[name] = pinned
    if missing:
        raise SystemExit(f"not installed in {sys.prefix} and not pinned in a pyproject: {', '.join(missing)}")
    return out


def render(versions: dict[str, str]) -> str:
    """The text of ``constraints.txt``."""
    return HEADER + "".join(f"{name}=={version}\n" for name, version in sorted(versions.items()))


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) ``constraints.txt``; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if constraints.txt is out of date")
    parser.add_argument(
        "--out", type=Path, default=CONSTRAINTS, help="output file (default: constraints.txt)"
    )
    args = parser.parse_args(argv)
    text = render(pins(direct_requirements()))
    if args.check:
        current = args.out.read_text() if args.out.exists() else ""
        if current != text:
            sys.stderr.write(f"{args.out} is out of date; run: .venv/bin/python deploy/pin_constraints.py\n")
            return 1
        return 0
    args.out.write_text(text)
    print(f"wrote {args.out} ({text.count('==')} pins)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
