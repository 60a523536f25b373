"""Closures from calendar files: maintenance plans and holidays imported from .ics files."""
