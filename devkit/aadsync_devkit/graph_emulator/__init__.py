"""A Microsoft Graph and identity-platform emulator for tests and local development.

Never imported by production code (hooks, operators, engine): only tests, the benchmark and the dev CLI use it.
Start it with :class:`~aadsync_devkit.graph_emulator.server.EmulatorServer` (TLS on loopback, its own CA) or
mount :func:`~aadsync_devkit.graph_emulator.app.create_app` in an ASGI test client.
"""
