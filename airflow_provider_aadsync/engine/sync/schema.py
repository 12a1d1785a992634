"""What sync must know of each connector's attributes: which are references, and which hold typed values.

The store keeps every value as JSON text (GUIDs and SIDs in their text forms, numbers as the directory sent them).
Rules and expressions see typed values, as the product does: AD ``objectGUID`` as its 16 raw bytes (so
``ConvertToBase64([objectGUID])`` is the ImmutableId), ``objectSid`` as a binary SID, ``userAccountControl`` as an
integer. Conversions run per column, and only over the columns a rule reads.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

Converter = Callable[[Any], Any]


def guid_bytes(value: Any) -> Any:
    """A GUID's text form as the raw bytes AD stores (``uuid.bytes_le``); other values pass through."""
    if isinstance(value, str):
        try:
            return uuid.UUID(value).bytes_le
        except ValueError:
            return value
    return value


def sid_bytes(value: Any) -> Any:
    """``S-1-5-21-...`` as the binary SID (MS-DTYP 2.4.2); other values pass through."""
    if not isinstance(value, str) or not value.upper().startswith("S-"):
        return value
    parts = value.split("-")
    try:
        revision, authority, subauthorities = int(parts[1]), int(parts[2]), [int(part) for part in parts[3:]]
    except (IndexError, ValueError):
        return value
    return (
        bytes([revision, len(subauthorities)])
        + authority.to_bytes(6, "big")
        + struct.pack(f"<{len(subauthorities)}I", *subauthorities)
    )


def integer(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def boolean(value: Any) -> Any:
    if isinstance(value, str) and value.upper() in ("TRUE", "FALSE"):
        return value.upper() == "TRUE"
    return value


def _convert_cell(cell: Any, convert: Converter) -> Any:
    if cell is None:
        return None
    if isinstance(cell, list):
        return [convert(value) for value in cell]
    return convert(cell)


@dataclass(frozen=True)
class ConnectorSchema:
    """Attribute facts of one connector space (or of the metaverse)."""

    #: Attributes whose values are other objects (stored as reference rows), lower-cased.
    reference_attributes: frozenset[str]
    #: Lower-cased attribute name → converter from the stored JSON value to the typed value rules see.
    typed: Mapping[str, Converter] = field(default_factory=dict)
    #: For objects sync provisions without a ``dn`` flow: object type → DN template with ``{anchor}``.
    dn_templates: Mapping[str, str] = field(default_factory=dict)

    def is_reference(self, attribute: str) -> bool:
        return attribute.lower() in self.reference_attributes

    def type_columns(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Convert the typed columns of a value-cell frame in place (column by column)."""
        for column in frame.columns:
            convert = self.typed.get(str(column).lower())
            if convert is not None:
                # An object column, so integers with gaps stay integers (a map would make them floats).
                cells = [_convert_cell(cell, convert) for cell in frame[column]]
                frame[column] = pd.Series(cells, index=frame.index, dtype=object)
        return frame

    def default_dn(self, object_type: str, anchor: str) -> str:
        template = self.dn_templates.get(object_type, "{object_type}/{anchor}")
        return template.format(anchor=anchor, object_type=object_type)


ACTIVE_DIRECTORY = ConnectorSchema(
    reference_attributes=frozenset({"member", "manager", "managedby"}),
    typed={
        "objectguid": guid_bytes,
        "ms-ds-consistencyguid": guid_bytes,
        "objectsid": sid_bytes,
        "useraccountcontrol": integer,
        "grouptype": integer,
        "iscriticalsystemobject": boolean,
    },
)

ENTRA_ID = ConnectorSchema(
    reference_attributes=frozenset({"members", "manager"}),
    dn_templates={"user": "users/{anchor}", "group": "groups/{anchor}", "contact": "contacts/{anchor}"},
)

METAVERSE = ConnectorSchema(reference_attributes=frozenset({"member", "manager"}))

#: Schemas by connector name; a deployment naming its connectors differently passes its own mapping.
DEFAULT_SCHEMAS: dict[str, ConnectorSchema] = {"ad": ACTIVE_DIRECTORY, "entra": ENTRA_ID}


def schema_for(connector: str, schemas: Mapping[str, ConnectorSchema] | None = None) -> ConnectorSchema:
    found = (schemas or DEFAULT_SCHEMAS).get(connector)
    if found is None:
        return ConnectorSchema(reference_attributes=frozenset())
    return found


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
    if cell is None:
        return []
    if isinstance(cell, list | tuple):
        return [storable(value) for value in cell if value is not None]
    return [storable(cell)]
