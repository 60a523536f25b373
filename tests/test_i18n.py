"""The Chinese catalogues: complete, unambiguous, and merged so every context's file counts."""

from __future__ import annotations

from babel.messages.pofile import read_po

from facility_share.web.i18n import LOCALE_DIR, I18n, translations

ZH_FILES = sorted((LOCALE_DIR / "zh_CN" / "LC_MESSAGES").glob("*.po"))


def _catalog(path):  # type: ignore[no-untyped-def]
    with path.open("rb") as handle:
        return read_po(handle, locale="zh_CN")


def test_every_entry_is_translated_and_none_is_fuzzy() -> None:
    assert ZH_FILES, "no Chinese catalogue found"
    problems = []
    for path in ZH_FILES:
        for message in _catalog(path):
            if not message.id:
                continue
            strings = message.string if isinstance(message.string, tuple) else (message.string,)
            if message.fuzzy or not all(strings):
                problems.append(f"{path.name}: {message.id!r}")
    assert not problems, "untranslated or fuzzy entries:\n" + "\n".join(problems)


def test_no_message_is_translated_two_ways_across_files() -> None:
    seen: dict[str, tuple[str, object]] = {}
    clashes = []
    for path in ZH_FILES:
        for message in _catalog(path):
            if not message.id:
                continue
            key = message.id if isinstance(message.id, str) else message.id[0]
            if key in seen and seen[key][1] != message.string:
                clashes.append(f"{key!r}: {seen[key][0]} vs {path.name}")
            seen.setdefault(key, (path.name, message.string))
    assert not clashes, "\n".join(clashes)


def test_every_file_reaches_the_merged_catalogue() -> None:
    merged = translations("zh_CN")
    for path in ZH_FILES:
        for message in _catalog(path):
            if message.id and isinstance(message.id, str) and not message.fuzzy:
                assert merged.gettext(message.id) == message.string, (path.name, message.id)


def test_english_is_the_message_id() -> None:
    assert I18n("en").gettext("Sign in") == "Sign in"
    assert I18n("zh_CN").gettext("Sign in") != "Sign in"
