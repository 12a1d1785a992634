"""The import-side guard: an import that would remove much of a connector space stops before changing anything.

A configuration slip (a base DN or OU scope that no longer matches, a connection pointing at another domain or
tenant, an account that lost read permission) looks to a full import exactly like a directory that was emptied: it
sees nothing, or much less than before, and would delete the rest. The export's deletion threshold catches the
consequence later; this guard stops at the cause, so the connector space, and with it the metaverse, stays intact.

Counted, before anything is written (the import's writes are one transaction, which is rolled back; the watermark
does not move):

- a full import that sees **no object** where the connector space holds some: always stopped, whatever its size;
- a full AD import that deletes anything while one of its **included OUs has no entry** on the DC (deleted,
  renamed, mistyped in the connectors file, unreadable): always stopped, whatever its size, since a typo in one of
  several included OUs deletes a small OU's objects under every threshold;
- a full AD import of several partitions that deletes objects under a **partition it read no user, group or contact
  from** (the account's read rights there removed): stopped the same way. The rule above counts the whole import,
  so a small partition read empty beside a big one slipped under the thresholds; a real domain always holds
  built-in users and groups, so an empty read is never a real state;
- more deletes than ``deletion_threshold`` (default ``IMPORT_DELETION_THRESHOLD``, as the export's);
- more than ``deletion_share`` of the connector space (default ``IMPORT_DELETION_SHARE``, 10 %), counted only
  above ``SHARE_MINIMUM`` deletes (10), so a small test space losing a few objects is not stopped.

Delta imports are guarded by the two thresholds too (not by "sees nothing": a delta only sees changes): an OU moved
out of the scope, or a scope filter changed on the DC, arrives as a delta of deletes, the classic accidental mass
deletion. A confirmed run applies the deletes: ``confirm_mass_removal`` is the number of deletes the operator
confirms, as the stop's message states it, and lets through an import that deletes exactly that many. A number, not
a yes, and an exact one: a DAG run cleared weeks later, a script that always passes the confirmation, or the other
import of the same DAG run (one param serves both) confirms the removal its operator saw, not whatever mass removal
is pending by then; a removal of another size stops again, naming both numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from airflow_provider_aadsync.engine.runs.defaults import IMPORT_DELETION_SHARE, IMPORT_DELETION_THRESHOLD
from airflow_provider_aadsync.engine.runs.instance_advice import DEFAULT, cli_instance, variable_advice

__all__ = [
    "DEFAULT_IMPORT_DELETION_SHARE",
    "DEFAULT_IMPORT_DELETION_THRESHOLD",
    "SHARE_MINIMUM",
    "STOPPED_DELETION_THRESHOLD",
    "ImportGuard",
    "MassRemovalStopped",
    "UnreadPartition",
]

DEFAULT_IMPORT_DELETION_THRESHOLD = IMPORT_DELETION_THRESHOLD
DEFAULT_IMPORT_DELETION_SHARE = IMPORT_DELETION_SHARE
#: The share counts only when more objects than this would be deleted: 1 delete in a 3-object space is 33 %, but
#: no slip. The absolute threshold and the "sees nothing" check still apply below it.
SHARE_MINIMUM = 10
#: The result of a run the guard stopped (the export's threshold stop has the same name).
STOPPED_DELETION_THRESHOLD = "stopped-deletion-threshold-exceeded"


class UnreadPartition(str):
    """A name in :meth:`ImportGuard.check`'s ``gone``: a partition a full import read no counted object from (AD:
    no user, group or contact), rather than an included OU with no entry.

    A marked name, not a second parameter: both are stopped the same way and reach the guard by the same road
    (ConnectorSpaceWriter.finish_full's ``gone_roots``, the import run's check), which carries names and counts only;
    the mark changes only the message, and that a partition with no deletes under it is no reason to stop (nothing
    of it would be removed, unlike a mistyped OU whose objects are deleted under its real name).
    """

    __slots__ = ()


class MassRemovalStopped(Exception):
    """Raised inside an import's transaction when the guard stops it; the run records ``detail`` and the counts."""

    def __init__(self, detail: str, *, deletes: int, space_size: int, seen: int | None):
        super().__init__(detail)
        self.detail = detail
        self.deletes = deletes
        self.space_size = space_size
        self.seen = seen

    def counters(self) -> dict[str, int]:
        """What the stopped run shows: what it read, what it would have deleted, how big the space is."""
        counters = {"deletes_planned": self.deletes, "connector_space_objects": self.space_size}
        if self.seen is not None:
            counters["objects_in_scope"] = self.seen
        return counters


@dataclass(frozen=True)
class ImportGuard:
    """Limits on what one import may remove from its connector space; see the module's docstring.

    :param deletion_threshold: more deletes than this stop the run (0: any delete stops it).
    :param deletion_share: more than this share of the connector space (0 < share ≤ 1), above ``SHARE_MINIMUM``
        deletes, stops the run.
    :param confirm_mass_removal: the deletes the operator confirmed: an import deleting exactly this many goes
        through whatever the limits and even when it saw nothing (None: nothing confirmed).
    """

    deletion_threshold: int = DEFAULT_IMPORT_DELETION_THRESHOLD
    deletion_share: float = DEFAULT_IMPORT_DELETION_SHARE
    confirm_mass_removal: int | None = None

    def __post_init__(self) -> None:
        if self.deletion_threshold < 0:
            raise ValueError(f"the import deletion threshold must be 0 or more, not {self.deletion_threshold}")
        if not 0 < self.deletion_share <= 1:
            raise ValueError(
                f"the import deletion share must be more than 0 and at most 1 (0.1 is 10 %), not {self.deletion_share}"
            )
        confirmed = self.confirm_mass_removal
        if confirmed is not None and (isinstance(confirmed, bool) or not isinstance(confirmed, int) or confirmed < 0):
            raise ValueError(
                f"confirm_mass_removal must be the number of deletes you confirm (the stopped run's message names it), "
                f"not {confirmed!r}: a yes would confirm whatever removal is pending when the run goes"
            )

    @classmethod
    def from_params(
        cls,
        *,
        deletion_threshold: int | None = None,
        deletion_share: float | None = None,
        confirm_mass_removal: int | None = None,
    ) -> ImportGuard:
        """Build from task params or CLI options, typed: None means the default (the operators turn what Airflow
        rendered into these types first)."""
        return cls(
            deletion_threshold=DEFAULT_IMPORT_DELETION_THRESHOLD if deletion_threshold is None else deletion_threshold,
            deletion_share=DEFAULT_IMPORT_DELETION_SHARE if deletion_share is None else deletion_share,
            confirm_mass_removal=confirm_mass_removal,
        )

    def confirms(self, deletes: int) -> bool:
        """Whether ``deletes`` goes through unchecked: none, or exactly as many as the operator confirmed."""
        return deletes == 0 or deletes == self.confirm_mass_removal

    def check(
        self,
        *,
        connector: str,
        mode: Literal["full", "delta"],
        deletes: int,
        space_size: int,
        seen: int | None = None,
        scope: str | None = None,
        command: str | None = None,
        seen_what: str = "object",
        gone: Mapping[str, int] | None = None,
        instance: str = DEFAULT,
        store: str = "",
    ) -> None:
        """Raise :class:`MassRemovalStopped` when this import would remove too much; do nothing when it removes as
        many as were confirmed.

        :param deletes: objects the run would delete from the connector space.
        :param space_size: live objects the connector space held before the run.
        :param seen: objects a full import read in scope (None for a delta).
        :param scope: what the import reads, for the message ("base DN X on server Y").
        :param command: the CLI command that runs this import (``import-ad``), for the advice.
        :param seen_what: what ``seen`` counts, for the message (AD: "user, group or contact"; its OUs and
            containers are read whatever the scope holds, so they do not count).
        :param gone: parts of the scope a full import found missing (an included OU with no entry on the DC; an
            :class:`UnreadPartition`), each with the deletes under it: an import that deletes anything then is, like
            one that saw nothing, always stopped until confirmed, whatever the numbers (a mistyped OU's objects are
            deleted under its real name). An unread partition counts only with deletes under it.
        :param instance: the sync instance whose store the import runs on: the advice names its Variables and, in
            the CLI command, its ``--instance``.
        :param store: the CLI option naming the store (instance_advice.cli_store: its connection or URL), "" for the
            instance's embedded store.
        """
        if self.confirms(deletes):
            return
        share = deletes / space_size if space_size else 1.0
        reasons = []
        if mode == "full" and seen == 0 and space_size:
            reasons.append(f"it saw no {seen_what} in scope, but the connector space holds {space_size:,}")
        missing, unread = _gone_parts(gone if mode == "full" else None)
        if missing:
            reasons.append(
                f"the included OU {missing} has no entry on the DC: deleted, renamed or moved, mistyped in the "
                "connectors file, or not readable by the connection's account"
            )
        if unread:
            reasons.append(
                f"the partition {unread} gave no {seen_what} at all, though a domain always holds built-in ones: the "
                "connection's account lost its read rights there, or the partition is read from the wrong domain "
                "controller"
            )
        if deletes > self.deletion_threshold:
            reasons.append(f"that is more than the import deletion threshold of {self.deletion_threshold:,}")
        if deletes > SHARE_MINIMUM and share > self.deletion_share:
            reasons.append(f"that is more than {self.deletion_share:.0%} of the connector space")
        if not reasons:
            return
        if self.confirm_mass_removal is not None:  # a confirmation of another removal than this one
            reasons.append(f"this run confirmed a removal of {self.confirm_mass_removal:,} objects, not {deletes:,}")
        what = (
            f"the {mode} import of {connector!r} would delete {deletes:,} of the {space_size:,} objects of its "
            f"connector space ({share:.0%}): {'; '.join(reasons)}. Nothing was changed and the watermark was kept."
        )
        causes = (
            "Likely causes: the base DN or OU scope no longer matches where the objects are"
            + (f" ({scope})" if scope else "")
            + "; the connection points at the wrong server, domain or tenant; or its account lost read permission "
            "on the objects. Check these first: the next import would delete them, and the sync the objects they "
            "feed."
        )
        option = f"--confirm-mass-removal {deletes}"
        cli = f"`aadsync {command} {cli_instance(instance, store)}--mode {mode} {option}`" if command else f"`{option}`"
        confirm = (
            f"If the removal is real, confirm it: run the import again with {cli}, or trigger the DAG with the param "
            f"`confirm_mass_removal` = {deletes}"
        )
        if not (mode == "full" and (seen == 0 or missing or unread)):  # raising a limit never lets these through
            confirm += (
                f"; or raise the limits for good: an import deletion threshold of at least {deletes:,} "
                "(`--import-deletion-threshold`, the Variable "
                f"{variable_advice('import_deletion_threshold', instance)}) and a share of at least {share:.2f} "
                f"(`--import-deletion-share`, {variable_advice('import_deletion_share', instance)})"
            )
        confirm += "."
        raise MassRemovalStopped(
            f"{what} {causes} {confirm}", deletes=deletes, space_size=space_size, seen=seen if mode == "full" else None
        )


def _gone_parts(gone: Mapping[str, int] | None) -> tuple[str, str]:
    """The included OUs with no entry, and the partitions read empty with deletes under them, each as the message
    lists them ("" for none). An unread partition with nothing under it to delete stops nothing: nothing of it is
    lost (its OUs were read, or it held nothing yet)."""

    def listed(names: Mapping[str, int]) -> str:
        return ", ".join(
            f"{name!r}" + (f" ({count:,} of the deletes are under it)" if count else "")
            for name, count in names.items()
        )

    gone = gone or {}
    missing = {name: count for name, count in gone.items() if not isinstance(name, UnreadPartition)}
    unread = {name: count for name, count in gone.items() if isinstance(name, UnreadPartition) and count}
    return listed(missing), listed(unread)
