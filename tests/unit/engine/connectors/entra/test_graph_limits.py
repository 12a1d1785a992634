"""What Entra ID accepts, against the fake Graph tenant: a UPN on an unverified domain goes on the tenant's initial
domain (the product's MOERA) and becomes the real UPN once the domain is verified; what Graph cannot write or create
is one grouped notice per run (a count and examples), never an error per object and never silently dropped."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine import browse
from airflow_provider_aadsync.engine.connectors.entra.writer import ExportSettings, run_entra_export
from airflow_provider_aadsync.engine.report import render_run
from airflow_provider_aadsync.engine.runs.source import SourceObject
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.sync import run_sync
from tests.support.fakes import INITIAL_DOMAIN, FakeGraphWriter
from tests.support.plans import cs_row, plan_row
from tests.support.world import ad_group, ad_user, cloud_twin, exports, guid, import_full

SETTINGS = ExportSettings(resend_settle_seconds=0)


@pytest.fixture
def graph() -> FakeGraphWriter:
    fake = FakeGraphWriter()
    fake.unverified_domains.append("sales.example")
    return fake


def cycle(store: Store, rules, graph: FakeGraphWriter, objects: list[SourceObject]):
    import_full(store, "ad", objects)
    assert run_sync(store, rules, connector="ad", mode="full").result == "success"
    return run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")


def upns(graph: FakeGraphWriter) -> dict[str, str]:
    return {user["onPremisesImmutableId"]: user["userPrincipalName"] for user in graph.users().values()}


def test_an_unverified_upn_suffix_goes_on_the_initial_domain_until_it_is_verified(store, rules, graph):
    users = [ad_user(1), *(ad_user(n, userPrincipalName=f"seller{n}@Sales.example") for n in (2, 3))]
    result = cycle(store, rules, graph, users)
    assert result.result == "success" and result.counters["errors"] == 0, result
    assert sorted(upns(graph).values()) == [
        "seller2@contoso.onmicrosoft.com", "seller3@contoso.onmicrosoft.com", "user1@corp.example",
    ]  # fmt: skip
    (notice,) = store.run_notices(result.run_id)
    assert (notice["code"], notice["subject"], notice["count"]) == ("upn-on-initial-domain", "userPrincipalName", 2)
    by_wanted = {example["wanted"]: example for example in notice["examples"]}
    assert by_wanted["seller2@Sales.example"]["written"] == f"seller2@{INITIAL_DOMAIN}"
    assert by_wanted["seller2@Sales.example"]["dn"].startswith("CN=user2,")  # named by the AD object
    assert [read for read in graph.reads if read[1] == "/domains"] == [("GET", "/domains", {})]  # once per run
    report = render_run(store, store.get_run(result.run_id))
    assert f"- {by_wanted['seller2@Sales.example']['dn']}: seller2@Sales.example → seller2@{INITIAL_DOMAIN}" in report

    # The next cycle: the domain is still unverified, the users hold the substitute: nothing to write, no notice.
    graph.calls.clear()
    result = cycle(store, rules, graph, users)
    assert result.result == "success" and graph.calls == [] and store.run_notices(result.run_id) == []
    assert result.counters["upns_kept_on_initial_domain"] == 2 and exports(store) == {}

    # The admin verifies the domain: the next cycle writes the UPNs from AD.
    graph.unverified_domains.remove("sales.example")
    graph.verified_domains.append("sales.example")
    result = cycle(store, rules, graph, users)
    assert result.result == "success" and result.counters["user_updates"] == 2, result
    assert sorted(upns(graph).values()) == ["seller2@Sales.example", "seller3@Sales.example", "user1@corp.example"]
    assert store.run_notices(result.run_id) == [] and exports(store) == {}


def test_a_taken_substitute_gets_a_placeholder_like_any_taken_upn(store, rules, graph):
    graph.add_user(f"seller2@{INITIAL_DOMAIN}", displayName="A cloud user")
    result = cycle(store, rules, graph, [ad_user(2, userPrincipalName="seller2@sales.example")])
    assert result.result == "success" and result.counters["conflicts_recorded"] == 1, result
    (created,) = [u for u in graph.users().values() if u.get("onPremisesImmutableId")]
    assert created["userPrincipalName"].startswith("seller2_") and created["userPrincipalName"].endswith(INITIAL_DOMAIN)


def test_what_graph_cannot_create_is_one_notice_per_kind_with_a_count_and_examples(store, rules, graph):
    contacts = [
        SourceObject(
            anchor=guid(500 + n),
            dn=f"CN=Partner{n},OU=Contacts,DC=corp,DC=example",
            object_type="contact",
            attrs={"objectGUID": [guid(500 + n)], "cn": [f"Partner{n}"], "mail": [f"partner{n}@example.org"]},
        )
        for n in range(25)
    ]
    distribution = ad_group(300, "Newsletter", security=False, mail="news@corp.example", mailNickname="news")
    result = cycle(store, rules, graph, [ad_user(1), distribution, *contacts])
    assert result.result == "success" and result.counters["errors"] == 0, result
    assert store.run_errors(result.run_id) == []
    notices = {n["subject"]: n for n in store.run_notices(result.run_id)}
    assert set(notices) == {"contact create", "distribution group create"}
    assert notices["contact create"]["code"] == "unsupported-by-graph"
    assert notices["contact create"]["count"] == 25 and len(notices["contact create"]["examples"]) == 20
    assert notices["contact create"]["examples"][0]["dn"].startswith("CN=Partner")
    assert notices["distribution group create"]["count"] == 1
    assert "Newsletter" in notices["distribution group create"]["examples"][0]["dn"]
    assert len(graph.users()) == 1 and graph.groups() == {}
    # The run report and the sync manager's run detail (browse) show the same grouped rows.
    report = render_run(store, store.get_run(result.run_id))
    assert "| unsupported-by-graph | contact create | 25 |" in report and "and 20 more" in report
    assert report.count("CN=Partner") == 5  # five examples, no row per contact
    assert browse.run_detail(store, result.run_id)["notices"] == store.run_notices(result.run_id)
    # They stay planned (and in the metaverse): the next run counts them again, once.
    result = run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")
    assert {n["subject"]: n["count"] for n in store.run_notices(result.run_id)} == {
        "contact create": 25, "distribution group create": 1,
    }  # fmt: skip


def test_a_flow_to_a_property_graph_cannot_write_is_left_out_and_counted(store, graph):
    user = graph.add_user("user1@corp.example")
    upn = {"userPrincipalName": ["user1@corp.example"]}
    cs_row(store, "entra", user, f"users/{user}", object_type="user", attrs=upn)
    plan_row(store, "entra", user, f"users/{user}", operation="update", object_type="user",
             changes={"proxyAddresses": ["SMTP:a@corp.example"], "imAddresses": ["sip:a@corp.example"],
                      "jobTitle": ["Clerk"]})  # fmt: skip
    plan_row(store, "entra", "provisional:x", "users/provisional:x", operation="add", object_type="user",
             changes={"userPrincipalName": ["new@corp.example"], "targetAddress": ["SMTP:new@cloud.example"],
                      "proxyAddresses": ["SMTP:new@corp.example"]})  # fmt: skip
    result = run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")
    assert result.result == "success" and result.counters["errors"] == 0, result
    assert {(n["subject"], n["count"]) for n in store.run_notices(result.run_id)} == {
        ("proxyAddresses", 2), ("targetAddress", 1), ("imAddresses", 1),
    }  # fmt: skip
    bodies = [request.body for request in graph.requests_sent()]
    assert all(not {"proxyAddresses", "targetAddress", "imAddresses"} & set(body) for body in bodies)
    assert graph.users()[user]["jobTitle"] == "Clerk" and len(graph.users()) == 2


def test_a_clear_graph_refuses_is_left_out_and_the_users_other_changes_are_exported(store, graph):
    """Graph refuses null for a user's displayName, usageLocation and mail ("Update user"): sent, the whole update
    would fail at every cycle, the user's other changes with it. The clear is left out, one notice per property says
    so, and the rest of the update is written."""
    user = graph.add_user("user1@corp.example")
    held = {"userPrincipalName": ["user1@corp.example"], "usageLocation": ["NL"], "mail": ["user1@corp.example"]}
    cs_row(store, "entra", user, f"users/{user}", object_type="user", attrs=held)
    plan_row(store, "entra", user, f"users/{user}", operation="update", object_type="user",
             changes={"usageLocation": [], "mail": [], "jobTitle": ["Clerk"], "department": []})  # fmt: skip
    result = run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")
    assert result.result == "success" and result.counters["errors"] == 0, result
    notices = {n["subject"]: n for n in store.run_notices(result.run_id)}
    assert set(notices) == {"usageLocation clear", "mail clear"}
    assert notices["mail clear"]["code"] == "unsupported-by-graph" and notices["mail clear"]["count"] == 1
    (body,) = [request.body for request in graph.requests_sent() if request.method == "PATCH"]
    assert body == {"jobTitle": "Clerk", "department": None}  # a clear Graph takes is still sent
    assert graph.users()[user]["jobTitle"] == "Clerk"


def test_a_mail_enabled_security_group_is_not_created_as_a_plain_security_group(store, rules, graph):
    """Graph creates no mail-enabled security group (Request_BadRequest "Cannot Create a mail-enabled security
    groups and or distribution list"), and a security group it could create instead could never be mail-enabled
    later: the group is not created, one notice says so, and a security group without mail is created as usual."""
    universal = ad_group(301, "Finance", mail="finance@corp.example", groupType="-2147483640")
    global_group = ad_group(302, "Payroll", [1], mail="payroll@corp.example")
    plain = ad_group(303, "Staff", [1])
    result = cycle(store, rules, graph, [ad_user(1), universal, global_group, plain])
    assert result.result == "success" and result.counters["errors"] == 0, result
    assert [group["displayName"] for group in graph.groups().values()] == ["Staff"]
    (staff,) = graph.groups().values()
    assert (staff["securityEnabled"], staff["mailEnabled"]) == (True, False)
    notices = {n["subject"]: n for n in store.run_notices(result.run_id)}
    assert set(notices) == {"mail-enabled security group create"}
    notice = notices["mail-enabled security group create"]
    assert notice["code"] == "unsupported-by-graph" and notice["count"] == 2
    assert sorted(example["dn"].split(",")[0] for example in notice["examples"]) == ["CN=Finance", "CN=Payroll"]
    created = [request.body["displayName"] for request in graph.requests_sent() if request.url == "/groups"]
    assert created == ["Staff"]  # the others are not sent (Graph would refuse them)
    # It stays planned and in the metaverse: the next run counts it again, once; its members wait with it.
    result = run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")
    assert {n["subject"]: n["count"] for n in store.run_notices(result.run_id)} == {
        "mail-enabled security group create": 2,
    }  # fmt: skip
    assert result.counters["errors"] == 0 and len(graph.groups()) == 1


def test_mail_enablement_of_an_existing_group_is_never_patched(store, graph):
    """Graph's Update group has no mailEnabled (a group's mail-enablement is fixed at its creation): an adopted
    cloud security group whose AD group has mail keeps its other updates, without a PATCH Graph would refuse."""
    group = graph.add_group("Adopted", securityEnabled=True, mailEnabled=False)
    cs_row(store, "entra", group, f"groups/{group}", object_type="group", attrs={"displayName": ["Adopted"]})
    plan_row(store, "entra", group, f"groups/{group}", operation="update", object_type="group",
             changes={"mailEnabled": [True], "description": ["Now with mail in AD"]})  # fmt: skip
    result = run_entra_export(store, graph, settings=SETTINGS, lock_holder="test-task")
    assert result.result == "success" and result.counters["errors"] == 0, result
    assert [request.body for request in graph.requests_sent()] == [{"description": "Now with mail in AD"}]
    assert graph.groups()[group]["description"] == "Now with mail in AD"
    assert graph.groups()[group]["mailEnabled"] is False
    (notice,) = store.run_notices(result.run_id)
    assert (notice["code"], notice["subject"], notice["count"]) == ("unsupported-by-graph", "mailEnabled", 1)


@pytest.mark.parametrize("verified", [False, True], ids=["unverified", "verified-since"])
def test_a_rebuilt_store_counts_no_identity_change_for_upns_kept_on_the_initial_domain(store, rules, graph, verified):
    """Users an earlier export put on the initial domain (their suffix unverified) hold that stand-in: a rebuilt store
    (or any full import) stages their AD UPN again, which the export leaves out while the suffix is unverified. The
    identity guard compares the UPN as the export writes it: those are no identity changes, and the export goes on
    with nothing written. Once the domain is verified the UPNs do change, and are counted."""
    ad = [ad_user(n, userPrincipalName=f"seller{n}@sales.example") for n in (1, 2, 3)]
    cloud = [
        cloud_twin(n, accountEnabled=True, userPrincipalName=f"seller{n}@{INITIAL_DOMAIN}", mailNickname=f"user{n}")
        for n in (1, 2, 3)
    ]
    import_full(store, "ad", ad)
    import_full(store, "entra", cloud)
    for connector in ("ad", "entra"):
        assert run_sync(store, rules, connector=connector, mode="full").result == "success"
    staged = {anchor: row["changes"] for anchor, row in exports(store).items()}
    assert staged["cloud-1"]["userPrincipalName"] == ["seller1@sales.example"]
    if verified:
        graph.verified_domains.append("sales.example")
    result = run_entra_export(
        store, graph, settings=SETTINGS.model_copy(update={"identity_change_threshold": 2}), lock_holder="test-task"
    )
    if verified:
        assert result.result == "stopped-identity-change-threshold-exceeded" and graph.calls == []
        assert result.counters["planned_identity_changes"] == 3
    else:
        assert result.result == "success", result
        assert result.counters["planned_identity_changes"] == 0
        assert result.counters["upns_kept_on_initial_domain"] == 3 and graph.calls == []  # nothing written
    assert [read for read in graph.reads if read[1] == "/domains"] == [("GET", "/domains", {})]  # once per run
