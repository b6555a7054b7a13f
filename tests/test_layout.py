"""The layout rules of docs/architecture.md, checked on the source tree.

Short modules and functions, the stage packages of ``triage/``, SQL only in ``triage.store``,
the command line imported only by entry points, the base module the only part of ``triage``
that ``dicom_node``, ``models`` and ``sample_data`` import, and no model named in the pipeline.
"""

import ast
import re
from pathlib import Path

import pytest

from triage.settings import MODEL_NAMES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("triage", "dicom_node", "models", "sample_data")
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 80
MAX_TOP_LEVEL_MODULES = 12
SQL = re.compile(r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+(OR\s+[A-Z]+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|INDEX|UNIQUE)|ALTER\s+TABLE|DROP\s+TABLE|PRAGMA\s+\w+)")


def _python_files(*tops: str) -> list[Path]:
    return sorted(p for top in tops for p in (ROOT / top).rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imported_modules(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_module_over_600_lines():
    long = {_relative(p): n for p in _python_files(*PACKAGES, "tests", "benchmarks")
            if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert not long


def test_no_function_over_80_lines():
    long = {f"{_relative(p)}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
            for p in _python_files(*PACKAGES, "tests", "benchmarks")
            for node in ast.walk(_tree(p))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES}
    assert not long


def test_few_modules_directly_in_triage():
    modules = sorted(p.name for p in (ROOT / "triage").glob("*.py"))
    assert len(modules) <= MAX_TOP_LEVEL_MODULES, modules


def test_sql_only_in_the_store_package():
    outside = [f"{_relative(p)}:{node.lineno}" for p in _python_files(*PACKAGES)
               if not _relative(p).startswith("triage/store/")
               for node in ast.walk(_tree(p))
               if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value)]
    assert not outside


def test_the_command_line_is_imported_only_by_entry_points():
    importers = [_relative(p) for p in _python_files(*PACKAGES)
                 if p != ROOT / "triage" / "cli.py" and "triage.cli" in _imported_modules(_tree(p))]
    assert not importers


@pytest.mark.parametrize("package", ["dicom_node", "models", "sample_data"])
def test_other_packages_import_only_the_base_of_triage(package):
    reaching = {f"{_relative(p)}: {name}" for p in _python_files(package)
                for name in _imported_modules(_tree(p))
                if (name == "triage" or name.startswith("triage.")) and not name.startswith("triage.base")}
    assert not reaching


def test_the_pipeline_names_no_model():
    named = [f"{_relative(p)}:{node.lineno} {node.value!r}" for p in _python_files("triage/imaging")
             for node in ast.walk(_tree(p))
             if isinstance(node, ast.Constant) and node.value in MODEL_NAMES]
    assert not named


def test_the_rules_see_a_violation(tmp_path):
    """The checks above find what they look for (they would not pass by reading nothing)."""
    source = ("from triage.imaging import pipeline\nfrom triage.cli import main\n"
              "QUERY = 'SELECT * FROM jobs'\nMODEL = 'bcsvd'\n"
              "def long():\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    tree = ast.parse(source)
    imported = _imported_modules(tree)
    assert "triage.cli" in imported and "triage.imaging.pipeline" in imported
    constants = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    assert any(SQL.search(c) for c in constants) and "bcsvd" in constants and "bcsvd" in MODEL_NAMES
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef))
    assert function.end_lineno - function.lineno + 1 > MAX_FUNCTION_LINES
