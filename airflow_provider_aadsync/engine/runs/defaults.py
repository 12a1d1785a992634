"""The defaults of the guards and of the export pacing, defined once.

The CLI's ``--help``, the operators' parameters, the DAG params and their descriptions and the settings models all
read these names, so a changed default changes everywhere at once (and the docs say "default" next to the name).
"""

from __future__ import annotations

#: Pending deletes, disables, member and manager removals, identity changes and attribute clears above which an export
#: stops before its first write (Entra Connect's default for deletes; the same number for the other mass changes), and
#: deletes above which an import stops before changing its connector space.
MASS_CHANGE_THRESHOLD = 500
DELETION_THRESHOLD = MASS_CHANGE_THRESHOLD
DISABLE_THRESHOLD = MASS_CHANGE_THRESHOLD
MEMBER_REMOVAL_THRESHOLD = MASS_CHANGE_THRESHOLD
#: Accounts whose sign-in name or mail address an export would change (a slip in a UPN or mail rule signs everyone
#: out, or misroutes everyone's mail, without deleting or disabling anything).
IDENTITY_CHANGE_THRESHOLD = MASS_CHANGE_THRESHOLD
#: Objects an export would take every value of an attribute from (an import that can no longer read an attribute, an
#: ACL or a lost source, makes sync clear it everywhere: department or employeeId drive dynamic groups, licensing and
#: Conditional Access, and nothing is deleted or disabled).
ATTRIBUTE_CLEAR_THRESHOLD = MASS_CHANGE_THRESHOLD
#: A run may remove at most this share (percent) of one group's members ...
MEMBER_REMOVAL_GROUP_PERCENT = 50
#: ... when the group has at least this many members (smaller groups change by more than half in ordinary use).
MEMBER_REMOVAL_GROUP_MINIMUM = 20

#: The import guard: more deletes than this, or more than this share of the connector space, stop an import.
IMPORT_DELETION_THRESHOLD = MASS_CHANGE_THRESHOLD
IMPORT_DELETION_SHARE = 0.10

#: Member values per LDAP modify operation of the AD export.
MEMBER_CHUNK = 5_000
#: Graph's write budget per app and tenant: this many requests per window (seconds) the Entra export paces itself to.
WRITE_BUDGET = 3_000
WRITE_WINDOW_SECONDS = 150.0
