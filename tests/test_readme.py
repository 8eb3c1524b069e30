"""The README's and the docs' Python examples run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
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


@pytest.mark.parametrize("doc", DOCS)
def test_every_document_with_examples_is_there_and_has_them(doc):
    """A renamed or emptied document fails here instead of collecting no example below."""
    path = ROOT / doc
    assert path.is_file(), f"{doc} is missing: its examples cannot run"
    assert BLOCK.findall(path.read_text()), f"{doc} has no ```python example"


@pytest.mark.parametrize(
    ("doc", "number", "code"), _blocks(), ids=lambda v: str(v)[:24] if isinstance(v, str) else str(v)
)
def test_example_runs(doc, number, code):
    namespace: dict[str, object] = {"__name__": f"{doc}:{number}"}
    exec(compile(code, f"{doc} example {number}", "exec"), namespace)


def _two_commands() -> list[str]:
    """The commands of the README's "The two commands" block."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## The two commands", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_readme_has_two_commands_and_ci_runs_them():
    """Two commands from a fresh clone, nothing activated: ./run creates the environment itself."""
    commands = _two_commands()
    assert commands == ["./run conformance", "./run test"]
    run = ROOT / "run"
    assert os.access(run, os.X_OK), "./run must be executable"
    script = run.read_text()
    assert 'pip install -q "torch==$TORCH_VERSION"' in script and 'TORCH_VERSION="2.13.0"' in script
    assert script.index("torch==$TORCH_VERSION") < script.index('-e "$ROOT[$EXTRAS]"')  # torch first
    assert '-c "$constraints"' in script and "torch.__version__.startswith" in script  # never replaced
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert f"\n{command}" in ci, f".ci/run must call the README's command {command!r}"
    assert '"$rc" -eq 5' in ci  # pytest's "no tests collected" handled


def test_the_run_script_rejects_an_unknown_command():
    out = subprocess.run([str(ROOT / "run"), "nonsense"], capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "usage: ./run conformance" in out.stderr


def test_the_github_actions_example_is_runnable_as_written():
    """docs/conformance.md: installs that pip can run (no "infonce-spec[...]" -e . mix), a stated
    source for infonce-spec, and commands whose options the CLI and the plugin accept."""
    yaml = pytest.importorskip("yaml")
    text = (ROOT / "docs" / "conformance.md").read_text()
    from infonce_spec.conformance.cli import _parser
    from infonce_spec.conformance.runner import PROFILES

    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert len(blocks) == 2  # the pytest plugin's job (torch) and the JAX one ("CI for each framework")
    for other in blocks:  # every job: one pip install source for infonce-spec, CLI options that exist
        other_job = yaml.safe_load(other)["jobs"]["conformance"]
        other_runs = [step["run"] for step in other_job["steps"] if "run" in step]
        other_installs = [r for r in other_runs if r.startswith("pip install")]
        assert other_installs and not any("infonce-spec" in r and "-e" in r.split() for r in other_installs)
        assert any("$INFONCE_SPEC" in r for r in other_installs) and "INFONCE_SPEC" in other_job["env"]
        for command in [r for r in other_runs if r.startswith("infonce-conformance run")]:
            _parser().parse_args(shlex.split(command)[1:])
    (block,) = [b for b in blocks if "pytest --infonce-adapter" in b]
    job = yaml.safe_load(block)["jobs"]["conformance"]
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert "git+" in block and ".whl" in block  # where the package comes from is said

    for command in [r for r in runs if r.startswith("pytest")]:
        args = dict(a.split(" ", 1) if " " in a else (a, "") for a in command.split(" --")[1:])
        assert set(args) == {"infonce-adapter", "infonce-profile", "junitxml"}
        assert args["infonce-profile"] in PROFILES
    alternative = re.search(r"`(infonce-conformance run [^`]*)`", text.split("```yaml", 1)[1])
    assert alternative is not None
    _parser().parse_args(shlex.split(alternative.group(1))[1:])  # options the CLI accepts
