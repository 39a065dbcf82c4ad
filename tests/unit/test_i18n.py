"""The pages' languages without a server: every message of the explorer's templates and Python
(extracted with Babel, as `pybabel extract` would) has a Korean translation, the language of
a request falls back silently on junk, the switch goes back only to a path of this site, and the
formatting filters keep their English text while speaking Korean for `ko`."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from services.common import i18n
from services.common.pages import ago, when
from services.common.settings import Settings, SettingsError

EXPLORER = Path(str(files("services.explorer")))
TEMPLATES = "**/templates/**.html"
PYTHON = "**.py"
HANGUL = range(0xAC00, 0xD7A4)


def _extracted() -> list[tuple[str, int, str | tuple[str, ...]]]:
    found = extract_from_dir(
        str(EXPLORER),
        method_map=[(TEMPLATES, "jinja2"), (PYTHON, "python")],
        options_map={TEMPLATES: {"extensions": "jinja2.ext.i18n"}, PYTHON: {}},
    )
    return [(name, line, message) for name, line, message, _, _ in found]


def _korean() -> dict[str, str | tuple[str, ...]]:
    po = files("services").joinpath("locale", "ko", "LC_MESSAGES", "messages.po")
    with po.open("rb") as handle:
        catalog = read_po(handle, locale="ko")
    out: dict[str, str | tuple[str, ...]] = {}
    for message in catalog:
        if message.id and not message.fuzzy:
            key = message.id if isinstance(message.id, str) else message.id[0]
            out[key] = message.string
    return out


def test_every_explorer_message_has_a_korean_translation() -> None:
    extracted = _extracted()
    assert len(extracted) > 150  # the templates are marked up, not just a few of them
    assert any(name.endswith("charts.py") for name, _, _ in extracted)
    korean = _korean()
    untranslated = []
    for name, line, message in extracted:
        key = message if isinstance(message, str) else message[0]
        text = korean.get(key)
        strings = [text] if isinstance(text, str) else list(text or [])
        if not strings or not all(strings):
            untranslated.append(f"{name}:{line} {key!r}")
    assert not untranslated, "not in services/locale/ko/LC_MESSAGES/messages.po:\n" + "\n".join(
        untranslated
    )


def test_the_korean_catalog_compiles_and_keeps_placeholders() -> None:
    catalog = i18n.translations("ko")
    assert catalog.gettext("Latest blocks") == "최근 블록"
    assert catalog.gettext("Block %(height)s") % {"height": 7} == "블록 7"
    assert catalog.ngettext("%(num)s transaction", "%(num)s transactions", 3) % {"num": 3}
    for english, korean in _korean().items():
        for text in [korean] if isinstance(korean, str) else korean:
            for name in re.findall(r"%\(\w+\)s", english):
                assert name in text, (english, text)


@pytest.mark.parametrize(
    ("cookie", "accept", "default", "expect"),
    [
        (None, None, "en", "en"),
        (None, "ko-KR,ko;q=0.9,en-US;q=0.8,en;q=0.7", "en", "ko"),
        (None, "en-US,en;q=0.9,ko;q=0.5", "ko", "en"),
        (None, "fr-FR, de;q=0.5", "ko", "ko"),  # nothing the pages speak: the setting
        ("ko", "en-US", "en", "ko"),  # the switch wins over the browser
        ("en", "ko", "ko", "en"),
        ("xx", "ko", "en", "ko"),  # a bad cookie is ignored
        ("ko\r\nSet-Cookie: x", None, "en", "en"),
        (None, ";;;q=,,,ko;q=abc,,\x00", "en", "en"),  # junk falls back silently
        (None, "ko;q=0, en;q=0.1", "ko", "en"),  # q=0 means "not this one"
        (None, "*", "ko", "ko"),
        (None, "ko-" + "x" * 5000, "en", "en"),
        (None, None, "zz", "en"),
    ],
)
def test_a_request_gets_its_language(
    cookie: str | None, accept: str | None, default: str, expect: str
) -> None:
    assert i18n.choose(cookie, accept, default) == expect


@pytest.mark.parametrize(
    ("target", "expect"),
    [
        ("/block/abc?x=1", "/block/abc?x=1"),
        ("/", "/"),
        (None, "/"),
        ("", "/"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("http:/evil.example", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
        ("/ok\r\nSet-Cookie: x=1", "/"),
    ],
)
def test_the_switch_goes_back_only_to_this_site(target: str | None, expect: str) -> None:
    assert i18n.safe_next(target) == expect


def test_formatting_keeps_english_and_speaks_korean() -> None:
    assert ago(100, 100 + 180) == "3 min ago"  # the English the explorer's tests read
    assert when(0) == "1970-01-01 00:00:00 UTC"
    assert i18n.age(180, "ko") == "3분 전"
    assert i18n.age(-20, "ko") == "20초 후"
    assert i18n.age(2, "ko") == "방금"
    assert i18n.number(1234567, "ko") == "1,234,567"
    assert any(ord(c) in HANGUL for c in when(0, "ko")), when(0, "ko")
    assert i18n.number("12", "en") == "?"


def test_pybtc_lang_is_checked() -> None:
    assert Settings.from_env({"PYBTC_LANG": "ko"}).lang == "ko"
    assert Settings.from_env({}).lang == "en"
    with pytest.raises(SettingsError, match="PYBTC_LANG"):
        Settings.from_env({"PYBTC_LANG": "fr"})


def test_text_made_in_python_follows_the_page_language() -> None:
    from services.explorer.app import _drop_reason

    token = i18n.CURRENT.set("ko")
    try:
        assert _drop_reason("mempool-full") == "멤풀이 가득 찼고 이 거래의 수수료가 가장 낮았습니다"
        assert _drop_reason("odd-rule") == "규칙 odd-rule"
    finally:
        i18n.CURRENT.reset(token)
    assert _drop_reason("odd-rule") == "rule odd-rule"
    assert _drop_reason("mempool-full") == "the mempool was full and it paid the lowest fee"
