"""The release metadata agrees with itself: one version (pyproject.toml), which the
installed package reports, CITATION.cff cites and CHANGELOG.md describes. The chapters'
Colab install cells pin its tag (checked by ``tools/colab_cells.py --check``, in make lint).

Skipped outside a source checkout (the sdist's tests do not carry these files)."""

import re
from importlib.metadata import version
from pathlib import Path

import pytest

import lyaplib

ROOT = Path(__file__).resolve().parents[1]
if not (ROOT / "CITATION.cff").is_file():
    pytest.skip("not a source checkout", allow_module_level=True)
tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def project() -> dict:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def test_the_version_is_written_once(project):
    assert project["version"] not in (ROOT / "lyaplib" / "__init__.py").read_text()
    assert lyaplib.__version__ == version("lyaplib") == project["version"]


def test_citation_cites_this_release_and_the_three_papers(project):
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["version"] == project["version"]
    assert cff["license"] == project["license"] == "MIT"
    assert cff["authors"] and cff["title"] and cff["message"]
    dois = {ref["doi"] for ref in cff["references"]}
    bib = (ROOT / "references.bib").read_text(encoding="utf-8")
    for key in ("vogt2022lyapunov", "vogt2024aelle", "geadah2024aru"):
        entry = bib.split(f"{{{key},", 1)[1].split("\n}", 1)[0]
        assert re.search(r"doi\s*=\s*\{([^}]*)\}", entry).group(1) in dois, key
    for ref in cff["references"]:
        assert {"type", "title", "authors", "year", "doi"} <= set(ref), ref.get("title")


def test_the_changelog_describes_this_release(project):
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    released = re.search(rf"^## \[{re.escape(project['version'])}\] - (\S+)$", changelog, re.M)
    assert released, f"CHANGELOG.md has no entry for {project['version']}"
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert str(cff["date-released"]) == released.group(1)


def test_the_package_carries_its_type_marker_and_licence():
    assert (ROOT / "lyaplib" / "py.typed").is_file() and (ROOT / "LICENSE").is_file()
    assert "MIT License" in (ROOT / "LICENSE").read_text(encoding="utf-8")
