"""Passwords in URLs never leave the process: everything ganstudy logs, writes or prints passes through `mask`.

A storage or tracking URL may carry one (`postgresql+psycopg://user:pass@host/db`); credentials belong in
the environment instead (PGPASSWORD or ~/.pgpass for PostgreSQL, MLFLOW_TRACKING_USERNAME/PASSWORD for an
MLflow server).
"""
from __future__ import annotations

import re
from typing import Any

# scheme://user:password@  ->  scheme://user:***@
_PASSWORD_IN_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):([^\s@/]*)@")


def mask(text: str) -> str:
    """The text with the password of every URL in it replaced by ***."""
    return _PASSWORD_IN_URL.sub(r"\1:***@", text)


def mask_values(values: dict[str, Any]) -> dict[str, Any]:
    """The dict with every string value masked."""
    return {k: mask(v) if isinstance(v, str) else v for k, v in values.items()}
