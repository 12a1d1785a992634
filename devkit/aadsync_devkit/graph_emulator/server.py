"""Run the emulator over TLS on 127.0.0.1: in a background thread (tests) or in the foreground (CLI).

msal insists on an https authority, so the emulator serves TLS with a certificate (SAN ``localhost`` and
``127.0.0.1``) from a private CA created under *home*; clients trust ``ca_cert``.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import uvicorn

from aadsync_devkit.graph_emulator.app import create_app
from aadsync_devkit.graph_emulator.state import EmulatorState
from aadsync_devkit.tls import TlsFiles, make_ca_and_server_cert

HOST = "127.0.0.1"


class EmulatorServer:
    """The emulator on ``https://127.0.0.1:PORT`` (``port=0``: a free port, known once started)."""

    def __init__(self, home: Path, *, port: int = 0, state_file: Path | None = None) -> None:
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)
        self.tls: TlsFiles = make_ca_and_server_cert(self.home / "tls")
        self.state = EmulatorState(state_file=state_file)
        self.app = create_app(self.state)
        self._requested_port = port
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def ca_cert(self) -> Path:
        return self.tls.ca_cert

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the emulator is not started")
        return self._socket.getsockname()[1]

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self._requested_port))
        sock.listen(128)
        sock.set_inheritable(True)
        return sock

    def _make_server(self) -> uvicorn.Server:
        config = uvicorn.Config(
            self.app,
            ssl_certfile=str(self.tls.server_cert),
            ssl_keyfile=str(self.tls.server_key),
            log_level="warning",
            # the app's lifespan flushes writes that save_soon coalesced: on shutdown they must reach the state file
            # before uvicorn re-raises SIGTERM/SIGINT and the process ends
            lifespan="on",
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        return uvicorn.Server(config)

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Serve from a daemon thread; return once the port accepts TLS connections."""
        if self._thread is not None:
            return self
        self._socket = self._bind()
        self._server = self._make_server()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="graph-emulator", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the Graph emulator did not start")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = None
        self._socket = None

    def serve_forever(self) -> None:
        """Serve in the foreground until SIGINT/SIGTERM (uvicorn's own signal handling)."""
        self._socket = self._bind()
        self._server = self._make_server()
        print(f"Graph emulator on {self.base_url} (CA: {self.ca_cert})", flush=True)
        try:
            self._server.run(sockets=[self._socket])
        finally:
            self._socket.close()
            self._socket = self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
