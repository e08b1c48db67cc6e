"""Raises while being imported (not a definition error: a bug in the module)."""

SETTINGS: dict[str, str] = {}

DATABASE = SETTINGS["database_url"]
