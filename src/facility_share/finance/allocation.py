"""Pro-rata scaling to an exact total in fen (largest-remainder method, 最大余额法).

Each line gets ``total × amount ÷ sum`` rounded down; the fen left over go one each to the
lines with the largest remainders, and where remainders tie the lower key (USCC or unit code)
gets the fen. Integer arithmetic only, so the result is exact and the same on every machine:

- the lines sum exactly to the total (when scaling is needed);
- no line gets more than its unscaled amount, and none is negative;
- the result does not depend on the order of the input.
"""

from __future__ import annotations

from collections.abc import Mapping


def _check(amounts: Mapping[str, int]) -> int:
    for key, amount in amounts.items():
        if isinstance(amount, bool) or not isinstance(amount, int):
            raise TypeError(f"amount of {key!r} must be an integer number of fen, got {amount!r}")
        if amount < 0:
            raise ValueError(f"amount of {key!r} must not be negative, got {amount}")
    return sum(amounts.values())


def scale_to_total(amounts: Mapping[str, int], total: int) -> dict[str, int]:
    """Share ``total`` fen among the keys in proportion to ``amounts`` (largest remainder).

    ``total`` must not exceed the sum of the amounts (this only ever scales down).

    Raises:
        ValueError: a negative amount or total, or a total above the sum.
        TypeError: an amount that is not an integer.
    """
    whole = _check(amounts)
    if total < 0:
        raise ValueError(f"the total must not be negative, got {total}")
    if total > whole:
        raise ValueError(f"the total {total} exceeds the sum of the amounts {whole}; nothing to scale")
    if total == whole:
        return dict(amounts)
    shares: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, amount in amounts.items():
        share, remainder = divmod(total * amount, whole)
        shares[key] = share
        remainders.append((remainder, key))
    left = total - sum(shares.values())
    # Largest remainder first; on a tie the lower key first. Only non-zero remainders can be
    # chosen: the remainders sum to ``left × whole`` and each is below ``whole``.
    remainders.sort(key=lambda item: (-item[0], item[1]))
    for _, key in remainders[:left]:
        shares[key] += 1
    return shares


def limit_total(amounts: Mapping[str, int], limit: int) -> tuple[dict[str, int], bool]:
    """The amounts unchanged if they fit within ``limit``, else scaled to exactly ``limit``.

    Returns the amounts and whether they were scaled.

    Raises:
        ValueError: a negative amount or limit.
    """
    whole = _check(amounts)
    if limit < 0:
        raise ValueError(f"the limit must not be negative, got {limit}")
    if whole <= limit:
        return dict(amounts), False
    return scale_to_total(amounts, limit), True
