"""A Microsoft Graph and identity-platform emulator for tests and local development.

Never imported by production code (hooks, operators, engine): only tests, the benchmark and the dev CLI use it.
Start it with :class:`~airflow_provider_aadsync.emulator.server.EmulatorServer` (TLS on loopback, its own CA) or
mount :func:`~airflow_provider_aadsync.emulator.app.create_app` in an ASGI test client.
"""
