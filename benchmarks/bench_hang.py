"""What a hanging adapter costs: about one ``--timeout``, not one per property.

The adapter (written to a temporary folder, loaded by file path as a user's would be) claims CLIP's
configuration (``clip_like()``, dot, embeddings only) and its ``embeddings`` never returns.
``infonce-conformance run --profile quick --world-sizes 1 --timeout T`` is timed for each T given
(targets: T = 10 within 60 s, T = 60 -- the default -- within 180 s), and the JSON report is read
back: the number of root causes (target: one, the hang, with its stack), the properties that
faulted and those left "not established (the adapter hung in `embeddings`)". As the baseline, in the
same run, the same adapter without the hang (correct embeddings) under the same command.

    .venv/bin/python benchmarks/bench_hang.py            # T = 10 and 60
    .venv/bin/python benchmarks/bench_hang.py --timeouts 10

Wall-clock seconds; the machine and its load are printed first. Record the figures in
docs/conformance.md ("When the adapter misbehaves").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ADAPTER = """
import time

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.conformance import Capabilities
from infonce_spec.conformance.protocol import clip_like


class Clip(TorchAdapter):
    def __init__(self):
        super().__init__("clip")
        self.capabilities = Capabilities(
            name="clip", configurations=clip_like(), similarities=frozenset({"dot"})
        )


class HangingClip(Clip):
    def embeddings(self, case):
        time.sleep(3600)
"""


def run(folder: Path, name: str, timeout: float) -> tuple[float, dict]:
    out = folder / f"{name}-{timeout:g}.json"
    start = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "infonce_spec.conformance", "run", "--no-progress",
         "--adapter", f"{folder / 'adapter.py'}:{name}", "--profile", "quick", "--world-sizes", "1",
         "--timeout", f"{timeout:g}", "--json", str(out), "--reproducers", str(folder / "repro")],
        capture_output=True, text=True, cwd=folder, check=False,
    )  # fmt: skip
    return time.monotonic() - start, json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeouts", default="10,60", help="comma-separated --timeout values")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="bench-hang-") as tmp:
        folder = Path(tmp)
        (folder / "adapter.py").write_text(ADAPTER)
        base, data = run(folder, "Clip", 10)
        print(f"baseline (no hang): {base:.1f} s, ok {data['ok']}")
        for timeout in (float(t) for t in args.timeouts.split(",")):
            seconds, data = run(folder, "HangingClip", timeout)
            (rep,) = data["reports"]
            roots = rep["root_causes"]
            faults = [p["property"] for p in rep["properties"] if p["status"] == "fault"]
            skipped = [p for p in rep["properties"] if p["status"] == "not established"]
            reasons = sorted({p["reason"] for p in skipped})
            print(
                f"--timeout {timeout:g}: {seconds:.1f} s ({seconds / base:.1f} x the baseline, "
                f"{seconds - base:.1f} s more); {len(roots)} root cause(s): "
                f"{[r['explanation'] for r in roots]}; faulted: {faults}; "
                f"{len(skipped)} not established {reasons}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
