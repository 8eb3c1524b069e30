// A deliberately broken copy of infonce.mjs, for testing the verifier: doc_to_doc keeps the query's
// own hard negatives (it excludes only d[0, g]), a plausible slip when porting the GTE loss. The spec
// excludes every document of query g from its doc_to_doc row (MASK-DD-2), so the golden-vector
// verifier must reject this implementation and name MASK-DD-2.
//
//   node tests/js/infonce_broken.mjs spec/vectors/MANIFEST.json out.json

import { main } from "./infonce.mjs";

process.exitCode = main(process.argv.slice(2), { bug: "MASK-DD-2" });
