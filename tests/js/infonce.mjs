// A small, readable JavaScript implementation of infonce-spec 1.1.0, written from the spec
// (spec/infonce-spec.md), not from the Python reference. It is the non-Python consumer of the golden
// vectors: it reads spec/vectors/MANIFEST.json, computes every case and writes a results file that
// `python -m infonce_spec.conformance.golden verify` checks.
//
//   node tests/js/infonce.mjs spec/vectors/MANIFEST.json out.json [case-ids.txt]
//
// With case-ids.txt (one id per line, e.g. from `infonce-conformance golden cases --claims FILE`)
// it computes only those cases: an implementation of part of the family answers what it claims.
//
// Plain node (v18+), no dependencies, float64 throughout. Gradients are in closed form: for each
// softmax group, dL/dlogit = weight * (softmax - one-hot of the positive), chained through
// logit = scale * s(a, b) (+ a stop-gradient hardness term) and then through the normalisation of cos.
// `computeCase(..., { bug: "MASK-DD-2" })` injects one realistic bug (see infonce_broken.mjs).

import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const SPEC_VERSION = "1.1.0";
const DIRECTIONS = ["query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc"];
const HARDNESS_MODES = ["in_batch_negatives", "hard_negatives", "all_negatives"];
const COS_EPS = 1e-12; // SIM-1

/** An invalid config or input, naming the clause it breaks (VAL-1). */
export class SpecViolation extends Error {
  constructor(clause, message) {
    super(`[${clause}] ${message}`);
    this.clause = clause;
  }
}

// ------------------------------------------------------------------ validation
/** JSON numbers, with the strings "NaN", "Infinity", "-Infinity" for non-finite values. */
function num(x) {
  if (x === "NaN") return NaN;
  if (x === "Infinity") return Infinity;
  if (x === "-Infinity") return -Infinity;
  return x;
}

/** DIR-1, DIR-2, PART-1, PART-4, SCALE-1, SIM-3, HARD-1. */
export function validateConfig(raw) {
  const dirs = raw.directions;
  if (!Array.isArray(dirs)) throw new SpecViolation("DIR-1", "directions must be a list of names");
  if (dirs.length === 0) throw new SpecViolation("DIR-1", "directions must not be empty");
  for (const d of dirs) {
    if (!DIRECTIONS.includes(d)) throw new SpecViolation("DIR-1", `unknown direction ${JSON.stringify(d)}`);
  }
  if (!dirs.includes("query_to_doc")) throw new SpecViolation("DIR-1", "directions must contain query_to_doc");
  const directions = DIRECTIONS.filter((d) => dirs.includes(d)); // DIR-2: a set, in canonical order
  const partitionMode = raw.partition_mode;
  if (partitionMode !== "joint" && partitionMode !== "per_direction" && partitionMode !== "per_anchor") {
    throw new SpecViolation("PART-1", `unknown partition_mode ${JSON.stringify(partitionMode)}`);
  }
  if (partitionMode === "per_direction" && directions.some((d) => d !== "query_to_doc" && d !== "doc_to_query")) {
    throw new SpecViolation("PART-4", "per_direction is defined only for subsets of {query_to_doc, doc_to_query}");
  }
  if (partitionMode === "per_anchor" && directions.includes("doc_to_doc") && !directions.includes("doc_to_query")) {
    throw new SpecViolation("PART-6", "per_anchor: the group of d[0, g] (doc_to_doc) holds no positive pair");
  }
  const scale = num(raw.scale);
  if (typeof scale !== "number" || !Number.isFinite(scale) || scale <= 0) {
    throw new SpecViolation("SCALE-1", `scale must be finite and > 0, got ${raw.scale}`);
  }
  if (raw.similarity !== "cos" && raw.similarity !== "dot") {
    throw new SpecViolation("SIM-3", `unknown similarity ${JSON.stringify(raw.similarity)}`);
  }
  const mode = raw.hardness_mode ?? null;
  if (mode !== null && !HARDNESS_MODES.includes(mode)) {
    throw new SpecViolation("HARD-1", `unknown hardness_mode ${JSON.stringify(mode)}`);
  }
  const alpha = num(raw.hardness_strength ?? 0);
  if (typeof alpha !== "number" || !Number.isFinite(alpha) || alpha < 0) {
    throw new SpecViolation("HARD-1", `hardness_strength must be finite and >= 0, got ${raw.hardness_strength}`);
  }
  return { directions, partitionMode, scale, similarity: raw.similarity, mode, alpha };
}

/** The shape of a nested list of numbers, or null when it is ragged or holds something else. */
function shapeOf(x) {
  if (!Array.isArray(x)) return typeof num(x) === "number" ? [] : null;
  if (x.length === 0) return [0];
  const inner = x.map(shapeOf);
  if (inner.some((s) => s === null || JSON.stringify(s) !== JSON.stringify(inner[0]))) return null;
  return [x.length, ...inner[0]];
}

/** LAYOUT-1 .. LAYOUT-5: queries (N, D), docs (K, N, D), floating, finite. */
export function validateInputs(inputs) {
  const dtype = inputs.dtype ?? "float64";
  if (!["float64", "float32", "float16", "bfloat16"].includes(dtype)) {
    throw new SpecViolation("LAYOUT-5", `inputs must be floating arrays, got dtype ${dtype}`);
  }
  const qs = shapeOf(inputs.queries);
  if (qs === null || qs.length !== 2 || qs[0] < 1 || qs[1] < 1) {
    throw new SpecViolation("LAYOUT-1", `queries must be (N, D) with N, D >= 1, got shape ${JSON.stringify(qs)}`);
  }
  const ds = shapeOf(inputs.docs);
  if (ds === null || ds.length !== 3 || ds[0] < 1 || ds[1] !== qs[0] || ds[2] !== qs[1]) {
    throw new SpecViolation("LAYOUT-2", `docs must be (K, ${qs[0]}, ${qs[1]}), got shape ${JSON.stringify(ds)}`);
  }
  const queries = inputs.queries.map((row) => row.map(num));
  const docs = inputs.docs.map((col) => col.map((row) => row.map(num)));
  if (!queries.flat().every(Number.isFinite)) throw new SpecViolation("LAYOUT-4", "queries must be finite");
  if (!docs.flat(2).every(Number.isFinite)) throw new SpecViolation("LAYOUT-4", "docs must be finite");
  return { queries, docs };
}

// ------------------------------------------------------------------ small vector helpers
const dot = (a, b) => a.reduce((acc, v, i) => acc + v * b[i], 0);
const norm = (a) => Math.sqrt(dot(a, a));
const addScaled = (target, factor, v) => v.forEach((x, i) => (target[i] += factor * x));

/** log(sum(exp(z))) with the max shifted out (NUM-1). */
function logSumExp(z) {
  const m = Math.max(...z);
  return m + Math.log(z.reduce((acc, v) => acc + Math.exp(v - m), 0));
}

// ------------------------------------------------------------------ the loss
/**
 * L, the per-query losses and the exact gradients (GRAD-1) for queries (N, D) and docs (K, N, D).
 * All vectors live in one list: query j has index j, document (k, j) index N + k*N + j (LAYOUT-3).
 */
export function computeCase(queries, docs, cfg, { bug = null } = {}) {
  const N = queries.length;
  const K = docs.length;
  const D = queries[0].length;
  const { directions, partitionMode, scale, similarity, mode, alpha } = cfg;
  const raw = [...queries, ...docs.flat(1)];
  const q = (j) => j;
  const doc = (k, j) => N + k * N + j;
  // u(x): x for dot (SIM-2), x / max(||x||, 1e-12) for cos (SIM-1).
  const unit = raw.map((x) => (similarity === "cos" ? x.map((v) => v / Math.max(norm(x), COS_EPS)) : x));
  const s = (a, b) => dot(unit[a], unit[b]);
  const hardnessOn = mode !== null && alpha > 0; // HARD-6
  const selected = (g, k, j) => // HARD-3
    mode === "in_batch_negatives" ? j !== g : mode === "hard_negatives" ? j === g && k >= 1 : !(k === 0 && j === g);

  // One entry = one logit scale * s(a, b) + h; h = alpha * s carries no gradient (HARD-2, HARD-5).
  const entry = (a, b, h = 0) => ({ a, b, logit: scale * s(a, b) + h });
  function rows(g) {
    const out = [];
    for (const direction of directions) {
      const row = [];
      if (direction === "query_to_doc") { // QD-1; the positive (0, g) never carries h (HARD-4)
        for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) {
          const h = hardnessOn && !(k === 0 && j === g) && selected(g, k, j) ? alpha * s(q(g), doc(k, j)) : 0;
          row.push(entry(q(g), doc(k, j), h));
        }
      } else if (direction === "query_to_query") { // QQ-1, MASK-QQ-1
        for (let j = 0; j < N; j++) if (j !== g) row.push(entry(q(g), q(j)));
      } else if (direction === "doc_to_query") { // DQ-1: j = g included
        for (let j = 0; j < N; j++) row.push(entry(doc(0, g), q(j)));
      } else { // DD-1; MASK-DD-1 and MASK-DD-2: every document of query g is excluded
        for (let k = 0; k < K; k++) for (let j = 0; j < N; j++) {
          const own = j === g && (k === 0 || bug !== "MASK-DD-2");
          if (!own) row.push(entry(doc(0, g), doc(k, j)));
        }
      }
      out.push(row);
    }
    return out;
  }

  const gradUnit = raw.map(() => new Array(D).fill(0));
  let gradScale = 0;
  // dL/dlogit = G for the logit scale * s(a, b): s gets scale * G (no h), scale gets G * s (SCALE-2).
  function backward(a, b, G) {
    const sab = s(a, b);
    gradScale += G * sab;
    addScaled(gradUnit[a], scale * G, unit[b]);
    addScaled(gradUnit[b], scale * G, unit[a]);
  }

  const perQuery = [];
  for (let g = 0; g < N; g++) {
    const positive = scale * s(q(g), doc(0, g)); // QD-2
    // PART-2: one softmax over all rows together; PART-3: one per direction, averaged;
    // PART-5: one per row vector (the rows of q_g, the rows of d[0, g]), averaged.
    const all = rows(g);
    const anchor = (i) => (directions[i].startsWith("query_") ? "q" : "d");
    const groups = partitionMode === "joint" ? [all.flat()]
      : partitionMode === "per_direction" ? all
      : ["q", "d"].map((a) => all.filter((_, i) => anchor(i) === a).flat()).filter((group) => group.length > 0);
    const weight = 1 / (N * groups.length); // LOSS-1: L is the mean over the N queries
    let lossG = -positive;
    for (const group of groups) {
      const lse = logSumExp(group.map((e) => e.logit));
      lossG += lse / groups.length;
      for (const e of group) backward(e.a, e.b, weight * Math.exp(e.logit - lse));
    }
    backward(q(g), doc(0, g), -1 / N); // the one-hot of the positive
    perQuery.push(lossG);
  }

  // Through the normalisation: (g - u (u . g)) / ||x|| above the floor, g / 1e-12 below (GRAD-3).
  const grad = raw.map((x, i) => {
    if (similarity === "dot") return gradUnit[i];
    const n = norm(x);
    if (n < COS_EPS) return gradUnit[i].map((v) => v / COS_EPS);
    const along = dot(unit[i], gradUnit[i]);
    return gradUnit[i].map((v, c) => (v - unit[i][c] * along) / n);
  });
  return {
    loss: perQuery.reduce((acc, v) => acc + v, 0) / N,
    per_query_loss: perQuery,
    grad_queries: grad.slice(0, N),
    grad_docs: Array.from({ length: K }, (_, k) => grad.slice(N + k * N, N + (k + 1) * N)),
    grad_scale: gradScale,
  };
}

/**
 * What each of W ranks reports (DP-1 .. DP-3): rank r owns queries [rB, (r+1)B) and the same rows of
 * every doc column; L_r is the mean of its own l_g; its local gradients are W * dL/d(local).
 */
export function rankExpectations(result, worldSize) {
  const N = result.per_query_loss.length;
  if (!Number.isInteger(worldSize) || worldSize < 1) throw new SpecViolation("DP-1", "world_size must be >= 1");
  if (N % worldSize !== 0) throw new SpecViolation("DP-5", `N = ${N} is not ${worldSize} equal local batches`);
  const B = N / worldSize;
  const times = (rows) => rows.map((row) => row.map((v) => worldSize * v));
  return Array.from({ length: worldSize }, (_, r) => ({
    rank: r,
    loss: result.per_query_loss.slice(r * B, (r + 1) * B).reduce((acc, v) => acc + v, 0) / B,
    grad_queries: times(result.grad_queries.slice(r * B, (r + 1) * B)),
    grad_docs: result.grad_docs.map((col) => times(col.slice(r * B, (r + 1) * B))),
  }));
}

/** One case of the vectors -> its entry of the results file. */
export function runCase(c, options = {}) {
  try {
    const cfg = validateConfig(c.config);
    const { queries, docs } = validateInputs(c.inputs);
    const result = computeCase(queries, docs, cfg, options);
    if (c.data_parallel) result.ranks = rankExpectations(result, c.data_parallel.world_size);
    return result;
  } catch (err) {
    if (err instanceof SpecViolation) return { error: err.clause, message: err.message };
    throw err;
  }
}

/** Read the manifest, compute every case it lists, write the results file. */
export function main(argv, options = {}) {
  const [manifestPath, outPath, idsPath] = argv;
  if (!manifestPath || !outPath) {
    console.error("usage: node tests/js/infonce.mjs spec/vectors/MANIFEST.json out.json [case-ids.txt]");
    return 2;
  }
  const only = idsPath ? new Set(readFileSync(idsPath, "utf8").split(/\s+/).filter(Boolean)) : null;
  const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
  const results = {};
  for (const file of manifest.files) { // cases come from the manifest, never from globbing
    const wanted = file.cases.filter((listed) => only === null || only.has(listed.id));
    if (wanted.length === 0) continue;
    const cases = new Map(JSON.parse(readFileSync(join(dirname(manifestPath), file.path), "utf8")).cases.map((c) => [c.id, c]));
    for (const listed of wanted) results[listed.id] = runCase(cases.get(listed.id), options);
  }
  const name = options.bug ? `tests/js/infonce.mjs with bug ${options.bug}` : "tests/js/infonce.mjs";
  writeFileSync(outPath, JSON.stringify({ implementation: name, spec_version: SPEC_VERSION, dtype: "float64", results }));
  console.log(`${name}: ${Object.keys(results).length} cases -> ${outPath}`);
  return 0;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  process.exitCode = main(process.argv.slice(2), { bug: process.env.INFONCE_BUG || null });
}
