"""The sync engine: connector spaces → metaverse → pending exports, driven by declarative rules."""

from airflow_provider_aadsync.engine.sync.run import PreviewError, SyncResult, full_sync_reason, preview, run_sync
from airflow_provider_aadsync.engine.sync.synchronizer import PROVISIONAL_PREFIX, Synchronizer

__all__ = [
    "PROVISIONAL_PREFIX",
    "PreviewError",
    "SyncResult",
    "Synchronizer",
    "full_sync_reason",
    "preview",
    "run_sync",
]
