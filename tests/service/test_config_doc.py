"""docs/configuration.md is generated from `Settings` (`make docs`) and must say what `Settings` says."""

from pathlib import Path

from service.config import Settings
from service.config_doc import DOC_PATH, main, render


def test_config_doc_is_current() -> None:
    assert DOC_PATH.read_text(encoding="utf-8") == render(), (
        "docs/configuration.md differs from service/config.py: run `make docs`"
    )


def test_config_doc_lists_every_setting_with_its_default() -> None:
    text = render()
    for name, field in Settings.model_fields.items():
        row = next(line for line in text.splitlines() if line.startswith(f"| `POSELIFT_{name.upper()}` |"))
        default = field.default
        assert ("empty" if default in ("", ()) else f"`{default}`") in row


def test_config_doc_check_flags_a_stale_file(tmp_path: Path) -> None:
    doc = tmp_path / "configuration.md"
    doc.write_text(render().replace("POSELIFT_HTTP_PORT", "POSELIFT_OLD_PORT"), encoding="utf-8")
    assert main(["--out", str(doc), "--check"]) == 1
    assert main(["--out", str(doc)]) == 0
    assert main(["--out", str(doc), "--check"]) == 0
    assert doc.read_text(encoding="utf-8") == render()
