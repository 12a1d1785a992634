"""EntraHook: a Microsoft Graph client for Entra ID (msal client credentials + httpx), per national cloud.

Thin and reusable: it knows clouds, tokens, paging, retries and Graph's error bodies; what to read or write is the
engine's business. Production code talks to Graph's URLs; the Graph emulator is reached only through the
connection's authority/Graph URL overrides and CA bundle.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import msal
import msgspec

try:  # Airflow 3 task SDK
    from airflow.sdk import BaseHook
except ImportError:  # pragma: no cover - Airflow is a hard dependency, this only helps static tools
    from airflow.hooks.base import BaseHook  # type: ignore[no-redef]

from airflow_provider_aadsync.engine import progress, write_guard
from airflow_provider_aadsync.engine.connectors.entra.extensions import (
    REGISTER_PERMISSIONS,
    ExtensionNames,
    ExtensionRegistrationError,
    register_extensions,
)
from airflow_provider_aadsync.engine.connectors.entra.graph import WRITES_SENT
from airflow_provider_aadsync.engine.runs.source import BatchRequest, ObjectDecodeError, WriteOutcomeUnknownError
from airflow_provider_aadsync.engine.secrets import scrub
from airflow_provider_aadsync.hooks._settings import keep_secret
from airflow_provider_aadsync.hooks.entra_batch import (
    OBJECT_REFUSALS,
    BatchResult,
    batch_body,
    check_requests,
    holds_create,
    next_chunk,
    objects_read,
    read_answer,
    read_requests,
    unreadable_object,
)
from airflow_provider_aadsync.hooks.entra_permissions import UnreadableTokenError, check_permissions, token_roles
from airflow_provider_aadsync.hooks.entra_roles import directory_role_holders
from airflow_provider_aadsync.hooks.entra_settings import (
    MICROSOFT_AUTHORITY_HOSTS,
    DeltaLinkExpired,
    EntraAuthError,
    EntraConnectionSettings,
    GraphError,
    GraphHostError,
    GraphMalformedAnswerError,
    GraphThrottledError,
    GraphUnreachableError,
)
from airflow_provider_aadsync.hooks.entra_transport import (
    RETRYABLE_STATUSES,
    PinnedCASession,
    RetryBudget,
    outcome_unknown,
    parse_retry_after,
    retryable,
    retryable_when_sent_once,
    writes_in,
)

log = logging.getLogger(__name__)

#: Graph's error codes for delta state it no longer has (tokens expire after 7 days for directory objects).
DELTA_STATE_LOST_CODES = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})


class EntraHook(BaseHook):
    """Interact with Entra ID through Microsoft Graph.

    :param entra_conn_id: the ``aadsync_entra`` connection to use (default ``aadsync_entra``).
    :param settings: ready settings instead of a connection (the CLI and tests use this).
    """

    conn_name_attr = "entra_conn_id"
    default_conn_name = "aadsync_entra"
    conn_type = "aadsync_entra"
    hook_name = "Entra ID (AADSync)"

    def __init__(self, entra_conn_id: str = default_conn_name, *, settings: EntraConnectionSettings | None = None):
        super().__init__()
        self.entra_conn_id = entra_conn_id
        self._settings = settings
        self.counters: dict[str, float] = {"requests": 0, "retries": 0, "throttled": 0, "retry_wait_seconds": 0.0}
        self.counters[WRITES_SENT] = 0  # every send of a write (a $batch's items), resends too: the export's pacer

    @cached_property
    def settings(self) -> EntraConnectionSettings:
        if self._settings is not None:
            return self._settings
        return EntraConnectionSettings.from_connection(self.get_connection(self.entra_conn_id))

    @cached_property
    def _msal_app(self) -> msal.ConfidentialClientApplication:
        """Created lazily and once: msal makes a network call when the app is constructed."""
        settings = self.settings
        authority_host = urlsplit(settings.endpoints.authority_host).hostname
        microsoft = authority_host in MICROSOFT_AUTHORITY_HOSTS
        if not microsoft:
            log.warning(
                "authority host %s is not a Microsoft sign-in host: msal's authority validation and instance "
                "discovery are off for it; use it only for a host you trust (the Graph emulator, a test authority)",
                authority_host,
            )
        credential = settings.client_credential()  # its own clear error (an unreadable key file), never wrapped
        try:
            return msal.ConfidentialClientApplication(
                settings.client_id,
                client_credential=credential,
                authority=settings.authority,
                validate_authority=microsoft,
                instance_discovery=microsoft,
                http_client=PinnedCASession(settings.ca_bundle, settings.timeout) if settings.ca_bundle else None,
                timeout=settings.timeout,
            )
        except ValueError as error:  # msal raises ValueError when tenant discovery fails
            raise EntraAuthError(f"authority {settings.authority} is not usable: {error}") from None
        except Exception as error:
            raise EntraAuthError(f"could not reach the authority {settings.authority}: {error}") from None

    def _drop_cached_tokens(self) -> None:
        """Forget msal's cached access tokens (Graph refused one), so the next get_token asks for a new one."""
        if "_msal_app" in self.__dict__:
            cache = self._msal_app.token_cache
            for entry in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                cache.remove_at(entry)

    def get_token(self) -> str:
        """An access token for Graph, from msal's cache while valid."""
        result = self._msal_app.acquire_token_for_client(scopes=[self.settings.scope])
        if "access_token" not in result:
            description = (result.get("error_description") or "").splitlines()[0]
            raise EntraAuthError(
                f"no token for client {self.settings.client_id} in tenant {self.settings.tenant_id}: "
                f"{result.get('error')}: {description}"
            )
        token = result["access_token"]
        if token != self.__dict__.get("_kept_token"):  # a new token (msal's cache hands back the same one)
            keep_secret(token, encoded_forms=False)
            self._kept_token = token
        return token

    @cached_property
    def _http(self) -> httpx.Client:
        settings = self.settings
        return httpx.Client(
            base_url=f"{settings.endpoints.graph_url}/v1.0",
            verify=ssl.create_default_context(cafile=settings.ca_bundle) if settings.ca_bundle else True,
            timeout=settings.timeout,
            headers={"Accept": "application/json"},
        )

    def get_conn(self) -> httpx.Client:
        return self._http

    def close(self) -> None:
        if "_http" in self.__dict__:
            self._http.close()
            del self.__dict__["_http"]

    def test_connection(self) -> tuple[bool, str]:
        """Get a token, check the application permissions it carries (``roles``), read /organization; never raises.

        Fails naming every missing required permission (before any Graph call, which would only answer 403 for the
        first one); passes with a note naming missing optional ones. With the directory extension permission granted
        (or the token unreadable), it also says whether the anchor's directory extension is registered.
        """
        try:
            extensions_granted = True
            try:
                check = check_permissions(token_roles(self.get_token()))
            except UnreadableTokenError as error:  # access tokens are opaque to clients: say so, go on
                permissions = f"The granted permissions could not be read from the token: {error}."
            else:
                if not check.ok:
                    return False, check.message()
                permissions = check.message()
                extensions_granted = not check.missing_optional  # else the note above names the permission
            organization = self.request("GET", "/organization")["value"][0]
            tenant = f"Connected to tenant {organization.get('displayName')} ({organization.get('id')})."
            note = f" {self._extensions_note()}" if extensions_granted else ""
            return True, f"{tenant} {permissions}{note}"
        except Exception as error:
            return False, scrub(str(error))  # shown in the UI: no known secret in it

    def _extensions_note(self) -> str:
        """Whether the anchor's directory extension is registered on the sync app, or which permission registering
        it needs (read only: ``aadsync register-extensions`` or the first export registers it)."""
        names = self.extension_names
        wanted = {names.anchor_extension: {"User", "Group"}}
        try:
            outcome = register_extensions(self, self.application_id, wanted, dry_run=True)
        except ExtensionRegistrationError as error:
            return f"Directory extensions: {error}."
        except GraphError as error:
            return f"Directory extensions could not be checked: {error}."
        if outcome.problems:
            return (
                "Directory extensions: " + "; ".join(outcome.problems) + ": run `aadsync register-extensions` (or "
                "let the first export register it), which needs " + " or ".join(REGISTER_PERMISSIONS) + "."
            )
        return f"Directory extension {', '.join(outcome.existing)} is registered."

    # ------------------------------------------------------------------------------------------------ requests
    def request(self, method: str, url: str, *, resend_if_unknown: bool = True, **kwargs: Any) -> Any:
        """Send one Graph request with retries on throttling and transient errors; return the JSON body or None.

        Throttling is waited out for up to ``max_throttle_wait`` in all, faults are tried ``max_attempts`` times
        (:class:`RetryBudget`). ``resend_if_unknown=False``: a connection lost after the request was sent, or an answer
        after which it may have been carried out (500, 502, 504), raises instead of sending it again.

        :raise GraphHostError: ``url`` is absolute and not on the configured Graph host (nothing is sent).
        :raise GraphThrottledError: Graph asked for a wait longer than ``max_retry_wait``, or throttled the request
            for longer than ``max_throttle_wait``.
        """
        self._check_host(url)
        worth_retrying = retryable if resend_if_unknown else retryable_when_sent_once
        budget = self._retry_budget()
        while True:
            try:
                return self._send(method, url, **kwargs)
            except Exception as error:
                wait = budget.next_wait(error) if worth_retrying(error) else None
                if wait is None and isinstance(error, httpx.TransportError):
                    graph = self.settings.endpoints.graph_url
                    raise GraphUnreachableError(
                        f"{method} {url.split('?', 1)[0]}: no answer from Graph at {graph}: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                if wait is None:
                    raise
                self._count_retry(url, error, wait)
                time.sleep(wait)

    def _retry_budget(self) -> RetryBudget:
        return RetryBudget(self.settings.max_attempts, self.settings.max_throttle_wait, self.settings.max_retry_wait)

    def _check_host(self, url: str) -> None:
        """Absolute URLs (next and delta links) must point at the configured Graph scheme, host and port."""
        if "://" not in url[:12]:
            return
        graph = urlsplit(self.settings.endpoints.graph_url)
        target = urlsplit(url)
        try:
            port = target.port or 443
        except ValueError:
            port = -1
        if (target.scheme, target.hostname, port) != (graph.scheme, graph.hostname, graph.port or 443):
            shown = f"{target.scheme}://{target.hostname}" + (f":{port}" if port not in (443, -1) else "")
            raise GraphHostError(
                f"refusing to send a request to {shown}: a next/delta link from Graph or "
                f"the store points outside the configured Graph host {graph.netloc}, and the access token only goes "
                "there; check the connection's graph_url, or run a full import to replace a stored delta link"
            )

    def _count_retry(self, url: str, error: BaseException, wait: float) -> None:
        self.counters["retries"] += 1
        if isinstance(error, GraphError) and error.status == 429:
            self.counters["throttled"] += 1
        self.counters["retry_wait_seconds"] += wait
        log.info("retrying %s in %.1f s after %s", url.split("?", 1)[0], wait, error)  # tokens stay out of the log
        if isinstance(error, GraphError) and error.status == 429:
            progress.current().wait("throttling", wait, "Graph throttling (Retry-After)")
        else:
            status = error.status if isinstance(error, GraphError) else type(error).__name__
            progress.current().wait("retry", wait, f"a retry of a Graph request ({status})")

    def _send(self, method: str, url: str, **kwargs: Any) -> Any:
        extra_headers = kwargs.pop("headers", {})
        for renewed in (False, True):
            if renewed:
                self._drop_cached_tokens()
            headers = {"Authorization": f"Bearer {self.get_token()}", **extra_headers}
            if method != "GET":
                write_guard.check()  # an exporter's lock, asked before each write, resends too (engine/write_guard.py)
                self.counters[WRITES_SENT] += writes_in(url, kwargs.get("json"))
            self.counters["requests"] += 1
            response = self._http.request(method, url, headers=headers, **kwargs)
            # 401: Graph refused the token (expired early, revoked): the request was not carried out, so it is sent
            # once more with a new token; a second 401 is an error.
            if response.status_code != 401 or renewed:
                break
            log.info("Graph refused the access token (401); getting a new one")
        if response.status_code >= 400:
            raise self._error(response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            # msgspec (an Airflow dependency) decodes to the same dicts and lists as json, about twice as fast.
            return msgspec.json.decode(response.content)
        except msgspec.DecodeError as error:
            try:
                # msgspec refuses an escaped unpaired surrogate ("\ud800") that json accepts; the import then
                # reports the object holding it as a per-object error instead of failing the whole page.
                return json.loads(response.content)
            except ValueError:
                pass
            kind = response.headers.get("content-type", "no content type").split(";")[0]
            raise GraphMalformedAnswerError(
                f"{method} {response.request.url.copy_with(query=None)} → {response.status_code}: the answer is not "
                f"JSON ({kind}, {len(response.content)} bytes: {error})",
                method=method,
            ) from None

    def _error(self, response: httpx.Response) -> GraphError:
        try:
            body = response.json().get("error", {})
        except (ValueError, AttributeError):
            body = {}
        if not isinstance(body, dict):
            body = {}
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        text = "" if "html" in response.headers.get("content-type", "") else response.text[:300]  # no HTML pages
        found = dict(
            request_id=(body.get("innerError") or {}).get("request-id") or response.headers.get("request-id"),
            method=response.request.method,
            url=str(response.request.url.copy_with(query=None)),
            retry_after=retry_after,
        )
        code = str(body.get("code") or response.reason_phrase)
        message = str(body.get("message") or text or f"no Graph error body ({response.headers.get('content-type')})")
        limit = self.settings.max_retry_wait
        if response.status_code in RETRYABLE_STATUSES and retry_after is not None and retry_after > limit:
            message += (
                f"; Graph asked to wait {retry_after:.0f} s (Retry-After), more than max_retry_wait ({limit:g} s): "
                "stopped instead of holding the worker, run again later"
            )
            return GraphThrottledError(response.status_code, code, message, **found)
        return GraphError(response.status_code, code, message, **found)

    def batch(self, requests: Sequence[BatchRequest], *, resend_if_unknown: bool = True) -> dict[str, BatchResult]:
        """Run requests through ``$batch``, 20 per call, keeping ``dependsOn`` order; return the result per id.

        A request goes out once its dependencies have answered: Graph takes a batch only fully parallel or fully
        sequential, so every call this sends is parallel (no ``dependsOn`` inside it). Only throttled or transiently
        failed inner requests (429, 5xx) are sent again, after the longest ``Retry-After`` they carry, each under the
        same :class:`RetryBudget` as a single request; a request whose dependency finally failed gets 424 without
        being sent.
        With ``resend_if_unknown=False`` nothing that may have been carried out is sent again: a call whose
        connection dropped after sending, or that holds a POST (a create) and was answered 500, 502 or 504, raises
        :class:`WriteOutcomeUnknownError` (with the results known so far); an inner POST answered so gets the result
        :data:`OUTCOME_UNKNOWN_CODE` (its status kept), for the caller to look up what it may have created.
        The calls' bodies and the reading of their answers: hooks/entra_batch.py.
        """
        check_requests(requests)
        results: dict[str, BatchResult] = {}
        try:
            return self._batch(requests, results, resend_if_unknown=resend_if_unknown)
        except GraphThrottledError as error:  # the answers it had go with it: the export records them (phases.py)
            error.results = dict(results)
            raise

    def _batch(
        self, requests: Sequence[BatchRequest], results: dict[str, BatchResult], *, resend_if_unknown: bool
    ) -> dict[str, BatchResult]:
        """:meth:`batch`'s loop, filling ``results`` as answers come."""
        budgets: dict[str, RetryBudget] = {}
        pending = list(requests)
        while pending:
            chunk, waiting = next_chunk(pending, results)
            pending = waiting
            if not chunk:
                continue
            throttled = self.counters["throttled"]
            try:
                retry_after = self._send_chunk(chunk, results, budgets, resend_if_unknown=resend_if_unknown)
            except (GraphUnreachableError, GraphMalformedAnswerError, GraphError) as error:
                answered = isinstance(error, GraphError)  # an answer after which what was sent may not be done
                if resend_if_unknown or (answered and not (outcome_unknown(error) and holds_create(chunk))):
                    raise
                unknown = [request.id for request in chunk]
                raise WriteOutcomeUnknownError(
                    f"no {'whole' if answered else 'readable'} answer to a $batch of {len(chunk)} requests that was "
                    f"sent: {error}",
                    results=dict(results),
                    unknown=unknown,
                ) from error
            again = [request for request in chunk if request.id not in results]
            if again and retry_after > self.settings.max_retry_wait:
                raise GraphThrottledError(
                    429, "TooManyRequests",
                    f"Graph asked to wait {retry_after:.0f} s (Retry-After) before {len(again)} requests of a $batch, "
                    f"more than max_retry_wait ({self.settings.max_retry_wait:g} s): stopped instead of holding the "
                    "worker, run again later",
                    method="POST", url="/$batch", retry_after=retry_after,
                )  # fmt: skip
            if again:
                self.counters["retries"] += len(again)
                self.counters["retry_wait_seconds"] += retry_after
                if self.counters["throttled"] > throttled:
                    reason = f"Graph throttling (Retry-After) of {len(again)} requests of a $batch"
                    progress.current().wait("throttling", retry_after, reason)
                else:
                    progress.current().wait("retry", retry_after, f"a retry of {len(again)} requests of a $batch")
                time.sleep(retry_after)
                pending = again + pending
        return results

    def _send_chunk(
        self,
        chunk: list[BatchRequest],
        results: dict[str, BatchResult],
        budgets: dict[str, RetryBudget],
        *,
        resend_if_unknown: bool = True,
    ) -> float:
        """Send one ``$batch``; store final results; return how long to wait before re-sending the rest.

        :raise GraphThrottledError: an inner request has been throttled for longer than ``max_throttle_wait``.
        """
        # A call of idempotent requests only is sent again after a fault, as any request is; one with a create is not.
        creates = not resend_if_unknown and holds_create(chunk)
        answer = self.request("POST", "/$batch", json=batch_body(chunk), resend_if_unknown=not creates)
        self.counters["batch_requests"] = self.counters.get("batch_requests", 0) + 1
        self.counters["batch_items"] = self.counters.get("batch_items", 0) + len(chunk)
        return read_answer(
            answer,
            chunk,
            results,
            budgets,
            creates=creates,
            max_retry_wait=self.settings.max_retry_wait,
            new_budget=self._retry_budget,
            counters=self.counters,
        )

    def server_name(self) -> str:
        return urlsplit(self.settings.endpoints.graph_url).netloc

    @property
    def application_id(self) -> str:
        """The sync app's client (application) id: its directory extensions are named after it."""
        return self.settings.client_id

    @cached_property
    def extension_names(self) -> ExtensionNames:
        """How the connector space's ``extension_<name>`` attributes are named on this app in Graph."""
        return ExtensionNames(self.settings.client_id, self.settings.anchor_extension)

    def directory_object_url(self, object_id: str) -> str:
        """The URL ``members@odata.bind`` and ``$ref`` bodies name an object by."""
        return f"{self.settings.endpoints.graph_url}/v1.0/directoryObjects/{object_id}"

    def delta_pages(self, resource: str, select: Sequence[str], delta_link: str | None) -> Iterator[dict[str, Any]]:
        """Yield the pages of ``/{resource}/delta`` from the start, or from a saved ``delta_link`` (which keeps the
        query it was made with). Navigation properties (groups' ``members``, users' ``manager``) are tracked by naming
        them in ``select``: Graph ignores ``$expand`` on a delta query.

        :raise DeltaLinkExpired: Graph no longer knows the delta state (``syncStateNotFound``, 410 Gone).
        """
        try:
            if delta_link:
                yield from self.paginate(delta_link)
            else:
                yield from self.paginate(f"/{resource}/delta", params={"$select": ",".join(select)})
        except GraphError as error:
            if error.status == 410 or error.code in DELTA_STATE_LOST_CODES:
                raise DeltaLinkExpired(str(error)) from error
            raise

    def get_object(
        self, resource: str, object_id: str, select: Sequence[str], expand: Sequence[str] = ()
    ) -> dict[str, Any] | None:
        """``GET /{resource}/{id}`` with ``$select`` (and ``$expand``: a user's ``manager``): one user or group read
        whole, as the import reads an object a delta could not apply again; None when Graph has no such object
        (404: deleted, its removal comes as a delta change of its own).

        :raise ObjectDecodeError: Graph refuses this object's read (400, 403): a per-object error of the run, which
            goes on, instead of a failed import (the object stays listed and is read again by the next delta)."""
        params = {"$select": ",".join(select)}
        if expand:
            params["$expand"] = ",".join(expand)
        try:
            with _refused_as_object_error(resource, object_id):
                return self.request("GET", f"/{resource}/{quote(object_id, safe='')}", params=params)
        except GraphError as error:
            if error.status == 404:
                return None
            raise

    def get_objects(
        self, resource: str, object_ids: Sequence[str], select: Sequence[str], expand: Sequence[str] = ()
    ) -> tuple[dict[str, dict[str, Any] | None], list[ObjectDecodeError]]:
        """:meth:`get_object` of many objects through ``$batch``, 20 reads per call instead of one call each (a delta
        reads again up to 500 objects a resource): each object read (None when Graph has none), and the per-object
        errors of the reads Graph refused (400, 403); throttled reads wait and are sent again as :meth:`batch` does.

        :raise GraphError: another failure of a read once its retries are spent, as :meth:`get_object` raises it."""
        params = {"$select": ",".join(select)}
        if expand:
            params["$expand"] = ",".join(expand)
        ids = list(dict.fromkeys(object_ids))
        requests = read_requests(resource, ids, params)
        return objects_read(resource, ids, requests, self.batch(requests))

    def member_ids(self, group_id: str) -> list[str]:
        """The ids of a group's direct members of every type (``GET /groups/{id}/members``, every page of Graph's
        largest, 999), as a delta round's ``members@delta`` names them.

        :raise ObjectDecodeError: Graph refuses the group's members (400, 403), as :meth:`get_object`."""
        url = f"/groups/{quote(group_id, safe='')}/members"
        params = {"$select": "id", "$top": "999"}
        with _refused_as_object_error("groups", group_id):
            return [item["id"] for page in self.paginate(url, params=params) for item in page["value"]]

    def deleted_pages(self, resource: str, select: Sequence[str]) -> Iterator[dict[str, Any]]:
        """Yield the pages of the soft-deleted objects of ``resource`` (``users``/``groups``) in deletedItems."""
        cast = {"users": "microsoft.graph.user", "groups": "microsoft.graph.group"}[resource]
        yield from self.paginate(f"/directory/deletedItems/{cast}", params={"$select": ",".join(select)})

    def writeback_configurations(self) -> Iterator[dict[str, Any]]:
        """Yield the pages of the Microsoft 365 groups' ``writebackConfiguration`` (a beta-only property)."""
        params = {"$filter": "groupTypes/any(c:c eq 'Unified')", "$select": "id,writebackConfiguration", "$top": "999"}
        yield from self.paginate(f"{self.settings.endpoints.graph_url}/beta/groups", params=params)

    def directory_role_holders(self) -> dict[str, tuple[str, list[str]]]:
        """Each directory object holding a directory role, active or eligible in PIM, as ``{id: (kind, role names)}``
        (hooks/entra_roles.py). The import marks them, since Entra ID won't match on-premises users with cloud users
        that have an admin role.

        :raise GraphError: Graph refuses a list; a 403 says which permission the app lacks."""
        return directory_role_holders(self)

    def paginate(self, url: str, params: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[dict[str, Any]]:
        """Yield each page's JSON, following ``@odata.nextLink`` verbatim (it already carries the query)."""
        page = _collection_page(self.request("GET", url, params=params, **kwargs), url)
        while True:
            yield page
            next_link = page.get("@odata.nextLink")
            if not next_link:
                return
            if not isinstance(next_link, str):
                where = url.split("?", 1)[0]
                raise GraphMalformedAnswerError(f"GET {where}: @odata.nextLink is not a URL", method="GET")
            page = _collection_page(self.request("GET", next_link, **kwargs), url)


@contextmanager
def _refused_as_object_error(resource: str, object_id: str) -> Iterator[None]:
    """A :class:`GraphError` of :data:`OBJECT_REFUSALS` raised inside becomes the object's :class:`ObjectDecodeError`
    (code ``unreadable-object``, entra_batch.unreadable_object)."""
    try:
        yield
    except GraphError as error:
        if error.status not in OBJECT_REFUSALS or isinstance(error, GraphThrottledError):
            raise
        raise unreadable_object(resource, object_id, error) from error


def _collection_page(page: Any, url: str) -> dict[str, Any]:
    """A collection page as Graph sends it: a ``value`` array of objects, each with a string ``id``."""
    where = f"GET {url.split('?', 1)[0]}"
    if not isinstance(page, dict) or not isinstance(page.get("value"), list):
        raise GraphMalformedAnswerError(f"{where}: the page has no 'value' array", method="GET")
    for item in page["value"]:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not item["id"]:
            shown = sorted(item)[:8] if isinstance(item, dict) else type(item).__name__
            raise GraphMalformedAnswerError(f"{where}: an item without a string 'id' ({shown})", method="GET")
    return page
