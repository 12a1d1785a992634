"""A real browser for the UI tests: Debian's headless Chromium, driven over the Chrome DevTools Protocol.

Small on purpose: one page, commands sent over the page's DevTools websocket (``websockets``' sync client) and answers
matched by id; events are ignored. Waiting is done by polling a JavaScript expression with ``Runtime.evaluate``, which
suits a React single-page app that renders after its API calls come back.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from websockets.sync.client import ClientConnection, connect


class BrowserError(AssertionError):
    """Raised when the browser cannot start, a DevTools command fails, or a wait runs out (with what was awaited)."""


def chromium_executable() -> str:
    """Debian's ``chromium`` (``run.sh`` installs it); a clear error when it is missing."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise BrowserError("chromium is not installed: `apt-get install chromium` (./run.sh setup installs it)")
    return found


class HeadlessChromium:
    """Headless Chromium with a throw-away profile in *profile_dir*, DevTools on a kernel-chosen loopback port.

    :param profile_dir: the ``--user-data-dir`` (created); Chromium writes its DevTools port into it.
    :param width: window width in CSS pixels.
    :param height: window height; tall enough that a long dialog fits the screenshot.
    """

    def __init__(self, profile_dir: Path, *, width: int = 1280, height: int = 1800) -> None:
        self.profile_dir = Path(profile_dir)
        self.size = (width, height)
        self.log_path = self.profile_dir.parent / f"{self.profile_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)

    def start(self, *, timeout: float = 60) -> HeadlessChromium:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        command = [
            chromium_executable(),
            "--headless",
            "--no-sandbox",  # runs as root in CI; the pages are our own loopback server's
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            f"--user-data-dir={self.profile_dir}",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port=0",
            f"--window-size={self.size[0]},{self.size[1]}",
            "about:blank",
        ]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        try:
            self._ws = connect(
                self._page_websocket_url(timeout),
                legacy=True,  # a plain connection closed by stop(), not a context manager
                max_size=None,  # screenshots come back as one large message
                open_timeout=timeout,
                ping_interval=None,  # a busy renderer may be slow to answer pings; our calls have timeouts
                proxy=None,
            )
            self.call("Page.enable")
            self.call("Runtime.enable")
        except BaseException:
            self.stop()
            raise
        return self

    def _page_websocket_url(self, timeout: float) -> str:
        """The first page target's DevTools websocket, once Chromium has written its port to the profile."""
        port_file = self.profile_dir / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}{self.log_tail()}")
            if port_file.exists() and port_file.read_text().strip():
                port = port_file.read_text().split()[0]
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
                    pages = [target for target in targets if target.get("type") == "page"]
                    if pages:
                        return pages[0]["webSocketDebuggerUrl"]
            time.sleep(0.2)
        raise BrowserError(f"chromium's DevTools endpoint not up after {timeout:.0f} s{self.log_tail()}")

    def stop(self) -> None:
        """Close the websocket and end Chromium's process group (SIGTERM, then SIGKILL). Safe to call twice."""
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self._ws.close()
            self._ws = None
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
        # the renderer and helper processes share the group; give the kernel a moment to reap them
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    def __enter__(self) -> HeadlessChromium:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return f"\n--- last {lines} lines of {self.log_path} ---\n" + "\n".join(text.splitlines()[-lines:])

    # ------------------------------------------------------------------------------------------------ DevTools
    def call(self, method: str, *, timeout: float = 60, **params: Any) -> dict[str, Any]:
        """Send one DevTools command and return its result (events that arrive meanwhile are dropped)."""
        if self._ws is None:
            raise BrowserError("the browser is not started")
        message_id = next(self._ids)
        self._ws.send(json.dumps({"id": message_id, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrowserError(f"no answer to {method} within {timeout:.0f} s")
            try:
                message = json.loads(self._ws.recv(timeout=remaining))
            except TimeoutError:
                continue
            if message.get("id") == message_id:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message["result"]

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited); page exceptions raise."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression!r} threw: {details.get('exception', {}).get('description', details)}")
        return result["result"].get("value")

    def wait_for(self, expression: str, *, what: str, timeout: float = 90, interval: float = 0.25) -> Any:
        """Poll *expression* until it is truthy; its value (``True`` for an element). On time-out, say *what* was
        awaited, and where we were."""
        # an element comes back by value as {}: report it as True
        polled = f"(v => v instanceof Node ? true : v)({expression})"
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(BrowserError):  # e.g. the page is navigating: its context is gone for a moment
                value = self.evaluate(polled)
                if value:
                    return value
            if time.monotonic() > deadline:
                raise BrowserError(
                    f"waited {timeout:.0f} s for {what}; page {self.url()!r} shows:\n{self.text()[:3000]}"
                )
            time.sleep(interval)

    def navigate(self, url: str) -> None:
        answer = self.call("Page.navigate", url=url)
        if answer.get("errorText"):
            raise BrowserError(f"navigating to {url}: {answer['errorText']}")

    def url(self) -> str:
        with contextlib.suppress(BrowserError):
            return str(self.evaluate("location.href"))
        return "?"

    def text(self, selector: str = "body") -> str:
        """The rendered text (``innerText``) of the first element matching *selector*, '' if there is none."""
        with contextlib.suppress(BrowserError):
            return self.evaluate(f"document.querySelector({json.dumps(selector)})?.innerText ?? ''") or ""
        return ""

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type *text* as keyboard input (so React's controlled inputs see real events)."""
        if not self.evaluate(f"(e => e ? (e.focus(), true) : false)(document.querySelector({json.dumps(selector)}))"):
            raise BrowserError(f"no element {selector} on {self.url()}")
        self.call("Input.insertText", text=text)

    def click(self, expression: str, *, what: str, timeout: float = 30) -> None:
        """Click the element that the JavaScript *expression* returns, once there is one: right after
        :meth:`navigate` the page may still be loading (a loaded machine showed only its header)."""
        try:
            self.wait_for(f"(e => e ? (e.click(), true) : false)({expression})", what=what, timeout=timeout)
        except BrowserError as error:
            raise BrowserError(f"nothing to click for {what}: {error}") from None

    def screenshot(self, path: Path) -> Path:
        """Save a PNG of the viewport to *path*."""
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
