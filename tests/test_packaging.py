"""Packaging and layering: the folders map onto one import package, editable and wheel installs
both work, and the dependency rules between reference/, adapters/ and conformance/ hold."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGES = PYPROJECT["tool"]["setuptools"]["packages"]


def _folder_of(package: str) -> Path:
    """The folder setuptools takes ``package`` from (the longest package-dir prefix wins)."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in PACKAGE_DIR:
            return ROOT / PACKAGE_DIR[prefix] / Path(*parts[cut:])
    return ROOT / Path(*parts)


def _package_of(folder: Path) -> str | None:
    for package, where in sorted(PACKAGE_DIR.items(), key=lambda kv: -len(kv[1])):
        base = ROOT / where
        if folder == base or base in folder.parents:
            rest = folder.relative_to(base).parts
            return ".".join((package, *rest))
    return None


def test_every_package_folder_is_listed():
    folders = {p.parent for where in PACKAGE_DIR.values() for p in (ROOT / where).rglob("__init__.py")}
    listed = {_folder_of(p) for p in PACKAGES}
    missing = sorted(str(_package_of(f)) for f in folders - listed if "__pycache__" not in f.parts)
    assert not missing, f"add these to [tool.setuptools] packages in pyproject.toml: {missing}"
    for package in PACKAGES:
        assert (_folder_of(package) / "__init__.py").is_file(), f"{package} has no __init__.py"


def test_editable_install_maps_the_folders(tmp_path):
    code = "import infonce_spec.reference as r, infonce_spec.conformance as c; print(r.__file__); print(c.__file__)"
    out = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        pytest.skip(f"infonce_spec is not installed in this interpreter: {out.stderr.strip()[-200:]}")
    ref_file, conf_file = (Path(line) for line in out.stdout.split())
    if ROOT not in ref_file.parents:
        pytest.skip("infonce_spec is installed as a wheel here, not editable")
    assert ref_file.parent == ROOT / "reference"
    assert conf_file.parent == ROOT / "conformance"


def test_wheel_holds_every_package_and_imports_in_isolation(tmp_path):
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(ROOT),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("infonce_spec-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        init = package.replace(".", "/") + "/__init__.py"
        assert init in names, f"{init} missing from {wheel.name}"
    for typed in ("infonce_spec/py.typed", "infonce_spec/reference/py.typed"):
        assert typed in names, f"{typed} missing from the wheel"
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    code = (
        "import sys, numpy as np\n"
        "from infonce_spec.reference import Config, loss\n"
        "import infonce_spec.reference as r\n"
        f"assert r.__file__.startswith({str(target)!r}), r.__file__\n"
        "print(loss(np.ones((2, 3)), np.ones((1, 2, 3)), Config()))\n"
        "assert 'torch' not in sys.modules\n"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    run = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert abs(float(run.stdout.strip()) - 0.6931471805599453) < 1e-12  # two equal candidates: log 2


def _imports(folder: Path) -> list[tuple[Path, str]]:
    found = []
    for path in [folder] if folder.is_file() else folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = node.module or ""
                if node.level:
                    package = _package_of(path.parent) or ""
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, module] if module else base)
                found.append((path, module))
    return found


@pytest.mark.parametrize(
    ("folder", "forbidden", "rule"),
    [
        (
            "reference",
            ("torch", "jax", "infonce_spec.adapters", "infonce_spec.conformance"),
            "the reference is framework-free",
        ),
        (
            "reference/engine",
            ("torch", "jax", "infonce_spec.adapters", "infonce_spec.conformance"),
            "the reference's engine is framework-free",
        ),
        (
            "src/infonce_spec/vocabulary.py",
            ("infonce_spec", "numpy", "torch", "jax", "array_api_compat"),
            "the vocabulary imports nothing of the project (anything may import it)",
        ),
        (
            "adapters/torch",
            ("infonce_spec.reference", "infonce_spec.conformance"),
            "our torch implementation never consults the oracle",
        ),
        (
            "adapters",
            ("infonce_spec.reference",),
            "adapters speak the plug-in protocol (infonce_spec.conformance.protocol), never the oracle",
        ),
        (
            "conformance",
            ("infonce_spec.adapters",),
            "the suite reaches adapters only through the plug-in interface",
        ),
    ],
)
def test_layering(folder, forbidden, rule):
    bad = [
        f"{path.relative_to(ROOT)} imports {module}"
        for path, module in _imports(ROOT / folder)
        if any(module == f or module.startswith(f + ".") for f in forbidden)
    ]
    assert not bad, f"{rule}: {bad}"


def test_reference_import_loads_no_framework():
    code = (
        "import sys, infonce_spec.reference; print(sorted(m for m in ('torch', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
