"""The provider's description for Airflow's ``ProvidersManager``, and its connection form."""

from __future__ import annotations

from typing import Any

from airflow_provider_octopods import __version__


def get_provider_info() -> dict:
    """
    Describe this provider to Airflow's ``ProvidersManager``.

    Registered as the ``apache_airflow_provider`` entry point. The connection form is declared here
    (``conn-fields`` and ``ui-field-behaviour``) for Airflow 3.2+; :func:`ui_field_behaviour` and
    :func:`connection_form_widgets` serve older UIs (through the hook) with the same values.
    """
    return {
        "package-name": "airflow-provider-octopods",
        "name": "Octopods",
        "description": "Send SMS and WhatsApp templates through `Octopods <https://octopods.io>`__ and gate "
        "DAGs on their delivery.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Octopods",
                "external-doc-url": "https://octopods.io",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {
                "integration-name": "Octopods",
                "python-modules": ["airflow_provider_octopods.hooks.octopods"],
            }
        ],
        "operators": [
            {
                "integration-name": "Octopods",
                "python-modules": ["airflow_provider_octopods.operators.octopods"],
            }
        ],
        "sensors": [
            {
                "integration-name": "Octopods",
                "python-modules": ["airflow_provider_octopods.sensors.octopods"],
            }
        ],
        "notifications": [
            "airflow_provider_octopods.notifications.octopods.OctopodsSmsNotifier",
            "airflow_provider_octopods.notifications.octopods.OctopodsWhatsAppNotifier",
        ],
        "triggers": [
            {
                "integration-name": "Octopods",
                "python-modules": ["airflow_provider_octopods.triggers.octopods"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": "airflow_provider_octopods.hooks.octopods.OctopodsHook",
                "hook-name": "Octopods",
                "connection-type": "octopods",
                "ui-field-behaviour": UI_FIELD_BEHAVIOUR_KEBAB,
                "conn-fields": CONN_FIELDS,
            }
        ],
    }


# One source for the connection form: the kebab-case declaration above and the hook's
# ``get_ui_field_behaviour()`` and ``get_connection_form_widgets()`` (for Airflow < 3.2) are all
# built from these.
HIDDEN_FIELDS = ["login", "schema", "port"]
RELABELING = {"password": "Channel API key", "host": "Octopods URL"}
PLACEHOLDERS = {
    "host": "https://app.octopods.io",
    "password": "The channel's API key from Octopods (SMS or WhatsApp Business)",
    "extra": '{"timeout": 30}',
}
UI_FIELD_BEHAVIOUR_KEBAB = {
    "hidden-fields": HIDDEN_FIELDS,
    "relabeling": RELABELING,
    "placeholders": PLACEHOLDERS,
}
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "timeout": {
        "label": "Request timeout (seconds)",
        "description": "Seconds to wait for Octopods to answer one request (default 30, at most 3600).",
        "schema": {"type": ["number", "null"], "minimum": 1, "maximum": 3600},
    },
    "allow_insecure_http": {
        "label": "Allow plain http:// to a non-loopback host",
        "description": "Off by default: the API key would travel unencrypted.",
        "schema": {"type": ["boolean", "null"]},
    },
    "verify": {
        "label": "TLS verification (CA bundle path, or false)",
        "description": (
            "Empty: verify Octopods' certificate with the default CA bundle. A path: verify with that "
            "CA bundle (PEM; it must exist on workers and triggerers). Only false, 0, no or off turns "
            "certificate checks off."
        ),
        "schema": {"type": ["string", "null"]},
    },
    "default_region": {
        "label": "Default region of phone numbers",
        "description": "Two letters (e.g. US, GB): national numbers such as (201) 555-0123 are then "
        "accepted. Empty: numbers must start with + and the country code.",
        "schema": {"type": ["string", "null"]},
    },
    # A text field, not a checkbox: an unticked box would store false and turn the check off.
    "strict_numbers": {
        "label": "Refuse numbers not in use (true or false)",
        "description": "Empty or true (the default): refuse numbers libphonenumber does not call valid. "
        "false: send them with a warning.",
        "schema": {"type": ["string", "null"]},
    },
    "max_requests_per_second": {
        "label": "Max requests per second (per triggerer)",
        "description": (
            "Requests per second this key may make from one event loop (all triggers of a triggerer "
            "share it; a bulk send has its own). Set it a little under your Octopods limit divided by "
            "the number of triggerers. Empty: adapt to Octopods' 429 answers."
        ),
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
    },
}


def ui_field_behaviour() -> dict[str, Any]:
    """Return the connection form's layout for Airflow UIs older than 3.2 (snake-case keys)."""
    return {"hidden_fields": HIDDEN_FIELDS, "relabeling": RELABELING, "placeholders": PLACEHOLDERS}


def connection_form_widgets() -> dict[str, Any]:
    """
    Return the connection form's extra fields, built from the ``conn-fields`` declaration.

    Airflow 3.2+ reads that declaration from the provider info and never asks for these. Values
    are checked when the connection is used.
    """
    from flask_appbuilder.fieldwidgets import BS3TextFieldWidget
    from flask_babel import lazy_gettext
    from wtforms import BooleanField, StringField
    from wtforms.validators import Optional

    widgets: dict[str, Any] = {}
    for name, field in CONN_FIELDS.items():
        label = lazy_gettext(field["label"])
        if "boolean" in field["schema"]["type"]:
            widgets[name] = BooleanField(label, default=False, description=field["description"])
        else:
            widgets[name] = StringField(
                label,
                widget=BS3TextFieldWidget(),
                validators=[Optional(strip_whitespace=True)],
                description=field["description"],
            )
    return widgets
