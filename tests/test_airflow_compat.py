"""
What keeps the provider on one code path across the Airflow matrix (2.11 and 3.3, ``make test-matrix``).

The provider imports Airflow through ``airflow.providers.common.compat`` (plus the http provider
it builds on, common.sql's ``DbApiHook`` for the SQL transfer, and ``airflow.triggers.base``), and the connection form reaches the UI of every
Airflow version: from ``conn-fields`` on 3.2+, from the hook's methods before.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import airflow_provider_octopods
from airflow_provider_octopods.get_provider_info import CONN_FIELDS
from tests.conftest import AIRFLOW_VERSION

PACKAGE = Path(airflow_provider_octopods.__file__).parent

#: Airflow modules the provider may import: the compat layer and the APIs stable across 2.11-3.x
#: (``airflow.__version__``: what ``version_compat.py`` reads, as the official providers' does).
ALLOWED = (
    "airflow.providers.common.compat",
    "airflow.providers.common.sql",  # DbApiHook, for the SQL transfer: stable since common.sql 1.x
    "airflow.providers.http",
    "airflow.triggers.base",
    "airflow.__version__",
)
#: Deliberate exceptions, each guarded by ``except ImportError`` with a compat fallback.
GUARDED = {
    ("hooks/octopods.py", "airflow.sdk.log"): "amask_secret: Airflow 3's non-blocking secrets masker, "
    "for the triggerer's event loop; falls back to compat's mask_secret on Airflow 2",
}


def _airflow_imports(path: Path) -> list[str]:
    """The Airflow modules ``path`` imports (``from airflow import x`` counts as ``airflow.x``)."""
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module == "airflow" and node.level == 0:
            modules.extend(f"airflow.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
        elif isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
    return [m for m in modules if m == "airflow" or m.startswith("airflow.")]


def test_provider_imports_airflow_only_through_the_compat_layer():
    offending = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for module in _airflow_imports(path):
            if module.startswith(ALLOWED) or (relative, module) in GUARDED:
                continue
            offending.append(f"{relative}: {module}")
    assert not offending, f"import these through airflow.providers.common.compat: {offending}"


def test_guarded_imports_still_exist_where_listed():
    for relative, module in GUARDED:
        assert module in _airflow_imports(PACKAGE / relative), f"stale GUARDED entry: {relative} {module}"


def _label(widget) -> str:
    """The label of a connection-form field, as ProvidersManager holds it on this Airflow."""
    field = widget.field
    if isinstance(field, dict):  # Airflow 3.2+: conn-fields turned into a JSON schema
        return field["schema"]["title"]
    return str(field.args[0])  # Airflow < 3.2: an unbound wtforms field from the hook


@pytest.mark.min_airflow("3.2", reason="Airflow 3.1 builds connection forms only with flask-appbuilder")
def test_connection_form_reaches_this_airflows_ui():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviour = manager.field_behaviours["octopods"]
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port"}
    assert behaviour["relabeling"] == {"password": "Channel API key", "host": "Octopods URL"}
    assert behaviour["placeholders"]["host"] == "https://app.octopods.io"

    widgets = manager.connection_form_widgets
    for name, field in CONN_FIELDS.items():
        key = f"extra__octopods__{name}"
        assert key in widgets, f"{key} missing from the connection form on Airflow {AIRFLOW_VERSION}"
        assert _label(widgets[key]) == field["label"]
        assert widgets[key].field_name == name  # stored in the extra as plain "timeout", etc.


def test_form_widgets_for_older_uis_match_the_declaration():
    """Airflow < 3.2 builds the form from the hook; the fields must match ``conn-fields``."""
    reason = "no Flask AppBuilder UI here: this Airflow builds the form from conn-fields, not from the hook"
    pytest.importorskip("wtforms", reason=reason)
    pytest.importorskip("flask_appbuilder", reason=reason)
    from wtforms import BooleanField, StringField

    from airflow_provider_octopods.hooks.octopods import OctopodsHook

    widgets = OctopodsHook.get_connection_form_widgets()

    assert set(widgets) == set(CONN_FIELDS)
    assert widgets["timeout"].field_class is StringField
    assert widgets["allow_insecure_http"].field_class is BooleanField
    for name, field in CONN_FIELDS.items():
        assert str(widgets[name].args[0]) == field["label"]
        assert widgets[name].kwargs["description"] == field["description"]
