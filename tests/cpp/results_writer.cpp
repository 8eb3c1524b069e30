// A minimal golden-vector results writer in C++17 (nlohmann/json): standard InfoNCE, query_to_doc,
// joint, dot similarity (spec QD-1, PART-2, SIM-2, GRAD-1, SCALE-2), for the claim
//   {"configurations": ["infonce"], "similarities": ["dot"], "grad_scale": true, "per_query_loss": true}
// Build and run (docs/golden-vectors.md):
//   g++ -std=c++17 -O2 -o writer tests/cpp/results_writer.cpp
//   infonce-conformance golden cases --claims claims.json > ids.txt
//   ./writer spec/vectors/MANIFEST.json ids.txt results.json
//   infonce-conformance verify results.json --claims claims.json
#include <cmath>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

using json = nlohmann::json;
using Mat = std::vector<std::vector<double>>;

// Your implementation goes here: loss, per-query losses and gradients for queries (N, D) and the
// flattened documents (K*N, D), candidate k*N + j (LAYOUT-3), positive of query g at index g.
json infonce_dot(const Mat& q, const Mat& d, double scale) {
  size_t n = q.size(), c = d.size(), dim = q[0].size();
  Mat gq(n, std::vector<double>(dim)), gd(c, std::vector<double>(dim));
  std::vector<double> per_query(n);
  double loss = 0, grad_scale = 0;
  for (size_t g = 0; g < n; ++g) {
    std::vector<double> s(c), p(c);
    double top = -INFINITY, sum = 0;
    for (size_t j = 0; j < c; ++j) {
      for (size_t x = 0; x < dim; ++x) s[j] += q[g][x] * d[j][x];
      top = std::max(top, scale * s[j]);
    }
    for (size_t j = 0; j < c; ++j) sum += p[j] = std::exp(scale * s[j] - top);
    per_query[g] = top + std::log(sum) - scale * s[g];  // logsumexp minus the positive logit
    loss += per_query[g] / n;
    for (size_t j = 0; j < c; ++j) {
      double grad = (p[j] / sum - (j == g ? 1.0 : 0.0)) / n;  // dL/dlogit
      grad_scale += grad * s[j];
      for (size_t x = 0; x < dim; ++x) {
        gq[g][x] += grad * scale * d[j][x];
        gd[j][x] += grad * scale * q[g][x];
      }
    }
  }
  size_t k = c / n;
  json docs = json::array();
  for (size_t col = 0; col < k; ++col) docs.push_back(Mat(gd.begin() + col * n, gd.begin() + (col + 1) * n));
  return {{"loss", loss}, {"per_query_loss", per_query}, {"grad_queries", gq}, {"grad_docs", docs},
          {"grad_scale", grad_scale}};
}

int main(int argc, char** argv) {
  if (argc != 4) return 2;  // MANIFEST.json ids.txt results.json
  std::string manifest_path = argv[1], dir = manifest_path.substr(0, manifest_path.find_last_of('/') + 1);
  std::set<std::string> ids;
  std::ifstream id_file(argv[2]);
  for (std::string id; id_file >> id;) ids.insert(id);
  json manifest = json::parse(std::ifstream(manifest_path)), results = json::object();
  for (auto& entry : manifest["files"]) {  // cases come through the manifest, never by globbing
    json file = json::parse(std::ifstream(dir + entry["path"].get<std::string>()));
    for (auto& c : file["cases"]) {
      if (!ids.count(c["id"])) continue;
      Mat q = c["inputs"]["queries"], d;
      for (Mat column : c["inputs"]["docs"]) d.insert(d.end(), column.begin(), column.end());
      results[c["id"].get<std::string>()] = infonce_dot(q, d, c["config"]["scale"]);
    }
  }
  json out = {{"implementation", "tests/cpp/results_writer.cpp"}, {"spec_version", manifest["spec_version"]},
              {"dtype", "float64"}, {"results", results}};
  std::ofstream(argv[3]) << out.dump();
  return 0;
}
