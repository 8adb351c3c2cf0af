"""Alembic migrations of the store's schema; run them through ``trackline_server.migrate``."""
