"""The connection form's extra fields for Airflow UIs older than 3.2 (wtforms), from ``CONN_FIELDS``."""

from __future__ import annotations

from typing import Any

from airflow_provider_octopods import CONN_FIELDS


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
