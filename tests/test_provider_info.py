"""Registration: the entry point, ProvidersManager, the declarative connection form."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

import airflow_provider_octopods
from airflow_provider_octopods.get_provider_info import get_provider_info


def test_entry_point_returns_provider_info_for_this_distribution():
    (entry_point,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_octopods")
    ]
    info = entry_point.load()()

    assert entry_point.dist is not None and entry_point.dist.name == info["package-name"]
    assert info["package-name"] == "airflow-provider-octopods"
    assert info["versions"] == [airflow_provider_octopods.__version__]


def test_connection_type_is_declared_with_a_clean_form():
    (conn_type,) = get_provider_info()["connection-types"]

    assert conn_type["connection-type"] == "octopods"
    assert conn_type["hook-name"] == "Octopods"
    assert conn_type["hook-class-name"] == "airflow_provider_octopods.hooks.octopods.OctopodsHook"
    behaviour = conn_type["ui-field-behaviour"]
    assert set(behaviour["hidden-fields"]) == {"login", "schema", "port"}
    assert behaviour["relabeling"]["password"] == "Channel API key"
    assert behaviour["placeholders"]["host"] == "https://app.octopods.io"
    assert set(conn_type["conn-fields"]) == {
        "timeout",
        "allow_insecure_http",
        "verify",
        "default_region",
        "strict_numbers",
        "max_requests_per_second",
    }


def test_provider_info_validates_against_airflows_schema():
    jsonschema = pytest.importorskip("jsonschema")
    import json
    from importlib.resources import files

    schema = json.loads(files("airflow").joinpath("provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_providers_manager_registers_the_provider_and_hook():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert "airflow-provider-octopods" in manager.providers
    hook_info = manager.hooks["octopods"]
    assert hook_info is not None
    assert hook_info.hook_class_name == "airflow_provider_octopods.hooks.octopods.OctopodsHook"
    assert hook_info.connection_id_attribute_name == "octopods_conn_id"
    assert hook_info.hook_name == "Octopods"


def test_every_declared_module_imports():
    from importlib import import_module

    info = get_provider_info()
    for kind in ("hooks", "sensors", "triggers", "operators"):
        for entry in info.get(kind, []):
            for module in entry["python-modules"]:
                import_module(module)
    for path in info.get("notifications", []):
        module, _, name = path.rpartition(".")
        assert hasattr(import_module(module), name), path


@pytest.mark.airflow3_only(
    reason="conn-fields are read from the provider info only by Airflow 3.2+; Airflow 2 builds the form "
    "from OctopodsHook.get_connection_form_widgets() (tested in test_airflow_compat.py)"
)
def test_airflow_reads_the_declarative_form():
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    behaviour = manager.field_behaviours.get("octopods")
    if behaviour is None:
        pytest.skip("this Airflow reads the form from OctopodsHook.get_ui_field_behaviour()")
    assert behaviour["relabeling"]["password"] == "Channel API key"
    assert set(behaviour["hidden_fields"]) == {"login", "schema", "port"}
    widgets = manager.connection_form_widgets
    assert widgets["extra__octopods__timeout"].field["schema"]["title"] == "Request timeout (seconds)"
