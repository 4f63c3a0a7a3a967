"""The README and docs/ stay true: every relative link and anchor resolves, generated tables match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orthweb_dev import emulator
from orthweb_dev.containers import CONTAINER_DIFFERENCES
from orthweb_dev.fleet_harness import FLEET_DIFFERENCES
from orthweb_dev.images import IMAGE_DIFFERENCES, IMAGES_DIR

PROJECT_DIR = Path(__file__).resolve().parents[1]
DOCUMENTS = [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("*.md"))]
# [text](target) and ![alt](target), skipping absolute URLs and mail links.
_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
_CODE_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors (lower case, punctuation dropped except '-', spaces to '-') and
    explicit ``<a id="...">`` anchors."""
    found = set(re.findall(r'<a id="([^"]+)">', markdown))
    for heading in re.findall(r"^#{1,6} (.+)$", _CODE_BLOCK.sub("", markdown), re.M):
        text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
        found.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return found


def links(document: Path) -> list[str]:
    text = _CODE_BLOCK.sub("", document.read_text())
    return [m["target"] for m in _LINK.finditer(text) if not re.match(r"[a-z]+:", m["target"])]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.relative_to(PROJECT_DIR).as_posix())
def test_every_relative_link_and_anchor_resolves(document: Path) -> None:
    broken = []
    for target in links(document):
        path, _, anchor = target.partition("#")
        file = (document.parent / path).resolve() if path else document
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{document.name}: " + "; ".join(broken)


def test_anchors_follow_githubs_rules() -> None:
    assert anchors("## Security notes, and the original's three vulnerabilities") == {
        "security-notes-and-the-originals-three-vulnerabilities"
    }
    assert anchors('### Images in S3 (`storage = "s3"`)\n```\n# not a heading\n```') == {"images-in-s3-storage--s3"}


def test_the_emulator_patches_table_is_the_one_the_emulator_prints() -> None:
    doc = (PROJECT_DIR / "docs" / "demo.md").read_text()
    assert emulator.patches_table() in doc, (
        "docs/demo.md: paste `.venv/bin/python -m orthweb_dev.emulator --list-patches` over the patches table"
    )


def table_after(markdown: str, marker: str) -> list[str]:
    """The body rows of the first table after ``marker`` (its header and rule skipped)."""
    lines = markdown[markdown.index(marker) :].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| "))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("| "):
            break
        rows.append(line)
    return rows


def test_the_fleet_difference_table_lists_exactly_what_the_code_does() -> None:
    doc = (PROJECT_DIR / "docs" / "app-harness.md").read_text()
    expected = [f"| {what} | {on_aws} | {in_harness} |" for what, on_aws, in_harness in FLEET_DIFFERENCES.values()]
    assert table_after(doc, "`FLEET_DIFFERENCES`") == expected, (
        "docs/app-harness.md: the table must list FLEET_DIFFERENCES"
    )


def test_the_container_harness_tables_list_exactly_what_the_code_does() -> None:
    doc = (PROJECT_DIR / "docs" / "app-harness.md").read_text()
    containers = [f"| {what} | {host} | {harness} |" for what, host, harness in CONTAINER_DIFFERENCES.values()]
    assert table_after(doc, "`CONTAINER_DIFFERENCES`") == containers
    images = [f"| {what} | {real} | {standin} |" for what, real, standin, _ in IMAGE_DIFFERENCES.values()]
    assert table_after(doc, "`IMAGE_DIFFERENCES`") == images


@pytest.mark.parametrize("key", sorted(IMAGE_DIFFERENCES))
def test_each_stand_in_difference_is_in_the_build_files(key: str) -> None:
    """Each row's evidence ("file: text") is in that build file under dev/images/."""
    evidence = IMAGE_DIFFERENCES[key][3]
    path, _, text = evidence.partition(": ")
    assert text in (IMAGES_DIR / path).read_text(), f"{key}: {text!r} is not in dev/images/{path}"
