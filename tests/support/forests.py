"""Two forests and a tenant synced by the shipped rules: the stores the tests of a connector space as a whole (its
report, drop and rename) start from."""

from __future__ import annotations

from pathlib import Path

from airflow_provider_aadsync.engine.rules import DEFAULT_RULES_DIR, RuleSet
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from airflow_provider_aadsync.engine.sync.settings import load_sync_rules
from tests.support.world import ad_group, ad_user, cloud_twin, guid, import_full, links, sync_connectors

#: The optional rule joining a person's users of two forests by mail.
SAME_PERSON = DEFAULT_RULES_DIR.parent / "optional" / "join-same-person.yaml"
#: The resource forest's partition.
FABRIKAM_BASE = "DC=fabrikam,DC=example"


def sid(rid: int) -> str:
    return f"S-1-5-21-1111111111-2222222222-3333333333-{rid}"


def fsp(n: int, member_sid: str) -> SourceObject:
    """A foreign security principal as AD makes it when a group gets a member from another forest."""
    return SourceObject(
        anchor=guid(n),
        dn=f"CN={member_sid},CN=ForeignSecurityPrincipals,{FABRIKAM_BASE}",
        object_type="foreignSecurityPrincipal",
        attrs={"objectGUID": [guid(n)], "objectSid": [member_sid], "cn": [member_sid]},
    )


CORP = [ad_user(1), ad_user(2), ad_group(20, "Staff", members=[1, 2])]
FABRIKAM = [ad_user(11, "fab11"), ad_user(12, "fab12"), ad_user(13, "fab13"), ad_group(30, "Fab", members=[11, 12])]
CLOUD = [cloud_twin(1), cloud_twin(2), cloud_twin(11, "fab11"), cloud_twin(12, "fab12"), cloud_twin(13, "fab13")]


def synced_forests(store: Store) -> RuleSet:
    """``ad`` (CORP) and ``ad_fabrikam`` (FABRIKAM) synced with their cloud twins (CLOUD), each user joined to its
    twin, the groups' cloud creates staged, a DirSync cookie saved for each forest; the rules used."""
    rules = sync_connectors(store, {"ad": CORP, "ad_fabrikam": FABRIKAM, "entra": CLOUD})
    assert links(store, "entra")[("entra", "cloud-11")][1] == "join"
    with store.transaction() as connection:
        for connector in ("ad", "ad_fabrikam"):
            store.save_watermark(connection, connector, "DC=corp,DC=example", b"cookie", "dc1")
    return rules


def small_two_forest_store(tmp_path: Path) -> str:
    """The URL of a SQLite store where ``ad`` (one user) and ``ad_fabrikam`` (two) are synced with their cloud twins."""
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    with Store.open(url) as store:
        rules = load_sync_rules()
        import_full(store, "ad", [ad_user(1)])
        import_full(store, "ad_fabrikam", [ad_user(11, "fab11"), ad_user(12, "fab12")])
        import_full(store, "entra", [cloud_twin(1), cloud_twin(11, "fab11"), cloud_twin(12, "fab12")])
        for connector in ("ad", "ad_fabrikam", "entra"):
            assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    return url
