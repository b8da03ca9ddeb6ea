"""Project rules that are cheap to check: ohlora_core never imports Dagster, and the code
location loads without importing torch (asset bodies import it lazily)."""
import subprocess
import sys

CORE_MODULES = [
    "ohlora_core.io", "ohlora_core.store", "ohlora_core.artifacts", "ohlora_core.pictures", "ohlora_core.seeding",
    "ohlora_core.generation", "ohlora_core.stylegan", "ohlora_core.cnn", "ohlora_core.segmentation.pipeline",
    "ohlora_core.scores", "ohlora_core.finetune.gan",
]


def _loaded_after(imports: list[str]) -> set[str]:
    code = "import sys\n" + "".join(f"import {m}\n" for m in imports) + "print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_core_does_not_import_dagster():
    assert not {m for m in _loaded_after(CORE_MODULES) if m.split(".")[0] == "dagster"}


def test_definitions_load_without_torch():
    loaded = _loaded_after(["ohlora_dagster.definitions"])
    assert "dagster" in loaded and "torch" not in loaded
