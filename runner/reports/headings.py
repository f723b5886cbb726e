"""The manual's own section headings, in the reader's language (runner/language.py), and the headings a
runbook's description may use for them in either language: a description's `## 失敗したとき` is the page's
"When it fails", not a second section beside it. (A small table; the gettext catalogs come later.)"""
from __future__ import annotations

from runner.language import language

# key: (English, Japanese), in the order the page has them.
SECTIONS = {
    "before": ("Before you start", "作業前の確認"),
    "duration": ("Expected duration", "所要時間の目安"),
    "parameters": ("Parameters", "パラメータ"),
    "procedure": ("Procedure", "手順"),
    "fails": ("When it fails", "失敗したとき"),
    "rollback": ("Rollback", "切り戻し"),
    "records": ("What each step records", "各ステップの記録"),
    "escalation": ("Escalation", "エスカレーション"),
    "schedule": ("Schedule", "スケジュール"),
    "run": ("Run it", "実行方法"),
}
# Other names a description gives the same sections.
_ALIASES = {
    "access": "before", "access needed": "before", "before you begin": "before", "始める前に": "before",
    "事前確認": "before", "事前準備": "before", "作業前の準備": "before", "必要な権限": "before", "アクセス": "before",
    "失敗時": "fails", "失敗した場合": "fails", "障害時": "fails", "エラー時": "fails",
    "ロールバック": "rollback", "切り戻し手順": "rollback", "元に戻す": "rollback",
    "所要時間": "duration", "作業手順": "procedure", "連絡先": "escalation", "エスカレーション先": "escalation",
    "実行": "run", "実行手順": "run",
}
_KNOWN = {**{title.lower(): key for key, pair in SECTIONS.items() for title in pair}, **_ALIASES}
MANUAL_TITLE = ("Procedure manual", "手順書")


def heading(key: str) -> str:
    """The page's heading for section `key` in the reader's language."""
    english, japanese = SECTIONS[key]
    return japanese if language() == "ja" else english


def manual_title() -> str:
    return MANUAL_TITLE[1] if language() == "ja" else MANUAL_TITLE[0]


def section_key(title: str) -> str | None:
    """Which of the page's sections a description's heading `title` is, in either language; None for its own."""
    return _KNOWN.get(" ".join(title.split()).rstrip(":：").lower())


def list_ids() -> dict[str, str]:
    """The ids the HTML page gives the lists a reader (and the tests) look for, under either language's heading."""
    ids = {"procedure": "steps", "fails": "when-it-fails-cases"}
    return {title: ids[key] for key in ids for title in SECTIONS[key]}
