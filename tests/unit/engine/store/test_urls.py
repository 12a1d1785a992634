"""The secrets of a store URL that SQLAlchemy reads wrongly or not at all: a password holding a raw '@' (SQLAlchemy
cuts it at the first '@' and takes its tail for the host) and a URL it cannot parse (a port that is not a number).
Their passwords were registered short or not at all, so the masked URL, the scrubbed logs and the driver's error showed
them; now they are read by hand, registered and masked whole, and a raw '@' is refused without quoting the URL."""

from __future__ import annotations

import pytest

from airflow_provider_aadsync.engine import secrets
from airflow_provider_aadsync.engine.store import Store
from airflow_provider_aadsync.engine.store.urls import RAW_AT_REFUSAL, has_raw_at, masked_url, url_secrets

#: A port that is not a number: SQLAlchemy cannot parse the URL at all.
BAD_PORT = "postgresql://aadsync:Sup3rS3cretPw@db:54x2/aadsync"
#: A raw '@' in the password: SQLAlchemy reads the password "Pa55" (too short to register) and the host
#: "word-2024@db.example.invalid", which the driver's error then quoted.
RAW_AT = "postgresql://aadsync:Pa55@word-2024@db.example.invalid/aadsync"


@pytest.fixture(autouse=True)
def clean_registry():
    secrets.forget_secrets()
    yield
    secrets.forget_secrets()


def test_a_url_sqlalchemy_cannot_parse_still_has_its_password_registered_and_masked():
    assert url_secrets(BAD_PORT) == ["Sup3rS3cretPw"]
    assert masked_url(BAD_PORT) == "postgresql://aadsync:***@db:54x2/aadsync"
    with pytest.raises(ValueError) as refused:
        Store.open(BAD_PORT)
    assert "Sup3rS3cretPw" not in str(refused.value)
    assert secrets.scrub(f"store_url: {BAD_PORT}") == "store_url: postgresql://aadsync:***@db:54x2/aadsync"


def test_a_password_with_a_raw_at_is_refused_without_quoting_it_and_masked_whole():
    with pytest.raises(ValueError) as refused:
        Store.open(RAW_AT)
    assert (
        str(refused.value) == RAW_AT_REFUSAL == ("the store URL's password holds a raw '@': percent-encode it as %40")
    )
    # registered before the refusal: every message quoting the URL (a template field, a log line) is scrubbed
    assert secrets.scrub(f"store_url: {RAW_AT}") == "store_url: postgresql://aadsync:***@db.example.invalid/aadsync"
    assert masked_url(RAW_AT) == "postgresql://aadsync:***@db.example.invalid/aadsync"
    assert "Pa55@word-2024" in url_secrets(RAW_AT)


def test_the_password_may_hold_a_slash_and_several_raw_ats():
    url = "postgresql://u:ab/c@d-e@f.g@db.example.invalid:5432/store?sslmode=require"
    assert has_raw_at(url)
    assert "ab/c@d-e@f.g" in url_secrets(url)
    assert masked_url(url) == "postgresql://u:***@db.example.invalid:5432/store?sslmode=require"
    with pytest.raises(ValueError, match="percent-encode it as %40"):
        Store(url)
    assert "d-e" not in secrets.scrub(url) and "f.g" not in secrets.scrub(url)


def test_an_encoded_at_and_an_at_after_the_host_are_read_as_sqlalchemy_reads_them():
    encoded = "postgresql://aadsync:Pa55%40word-2024@db.example.invalid/aadsync"
    assert not has_raw_at(encoded)
    assert url_secrets(encoded) == ["Pa55@word-2024"]
    assert masked_url(encoded) == "postgresql://aadsync:***@db.example.invalid/aadsync"
    in_query = "postgresql://aadsync:s3cret-pw@db.example.invalid/aadsync?application_name=sync@host"
    assert not has_raw_at(in_query)
    assert url_secrets(in_query) == ["s3cret-pw"]


def test_the_secret_query_parameters_of_a_url_sqlalchemy_cannot_parse_are_masked_too():
    url = "postgresql://aadsync@db:54x2/aadsync?sslmode=require&password=Qu3ry-Secret&sslpassword=K3y-Secret"
    assert url_secrets(url) == ["Qu3ry-Secret", "K3y-Secret"]
    assert masked_url(url) == "postgresql://aadsync@db:54x2/aadsync?sslmode=require&password=***&sslpassword=***"
