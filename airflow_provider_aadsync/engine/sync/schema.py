"""The metaverse's schema, and the JSON-native form typed values are kept in.

Each connector's schema (which attributes are references, which hold typed values) lives with its connector
(``connectors/ad/schema.py``, ``connectors/entra/schema.py``; ``connectors/registry.py`` finds it by name); the
converters to typed values are in ``connectors/converters.py``.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from airflow_provider_aadsync.engine.connectors.schema import ConnectorSchema

METAVERSE = ConnectorSchema(reference_attributes=frozenset({"member", "manager"}))


def storable(value: Any) -> Any:
    """A typed value as it is kept in the metaverse and compared with connector spaces (JSON-native)."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def cell_values(cell: Any) -> list[Any]:
    """A value cell (None, a scalar or a list) as the list of storable values."""
    # Text is by far the commonest value and is stored as it is: skip storable's type checks for it (a full sync
    # converts every flowed value twice).
    if type(cell) is str:
        return [cell]
    if cell is None:
        return []
    if isinstance(cell, list | tuple):
        return [value if type(value) is str else storable(value) for value in cell if value is not None]
    return [storable(cell)]


def cell_texts(cell: Any) -> list[str]:
    """A value cell's values as text, empty ones left out: what says whether an attribute holds a value."""
    return [text for text in map(str, cell_values(cell)) if text]
