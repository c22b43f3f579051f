"""
The release artefacts: ``python -m build`` makes an sdist and a wheel that install cleanly and
register the provider with Airflow.

The build runs once per module, as ``python -m build`` does: the sdist from a copy of this
checkout, then the wheel from the unpacked sdist, so a file the sdist lacks breaks the wheel. It
runs without build isolation (the backend, setuptools, comes from the dev extra), hence offline.
Then:

- the sdist holds README, LICENSE, CHANGELOG, the example DAGs and the docs sources, and no
  caches or tests; ``twine check --strict`` passes on both files;
- the wheel holds every module of the package, ``py.typed``, the license and the entry points,
  and nothing else; its version is ``airflow_provider_octopods.__version__``;
- a fresh virtualenv gets the wheel (``pip install --no-deps --no-index``; its dependencies come
  from this virtualenv's site-packages, appended to its path by a ``.pth`` file, so nothing is
  downloaded). In it, Airflow's ``ProvidersManager`` registers the provider, the ``octopods``
  connection type, its hook and its form, all loaded from the wheel's copy, never from this
  checkout; the ``octopods-simulator`` command runs.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_octopods import __version__
from airflow_provider_octopods.get_provider_info import RELABELING

ROOT = Path(__file__).resolve().parent.parent
DIST_NAME = "airflow_provider_octopods"
#: Left out of the copy the sdist is built from: not sources, and possibly large.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis", "_build"
)

pytest.importorskip("build", reason="the 'build' package is not installed: pip install -e '.[dev]'")


def _run(*args: str | Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=300, check=False, **kwargs
    )
    assert result.returncode == 0, f"{' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the sdist, then the wheel from it, into a temporary ``dist/``; return that folder."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCES)
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", work / "dist", source, cwd=work)
    return work / "dist"


def _sdist(dist: Path) -> Path:
    (path,) = dist.glob("*.tar.gz")
    return path


def _wheel(dist: Path) -> Path:
    (path,) = dist.glob("*.whl")
    return path


def test_artefacts_carry_the_version_written_in_one_place(dist: Path) -> None:
    assert _sdist(dist).name == f"{DIST_NAME}-{__version__}.tar.gz"
    assert _wheel(dist).name == f"{DIST_NAME}-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        metadata = wheel.read(f"{DIST_NAME}-{__version__}.dist-info/METADATA").decode()
    assert f"\nVersion: {__version__}\n" in metadata
    assert "\nLicense-Expression: Apache-2.0\n" in metadata
    assert "\nRequires-Dist: apache-airflow>=2.11" in metadata
    assert "\nDescription-Content-Type: text/markdown" in metadata


def test_sdist_holds_the_sources_a_reader_needs(dist: Path) -> None:
    prefix = f"{DIST_NAME}-{__version__}/"
    with tarfile.open(_sdist(dist)) as sdist:
        names = {name.removeprefix(prefix) for name in sdist.getnames()}

    for required in (
        "README.md",
        "LICENSE",
        "CHANGELOG.md",
        "pyproject.toml",
        "PKG-INFO",
        "airflow_provider_octopods/py.typed",
        "example_dags/example_octopods_sms_delivery.py",
        "docs/conf.py",
        "docs/index.rst",
    ):
        assert required in names, f"the sdist lacks {required}"
    assert not [n for n in names if "__pycache__" in n or n.startswith(("tests/", ".venv", "docs/_build"))]


def test_wheel_holds_the_package_and_nothing_else(dist: Path) -> None:
    info = f"{DIST_NAME}-{__version__}.dist-info"
    with zipfile.ZipFile(_wheel(dist)) as wheel:
        names = set(wheel.namelist())
        entry_points = wheel.read(f"{info}/entry_points.txt").decode()

    modules = {
        path.relative_to(ROOT).as_posix() for path in (ROOT / "airflow_provider_octopods").rglob("*.py")
    }
    assert modules <= names, f"the wheel lacks {sorted(modules - names)}"
    assert "airflow_provider_octopods/py.typed" in names
    assert f"{info}/licenses/LICENSE" in names
    assert {name.split("/")[0] for name in names} == {"airflow_provider_octopods", info}
    assert (
        "[apache_airflow_provider]\nprovider_info = airflow_provider_octopods.get_provider_info:get_provider_info"
        in entry_points
    )
    assert "pytest11" not in entry_points, "the test plugin is opt-in, not loaded into every pytest run"
    assert "octopods-simulator = airflow_provider_octopods.testing.__main__:main" in entry_points


def test_twine_check_passes(dist: Path) -> None:
    result = _run(sys.executable, "-m", "twine", "check", "--strict", _sdist(dist), _wheel(dist))
    assert result.stdout.count("PASSED") == 2, result.stdout


#: Run inside the fresh virtualenv: what Airflow sees of the installed provider, as JSON.
_INSPECT = """
import json, importlib.metadata as md
import airflow_provider_octopods
from airflow.providers_manager import ProvidersManager

manager = ProvidersManager()
provider = manager.providers["airflow-provider-octopods"]
hook = manager.hooks["octopods"]
hook_class = __import__("airflow_provider_octopods.hooks.octopods", fromlist=["OctopodsHook"]).OctopodsHook
print(json.dumps({
    "package_file": airflow_provider_octopods.__file__,
    "hook_file": __import__("inspect").getfile(hook_class),
    "distribution": str(md.distribution("airflow-provider-octopods").locate_file("")),
    "entry_points": sorted(
        str(ep.dist.locate_file("")) for ep in md.entry_points(group="apache_airflow_provider")
        if ep.value == "airflow_provider_octopods.get_provider_info:get_provider_info"
    ),
    "provider_version": provider.version,
    "package_name": provider.data["package-name"],
    "hook_class_name": hook.hook_class_name,
    "connection_type": hook.connection_type,
    "hook_name": hook.hook_name,
    "relabeling": manager.field_behaviours["octopods"]["relabeling"],
    "form_widgets": sorted(k for k in manager.connection_form_widgets if "octopods" in k),
}))
"""


@pytest.fixture(scope="module")
def fresh_venv(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv holding the wheel; its other dependencies are this virtualenv's packages."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    purelib = Path(
        _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    )
    # Appended after the venv's own site-packages, as plain path entries: their .pth files (this
    # checkout's editable install) are not run, so only the wheel can provide the provider.
    (purelib / "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index",
        _wheel(dist),
    )  # fmt: skip
    return venv


@pytest.mark.min_airflow("3.2", reason="Airflow 3.1 builds connection forms only with flask-appbuilder")
def test_wheel_installs_in_a_fresh_venv_and_registers_the_provider(fresh_venv: Path, tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("AIRFLOW", "PYTHON", "VIRTUAL_ENV"))
    }
    env.update({"AIRFLOW_HOME": str(tmp_path / "airflow"), "AIRFLOW__CORE__LOAD_EXAMPLES": "False"})
    result = _run(fresh_venv / "bin" / "python", "-c", _INSPECT, cwd=tmp_path, env=env)
    seen = json.loads(result.stdout.strip().splitlines()[-1])

    installed = str(fresh_venv.resolve())
    for where in ("package_file", "hook_file", "distribution"):
        assert str(Path(seen[where]).resolve()).startswith(installed), f"{where} is {seen[where]}"
    assert str(Path(seen["entry_points"][0]).resolve()).startswith(installed)  # found first
    assert seen["provider_version"] == __version__
    assert seen["package_name"] == "airflow-provider-octopods"
    assert seen["hook_class_name"] == "airflow_provider_octopods.hooks.octopods.OctopodsHook"
    assert (seen["connection_type"], seen["hook_name"]) == ("octopods", "Octopods")
    assert seen["relabeling"] == RELABELING
    assert any("timeout" in widget for widget in seen["form_widgets"]), seen["form_widgets"]

    help_text = _run(fresh_venv / "bin" / "octopods-simulator", "--help", env=env).stdout
    assert "--deliver-after" in help_text
