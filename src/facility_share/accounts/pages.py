"""Account pages: sign in/out, registration, personal API tokens, admin pages (being built)."""

from __future__ import annotations

from litestar import Controller


class AccountPages(Controller):
    path = "/"
    include_in_schema = False
    opt = {"access": "public"}
