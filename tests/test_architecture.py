"""The layout keeps its promises: imports only go down (import-linter's contracts in
pyproject.toml), no circle, small modules, few top-level modules, a README map that names
only what exists, and no pointer to documents a user of the project does not have."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "worker"
MIGRATIONS = WORKER / "db" / "migrations" / "versions"


def test_import_linter_contracts_are_kept() -> None:
    """Layers from the command line down to the rules and support, no circle between the
    modules of a package, mail and webhooks independent, pure rules."""
    lint = Path(sys.executable).parent / "lint-imports"
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True,
                          text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Contracts: (\d+) kept, 0 broken", done.stdout)


def test_the_contracts_name_every_package_of_the_worker() -> None:
    """A new package must take its place in the layers (or the check says nothing of it)."""
    text = (ROOT / "pyproject.toml").read_text()
    packages = {p.name for p in WORKER.iterdir() if (p / "__init__.py").exists()}
    assert {name for name in packages if f"worker.{name}" not in text} == set()


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix()
                                        for p in WORKER.rglob("*.py")
                                        if MIGRATIONS not in p.parents))
def test_no_module_is_over_400_lines(path: str) -> None:
    assert len((ROOT / path).read_text().splitlines()) <= 400


def test_at_most_eight_modules_sit_directly_in_worker() -> None:
    assert len(list(WORKER.glob("*.py"))) <= 8


def test_every_package_says_what_it_holds_and_may_import() -> None:
    for init in WORKER.rglob("__init__.py"):
        if MIGRATIONS in init.parents or init.parent == WORKER / "db" / "migrations":
            continue
        text = init.read_text()
        assert text.startswith('"""'), f"{init.relative_to(ROOT)} has no docstring"
        where = init.relative_to(ROOT)
        assert re.search(r"(?i)\bimports?\b", text), f"{where} says nothing of imports"


def test_the_readme_design_map_names_only_paths_that_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("## Design", 1)[1].split("```", 2)[1]
    named = [line.split()[0] for line in block.splitlines() if line and not line[0].isspace()]
    assert len(named) > 10
    for name in named:
        assert (ROOT / name).exists(), f"README's map names {name}, which does not exist"
    for path in re.findall(r"\b([a-z_]+\.py)\b", block):
        assert list(ROOT.rglob(path)), f"README's map names {path}, which does not exist"


def test_no_file_points_to_documents_the_project_does_not_ship() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    pattern = re.compile("|".join(["DOMAIN" + r"\.md", "CONTRACT" + r"\.md", r"\.\./shared"]))
    named = [f for f in tracked
             if (ROOT / f).is_file() and pattern.search((ROOT / f).read_text(errors="ignore"))]
    assert named == []
