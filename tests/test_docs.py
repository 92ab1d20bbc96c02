"""What a new user reads first: the README and the design document."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _headings(text: str) -> list[str]:
    return re.findall(r"^## (.+)$", text, re.M)


def test_readme_links_only_files_inside_the_repository():
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", README)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links its own files"
    for link in local:
        target = (ROOT / link).resolve()
        assert target.is_relative_to(ROOT) and target.exists(), link
    assert "shared/DESIGN" not in README


def test_project_carries_its_own_design_document():
    design = (ROOT / "docs" / "DESIGN.md").read_text()
    assert "docs/DESIGN.md" in README
    for section in ("The model", "The world", "Layering", "The API contract"):
        assert re.search(rf"^## \d\. {section}$", design, re.M), section
    assert "app -> inference -> renderer" in design.replace("\n", " ") or "imports run downward" in design.lower()
    assert "shared/" not in design


def test_readme_says_to_activate_the_venv_before_any_python_command():
    commands = [m.start(1) + c.start() for m in re.finditer(r"```sh\n(.*?)```", README, re.S)
                for c in re.finditer(r"^(?:\$ )?(?:python|airscene)\b", m.group(1), re.M)]
    first_command = min(commands)
    activate = README.index(". .venv/bin/activate")
    assert README.index("make install") < activate < first_command


def test_readme_opens_with_what_it_can_and_cannot_do():
    top = README[:README.index("\n## ")]
    box = "\n".join(line for line in top.splitlines() if line.startswith(">"))
    assert "What it can and cannot do" in box
    for fact in ("six shapes", "six colours", "0 to 3 objects", "your camera", "randomised look", "Blender",
                 "It cannot read", "outside that envelope", "Another object set needs"):
        assert fact in box.replace("\n> ", " "), fact


def test_readme_puts_what_a_user_does_first_before_training_and_benchmarks():
    order = _headings(README)
    assert order[:2] == ["First steps", "Service"], order
    for later in ("The inference network", "Measured against the alternatives", "Performance", "A dataset"):
        assert order.index(later) > order.index("Service"), later
    first = README[README.index("## First steps"):README.index("## Service")]
    for step in ("make serve", "airscene infer", "airscene render", "Predictor.load", "Client("):
        assert step in first, step


def test_readme_shows_no_output_it_calls_outdated():
    for words in ("predates", "outdated", "numbers differ"):
        assert words not in README, words
