"""Packaging and layering: the folders map onto one import package, editable and wheel installs
both work, and the dependency rules between reference/, adapters/ and conformance/ hold."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tarfile
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
#: Packages that are data only (the golden vectors, spec/vectors/ shipped as infonce_spec.vectors).
DATA_PACKAGES = ("infonce_spec.vectors",)


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
        if package in DATA_PACKAGES:
            assert (_folder_of(package) / "MANIFEST.json").is_file(), f"{package} holds no vectors"
            continue
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


def _source_copy(target: Path) -> Path:
    """The tracked files of the checkout (or, outside git, the tree without build outputs) in ``target``:
    builds run there, so nothing (build/, *.egg-info) is ever written into the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if listed.returncode == 0 and listed.stdout:
        for name in listed.stdout.decode().split("\0"):
            if name and (ROOT / name).is_file():
                (target / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / name, target / name)
    else:
        junk = shutil.ignore_patterns(".git", ".venv", "*venv*", "__pycache__", "*.egg-info", "build", "dist")
        shutil.copytree(ROOT, target, ignore=junk, dirs_exist_ok=True)
    return target


def _build(hook: str, source: Path, out: Path) -> Path:
    """Run setuptools' PEP 517 ``hook`` (build_sdist / build_wheel) in ``source``, without isolation."""
    code = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=source, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
    """The sdist, built from a copy of the checkout, and the wheel built from that sdist (as pip does)."""
    tmp = tmp_path_factory.mktemp("dist")
    before = _untracked_outputs()
    sdist = _build("build_sdist", _source_copy(tmp / "checkout"), tmp)
    with tarfile.open(sdist) as tar:
        # the "data" filter where tarfile has it (Python >= 3.11.4); the sdist is our own build
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(tmp / "unpacked", **safe)
    (unpacked,) = (tmp / "unpacked").iterdir()
    wheel = _build("build_wheel", unpacked, tmp)
    assert _untracked_outputs() == before, "building wrote into the checkout"
    return sdist, wheel


def _untracked_outputs() -> set[str]:
    return {p.name for p in ROOT.iterdir() if p.name in ("build", "dist") or p.name.endswith(".egg-info")}


def test_wheel_holds_every_package_and_imports_in_isolation(tmp_path, dists):
    _, wheel = dists
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in PACKAGES:
        init = package.replace(".", "/") + "/__init__.py"
        if package not in DATA_PACKAGES:
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


def test_the_golden_vectors_ship_in_the_sdist_and_the_wheel(dists):
    sdist, wheel = dists
    manifest = json.loads((ROOT / "spec" / "vectors" / "MANIFEST.json").read_text())
    files = ["MANIFEST.json", "SCHEMA.md", *(entry["path"] for entry in manifest["files"])]
    in_wheel = set(zipfile.ZipFile(wheel).namelist())
    with tarfile.open(sdist) as tar:
        in_sdist = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    for name in files:
        assert f"infonce_spec/vectors/{name}" in in_wheel, f"{name} missing from {wheel.name}"
        assert f"spec/vectors/{name}" in in_sdist, f"{name} missing from {sdist.name}"


USER_LOSS = """
import numpy as np


def infonce_query_to_doc(q, docs, scale):
    \"\"\"query_to_doc, dot similarity, joint: the loss and its gradients, in NumPy.\"\"\"
    k, n, dim = docs.shape
    flat = docs.reshape(k * n, dim)
    z = scale * q @ flat.T
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    lse = np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)) + z.max(axis=1)
    loss = float(np.mean(lse - scale * np.sum(q * docs[0], axis=1)))
    p /= n
    g_q = scale * (p @ flat) - scale * docs[0] / n
    g_d = scale * (p.T @ q)
    g_d[:n] -= scale * q / n
    return loss, g_q, g_d.reshape(k, n, dim)
"""
USER_ADAPTER = """
from myloss import infonce_query_to_doc  # a sibling module

from infonce_spec.conformance import Capabilities, LossGrads


class Adapter:
    capabilities = Capabilities(
        name="user-numpy",
        directions=frozenset({"query_to_doc"}),
        partition_modes=frozenset({"joint"}),
        similarities=frozenset({"dot"}),
        hardness_modes=frozenset(),
    )

    def embeddings(self, case):
        return LossGrads(*infonce_query_to_doc(case.queries, case.docs, case.config.scale))
"""
REFERENCE_RESULTS = """
import json, sys

import numpy as np

from infonce_spec.conformance.golden import load_cases
from infonce_spec.errors import SpecViolation
from infonce_spec.reference import Config, loss_and_grad

results = {}
for _, case in load_cases()[1]:  # the vectors shipped with the package
    try:
        r = loss_and_grad(np.asarray(case["inputs"]["queries"]), np.asarray(case["inputs"]["docs"]),
                          Config(**case["config"]))
    except SpecViolation as exc:
        results[case["id"]] = {"error": exc.clause}
        continue
    results[case["id"]] = {"loss": r.loss, "grad_queries": r.grad_queries.tolist(),
                           "grad_docs": r.grad_docs.tolist()}
json.dump({"implementation": "the reference, installed", "results": results}, open(sys.argv[1], "w"))
"""


def test_the_wheel_in_a_fresh_venv_runs_the_cli_outside_the_repository(tmp_path, dists):
    """pip install "infonce-spec[conformance]" (the wheel) into a new venv, without torch, then the CLI
    from a user's folder: --version, list, verify on golden results, run on a file adapter."""
    _, wheel = dists
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python, cli = venv / "bin" / "python", venv / "bin" / "infonce-conformance"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", f"{wheel}[conformance]"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    user = tmp_path / "user"
    user.mkdir()
    (user / "myloss.py").write_text(USER_LOSS)
    (user / "adapter.py").write_text(USER_ADAPTER)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            args, cwd=user, env=env, capture_output=True, text=True, timeout=300, check=False
        )

    from infonce_spec import SPEC_SHA256, SPEC_VERSION, __version__

    assert wheel.name.startswith(f"infonce_spec-{__version__}-"), wheel.name  # the version of spec §16.1
    version = run(str(cli), "--version")
    assert version.returncode == 0, version.stderr
    assert f"{__version__}, spec {SPEC_VERSION} (sha256 {SPEC_SHA256})" in version.stdout
    listed = run(str(cli), "list")
    assert listed.returncode == 0 and "infonce_spec.adapters.bundled:uncached" in listed.stdout
    made = run(str(python), "-c", REFERENCE_RESULTS, "results.json")
    assert made.returncode == 0, made.stderr[-3000:]
    verified = run(str(cli), "verify", "results.json")
    assert verified.returncode == 0 and verified.stdout.startswith("PASS"), verified.stdout + verified.stderr
    checked = run(
        str(cli),
        "run",
        "--adapter",
        "./adapter.py:Adapter",
        "--profile",
        "quick",
        "--select",
        "reference/query_to_doc",
        "--json",
        "r.json",
    )
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert json.loads((user / "r.json").read_text())["ok"]
    assert run(str(python), "-c", "import torch").returncode != 0  # the CLI needed no torch


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


def test_the_harnesses_of_other_frameworks_load_no_torch():
    """The rendezvous and devices forms of level 3 run where torch is not installed: importing their
    harnesses (and the pool and interface they share) imports no torch; only gloo and torchrun may."""
    code = (
        "import sys\n"
        "import infonce_spec.conformance.harnesses.rendezvous, infonce_spec.conformance.harnesses.devices\n"
        "import infonce_spec.conformance.runner\n"
        "print(sorted(m for m in ('torch', 'jax', 'tensorflow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
