"""
Test tools: a local Octopods simulator for this provider's tests and for your own DAG tests.

.. code-block:: python

    from airflow_provider_octopods.testing import OctopodsSimulator

    with OctopodsSimulator() as sim:
        message_id = sim.add_message("queued", "sent", "delivered")
        ...  # point an Octopods connection at sim.url with the key sim.api_key
"""

from __future__ import annotations

from airflow_provider_octopods.testing.simulator import (
    FAILURE_REASONS,
    Hang,
    OctopodsSimulator,
    Reply,
    Reset,
    Status,
    Trickle,
)

__all__ = ["FAILURE_REASONS", "Hang", "OctopodsSimulator", "Reply", "Reset", "Status", "Trickle"]
