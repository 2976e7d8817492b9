"""Storage: one SQL store for SQLite (embedded default) and PostgreSQL."""

from .base import Store
from .sql import SqlStore, open_store
from .urls import DatabaseUrl, resolve

__all__ = ["DatabaseUrl", "SqlStore", "Store", "open_store", "resolve"]
