"""The seams between modules: imports run one way, and the stage table is light enough for any caller."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from nlpstd.stages import contract

SRC = Path(__file__).resolve().parents[1] / "src"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names an import statement reaches (`from a import b` reaches `a.b` when that is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:  # relative: resolved against the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph() -> dict[str, set[str]]:
    """nlpstd's modules and the nlpstd modules each imports, at the top or inside a function (a lazy
    import is still a dependency); imports under `if TYPE_CHECKING:` are annotations only and do not count."""
    files = {_module_name(path): path for path in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                       for node in ast.walk(block)}
        graph[module] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in typing_only:
                for name in _imported(node, module, path.name == "__init__.py"):
                    while name and name not in files:
                        name = name.rpartition(".")[0]
                    if name and name != module:
                        graph[module].add(name)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each import cycle once, as the path that closes it (depth-first search for back edges)."""
    found, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                found.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert "nlpstd.stages.contract" in graph and "nlpstd.nonexistent" not in graph
    assert [" -> ".join(cycle) for cycle in cycles(graph)] == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_stage_table_loads_without_torch_mlflow_or_pydantic():
    code = ("import sys; import nlpstd.stages.contract; "
            "print(sorted(m for m in ('torch', 'mlflow', 'pydantic', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_file_helpers_load_without_torch_or_matplotlib():
    code = ("import sys; import nlpstd.stages.output, nlpstd.fsutil, nlpstd.jsonio; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_stage_is_declared_once_with_a_module_that_runs_it():
    import importlib

    assert len(set(contract.NAMES)) == len(contract.NAMES) == 5
    for stage in contract.STAGES:
        assert all(contract.NAMES.index(name) < contract.NAMES.index(stage.name) for name in stage.inputs), "inputs come first"
        module = importlib.import_module(f"nlpstd.stages.{stage.name.replace('-', '_')}")
        assert callable(module.run)


def test_each_pipeline_component_is_named_for_a_stage_of_the_table():
    import components

    stage_fields = {name.replace("-", "_") for name in contract.NAMES}
    assert stage_fields <= set(components.Components.__dataclass_fields__)
