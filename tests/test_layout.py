"""Project rules that are cheap to check: ohlora_core never imports Dagster, and the code
location loads without importing torch (asset bodies import it lazily)."""

import subprocess
import sys

CORE_MODULES = [
    "ohlora_core.io",
    "ohlora_core.store",
    "ohlora_core.artifacts",
    "ohlora_core.pictures",
    "ohlora_core.seeding",
    "ohlora_core.generation",
    "ohlora_core.stylegan",
    "ohlora_core.cnn",
    "ohlora_core.segmentation.pipeline",
    "ohlora_core.scores",
    "ohlora_core.finetune.gan",
    "ohlora_core.pipeline.generation",
    "ohlora_core.pipeline.finetune",
    "ohlora_core.pretrained",
    "ohlora_core.budget",
    "ohlora_core.local_server",
]


def _loaded_after(imports: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in imports) + "print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_core_does_not_import_dagster():
    assert not {m for m in _loaded_after(CORE_MODULES) if m.split(".")[0] == "dagster"}


def test_definitions_load_without_torch():
    loaded = _loaded_after(["ohlora_dagster.smoke"])
    assert "dagster" in loaded and "torch" not in loaded


def _asset_functions():
    """(module, function) of every asset body in ohlora_dagster/assets (functions decorated as assets)."""
    import ast
    from pathlib import Path

    for path in sorted((Path(__file__).parents[1] / "ohlora_dagster" / "assets").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and any("asset" in ast.unparse(d) for d in node.decorator_list):
                yield path.name, node, tree


def test_asset_modules_import_no_other_asset_module():
    import ast

    for name, _, tree in _asset_functions():
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not {m for m in imported if m.startswith("ohlora_dagster.assets")}, name


def test_asset_bodies_are_short():
    """An asset body resolves its preset, calls one ohlora_core function and returns the result (issue 18)."""
    for name, fn, _ in _asset_functions():
        import ast

        docstring = isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
        body = fn.body[1:] if docstring else fn.body
        lines = body[-1].end_lineno - body[0].lineno + 1
        assert lines <= 20, f"{name}:{fn.name} has a {lines}-line body"
