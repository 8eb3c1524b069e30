"""Measure the margins of the conformance tolerance model (docs/conformance.md, "Tolerances").

For random cases over every option (N 1..8, K 1..3, D up to 64, scale 1..1e3, cos and dot, all
directions, partitions and hardness modes, a few zero / sub-eps / large rows), compute for each
implementation the worst ratio ``|computed - reference| / bound`` over the loss and every gradient:

* correct implementations (our torch losses, uncached and cached, in float64 / float32 / bfloat16)
  must stay far below 1 -- the *acceptance margin* is ``1 / max ratio``;
* wrong implementations must land far above 1 -- reported as the 10th percentile and the median of
  their ratios over the cases where the bug changes the exact result materially, and the fraction
  of all cases running the bug's code path in which the suite flags it (ratio > 1).

The wrong implementations: a numpy loss that forgets the query_to_query self mask (MASK-QQ-1), and
wrappers around the correct loss that reproduce the exact effect of common bugs: a temperature
off by 0.1 % (SCALE-1), hardness multiplied by the scale (HARD-2), hard-negative gradients dropped
(GRAD-1), per_direction summing instead of averaging (PART-3).

Run: ``python benchmarks/tolerance_margins.py [--cases 300] [--seed 0] [--markdown]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from infonce_spec.adapters.bundled import TorchAdapter
from infonce_spec.conformance.cases import config_with_directions
from infonce_spec.conformance.protocol import Capabilities, EmbeddingCase, LossGrads
from infonce_spec.conformance.tolerances import (
    OUTPUT_ROUNDING,
    UNIT_ROUNDOFF,
    cos_eps_ambiguous,
    embedding_bounds,
    round_to_dtype,
)
from infonce_spec.reference import DIRECTIONS, HARDNESS_MODES, Config, loss_and_grad

DTYPES = ("float64", "float32", "bfloat16")


def random_case(rng: np.random.Generator, dtype: str) -> tuple[np.ndarray, np.ndarray, Config]:
    n, k = int(rng.integers(1, 9)), int(rng.integers(1, 4))
    d = int(rng.choice([1, 2, 4, 8, 16, 32, 64]))
    extra = [x for x in DIRECTIONS[1:] if rng.random() < 0.5]
    directions = ("query_to_doc", *extra)
    partition = (
        "per_direction"
        if set(directions) <= {"query_to_doc", "doc_to_query"} and rng.random() < 0.5
        else "joint"
    )
    similarity = str(rng.choice(["cos", "dot"]))
    scale = (
        float(rng.choice([1.0, 20.0, 100.0, 1000.0]))
        if similarity == "cos"
        else float(rng.choice([1.0, 5.0, 20.0]))
    )
    mode = None if rng.random() < 0.4 else str(rng.choice(HARDNESS_MODES))
    config = Config(
        directions=directions,
        partition_mode=partition,
        scale=scale,
        similarity=similarity,
        hardness_mode=mode,
        hardness_strength=float(rng.uniform(0.1, 5.0)) if mode else 0.0,
    )
    x = rng.standard_normal((n * (k + 1), d))
    if similarity == "dot":
        x /= np.sqrt(d)
    for _ in range(int(rng.integers(0, 3))):
        x[rng.integers(0, len(x))] *= float(
            rng.choice([0.0, 1e-14, 1e-9, 1e3 if similarity == "cos" else 3.0])
        )
    x = round_to_dtype(x, dtype)
    return x[:n], x[n:].reshape(k, n, d), config


def worst_ratio(out: LossGrads, q: np.ndarray, d: np.ndarray, config: Config, caps: Capabilities) -> float:
    """max |computed - reference| / bound, with the suite's bound (loss stage + rounding of the results)."""
    ref = loss_and_grad(q, d, config)
    b = embedding_bounds(q, d, config, caps.loss_dtype)
    u_out = UNIT_ROUNDOFF[caps.dtype]
    pairs = [
        (out.loss, ref.loss, b.loss),
        (out.grad_queries, ref.grad_queries, b.grad_queries),
        (out.grad_docs, ref.grad_docs, b.grad_docs),
    ]
    if out.grad_scale is not None:
        pairs.append((out.grad_scale, ref.grad_scale, b.grad_scale))
    worst = 0.0
    for i, (got, exp, bound) in enumerate(pairs):
        got, exp = np.asarray(got, dtype=np.float64), np.asarray(exp, dtype=np.float64)
        # Gradients (i > 0) come back rounded to the adapter's dtype; the loss comes from the loss stage.
        rounding = OUTPUT_ROUNDING * u_out * np.abs(exp) if i > 0 else 0.0
        with np.errstate(invalid="ignore"):
            r = np.abs(got - exp) / (np.asarray(bound) + rounding)
        worst = max(worst, float(np.nanmax(np.where(np.isfinite(got), r, np.inf))))
    return worst


def relative_effect(out: LossGrads, q: np.ndarray, d: np.ndarray, config: Config) -> float:
    """How much a bug changes the exact result: the largest change of the loss or of a gradient, relative
    to that quantity's largest element or to 1, whichever is larger (so that underflowed, numerically
    empty differences -- e.g. gradients of 1e-170 at a saturated softmax -- do not count)."""
    ref = loss_and_grad(q, d, config)
    pairs = [(out.loss, ref.loss), (out.grad_queries, ref.grad_queries), (out.grad_docs, ref.grad_docs)]
    effect = 0.0
    for got, exp in pairs:
        exp = np.asarray(exp, dtype=np.float64)
        size = max(float(np.max(np.abs(exp), initial=0.0)), 1.0)
        effect = max(effect, float(np.max(np.abs(np.asarray(got) - exp), initial=0.0)) / size)
    return effect


class SelfUnmaskedDot:
    """A numpy query_to_doc + query_to_query (joint, dot) loss whose query_to_query row keeps j == g."""

    capabilities = Capabilities(
        name="numpy-qq-self-unmasked",
        directions=frozenset({"query_to_doc", "query_to_query"}),
        partition_modes=frozenset({"joint"}),
        similarities=frozenset({"dot"}),
        hardness_modes=frozenset(),
    )

    def __init__(self, mask_self: bool = False) -> None:
        self.mask_self = mask_self

    def embeddings(self, case: EmbeddingCase) -> LossGrads:
        q, docs, s = case.queries, case.docs, case.config.scale
        k, n, dim = docs.shape
        flat = docs.reshape(k * n, dim)
        use_qq = "query_to_query" in case.config.directions
        logits = [s * q @ flat.T] + ([s * q @ q.T] if use_qq else [])
        if use_qq and self.mask_self:
            logits[1] = np.where(np.eye(n, dtype=bool), -np.inf, logits[1])
        z = np.concatenate(logits, axis=1)
        m = z.max(axis=1, keepdims=True)
        p = np.exp(z - m)
        lse = m[:, 0] + np.log(p.sum(axis=1))
        p /= p.sum(axis=1, keepdims=True)
        loss = float(np.mean(lse - s * np.sum(q * docs[0], axis=1)))
        p_d, p_q = p[:, : k * n] / n, p[:, k * n :] / n
        g_q = s * (p_d @ flat) - s * docs[0] / n
        g_flat = s * (p_d.T @ q)
        if use_qq:
            g_q += s * (p_q @ q) + s * (p_q.T @ q)
        g_flat[:n] -= s * q / n
        return LossGrads(loss, g_q, g_flat.reshape(k, n, dim), None)


def _wrap(
    adapter: TorchAdapter,
    *,
    scale_factor: float = 1.0,
    hardness_times_scale: bool = False,
    drop_hard_negative_grads: bool = False,
    per_direction_sum: bool = False,
) -> Callable[[EmbeddingCase], LossGrads]:
    def run(case: EmbeddingCase) -> LossGrads:
        c = case.config
        changes: dict[str, Any] = {}
        if scale_factor != 1.0:
            changes["scale"] = c.scale * scale_factor
        if hardness_times_scale and c.hardness_active:
            changes["hardness_strength"] = c.hardness_strength * c.scale
        cfg = config_with_directions(c.replace(**changes), c.directions) if changes else c
        out = adapter.embeddings(EmbeddingCase(case.queries, case.docs, cfg))
        if drop_hard_negative_grads:
            gd = np.array(out.grad_docs)
            gd[1:] = 0.0
            out = dataclasses.replace(out, grad_docs=gd)
        if per_direction_sum and c.partition_mode == "per_direction" and len(c.directions) == 2:
            out = LossGrads(
                2 * out.loss,
                2 * np.asarray(out.grad_queries),
                2 * np.asarray(out.grad_docs),
                None if out.grad_scale is None else 2 * out.grad_scale,
            )
        return out

    return run


WRONG: dict[str, tuple[str, Callable[[Config, np.ndarray], bool]]] = {
    "qq_self_unmasked": ("MASK-QQ-1", lambda c, d: "query_to_query" in c.directions),
    "scale_off_0.1%": ("SCALE-1", lambda c, d: True),
    "hardness_times_scale": ("HARD-2", lambda c, d: c.hardness_active and c.scale != 1.0),
    "hard_negative_grads_dropped": ("GRAD-1", lambda c, d: d.shape[0] >= 2),
    "per_direction_sum": (
        "PART-3",
        lambda c, d: c.partition_mode == "per_direction" and len(c.directions) == 2,
    ),
}


def _wrong(base: TorchAdapter) -> dict[str, Callable[[EmbeddingCase], LossGrads]]:
    return {
        "qq_self_unmasked": SelfUnmaskedDot().embeddings,
        "scale_off_0.1%": _wrap(base, scale_factor=1.001),
        "hardness_times_scale": _wrap(base, hardness_times_scale=True),
        "hard_negative_grads_dropped": _wrap(base, drop_hard_negative_grads=True),
        "per_direction_sum": _wrap(base, per_direction_sum=True),
    }


#: A bug counts in the rejection factor where it changes the exact result by at least this (relative).
MATERIAL = 1e-3


def measure(cases: int, seed: int) -> list[dict[str, Any]]:
    rows = []
    twins = _wrong(TorchAdapter("float64 twin"))  # the same bugs in float64: their exact effect
    for dtype in DTYPES:
        rng = np.random.default_rng(seed)
        correct = {
            "uncached": TorchAdapter("u", dtype=dtype),
            "cached": TorchAdapter("c", dtype=dtype, cached=True),
        }
        caps = correct["uncached"].capabilities
        wrong = _wrong(correct["uncached"])
        ratios: dict[str, list[float]] = {k: [] for k in [*correct, *wrong]}
        detected: dict[str, list[bool]] = {k: [] for k in wrong}
        start = time.perf_counter()
        done = 0
        while done < cases:
            q, d, config = random_case(rng, dtype)
            rows_x = np.concatenate([q, d.reshape(-1, q.shape[1])])
            if config.similarity == "cos" and cos_eps_ambiguous(rows_x, caps.loss_dtype):
                continue
            done += 1
            case = EmbeddingCase(q, d, config)
            for name, adapter in correct.items():
                ratios[name].append(worst_ratio(adapter.embeddings(case), q, d, config, caps))
            for name, run in wrong.items():
                cfg = config
                if name == "qq_self_unmasked":
                    cfg = Config(
                        directions=("query_to_doc", "query_to_query"),
                        scale=min(config.scale, 20.0),
                        similarity="dot",
                    )
                elif not WRONG[name][1](config, d):
                    continue
                bad = EmbeddingCase(q, d, cfg)
                ratio = worst_ratio(run(bad), q, d, cfg, caps)
                detected[name].append(ratio > 1)
                if relative_effect(twins[name](bad), q, d, cfg) >= MATERIAL:
                    ratios[name].append(ratio)
        row: dict[str, Any] = {"dtype": dtype, "seconds": time.perf_counter() - start, "cases": cases}
        for k, v in ratios.items():
            if v:
                row[k] = (
                    float(np.max(v)) if k in correct else float(np.quantile(v, 0.1)),
                    float(np.median(v)),
                    len(v),
                )
        row["detected"] = {k: (sum(v), len(v)) for k, v in detected.items()}
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = measure(args.cases, args.seed)
    print("Correct implementations: worst |error| / bound over all cases (acceptance margin = 1 / ratio).")
    print()
    print("| dtype (loss stage) | torch uncached | torch cached |")
    print("| --- | --- | --- |")
    for r in rows:
        cells = [f"{r[k][0]:.2g} (margin {1 / max(r[k][0], 1e-300):.0f}x)" for k in ("uncached", "cached")]
        stage = "float32" if r["dtype"] == "bfloat16" else r["dtype"]
        print(f"| {r['dtype']} ({stage}) | {' | '.join(cells)} |")
    print()
    print(
        f"Wrong implementations: 10th percentile / median of |error| / bound over the cases where the bug changes the exact "
        f"loss or a gradient by >= {MATERIAL:g} x max(its largest element, 1); detected = cases with ratio > 1 / "
        "cases where the bug's code runs."
    )
    print()
    print("| dtype | " + " | ".join(f"{k} ({WRONG[k][0]})" for k in WRONG) + " |")
    print("| --- |" + " --- |" * len(WRONG))
    for r in rows:
        cells = []
        for k in WRONG:
            hit, total = r["detected"][k]
            cells.append((f"{r[k][0]:.2g} / {r[k][1]:.2g}" if k in r else "-") + f"; {hit}/{total}")
        print(f"| {r['dtype']} | " + " | ".join(cells) + " |")
    print(
        f"\n{args.cases} random cases per dtype, seed {args.seed}; "
        + ", ".join(f"{r['dtype']} {r['seconds']:.0f} s" for r in rows)
    )


if __name__ == "__main__":
    main()
