"""One version everywhere, and the SHA-256 of the spec text (spec §16).

Every place that states the version is read here: the package (``infonce_spec.release``,
``pyproject.toml``), the spec header, ``spec/CHANGELOG.md``, ``CITATION.cff``, ``README.md``,
``spec/README.md``, ``spec/worked_example.json``, every golden-vector file and their SCHEMA.md, the
JavaScript consumer, ``docs/golden-vectors.md``, ``infonce-conformance --version`` and the reports
(conformance run: Markdown, JSON, terminal; golden-vector verification: Markdown, JSON, terminal).
The recorded peer reports (``peers/reports/``) keep the version they were run against. The text's SHA-256 must be
the one the release and the CHANGELOG entry of the current version record, so editing
``spec/infonce-spec.md`` without a version or changelog change fails.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from infonce_spec import SPEC_SHA256, SPEC_VERSION, __version__, release

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "spec" / "infonce-spec.md"
CHANGELOG = ROOT / "spec" / "CHANGELOG.md"
SHORT = SPEC_SHA256[:8]
#: Where the SHA-256 is written out; all of them change when the text does.
SHA_PLACES = (
    "src/infonce_spec/release.py (SPEC_SHA256), spec/CHANGELOG.md, README.md, CITATION.cff, and "
    "spec/vectors/MANIFEST.json (rerun python spec/vectors/generate.py)"
)
_ENTRY = re.compile(r"^## \[([^\]]+)\] - (\d{4}-\d{2}-\d{2})", re.M)


def _changelog_entries() -> list[tuple[str, str, str]]:
    """``(version, date, body)`` per entry, newest first."""
    text = CHANGELOG.read_text()
    heads = list(_ENTRY.finditer(text))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    return [(h[1], h[2], text[h.end() : end]) for h, end in zip(heads, ends, strict=True)]


def test_the_spec_text_is_the_one_the_release_records():
    """Editing spec/infonce-spec.md changes its SHA-256: this fails until the release says so."""
    actual = release.spec_sha256(SPEC)
    assert actual == SPEC_SHA256, (
        f"spec/infonce-spec.md has sha256 {actual}, but release {SPEC_VERSION} records {SPEC_SHA256}. "
        f"A released text is never edited in place (spec §16.1): give the change a new version "
        f"(SPEC_VERSION and PACKAGE_VERSION in src/infonce_spec/release.py, pyproject.toml, the spec "
        f"header) and a new entry at the top of spec/CHANGELOG.md, then write the new sha256 in "
        f"{SHA_PLACES}; tests/test_release.py lists every place that states the version."
    )


def test_the_sha256_reads_cr_lf_as_lf(tmp_path):
    """§16.2: a checkout with CR LF line endings has the same SHA-256 as the stored text."""
    crlf = tmp_path / "infonce-spec.md"
    crlf.write_bytes(SPEC.read_bytes().replace(b"\n", b"\r\n"))
    assert release.spec_sha256(crlf) == release.spec_sha256(SPEC)
    crlf.write_bytes(SPEC.read_bytes() + b" ")
    assert release.spec_sha256(crlf) != release.spec_sha256(SPEC)


def test_the_changelog_has_one_entry_per_version_and_records_the_sha():
    entries = _changelog_entries()
    versions = [v for v, _, _ in entries]
    assert len(versions) == len(set(versions)), f"one CHANGELOG entry per version, got {versions}"
    version, _, body = entries[0]
    assert version == SPEC_VERSION, (
        f"the newest CHANGELOG entry is {version}, the release is {SPEC_VERSION}: add its entry"
    )
    assert f"sha256 `{SPEC_SHA256}`" in body, (
        f"the CHANGELOG entry of {SPEC_VERSION} must record the text's sha256 `{SPEC_SHA256}` "
        f"(spec §16.2); the places that state it: {SHA_PLACES}"
    )
    assert [d for _, d, _ in entries] == sorted((d for _, d, _ in entries), reverse=True), "newest first"


def test_package_version_follows_the_spec():
    """§16.1: the package version is the spec version or a post-release of it (PEP 440)."""
    assert __version__ == release.PACKAGE_VERSION
    assert re.fullmatch(re.escape(SPEC_VERSION) + r"(\.post\d+)?", __version__), __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", SPEC_VERSION), "a released version has no pre-release suffix"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == __version__, "pyproject.toml [project] version"


def test_every_document_states_the_same_version_and_sha():
    date = _changelog_entries()[0][1]
    spec = SPEC.read_text()
    assert f"**Version {SPEC_VERSION}** · released {date}" in spec.split("\n## ", 1)[0], "spec header"
    cff = (ROOT / "CITATION.cff").read_text()
    assert re.search(rf"^version: \"?{re.escape(SPEC_VERSION)}\"?$", cff, re.M), "CITATION.cff version"
    assert re.search(rf"^date-released: \"?{date}\"?$", cff, re.M), "CITATION.cff date-released"
    assert f'value: "sha256:{SPEC_SHA256}"' in cff, "CITATION.cff identifiers: the text's sha256"
    assert " ".join(release.citation("PART-2").split()) in " ".join(cff.split()), "CITATION.cff message"
    readme = (ROOT / "README.md").read_text()
    assert f"**version {SPEC_VERSION}** (released\n{date})" in readme
    assert SPEC_SHA256 in readme and release.citation() in " ".join(readme.split())
    assert "<this repository's URL>" not in readme and "git+" not in readme
    assert f"infonce_spec-{__version__}-py3-none-any.whl" in readme, "README.md: the wheel to install"
    schema = (ROOT / "spec" / "vectors" / "SCHEMA.md").read_text()
    assert schema.startswith(f"# Golden vectors: schema {SPEC_VERSION}\n")
    stated = set(re.findall(r"\"(?:schema|spec)_version\": \"([^\"]+)\"", schema))
    assert stated == {SPEC_VERSION}, "spec/vectors/SCHEMA.md examples"
    spec_readme = (ROOT / "spec" / "README.md").read_text()
    assert f"infonce-spec **{SPEC_VERSION}**" in spec_readme
    example = json.loads((ROOT / "spec" / "worked_example.json").read_text())
    assert example["spec_version"] == SPEC_VERSION
    names = [c["name"] for c in example["cases"]]
    assert f"(cases {names[0]} .. {names[-1]})" in spec_readme, "spec/README.md: the worked example's cases"
    js = (ROOT / "tests" / "js" / "infonce.mjs").read_text()
    assert f'export const SPEC_VERSION = "{SPEC_VERSION}";' in js
    guide = (ROOT / "docs" / "golden-vectors.md").read_text()
    stated = set(re.findall(r"infonce-spec (\d[\w.\-]*)|\"spec_version\": \"([^\"]+)\"", guide))
    assert {v for pair in stated for v in pair if v} == {SPEC_VERSION}, "docs/golden-vectors.md"


def test_golden_vectors_name_the_version():
    vectors = ROOT / "spec" / "vectors"
    manifest = json.loads((vectors / "MANIFEST.json").read_text())
    assert manifest["spec_version"] == manifest["schema_version"] == SPEC_VERSION
    assert manifest["spec_sha256"] == SPEC_SHA256
    for entry in manifest["files"]:
        assert json.loads((vectors / entry["path"]).read_text())["spec_version"] == SPEC_VERSION


def test_version_option_prints_version_and_sha():
    run = subprocess.run(
        [sys.executable, "-m", "infonce_spec.conformance", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert f"infonce-spec package {__version__}, spec {SPEC_VERSION} (sha256 {SPEC_SHA256})" in run.stdout


def test_every_report_shows_version_and_sha(tmp_path):
    from rich.console import Console

    from infonce_spec.conformance import Capabilities, golden
    from infonce_spec.conformance.report import print_report, to_json, to_markdown
    from infonce_spec.conformance.runner import RunReport

    rep = RunReport("mymodule:adapter", Capabilities(name="mine"), "quick", (), [], 0.0)
    assert f"spec {SPEC_VERSION} (sha256 {SPEC_SHA256})" in to_markdown([rep])
    one = to_json([rep])["reports"][0]
    assert (one["spec_version"], one["spec_sha256"]) == (SPEC_VERSION, SPEC_SHA256)
    console = Console(file=io.StringIO(), width=400, record=True)
    print_report(rep, console)
    assert release.release_line() in console.export_text()

    results = tmp_path / "results.json"
    results.write_text(json.dumps({"implementation": "nothing", "results": {}}))
    verified = golden.verify(results)
    assert release.release_line() in verified.to_markdown()
    data = verified.to_json()
    assert (data["spec_version"], data["spec_sha256"]) == (SPEC_VERSION, SPEC_SHA256)
    assert release.release_line() in verified.header()
