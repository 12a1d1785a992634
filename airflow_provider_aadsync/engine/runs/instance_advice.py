"""How a guard's stop names the sync instance it stopped in, so that following its advice changes that instance.

A named instance (README "Several sync instances in one deployment") reads its settings from the Variables
``aadsync_<instance>__<setting>`` first, then the shared ``aadsync_<setting>`` (dag_settings.py), and the CLI opens
its store with ``--instance NAME``. The engine knows only the store's instance name, which does not say whether it is
a named instance or the default one renamed by the Variable ``aadsync_instance``: an instance not called "default" is
given both Variables. The default instance's wording has no instance in it.
"""

from __future__ import annotations

import shlex

__all__ = ["DEFAULT", "cli_instance", "variable_advice"]

#: The default sync instance's store name (Store.open's default, the CLI's --instance default): its Variables have
#: no instance in their names.
DEFAULT = "default"


def variable_advice(setting: str, instance: str) -> str:
    """The Variable that keeps ``setting`` (without ``aadsync_``) for ``instance``, as the advice names it (in
    backquotes): ``aadsync_<setting>`` for the default instance, the instance's own ``aadsync_<instance>__<setting>``
    (read before the shared one) for another, with the shared one for a default instance not called "default"."""
    if instance == DEFAULT:
        return f"`aadsync_{setting}`"
    return (
        f"`aadsync_{instance}__{setting}` (the named instance's own; `aadsync_{setting}` when {instance} is the "
        "default instance, named by the Variable aadsync_instance)"
    )


def cli_instance(instance: str) -> str:
    """The CLI option that opens ``instance``'s store, followed by a space ("" for the default instance, which the
    CLI opens without it), to put after the command's name."""
    return "" if instance == DEFAULT else f"--instance {shlex.quote(instance)} "
