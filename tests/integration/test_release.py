"""The release a user installs: the LICENSE that pyproject.toml names is in the repository,
the sdist and the wheel; both build and pass ``twine check``; the CHANGELOG has this
version. ``.ci/run`` checks the same on every CI run."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

APACHE_FIRST_LINES = ["Apache License", "Version 2.0, January 2004",
                      "http://www.apache.org/licenses/"]


def project() -> dict[str, object]:
    with open(REPO / "pyproject.toml", "rb") as handle:
        data = tomllib.load(handle)["project"]
    assert isinstance(data, dict)
    return data


def test_license_is_the_full_apache_text_pyproject_names() -> None:
    """There was no LICENSE file, though pyproject.toml says Apache-2.0."""
    text = (REPO / "LICENSE").read_text(encoding="utf-8")
    assert [line.strip() for line in text.splitlines()[1:4]] == APACHE_FIRST_LINES
    assert "END OF TERMS AND CONDITIONS" in text
    assert len(text.splitlines()) == 202  # the text as apache.org serves it
    meta = project()
    assert meta["license"] == "Apache-2.0"
    assert meta["license-files"] == ["LICENSE"]


def test_changelog_has_this_version_and_the_unreleased_fixes() -> None:
    text = (REPO / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Unreleased"
    version = str(project()["version"])
    assert any(h.startswith(f"## {version.removesuffix('.0')}") for h in headings)
    assert any(h.startswith("## 0.1") for h in headings)


def sources(into: Path) -> Path:
    """The files git would ship (tracked, and new ones not ignored), copied: the build
    writes its working folders there, not into the checkout other tests read."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                 "--exclude-standard"], cwd=REPO, capture_output=True,
                                check=True).stdout.decode().split("\0")
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"not a git checkout here ({exc})")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


@pytest.mark.skipif(importlib.util.find_spec("build") is None
                    or importlib.util.find_spec("twine") is None,
                    reason="build and twine (the dev extra) are not installed")
def test_sdist_and_wheel_build_pass_twine_check_and_carry_the_license(tmp_path: Path) -> None:
    tree = sources(tmp_path / "src")
    dist = tmp_path / "dist"
    # --no-isolation: the installed setuptools, so the test needs no index
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist),
                    str(tree)], capture_output=True, check=True, timeout=600)
    (wheel,), (sdist,) = list(dist.glob("*.whl")), list(dist.glob("*.tar.gz"))
    checked = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel),
                              str(sdist)], capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    license_text = (REPO / "LICENSE").read_bytes()
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert len(names) == 1
        assert archive.read(names[0]) == license_text
    with tarfile.open(sdist) as archive:
        top = sdist.name.removesuffix(".tar.gz")
        member = archive.extractfile(f"{top}/LICENSE")
        assert member is not None
        assert member.read() == license_text
        assert f"{top}/CHANGELOG.md" in archive.getnames()


def test_readme_docs_and_workflow_resolve_the_processor_alike() -> None:
    """The docs' and the workflow's CI pointed --tokenguard-model at ../shared/models while
    the README and .ci/run resolve the checkpoints by hub id, offline, to the embedded
    default (the baseline's source); the docs' user job ran pip install -e ".[dev]", which
    only works inside this repository."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    docs = (REPO / "docs" / "ci-gating.md").read_text(encoding="utf-8")
    workflow = (REPO / ".github" / "workflows" / "tokenguard.yml").read_text(encoding="utf-8")
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert "export HF_HUB_OFFLINE=1" in ci
    assert "unset TOKENGUARD_MODELS_DIR TOKENGUARD_MODEL" in ci
    own_ci = docs[docs.index("### This project's own CI"):]
    for text in (own_ci, workflow):
        assert "--tokenguard-model" not in text
        assert "--tokenguard-model=../shared" not in text
        assert "hf download" not in text
        assert "HF_HUB_OFFLINE" in text
    user_job = docs[docs.index("### GitHub Actions job"):docs.index("### For plugins")]
    assert 'pip install -e ".[dev]"\n' not in user_job
    assert 'HF_HUB_OFFLINE: "1"' in user_job
    install = readme[readme.index("### Installing it in your project"):]
    assert "python -m build --wheel" in install
    assert '"pytest-tokenguard @ git+' in install
    assert "pip install pytest-tokenguard" in install
    assert f"pytest_tokenguard-{project()['version']}-py3-none-any.whl" in install
