"""Server-rendered catalogue pages (placeholder until the page set lands)."""

from __future__ import annotations

from litestar import Controller


class CatalogPages(Controller):
    path = "/"
    include_in_schema = False
