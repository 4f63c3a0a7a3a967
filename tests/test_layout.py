"""The project layout keeps the jsii `constructs` library importable."""

from __future__ import annotations

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parents[1]


def test_constructs_source_root_is_not_a_package() -> None:
    assert not (PROJECT_DIR / "constructs" / "__init__.py").exists()
    assert not (PROJECT_DIR / "constructs.py").exists()
    modules = [p.name for p in (PROJECT_DIR / "constructs").iterdir() if not p.name.endswith(".egg-info")]
    assert modules == ["orthweb"]


def test_import_constructs_resolves_to_the_library() -> None:
    import constructs

    assert hasattr(constructs, "Construct")
    assert "site-packages" in str(Path(constructs.__file__ or ""))


def test_orthweb_is_importable_from_the_source_root() -> None:
    import orthweb.stack

    assert Path(orthweb.stack.__file__).parent == PROJECT_DIR / "constructs" / "orthweb"
