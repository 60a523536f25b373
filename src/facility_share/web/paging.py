"""Paging of the server-rendered lists.

A list reads its page number from the query string (a parameter of its own, so two lists on one
page page independently), counts its rows, and asks for one page of them. The page number is
read leniently: a missing, malformed or out-of-range value is page 1, and a number past the end
is the last page, so a stale or hand-edited link never fails. The links to the other pages keep
every other query parameter (filters, the other list's page) and the list's section anchor.

Usage::

    number = paging.page_number(request.query_params, "page")
    total = await paging.count_rows(session, statement)
    page = paging.paginate(total, number, size=25, path="/me/usage", params=request.query_params)
    rows = (await session.execute(statement.offset(page.offset).limit(page.size))).all()

The template shows it with ``_pager.html``'s ``pager(page)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Select, func, select

DEFAULT_SIZE = 25
# Query parameters never carried to another page: the language switch (the cookie keeps the
# choice) and nothing else by default; lists add their one-time notices (``done=…``).
ALWAYS_DROPPED = ("lang",)
# More digits than any real page number; refusing them early keeps int() cheap on hostile input.
MAX_DIGITS = 7


def page_number(params: Mapping[str, Any] | None, name: str = "page") -> int:
    """The page asked for in ``params[name]``: a whole number of 1 or more, else 1."""
    raw = params.get(name) if params is not None else None
    if not isinstance(raw, str):
        return 1
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > MAX_DIGITS:
        return 1
    return max(1, int(raw))


def _pairs(params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None) -> list[tuple[str, str]]:
    if params is None:
        return []
    if hasattr(params, "multi_items"):  # Litestar's and Starlette's multi-dicts keep repeated keys
        items = params.multi_items()
    elif isinstance(params, Mapping):
        items = params.items()
    else:
        items = params
    return [(str(k), str(v)) for k, v in items if v is not None and v != ""]


@dataclass(frozen=True)
class Page:
    """One page of a list: which rows it holds and the addresses of its neighbours."""

    number: int
    size: int
    total: int
    name: str = "page"
    path: str = ""
    others: tuple[tuple[str, str], ...] = ()
    anchor: str = ""

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def offset(self) -> int:
        return (self.number - 1) * self.size

    @property
    def first(self) -> int:
        """The row number (from 1) of the page's first row; 0 for an empty list."""
        return self.offset + 1 if self.total else 0

    @property
    def last(self) -> int:
        return min(self.offset + self.size, self.total)

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages

    def url(self, number: int, *, anchor: bool = True) -> str:
        """The address of page ``number`` of this list (page 1 carries no page parameter)."""
        pairs = list(self.others)
        if number > 1:
            pairs.append((self.name, str(number)))
        query = urlencode(pairs)
        return self.path + (f"?{query}" if query else "") + (f"#{self.anchor}" if anchor and self.anchor else "")

    @property
    def previous_url(self) -> str:
        return self.url(self.number - 1) if self.has_previous else ""

    @property
    def next_url(self) -> str:
        return self.url(self.number + 1) if self.has_next else ""

    @property
    def first_url(self) -> str:
        return self.url(1)

    @property
    def last_url(self) -> str:
        return self.url(self.pages)

    @property
    def here(self) -> str:
        """This page's address without the anchor (to come back to after a form)."""
        return self.url(self.number, anchor=False)


def paginate(total: int, number: int, *, size: int = DEFAULT_SIZE, name: str = "page", path: str = "",
             params: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, anchor: str = "",
             drop: Iterable[str] = ()) -> Page:
    """Page ``number`` of a list of ``total`` rows, clamped to the pages there are.

    ``params`` are the query parameters the links keep (the list's own ``name`` is replaced;
    ``lang`` and the names in ``drop`` are left out).
    """
    if size < 1:
        raise ValueError("a page holds at least one row")
    total = max(0, int(total))
    pages = max(1, -(-total // size))
    dropped = {name, *ALWAYS_DROPPED, *drop}
    others = tuple((k, v) for k, v in _pairs(params) if k not in dropped)
    return Page(number=min(max(1, number), pages), size=size, total=total, name=name, path=path, others=others,
                anchor=anchor)


async def count_rows(session: Any, statement: Select[Any]) -> int:
    """How many rows ``statement`` yields (its ordering and limits aside)."""
    counted = select(func.count()).select_from(statement.order_by(None).limit(None).offset(None).subquery())
    return int((await session.execute(counted)).scalar_one())


__all__ = ["DEFAULT_SIZE", "Page", "count_rows", "page_number", "paginate"]
