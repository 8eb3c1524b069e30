"""The README's and the docs' Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
DOCS = ["README.md", "docs/torch.md"]


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for name in DOCS:
        path = ROOT / name
        if path.is_file():
            for number, code in enumerate(BLOCK.findall(path.read_text())):
                found.append((name, number, code))
    return found


@pytest.mark.parametrize(
    ("doc", "number", "code"), _blocks(), ids=lambda v: str(v)[:24] if isinstance(v, str) else str(v)
)
def test_example_runs(doc, number, code):
    namespace: dict[str, object] = {"__name__": f"{doc}:{number}"}
    exec(compile(code, f"{doc} example {number}", "exec"), namespace)
