"""The validated shape of one sync rule, as written in a rule file (pydantic v2 models).

These models check structure only: known keys, types, enum values. The checks that need more than one field
(a Direct flow needs a source, ISNULL takes no value, ...) and everything that spans rules or files live in
:mod:`.loader`, which words every failure with the file, the rule and the field path.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Direction",
    "FlowModel",
    "FlowType",
    "JoinConditionModel",
    "LinkType",
    "MergeType",
    "Operator",
    "ScopeClauseModel",
    "SyncRuleModel",
]


class Direction(StrEnum):
    INBOUND = "inbound"  # connector space → metaverse
    OUTBOUND = "outbound"  # metaverse → connector space


class LinkType(StrEnum):
    JOIN = "Join"
    STICKY_JOIN = "StickyJoin"
    PROVISION = "Provision"


class FlowType(StrEnum):
    DIRECT = "Direct"
    CONSTANT = "Constant"
    EXPRESSION = "Expression"


class MergeType(StrEnum):
    UPDATE = "Update"
    MERGE = "Merge"
    MERGE_CASE_INSENSITIVE = "MergeCaseInsensitive"


class Operator(StrEnum):
    EQUAL = "EQUAL"
    NOTEQUAL = "NOTEQUAL"
    LESSTHAN = "LESSTHAN"
    LESSTHAN_OR_EQUAL = "LESSTHAN_OR_EQUAL"
    GREATERTHAN = "GREATERTHAN"
    GREATERTHAN_OR_EQUAL = "GREATERTHAN_OR_EQUAL"
    CONTAINS = "CONTAINS"
    NOTCONTAINS = "NOTCONTAINS"
    STARTSWITH = "STARTSWITH"
    NOTSTARTSWITH = "NOTSTARTSWITH"
    ENDSWITH = "ENDSWITH"
    NOTENDSWITH = "NOTENDSWITH"
    ISNULL = "ISNULL"
    ISNOTNULL = "ISNOTNULL"
    ISIN = "ISIN"
    ISNOTIN = "ISNOTIN"
    ISBITSET = "ISBITSET"
    ISNOTBITSET = "ISNOTBITSET"
    ISMEMBEROF = "ISMEMBEROF"
    ISNOTMEMBEROF = "ISNOTMEMBEROF"


#: Operators that take no value.
NULL_OPERATORS = frozenset({Operator.ISNULL, Operator.ISNOTNULL})
#: Operators that read the engine-supplied ``memberOf`` column instead of the clause's attribute.
MEMBER_OF_OPERATORS = frozenset({Operator.ISMEMBEROF, Operator.ISNOTMEMBEROF})
#: Operators whose value is a list (or a ``;``-separated string).
LIST_OPERATORS = frozenset({Operator.ISIN, Operator.ISNOTIN})


def _canonical(enum: type[StrEnum], value: Any) -> Any:
    """Accept an enum value in any letter case (``provision`` → ``Provision``); leave others for pydantic."""
    if isinstance(value, str):
        for member in enum:
            if member.value.casefold() == value.strip().casefold():
                return member.value
    return value


_Name = Annotated[str, Field(min_length=1, strict=True)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class ScopeClauseModel(_Strict):
    """One clause of a scoping group: ``attribute operator value``.

    ``attribute`` is optional only for ISMEMBEROF/ISNOTMEMBEROF, which test group membership (the engine's
    ``memberOf`` column) and ignore it. ``value`` stays raw here; the loader checks it against the operator.
    """

    attribute: _Name | None = None
    operator: Operator
    value: Any = None

    @field_validator("operator", mode="before")
    @classmethod
    def _operator_any_case(cls, value: Any) -> Any:
        return _canonical(Operator, value)


class JoinConditionModel(_Strict):
    """One pair of a join group: the source object's attribute must equal the target object's."""

    source: _Name
    target: _Name
    case_sensitive: Annotated[bool, Field(strict=True)] = True
    #: A soft match (the product's "soft match" on userPrincipalName or the primary SMTP address): its group is
    #: skipped when soft matching is blocked (BlockSoftMatch), and it never joins an object whose hard-match
    #: attributes (the sources of the rule's other groups) hold a value: that object belongs to another anchor.
    soft_match: Annotated[bool, Field(strict=True)] = False


class FlowModel(_Strict):
    """One attribute flow. Which of ``source``/``value``/``expression`` is required depends on ``type``."""

    type: FlowType
    target: _Name
    source: _Name | None = None
    value: Any = None
    expression: _Name | None = None
    apply_once: Annotated[bool, Field(strict=True)] = False
    merge: MergeType = MergeType.UPDATE

    @field_validator("type", mode="before")
    @classmethod
    def _type_any_case(cls, value: Any) -> Any:
        return _canonical(FlowType, value)

    @field_validator("merge", mode="before")
    @classmethod
    def _merge_any_case(cls, value: Any) -> Any:
        return _canonical(MergeType, value)


class SyncRuleModel(_Strict):
    """A declarative sync rule as written in a rule file."""

    name: _Name
    description: str | None = None
    direction: Direction
    connector: _Name
    source_object_type: _Name
    target_object_type: _Name
    link_type: LinkType
    precedence: Annotated[int, Field(ge=0, strict=True)]
    enabled: Annotated[bool, Field(strict=True)] = True
    scoping: list[Annotated[list[ScopeClauseModel], Field(min_length=1)]] = Field(default_factory=list)
    join: list[Annotated[list[JoinConditionModel], Field(min_length=1)]] = Field(default_factory=list)
    #: An attribute that, when True, says another sync engine still masters the object (Graph's
    #: onPremisesSyncEnabled): such an object is never joined, a per-object error instead.
    held_by_other_engine: _Name | None = None
    #: An attribute listing the administrator roles the object holds in its directory (the Entra import's
    #: directoryRoles): an object holding any is never joined by this rule's match, a per-object error instead, as
    #: Entra ID "won't match on-premises users with cloud users that have an admin role".
    admin_roles: _Name | None = None
    #: Attributes of which one holding a value shows that directory synchronization made or adopted the object: Graph's
    #: onPremisesSyncEnabled (true or false only once a sync engine has mastered it; null on an object created in the
    #: cloud) and the anchor stamp this engine writes on every object it exports (extension_aadsyncSourceAnchor).
    #: With the sync setting BlockCloudObjectTakeover on, a hard match of an object holding none is refused (per-object
    #: error invalid-hard-match), as Entra ID's BlockCloudObjectTakeoverThroughHardMatch refuses it; with it off (the
    #: default, as in Entra ID) the field is left out of the rule set.
    hard_match_proof: list[_Name] = Field(default_factory=list)
    #: Outbound Provision rules only: a target attribute this rule writes that marks the object in the target
    #: directory (group writeback's adminDescription "Group_<objectId>"). Before provisioning, an unjoined
    #: connector-space object of the target type that already holds the same value is joined instead of a second
    #: object being created: a rebuilt store, or a second instance, finds what an earlier export made.
    rejoin_on: _Name | None = None
    #: Outbound Provision rules only: an object this rule provisioned whose metaverse object leaves the rule's scope
    #: (and stays in the metaverse) is kept in the target directory, still linked and no longer updated, instead of
    #: deleted; it is deleted with its metaverse object (its source deleted). Group writeback: a group disabled for
    #: writeback or soft deleted stays in AD until it is hard deleted (Microsoft's default, "Plan for Microsoft
    #: Entra Connect group writeback").
    keep_when_out_of_scope: Annotated[bool, Field(strict=True)] = False
    flows: list[FlowModel] = Field(default_factory=list)

    @field_validator("direction", mode="before")
    @classmethod
    def _direction_any_case(cls, value: Any) -> Any:
        return _canonical(Direction, value)

    @field_validator("link_type", mode="before")
    @classmethod
    def _link_type_any_case(cls, value: Any) -> Any:
        return _canonical(LinkType, value)

    @field_validator("scoping", "join", "flows", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        # ``scoping:`` with nothing after it is YAML null; read it as "no groups".
        return [] if value is None else value
