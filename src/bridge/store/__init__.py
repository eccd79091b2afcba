"""Store: bridge's state in one embedded DuckDB file."""

from bridge.store.duck import connect, read_table, replace_instances, write_table

__all__ = ["connect", "read_table", "replace_instances", "write_table"]
