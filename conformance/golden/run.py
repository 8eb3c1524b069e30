"""Golden vectors: the results writer for a Python adapter (``infonce-conformance golden run``).

Feeds every vector that the adapter's claim covers through the plug-in protocol
(:meth:`~infonce_spec.conformance.protocol.ConformanceAdapter.embeddings`, in the suite's call worker
with its time limit) and writes the results file that :func:`~.verify.verify` reads. This is the
route for an implementation in another Python framework (JAX, TensorFlow, ...) that has an adapter
but wants the fixed, fast vectors, e.g. in CI before the hypothesis suite.

What the protocol cannot carry is left out of the claim (:data:`PROTOCOL_SKIPS`), so it is neither
run nor required: per-query losses (an adapter returns the mean loss), the per-rank results (the
data-parallel protocol needs a process group; the conformance suite's harness checks DP-1 .. DP-5)
and arrays of an integer dtype (the protocol hands the adapter float64 arrays; LAYOUT-5).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from infonce_spec import SPEC_VERSION
from infonce_spec.reference import Config

from ..compare import AdapterFault
from ..protocol import EmbeddingCase, LoadedAdapter
from .claims import Claim, case_applies
from .format import TOLERANCES, dumps
from .load import load_cases

__all__ = ["PROTOCOL_SKIPS", "adapter_claim", "write_results"]

#: Clauses the adapter protocol cannot exercise through the vectors, and why.
PROTOCOL_SKIPS = {
    "LAYOUT-5": "the protocol hands an adapter float64 arrays, never integer ones",
}
_CLAUSE = re.compile(r"\[([A-Z]+(?:-[A-Z]+)?-\d+)\]")
#: The dtypes a float64 input is rounded to before it reaches an adapter of that dtype.
_ROUND = {"float64": np.float64, "float32": np.float32}


def adapter_claim(loaded: LoadedAdapter) -> Claim:
    """The adapter's claim as far as the protocol can answer it through the vectors: its
    capabilities without data parallelism, no per-query losses, nothing of :data:`PROTOCOL_SKIPS`."""
    caps = loaded.capabilities.with_(data_parallel=False)
    return Claim(caps, per_query_loss=False, skips=frozenset(PROTOCOL_SKIPS))


def _config(raw: dict[str, Any], valid: bool) -> Config:
    """The case's config; an invalid one is carried in a default Config, field by field, the way the
    suite's validation property hands bad options to an adapter."""
    if valid:
        return Config(**raw)
    config = Config()
    for key, value in raw.items():
        object.__setattr__(config, key, value)
    return config


def _entry(adapter: Any, case: dict[str, Any], dtype: str, grad_scale: bool) -> dict[str, Any]:
    inputs = case["inputs"]
    valid = "expected_error" not in case
    try:
        rounded = _ROUND[dtype]
        queries = np.asarray(inputs["queries"], dtype=np.float64).astype(rounded).astype(np.float64)
        docs = np.asarray(inputs["docs"], dtype=np.float64).astype(rounded).astype(np.float64)
        out = adapter.embeddings(EmbeddingCase(queries, docs, _config(case["config"], valid)))
    except AdapterFault as exc:
        return {"fault": " ".join(str(exc).split())[:500]}
    except (ValueError, TypeError) as exc:  # VAL-1: the error names the clause
        found = _CLAUSE.search(str(exc))
        message = " ".join(str(exc).split())[:300]
        return {"error": found[1] if found else f"{type(exc).__name__} naming no clause", "message": message}
    except Exception as exc:  # neither a result nor a ValueError/TypeError: fails any case
        return {"fault": f"embeddings() raised {type(exc).__name__}: {' '.join(str(exc).split())[:400]}"}
    entry = {
        "loss": float(out.loss),
        "grad_queries": np.asarray(out.grad_queries, dtype=np.float64).tolist(),
        "grad_docs": np.asarray(out.grad_docs, dtype=np.float64).tolist(),
    }
    if grad_scale and out.grad_scale is not None:
        entry["grad_scale"] = float(out.grad_scale)
    return entry


def write_results(
    loaded: LoadedAdapter, out: Path | str, vectors: Path | str | None = None
) -> tuple[Claim, int]:
    """Run every vector the adapter's claim covers and write the results file to ``out``; return the
    claim (to verify against) and the number of cases run.

    Raises ``ValueError`` for an adapter whose dtype has no golden-vector bound (bfloat16, float16).
    """
    from ..isolation import close_workers, isolated

    caps = loaded.capabilities
    if caps.dtype not in TOLERANCES:
        raise ValueError(
            f"the golden vectors have bounds for {list(TOLERANCES)} results, not {caps.dtype!r}; "
            "check this adapter with `infonce-conformance run` (its tolerance model covers it)"
        )
    claim = adapter_claim(loaded)
    _, cases = load_cases(vectors)
    adapter = isolated(loaded)
    results: dict[str, Any] = {}
    try:
        for _, case in cases:
            if case_applies(claim, case):
                results[case["id"]] = _entry(adapter, case, caps.dtype, caps.grad_scale)
    finally:
        close_workers()
    document = {
        "implementation": f"{loaded.spec} ({caps.name}), by infonce-conformance golden run",
        "spec_version": SPEC_VERSION,
        "dtype": caps.dtype,
        "claim": claim.to_json(),
        "results": results,
    }
    Path(out).write_text(dumps(document))  # non-finite numbers as "NaN", "Infinity" (SCHEMA.md)
    return claim, len(results)
