"""The conformance matrix of published implementations: one environment per peer version, the suite's
ci profile per adapter, JSON reports, and docs/peers.md generated from them.

    python peers/run_matrix.py                      # install, run, write peers/reports/ and docs/peers.md
    python peers/run_matrix.py --only lightly       # one peer
    python peers/run_matrix.py --docs-only          # regenerate docs/peers.md from peers/reports/

Environments (under ``--workdir``, outside the checkout): a venv per peer version, created without
pip, whose site-packages holds the peer installed with ``pip install --no-deps --target`` (plus the
light pure-Python packages it needs) and a ``.pth`` file that adds the project's ``.venv``
site-packages after it. So torch, numpy, the project and its dependencies come from the project's
environment -- the CPU torch wheel is never replaced -- and the peer's own version shadows any copy
there (sentence-transformers 6.2.0 is in the project's environment). Peers of other frameworks
(``Peer.framework``: optax in JAX, tensorflow-similarity in TensorFlow) sit the same way on the
torch-free framework environment that ``./run setup-frameworks <framework>`` builds (.venv-jax,
.venv-tf), with that environment's Python. Peers are not dependencies of the project.

Each peer version gets ``peers/reports/<peer>-<version>.json``: how it went (installed, import
error), and the suite's JSON report of every adapter. ``docs/peers.md`` is written from those files
and ``peers/classification.json`` (the reviewed reading of every finding), never by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "peers" / "reports"
REPRODUCERS = ROOT / "peers" / "reproducers"
CLASSIFICATION = ROOT / "peers" / "classification.json"
DOC = ROOT / "docs" / "peers.md"
ADAPTERS = Path("adapters") / "peers"
PROJECT_PYTHON = ROOT / ".venv" / "bin" / "python"

#: The three kinds of finding (one per classified root cause).
KINDS = {
    "peer bug": "a bug in the peer",
    "documented deviation": "a documented deviation of the peer from the spec",
    "adapter limit": "a limit of the adapter, not of the peer",
}


@dataclass(frozen=True)
class Peer:
    """One published version: the pip requirement, the adapter file and the adapters in it."""

    name: str
    version: str
    requirement: str
    adapter_file: str
    adapters: tuple[str, ...]
    data_parallel: bool = False
    extra: tuple[str, ...] = field(default=())  # light pure-Python packages it needs, --no-deps too
    framework: str = "torch"  # the environment it sits on: the project's (torch), or ./run's jax / tf

    @property
    def key(self) -> str:
        return f"{self.name}-{self.version}"


#: What sentence-transformers < 6 imports at import time beyond the project's environment (no torch).
ST_LIGHT_DEPS = ("requests", "urllib3", "idna", "certifi", "charset-normalizer", "pillow")

PEERS: tuple[Peer, ...] = (
    Peer(
        "sentence-transformers",
        "3.4.1",
        "sentence-transformers==3.4.1",
        "peer_sentence_transformers.py",
        ("mnrl", "cached_mnrl"),
        extra=ST_LIGHT_DEPS,
    ),
    Peer(
        "sentence-transformers",
        "5.1.2",
        "sentence-transformers==5.1.2",
        "peer_sentence_transformers.py",
        ("mnrl", "cached_mnrl"),
        data_parallel=True,
        extra=ST_LIGHT_DEPS,
    ),
    Peer(
        "open_clip_torch",
        "3.3.0",
        "open_clip_torch==3.3.0",
        "peer_open_clip.py",
        ("clip_loss", "clip_loss_local", "clip_loss_gather_grad", "clip_loss_local_gather_grad"),
        data_parallel=True,
    ),
    Peer(
        "pytorch-metric-learning",
        "2.9.0",
        "pytorch-metric-learning==2.9.0",
        "peer_pytorch_metric_learning.py",
        ("ntxent",),
    ),
    Peer("info-nce-pytorch", "0.1.4", "info-nce-pytorch==0.1.4", "peer_info_nce.py", ("info_nce",)),
    Peer("lightly", "1.6.0", "lightly==1.6.0", "peer_lightly.py", ("ntxent",), data_parallel=True),
    Peer("optax", "0.2.8", "optax==0.2.8", "peer_optax.py", ("ntxent",), framework="jax"),
    Peer(
        "tensorflow-similarity",
        "0.17.1",
        "tensorflow-similarity==0.17.1",
        "peer_tf_similarity.py",
        ("simclr",),
        framework="tf",
    ),
)


def _purelib(python: Path) -> Path:
    out = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(out.stdout.strip())


def project_site_packages() -> Path:
    return _purelib(PROJECT_PYTHON)


def base_python(peer: Peer) -> Path:
    """The Python of the environment the peer sits on: the project's, or the framework environment
    ``./run setup-frameworks`` builds (and prints) for a peer of another framework."""
    if peer.framework == "torch":
        return PROJECT_PYTHON
    out = subprocess.run(
        [str(ROOT / "run"), "setup-frameworks", peer.framework], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1]) / "bin" / "python"


def make_environment(peer: Peer, workdir: Path) -> Path:
    """The peer's venv (reused when it exists): no pip of its own, the peer in its site-packages,
    the project's environment behind it through a ``.pth`` file."""
    venv = workdir / peer.key
    python = venv / "bin" / "python"
    if not python.exists():
        base = base_python(peer)
        subprocess.run([str(base), "-m", "venv", "--without-pip", str(venv)], check=True)
        site = _purelib(python)
        line = f"import site; site.addsitedir({str(_purelib(base))!r})\n"
        (site / "zz_infonce_project.pth").write_text(line)
        subprocess.run(
            [
                str(base),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(site),
                peer.requirement,
                *peer.extra,
            ],
            check=True,
        )
    return python


def run_peer(peer: Peer, workdir: Path, profile: str, timeout: float) -> dict[str, Any]:
    """Install and run one peer version; the record written to ``peers/reports/<key>.json``."""
    record: dict[str, Any] = {"peer": peer.name, "version": peer.version, "profile": profile}
    try:
        python = make_environment(peer, workdir)
    except subprocess.CalledProcessError as exc:
        return {**record, "status": f"not installed: {exc}"}
    reproducers = REPRODUCERS / peer.key
    reproducers.mkdir(parents=True, exist_ok=True)
    for old in reproducers.glob("*.npz"):
        old.unlink()
    json_path = workdir / f"{peer.key}.json"
    cmd = [str(python), "-m", "infonce_spec.conformance", "run", "--profile", profile, "--no-progress"]
    cmd += ["--json", str(json_path), "--reproducers", str(reproducers)]
    cmd += ["--world-sizes", "1,2"] if peer.data_parallel else []
    for name in peer.adapters:
        cmd += ["--adapter", f"{ADAPTERS / peer.adapter_file}:{name}"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    record["exit_code"] = proc.returncode
    if proc.returncode not in (0, 1) or not json_path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {**record, "status": f"no report (exit {proc.returncode}): {' | '.join(tail)}"}
    record["status"] = "ran"
    record["suite"] = json.loads(json_path.read_text())
    return record


# -- docs/peers.md ----------------------------------------------------------------------------------------


def _relative(text: str) -> str:
    """Absolute paths made relative to the repository root -- of this checkout, or of the one the
    committed reports were written in (any absolute prefix before a folder of this repository)."""
    text = text.replace(f"{ROOT}/", "")
    return re.sub(r"(?<![\w.])/[^\s`'\"]*?/(?=(?:peers|adapters)/)", "", text)


def load_classification(path: Path = CLASSIFICATION) -> dict[str, dict[str, str]]:
    """``{"<peer>:<clause>": {"kind": ..., "why": ...}}``; every kind one of :data:`KINDS`."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data.pop("_comment", None)
    for key, entry in data.items():
        if entry.get("kind") not in KINDS:
            raise ValueError(
                f"{path.name}: [{key!r}] kind must be one of {list(KINDS)}, got {entry.get('kind')!r}"
            )
        if not entry.get("why"):
            raise ValueError(f"{path.name}: [{key!r}] needs a one-line justification (why)")
    return data


def _levels(caps: dict[str, Any]) -> str:
    levels = ["embeddings"]
    levels += ["encoder"] if caps.get("encoder") else []
    levels += ["cached"] if caps.get("cached") else []
    levels += ["data parallel"] if caps.get("data_parallel") else []
    return ", ".join(levels)


def _configurations(caps: dict[str, Any]) -> str:
    pairs = caps.get("configurations") or []
    return "; ".join(f"{'+'.join(d)}/{m}" for d, m in pairs) or "every combination of its names"


def _case(report: dict[str, Any], label: str) -> dict[str, Any] | None:
    for prop in report["properties"]:
        world = prop["world_size"]
        if label in (prop["property"], f"{prop['property']} [W={world}]", f"{prop['property']}[W={world}]"):
            return prop.get("failure")
    for prop in report["properties"]:
        if prop["property"] in label and prop.get("failure"):
            return prop["failure"]
    return None


def render(records: list[dict[str, Any]], classification: dict[str, dict[str, str]]) -> str:
    """docs/peers.md from the per-peer records (pure: no environment, no suite run)."""
    lines = [
        "# Conformance matrix of published implementations",
        "",
        "<!-- Generated by `python peers/run_matrix.py` from peers/reports/*.json and "
        "peers/classification.json. Do not edit by hand. -->",
        "",
        "Each peer runs in its own environment (peers/run_matrix.py: the peer installed without its",
        "dependencies next to the project's CPU torch, or for optax and tensorflow-similarity next to the",
        "torch-free JAX or TensorFlow environment of `./run setup-frameworks`) through a plug-in adapter in adapters/peers/ that",
        "claims exactly the configurations the peer implements (`Capabilities.configurations`). A root",
        "clause is a violated clause that presupposes no other violated one (spec §15.1); every finding is",
        "classified in peers/classification.json after reading the failing case against the peer's code",
        "and the spec. A replay command runs in the peer's environment, which",
        "`python peers/run_matrix.py --only <peer>` creates: `<workdir>/<peer>-<version>/bin/python -m",
        "infonce_spec.conformance replay ...` (workdir: `$TMPDIR/infonce-peers` by default).",
        "",
        "| peer | version | adapter | levels | configurations claimed | profile | verdict | root clauses |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    findings: list[str] = []
    missing: list[str] = []
    for rec in records:
        peer, version = rec["peer"], rec["version"]
        if rec.get("status") != "ran":
            lines.append(f"| {peer} | {version} | -- | -- | -- | {rec.get('profile', '')} | not run | -- |")
            missing.append(f"- {peer} {version}: {_relative(str(rec.get('status')))}")
            continue
        for rep in rec["suite"]["reports"]:
            caps = rep["capabilities"]
            adapter = _relative(rep["adapter"]).split(":")[-1]
            roots = [c["clause"] for c in rep["root_causes"]]
            verdict = "conformant" if rep["ok"] else "not conformant"
            lines.append(
                f"| {peer} | {version} | `{adapter}` | {_levels(caps)} | {_configurations(caps)} | "
                f"{rep['profile']} | {verdict} | {', '.join(roots) or '--'} |"
            )
            for cause in rep["root_causes"]:
                key = f"{peer}:{cause['clause']}"
                entry = classification.get(key)
                failure = _case(rep, cause["smallest"]) or {}
                verdict_line = (
                    f"**{KINDS[entry['kind']]}** -- {entry['why']}"
                    if entry
                    else "**not yet classified** (add it to peers/classification.json)"
                )
                findings += [
                    f"### {peer} {version} `{adapter}`: {cause['clause']}",
                    "",
                    f"Classification: {verdict_line}",
                    "",
                    _relative(cause["explanation"]),
                    "",
                    f"- found by `{cause['smallest']}`"
                    + (
                        f"; also: {', '.join(cause['established_by'][1:])}"
                        if len(cause["established_by"]) > 1
                        else ""
                    ),
                    f"- consequences (follow from it): {', '.join(cause['consequences']) or 'none'}",
                ]
                if failure.get("config"):
                    findings.append(f"- config: `{json.dumps(failure['config'])}`")
                if cause.get("replay"):
                    findings.append(f"- replay (in the peer's environment): `{_relative(cause['replay'])}`")
                if failure.get("message"):
                    findings += ["", "```", _relative(failure["message"]).strip(), "```"]
                if failure.get("example"):
                    findings += ["", "Minimal case:", "", "```", failure["example"].strip(), "```"]
                findings.append("")
    lines.append("")
    if missing:
        lines += ["## Not run", "", *missing, ""]
    lines += ["## Findings", ""] + (findings or ["None: every peer passes what it claims.", ""])
    return "\n".join(lines).rstrip() + "\n"


def load_records(folder: Path = REPORTS) -> list[dict[str, Any]]:
    order = [p.key for p in PEERS]
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    return sorted(
        records,
        key=lambda r: (
            order.index(f"{r['peer']}-{r['version']}") if f"{r['peer']}-{r['version']}" in order else 99
        ),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workdir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "infonce-peers"
    )
    parser.add_argument("--profile", default="ci", choices=("quick", "ci", "thorough"))
    parser.add_argument("--only", action="append", default=[], help="peer name or name-version (repeatable)")
    parser.add_argument("--docs-only", action="store_true", help="only regenerate docs/peers.md")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per peer version")
    args = parser.parse_args(argv)
    if not args.docs_only:
        args.workdir.mkdir(parents=True, exist_ok=True)
        REPORTS.mkdir(parents=True, exist_ok=True)
        for peer in PEERS:
            if args.only and not {peer.name, peer.key} & set(args.only):
                continue
            print(f"== {peer.key}", flush=True)
            record = run_peer(peer, args.workdir, args.profile, args.timeout)
            (REPORTS / f"{peer.key}.json").write_text(json.dumps(record, indent=1, default=str) + "\n")
            print(f"   {record['status']}", flush=True)
    DOC.write_text(render(load_records(), load_classification()))
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
