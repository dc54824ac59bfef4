"""The architecture as tests: which layer may import which, and no import cycle among the project's modules.

Layers, bottom to top: ``backbone`` (the network, no task), ``tasks.common`` (what every task shares),
``tasks.<task>`` (one task each), ``tasks.registry`` (the list of tasks, for the tools only) and ``tools``
(command-line shells). Every import counts, including those inside functions: an upward import in a function
hides a cycle rather than removing it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backbone", "tasks")  # scanned recursively
SCRIPT_DIRS = ("tools",)  # scripts, one level, named tools.<stem>
PROJECT_TOP_LEVEL = (*PACKAGES, *SCRIPT_DIRS)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


@dataclass(frozen=True)
class Import:
    """One import statement of ``importer``, resolved to the dotted name of the module it loads."""

    importer: str
    path: str
    line: int
    statement: str
    target: str
    type_checking_only: bool = False

    def __str__(self) -> str:
        return f"{self.importer} ({self.path}:{self.line}): {self.statement}"


# ---------------------------------------------------------------------------------------------------------------
# The checker: module discovery, import resolution, the rules and cycle search. Tested on fake trees below.


def find_modules(root: Path) -> dict[str, Module]:
    """Every module of the packages and every script of the script folders under ``root``, by dotted name."""
    modules: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            modules[name] = Module(name, path, is_package)
    for folder in SCRIPT_DIRS:
        for path in sorted((root / folder).glob("*.py")):
            name = f"{folder}.{path.stem}"
            modules[name] = Module(name, path, path.stem == "__init__")
    return modules


def _is_type_checking_guard(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import node anywhere in ``tree`` (functions, classes, try blocks included), with whether it sits
    in the body of an ``if TYPE_CHECKING:``."""
    stack: list[tuple[ast.AST, bool]] = [(tree, False)]
    while stack:
        node, guarded = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, guarded
            continue
        if isinstance(node, ast.If) and _is_type_checking_guard(node.test):
            stack.extend((child, True) for child in node.body)
            stack.extend((child, guarded) for child in node.orelse)
            continue
        stack.extend((child, guarded) for child in ast.iter_child_nodes(node))


def _package_of(module: Module) -> str:
    return module.name if module.is_package else module.name.rpartition(".")[0]


def _resolve_from(module: Module, node: ast.ImportFrom, modules: Mapping[str, Module]) -> list[str]:
    """Modules loaded by ``from base import a, b``: ``base.a`` where that is a module, else ``base`` itself."""
    base = node.module or ""
    if node.level:
        package = _package_of(module).split(".")
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    targets = []
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        targets.append(submodule if alias.name != "*" and submodule in modules else base)
    return list(dict.fromkeys(targets))


def read_imports(modules: Mapping[str, Module], root: Path) -> list[Import]:
    """Every import of a project module (``backbone``, ``tasks``, ``tools``) made by any module in ``modules``."""
    imports = []
    for module in modules.values():
        tree = ast.parse(module.path.read_text(), filename=str(module.path))
        for node, guarded in _import_nodes(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                targets = _resolve_from(module, node, modules)
            for target in targets:
                if target.split(".")[0] in PROJECT_TOP_LEVEL:
                    path = module.path.relative_to(root).as_posix()
                    imports.append(
                        Import(module.name, path, node.lineno, ast.unparse(node), target, type_checking_only=guarded)
                    )
    return sorted(imports, key=lambda i: (i.path, i.line, i.target))


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def backbone_upward_imports(imports: Iterable[Import]) -> list[Import]:
    """Imports of ``tasks`` or ``tools`` made by ``backbone``, which knows no task."""
    return [
        i
        for i in imports
        if _within(i.importer, "backbone") and (_within(i.target, "tasks") or _within(i.target, "tools"))
    ]


def common_task_imports(imports: Iterable[Import]) -> list[Import]:
    """Imports of a particular task (any ``tasks.<x>`` but ``tasks.common``), of ``tasks.registry`` or of ``tools``
    made by ``tasks.common``, which every task builds on."""
    return [
        i
        for i in imports
        if _within(i.importer, "tasks.common")
        and (
            (_within(i.target, "tasks") and i.target != "tasks" and not _within(i.target, "tasks.common"))
            or _within(i.target, "tools")
        )
    ]


def task_packages(modules: Mapping[str, Module]) -> list[str]:
    """``tasks.<x>`` for every package folder under tasks/ but ``tasks.common``."""
    return sorted(
        m.name
        for m in modules.values()
        if m.is_package and m.name.count(".") == 1 and m.name.startswith("tasks.") and m.name != "tasks.common"
    )


def foreign_task_imports(imports: Iterable[Import], modules: Mapping[str, Module]) -> list[Import]:
    """Project imports of a task package from anywhere but itself, ``tasks.common`` and ``backbone``."""
    offending = []
    for package in task_packages(modules):
        allowed = (package, "tasks.common", "backbone")
        offending += [
            i for i in imports if _within(i.importer, package) and not any(_within(i.target, a) for a in allowed)
        ]
    return offending


def registry_imports(imports: Iterable[Import]) -> list[Import]:
    """Imports of ``tasks.registry`` (which imports every task, for the tools) from ``backbone`` or ``tasks``."""
    return [
        i
        for i in imports
        if _within(i.target, "tasks.registry")
        and not _within(i.importer, "tasks.registry")
        and (_within(i.importer, "backbone") or _within(i.importer, "tasks"))
    ]


def import_cycles(imports: Iterable[Import], modules: Mapping[str, Module]) -> list[list[Import]]:
    """One cycle (as its chain of imports) per strongly connected group of modules that import each other.

    An edge goes from a module to the module its import loads: the submodule for ``from pkg import sub``, the
    package's ``__init__`` for ``import pkg`` or ``from pkg import name``. Imports under ``if TYPE_CHECKING:`` are
    left out: they never run, so they cannot make an import-time cycle (that is what the guard is for).
    """
    edges: dict[str, dict[str, Import]] = {}
    for i in imports:
        if i.target in modules and not i.type_checking_only:
            edges.setdefault(i.importer, {}).setdefault(i.target, i)
    cycles = []
    for group in _strongly_connected(edges):
        start = min(group)
        if len(group) > 1 or start in edges.get(start, {}):
            cycles.append(_cycle_through(start, group, edges))
    return sorted(cycles, key=lambda chain: chain[0].importer)


def _strongly_connected(edges: Mapping[str, Mapping[str, Import]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups = []
    nodes = sorted(set(edges) | {t for targets in edges.values() for t in targets})
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.add(member)
                        if member == node:
                            break
                    groups.append(group)
            elif child not in index:
                index[child] = low[child] = len(index)
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(edges.get(child, {})))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])
    return groups


def _cycle_through(start: str, group: set[str], edges: Mapping[str, Mapping[str, Import]]) -> list[Import]:
    """The shortest chain of imports from ``start`` back to itself inside ``group`` (breadth-first)."""
    previous: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target, imp in sorted(edges.get(node, {}).items()):
                if target not in group or target in previous:
                    continue
                previous[target] = imp
                if target == start:
                    chain = [imp]
                    while chain[0].importer != start:
                        chain.insert(0, previous[chain[0].importer])
                    return chain
                following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def describe_cycle(chain: list[Import]) -> str:
    names = " -> ".join([chain[0].importer, *(i.target for i in chain)])
    return names + "\n" + "\n".join(f"      {i}" for i in chain)


def report(title: str, offending: Iterable[Import]) -> str:
    return title + ":\n" + "\n".join(f"  {i}" for i in offending)


# ---------------------------------------------------------------------------------------------------------------
# The real tree.


@pytest.fixture(scope="module")
def project() -> tuple[dict[str, Module], list[Import]]:
    modules = find_modules(ROOT)
    return modules, read_imports(modules, ROOT)


def test_the_scan_sees_the_project() -> None:
    modules = find_modules(ROOT)
    assert {"backbone", "backbone.mobilenet_v1", "tasks.common", "tasks.detection", "tools.train"} <= set(modules)


def test_backbone_imports_neither_tasks_nor_tools(project: tuple[dict[str, Module], list[Import]]) -> None:
    offending = backbone_upward_imports(project[1])
    assert not offending, report("backbone imports an upper layer", offending)


def test_tasks_common_imports_no_particular_task_nor_the_registry(
    project: tuple[dict[str, Module], list[Import]],
) -> None:
    offending = common_task_imports(project[1])
    assert not offending, report("tasks.common imports a task, tasks.registry or tools", offending)


def test_a_task_imports_only_itself_tasks_common_and_backbone(
    project: tuple[dict[str, Module], list[Import]],
) -> None:
    offending = foreign_task_imports(project[1], project[0])
    assert not offending, report("a task package imports outside itself, tasks.common and backbone", offending)


def test_tasks_registry_is_imported_by_no_module_of_backbone_or_tasks(
    project: tuple[dict[str, Module], list[Import]],
) -> None:
    offending = registry_imports(project[1])
    assert not offending, report("tasks.registry is for the tools only", offending)


def test_no_import_cycle_among_project_modules(project: tuple[dict[str, Module], list[Import]]) -> None:
    cycles = import_cycles(project[1], project[0])
    assert not cycles, "import cycles:\n" + "\n".join(f"  {describe_cycle(chain)}" for chain in cycles)


# ---------------------------------------------------------------------------------------------------------------
# The checker on fake trees: each rule catches its violation, and a clean tree passes every rule.

CLEAN_TREE = {
    "backbone/__init__.py": "from backbone.net import Net\n",
    "backbone/net.py": "import torch\n",
    "tasks/__init__.py": "",
    "tasks/common/__init__.py": "",
    "tasks/common/errors.py": "",
    "tasks/common/task.py": "from tasks.common.errors import *\nfrom . import errors\n",
    "tasks/alpha/__init__.py": "",
    "tasks/alpha/model.py": "from backbone import Net\nfrom tasks.common.task import Task\n",
    "tasks/alpha/module.py": "from .model import build\n\n\ndef f():\n    from tasks.alpha import model\n",
    "tasks/beta/__init__.py": "",
    "tasks/beta/model.py": "from ..common import errors\n",
    "tasks/registry.py": "import tasks.alpha.model\nfrom tasks.beta import model\n",
    "tools/train.py": "from tasks.registry import TASKS\nfrom tasks.common.task import Task\n",
}


def scan(root: Path, changed: Mapping[str, str] | None = None) -> tuple[dict[str, Module], list[Import]]:
    """Write ``CLEAN_TREE`` under ``root`` with the ``changed`` files ({relative path: source}) added or replaced."""
    for relative, text in {**CLEAN_TREE, **(changed or {})}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    modules = find_modules(root)
    return modules, read_imports(modules, root)


def all_violations(modules: dict[str, Module], imports: list[Import]) -> list[object]:
    return [
        *backbone_upward_imports(imports),
        *common_task_imports(imports),
        *foreign_task_imports(imports, modules),
        *registry_imports(imports),
        *import_cycles(imports, modules),
    ]


def test_checker_passes_a_clean_tree(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path)
    assert all_violations(modules, imports) == []


def test_checker_resolves_relative_and_from_package_imports_to_modules(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path)
    targets = {(i.importer, i.target) for i in imports}
    assert ("tasks.alpha.module", "tasks.alpha.model") in targets  # from .model import build
    assert ("tasks.beta.model", "tasks.common.errors") in targets  # from ..common import errors
    assert ("tasks.common.task", "tasks.common.errors") in targets  # from . import errors
    assert ("tasks.alpha.model", "backbone") in targets  # from backbone import Net: the package's __init__


def test_checker_flags_backbone_importing_tasks_inside_a_function(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"backbone/cost.py": "def f():\n    from tasks.common.task import X\n"})
    offending = backbone_upward_imports(imports)
    assert [(i.importer, i.line, i.statement) for i in offending] == [
        ("backbone.cost", 2, "from tasks.common.task import X")
    ]


def test_checker_flags_backbone_importing_tools(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"backbone/cost.py": "import tools.train\n"})
    assert [i.importer for i in backbone_upward_imports(imports)] == ["backbone.cost"]


def test_checker_flags_tasks_common_importing_a_task_relatively(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"tasks/common/build.py": "from ..alpha import model\n"})
    offending = common_task_imports(imports)
    assert [(i.importer, i.target) for i in offending] == [("tasks.common.build", "tasks.alpha.model")]


def test_checker_flags_tasks_common_importing_the_registry(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"tasks/common/build.py": "from tasks import registry\n"})
    assert [(i.importer, i.target) for i in common_task_imports(imports)] == [("tasks.common.build", "tasks.registry")]


def test_checker_flags_a_task_importing_another_task(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"tasks/beta/module.py": "from tasks.alpha.model import build\n"})
    offending = foreign_task_imports(imports, modules)
    assert [(i.importer, i.target) for i in offending] == [("tasks.beta.module", "tasks.alpha.model")]


def test_checker_flags_a_task_importing_tools(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"tasks/beta/module.py": "import tools.train\n"})
    assert [i.target for i in foreign_task_imports(imports, modules)] == ["tools.train"]


def test_checker_flags_a_type_checking_import_of_another_task(tmp_path: Path) -> None:
    source = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from tasks.alpha.model import Model\n"
    modules, imports = scan(tmp_path, {"tasks/beta/module.py": source})
    assert [(i.target, i.line) for i in foreign_task_imports(imports, modules)] == [("tasks.alpha.model", 4)]


def test_checker_flags_a_task_importing_the_registry(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"tasks/alpha/module.py": "from tasks.registry import TASKS\n"})
    assert [i.importer for i in registry_imports(imports)] == ["tasks.alpha.module"]
    assert [i.importer for i in foreign_task_imports(imports, modules)] == ["tasks.alpha.module"]


def test_checker_flags_backbone_importing_the_registry(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"backbone/cost.py": "import tasks.registry\n"})
    assert [i.importer for i in registry_imports(imports)] == ["backbone.cost"]


def test_checker_reports_a_cycle_through_a_function_level_import_as_its_chain(tmp_path: Path) -> None:
    modules, imports = scan(
        tmp_path,
        {
            "tasks/alpha/task.py": "from tasks.alpha.module import M\n",
            "tasks/alpha/module.py": "def f():\n    from tasks.alpha import task\n",
        },
    )
    cycles = import_cycles(imports, modules)
    assert [describe_cycle(chain).splitlines()[0] for chain in cycles] == [
        "tasks.alpha.module -> tasks.alpha.task -> tasks.alpha.module"
    ]


def test_checker_counts_importing_a_package_as_importing_its_init(tmp_path: Path) -> None:
    modules, imports = scan(tmp_path, {"backbone/net.py": "import backbone\n"})
    cycles = import_cycles(imports, modules)
    assert [describe_cycle(chain).splitlines()[0] for chain in cycles] == ["backbone -> backbone.net -> backbone"]


def test_checker_ignores_type_checking_imports_when_looking_for_cycles(tmp_path: Path) -> None:
    source = "import typing\n\nif typing.TYPE_CHECKING:\n    from backbone import Net\n"
    modules, imports = scan(tmp_path, {"backbone/net.py": source})
    assert [i.target for i in imports if i.importer == "backbone.net"] == ["backbone"]
    assert import_cycles(imports, modules) == []


def test_checker_finds_one_cycle_per_group_of_modules_importing_each_other(tmp_path: Path) -> None:
    modules, imports = scan(
        tmp_path,
        {
            "tasks/common/a.py": "import tasks.common.b\n",
            "tasks/common/b.py": "import tasks.common.c\n",
            "tasks/common/c.py": "import tasks.common.a\nimport tasks.common.b\n",
            "tasks/beta/x.py": "from tasks.beta import x\n",
        },
    )
    cycles = [describe_cycle(chain).splitlines()[0] for chain in import_cycles(imports, modules)]
    assert cycles == [
        "tasks.beta.x -> tasks.beta.x",
        "tasks.common.a -> tasks.common.b -> tasks.common.c -> tasks.common.a",
    ]
