"""Local developer/test world: a Samba AD DC on 127.0.0.1, TLS material, seed data, cached fixtures.

Never imported by production code.
"""

from __future__ import annotations
