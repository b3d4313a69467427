"""The reproducible environment: envs/requirements.lock pins every dependency exactly (with hashes), setup.sh and
the conda env's post-deploy step install from it, and each experiment's report records the versions it ran on."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib

from layerprune.cli.config import KEY_PACKAGES, config_page, locked_versions, package_versions

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "envs" / "requirements.lock"


def _name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _entries() -> dict[str, str]:
    """Each locked package's block of text (its pin line and hash lines)."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    return {_name(b): b for b in blocks if "==" in b.split("\n", 1)[0]}


def test_lock_pins_every_dependency_with_hashes():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"]}
    for extra in ("workflow", "dev"):
        wanted |= {_name(r) for r in project["optional-dependencies"][extra]}
    entries = _entries()
    assert wanted <= set(entries), sorted(wanted - set(entries))
    for name, block in entries.items():
        assert re.match(r"^[A-Za-z0-9_.-]+==[^\s;]+", block), name
        assert "--hash=sha256:" in block, f"{name} has no hash"


def test_lock_has_the_torch_pair_setup_sh_names():
    pins = locked_versions(LOCK)
    assert (pins["torch"], pins["torchvision"]) == ("2.14.1", "0.29.1")
    constraints = (REPO / "envs" / "lock-constraints.txt").read_text()
    assert "torch==2.14.1" in constraints and "torchvision==0.29.1" in constraints
    setup = (REPO / "setup.sh").read_text()
    assert "--require-hashes -r envs/requirements.lock" in setup
    assert '"torch==2.14.1" "torchvision==0.29.1"' in setup  # the unlocked fallback installs the same pair
    deploy = (REPO / "envs" / "layerprune.post-deploy.sh").read_text()
    assert '--require-hashes -r "$source/envs/requirements.lock"' in deploy and "--no-deps --editable" in deploy
    assert "torch" not in (REPO / "envs" / "layerprune.yaml").read_text().split("dependencies:")[1]


def test_installed_key_packages_are_the_locked_ones():
    """The environment the tests run in was installed from the lock (setup.sh): its key packages match it."""
    pins = locked_versions(LOCK)
    installed = package_versions()
    differ = {
        name: (installed[name], pins[name]) for name in KEY_PACKAGES if name in pins and installed[name] != pins[name]
    }
    assert not differ, f"installed vs locked: {differ}; run ./setup.sh to install the lock"


def test_report_config_page_records_versions():
    page = config_page({"experiment": "x"}, "experiment: x\n", package_versions())
    for name in ("python", "torch", "torchvision", "numpy", "snakemake"):
        assert f"<td>{name}</td>" in page
    assert "as locked" in page


def test_license_is_the_one_pyproject_names():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in text
