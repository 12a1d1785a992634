"""The DirSync requests of the hook: what the ldap3 read puts on the wire, and the watermark's searches."""

from __future__ import annotations

from typing import Any

import pytest
from ldap3.protocol.convert import build_controls_list
from ldap3.protocol.rfc4511 import Control
from pyasn1.codec.ber import decoder as ber_decoder
from pyasn1.codec.ber import encoder as ber_encoder

from airflow_provider_aadsync.hooks.active_directory import ActiveDirectoryHook
from airflow_provider_aadsync.hooks.active_directory_pages import (
    DIRSYNC_MAX_BYTES,
    DIRSYNC_OID,
    DirSyncControl,
    _DirSyncRequestValue,
)
from airflow_provider_aadsync.hooks.active_directory_settings import ADConnectionSettings

NC = "DC=corp,DC=example,DC=com"


def settings() -> ADConnectionSettings:
    return ADConnectionSettings(
        host="dc1.corp.example.com", bind_dn="CN=svc", password="x", base_dn=NC, full_read_client="ldap3"
    )


class RecordingConnection:
    """An ldap3 connection that records each search's controls and answers with the next DirSync response."""

    bound, closed = True, False

    def __init__(self, answers: list[tuple[bytes, bool]]):
        self.answers = answers
        self.searches: list[dict[str, Any]] = []
        self.response: list[dict[str, Any]] = []
        self.result: dict[str, Any] = {}

    def search(self, base: str, search_filter: str, scope: Any, **options: Any) -> bool:
        self.searches.append({"base": base, "filter": search_filter, **options})
        cookie, more = self.answers.pop(0)
        self.result = {"controls": {DIRSYNC_OID: {"value": {"cookie": cookie, "more_results": more}}}}
        return True


def hook_on(conn: RecordingConnection) -> ActiveDirectoryHook:
    hook = ActiveDirectoryHook(settings=settings())
    hook._conn = conn  # type: ignore[assignment]
    hook.__dict__["root_dse"] = {"defaultNamingContext": [NC]}
    return hook


def wire_control(controls: list[Any]) -> Control:
    """The DirSync control as ldap3 encodes it into the search request (its own control building and BER
    encoding), decoded back from those bytes."""
    built = build_controls_list(controls)
    [encoded] = [ber_encoder.encode(control) for control in built if str(control["controlType"]) == DIRSYNC_OID]
    decoded, rest = ber_decoder.decode(encoded, asn1Spec=Control())
    assert rest == b""
    return decoded


@pytest.mark.parametrize("cookie", [None, b"\x01\x02cookie-bytes" * 20])
def test_ldap3_sends_the_dirsync_value_python_ldap_sends(cookie):
    conn = RecordingConnection([(b"next", False)])
    list(hook_on(conn).dirsync_pages(["cn"], cookie) if cookie else [hook_on(conn).dirsync_watermark()])
    control = wire_control(conn.searches[0]["controls"])
    value = bytes(control["controlValue"])
    assert value == DirSyncControl(cookie=cookie or b"").encodeControlValue()
    assert bool(control["criticality"]) is True
    # Flags: the 32-bit signed INTEGER 0x80000800 (4 content bytes), as Windows AD reads it, not ldap3's 5 bytes.
    header = 2 + (value[1] & 0x7F if value[1] & 0x80 else 0)  # SEQUENCE tag and its length (short or long form)
    assert value[header : header + 6] == bytes.fromhex("020480000800")
    decoded, _ = ber_decoder.decode(value, asn1Spec=_DirSyncRequestValue())
    assert int(decoded["Flags"]) == 0x80000800 - 2**32
    assert int(decoded["Flags"]) & 0xFFFFFFFF == 0x80000800
    assert int(decoded["MaxBytes"]) == DIRSYNC_MAX_BYTES
    assert bytes(decoded["Cookie"]) == (cookie or b"")


def test_watermark_searches_again_while_the_dc_says_more_results():
    conn = RecordingConnection([(b"step-1", True), (b"step-2", True), (b"now", False)])
    assert hook_on(conn).dirsync_watermark() == b"now"
    sent = [
        ber_decoder.decode(bytes(wire_control(s["controls"])["controlValue"]), asn1Spec=_DirSyncRequestValue())[0]
        for s in conn.searches
    ]
    assert [bytes(value["Cookie"]) for value in sent] == [b"", b"step-1", b"step-2"]
    assert {search["base"] for search in conn.searches} == {NC}


def test_watermark_of_a_dc_without_more_results_is_one_search():
    conn = RecordingConnection([(b"now", False)])
    assert hook_on(conn).dirsync_watermark(base="DC=child,DC=corp,DC=example,DC=com") == b"now"
    assert [search["base"] for search in conn.searches] == ["DC=child,DC=corp,DC=example,DC=com"]
