"""A page of imported objects as columns (what the connector-space writer compares and writes), and the canonical form
of an object's attributes: the JSON that is stored and the digest that says whether it changed."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import pandas as pd

from airflow_provider_aadsync.engine.runs.source import Reference, SourceObject, format_hash, references_hash

_ATTRS_ENCODER = msgspec.json.Encoder(order="sorted")


def serialize_attrs(attrs: dict[str, list[Any]]) -> str:
    """The canonical JSON of an attribute dict (sorted keys, compact, UTF-8): what is stored and digested.

    msgspec writes what ``json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))`` writes (floats
    with exponents aside), about 8 times faster; a full import serializes every object.
    """
    return _ATTRS_ENCODER.encode(attrs).decode()


def attrs_digest(serialized: str) -> str:
    return hashlib.blake2b(serialized.encode(), digest_size=16).hexdigest()


#: refs_hash of an object without references.
NO_REFERENCES_HASH = format_hash(0)


@dataclass(slots=True)
class ObjectPage:
    """A page of full-import objects as columns, one entry per object: what the writer compares and stores.

    Why columns: a source that reads many objects per page (Graph) fills it directly, without building a
    SourceObject per object, and the writer hands whole columns to the store. ``references`` holds
    ``(position of the object in the page, attribute, target anchor, target DN)``.
    """

    anchors: list[str] = field(default_factory=list)
    dns: list[str] = field(default_factory=list)
    object_types: list[str | None] = field(default_factory=list)
    attrs: list[str] = field(default_factory=list)
    refs_hashes: list[str] = field(default_factory=list)
    references: list[tuple[int, str, str, str | None]] = field(default_factory=list)
    #: Objects the round reported removed (Graph's ``@removed``), each with the position it came at: it wins over an
    #: occurrence of the same anchor before it (a later occurrence wins over it), in this page and in earlier ones.
    removed: list[tuple[int, str]] = field(default_factory=list)

    @classmethod
    def from_objects(cls, objects: Iterable[SourceObject], *, serialize: bool = True) -> ObjectPage:
        page = cls()
        for obj in objects:
            # An attribute without values is stored as absent, as a delta import stores a cleared one.
            attrs = serialize_attrs({name: values for name, values in obj.attrs.items() if values}) if serialize else ""
            page.add(obj.anchor, obj.dn, obj.object_type, attrs, obj.references)
        return page

    def add(
        self,
        anchor: str,
        dn: str,
        object_type: str | None,
        serialized_attrs: str,
        references: dict[str, list[Reference]] | None = None,
    ) -> None:
        position = len(self.anchors)
        self.anchors.append(anchor)
        self.dns.append(dn)
        self.object_types.append(object_type)
        self.attrs.append(serialized_attrs)
        if not references:
            self.refs_hashes.append(NO_REFERENCES_HASH)
            return
        self.refs_hashes.append(format_hash(references_hash(reference_pairs(references))))
        self.references += [
            (position, name, target, dn) for name, values in references.items() for target, dn in values
        ]

    def remove(self, anchor: str) -> None:
        """The round reported ``anchor`` removed after whatever came before it."""
        self.removed.append((len(self.anchors), anchor))

    def reference_frame(self) -> pd.DataFrame:
        """The references as rows: position, anchor, attribute, target_anchor, target_dn."""
        # object columns: a string column would turn a missing target DN (None) into NaN
        columns = ["position", "attribute", "target_anchor", "target_dn"]
        frame = pd.DataFrame(self.references, columns=columns, dtype=object)
        frame.insert(1, "anchor", pd.Series(self.anchors, dtype=object).take(frame["position"].astype(int)).to_numpy())
        return frame


def reference_pairs(references: dict[str, list[Reference]]) -> Iterable[tuple[str, str]]:
    """(attribute, target anchor) of each reference: what an object's ``refs_hash`` digests."""
    return {(name, target) for name, values in references.items() for target, _dn in values}
