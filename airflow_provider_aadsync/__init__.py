"""airflow-provider-aadsync: Azure AD Connect (Entra Connect) style identity sync as Apache Airflow tasks."""

from __future__ import annotations

from airflow_provider_aadsync.get_provider_info import VERSION, get_provider_info

__all__ = ["VERSION", "__version__", "get_provider_info"]
__version__ = VERSION
