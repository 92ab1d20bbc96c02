"""The layout's rules: the product path (what the service runs) stands alone and stays readable."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("inference", "app", "renderer")


def _product_files():
    return [path for package in PRODUCT for path in sorted((ROOT / package).rglob("*.py"))]


def test_the_product_path_never_imports_training_experiments_or_bench():
    for path in _product_files():
        imports = re.findall(r"^\s*(?:from|import) (\w+)", path.read_text(), re.M)
        assert not {"training", "experiments", "bench"} & set(imports), path


def test_no_function_in_the_product_path_is_over_60_lines():
    long = [f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in _product_files() for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert not long
