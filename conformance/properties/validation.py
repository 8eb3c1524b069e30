"""Chapter "validation": invalid inputs raise ``ValueError``/``TypeError`` (VAL-1 and the clauses they break).

Only for adapters that claim ``validates_inputs``. The spec asks the error to name the clause; the
suite requires the exception type and reports whether the clause ID appeared in the message.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st

from ..compare import AdapterFault, fail
from ..protocol import Capabilities, EmbeddingCase
from .base import Context, Property
from .checks import draw_embedding_case

__all__ = ["CONFIG_CORRUPTIONS", "CORRUPTIONS", "InvalidInputs"]

#: How a valid case is broken, and the clause that forbids the result.
CORRUPTIONS: dict[str, str] = {
    "nan_in_queries": "LAYOUT-4",
    "inf_in_docs": "LAYOUT-4",
    "docs_dimension_mismatch": "LAYOUT-2",
    "docs_batch_mismatch": "LAYOUT-2",
    "empty_batch": "LAYOUT-1",
}
#: Invalid options: (field, value, clause). The adapter receives a Config carrying the bad value.
CONFIG_CORRUPTIONS: dict[str, tuple[dict[str, Any], str]] = {
    "unknown_similarity": ({"similarity": "euclidean"}, "SIM-3"),
    "nonpositive_scale": ({"scale": 0.0}, "SCALE-1"),
    "empty_directions": ({"directions": ()}, "DIR-1"),
    "directions_without_query_to_doc": ({"directions": ("doc_to_query",)}, "DIR-1"),
    "unknown_hardness_mode": ({"hardness_mode": "semi_hard", "hardness_strength": 1.0}, "HARD-1"),
    "negative_hardness_strength": ({"hardness_strength": -1.0}, "HARD-1"),
    "unknown_partition_mode": ({"partition_mode": "mean"}, "PART-1"),
    "per_direction_with_query_to_query": (
        {"directions": ("query_to_doc", "query_to_query"), "partition_mode": "per_direction"},
        "PART-4",
    ),
    "per_anchor_doc_to_doc_without_doc_to_query": (
        {"directions": ("query_to_doc", "doc_to_doc"), "partition_mode": "per_anchor"},
        "PART-6",
    ),
}


def corrupt(q: np.ndarray, d: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    q, d = q.copy(), d.copy()
    if how == "nan_in_queries":
        q[0, 0] = np.nan
    elif how == "inf_in_docs":
        d[0, 0, 0] = np.inf
    elif how == "docs_dimension_mismatch":
        d = np.concatenate([d, d[..., :1]], axis=-1)
    elif how == "docs_batch_mismatch":
        d = np.concatenate([d, d[:, :1]], axis=1)
    elif how == "empty_batch":
        q, d = q[:0], d[:, :0]
    return q, d


class InvalidInputs(Property):
    name = "validation/invalid_inputs"
    clauses = (
        "VAL-1",
        "LAYOUT-1",
        "LAYOUT-2",
        "LAYOUT-4",
        "SIM-3",
        "DIR-1",
        "HARD-1",
        "PART-1",
        "PART-4",
        "PART-6",
    )
    summary = "NaN/inf, mismatched shapes, empty batches and invalid options raise ValueError or TypeError"
    weight = 0.5

    def requires(self, caps: Capabilities) -> str | None:
        return None if caps.validates_inputs else "validates_inputs"

    def draw(self, data: Any, ctx: Context) -> dict[str, Any]:
        case = draw_embedding_case(data, ctx, corners=False)
        case["corruption"] = data.draw(
            st.sampled_from(sorted(CORRUPTIONS) + sorted(CONFIG_CORRUPTIONS)), label="corruption"
        )
        return case

    def check(self, case: dict[str, Any], ctx: Context) -> None:
        how = case["corruption"]
        q, d, config = case["queries"], case["docs"], case["config"]
        if how in CORRUPTIONS:
            q, d = corrupt(q, d, how)
            clause = CORRUPTIONS[how]
        else:
            changes, clause = CONFIG_CORRUPTIONS[how]
            config = config.replace()
            for key, value in changes.items():
                object.__setattr__(config, key, value)
        try:
            out = ctx.adapter.embeddings(EmbeddingCase(q, d, config))
        except (ValueError, TypeError) as exc:
            if clause not in str(exc):
                ctx.notes.append(f"{how}: raised {type(exc).__name__} without naming {clause}")
            return
        except AdapterFault:
            raise  # a hang, a crash, a dead worker: one verdict, not a VAL-1 failure
        except Exception as exc:
            raise fail(
                clause, f"{how}: raised {type(exc).__name__}: {exc}; expected ValueError or TypeError"
            ) from None
        raise fail(
            clause,
            f"{how}: accepted invalid input and returned loss "
            f"{getattr(out, 'loss', out)!r}; expected ValueError or TypeError",
        )
