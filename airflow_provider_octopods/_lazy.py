"""The hooks module, imported off the event loop the first time async code needs it."""

from __future__ import annotations

import asyncio
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from types import ModuleType

_HOOKS = "airflow_provider_octopods.hooks.octopods"
_hooks: ModuleType | None = None


async def hooks_module() -> ModuleType:
    """
    Return ``airflow_provider_octopods.hooks.octopods``, imported in a thread the first time.

    The first trigger (or deadline alert) of a process imports the hooks (requests, aiohttp, the
    HTTP provider) in a thread, so the triggerer's event loop never stalls on it; later ones take
    the module as it is, without a thread hop each (``sys.modules`` is not enough: it holds a
    module while it is still importing).
    """
    global _hooks
    if _hooks is None:
        _hooks = await asyncio.to_thread(importlib.import_module, _HOOKS)
    return _hooks
