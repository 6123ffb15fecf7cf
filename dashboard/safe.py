"""Data shown as data: Markdown escaping for text the dashboard writes into Markdown
(headings, lists, st.write), and CSV cells that spreadsheets would run as formulas.

Sources: CommonMark's backslash escapes (any ASCII punctuation may be escaped); OWASP "CSV
Injection": cells beginning with = + - @ tab or carriage return are prefixed with a quote.
"""

from __future__ import annotations

import re

import pandas as pd

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$&:\"'])")
# GitHub-flavoured Markdown links bare URLs, www. names and e-mail addresses even when every
# punctuation mark is escaped (the autolink pass runs on the parsed text): an invisible WORD
# JOINER (U+2060) after "http", "www" and "@" stops it without changing what is seen.
_AUTOLINK = re.compile(r"(?i)(https?|ftp|www|mailto|xmpp)(?=[:.])|(@)")
WORD_JOINER = "\u2060"
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def md(value: object) -> str:
    """``value`` as text that Markdown shows literally: every ASCII punctuation character
    that Markdown (or Streamlit's extensions: $ math, :emoji:, ~ strike) reads is escaped, and
    newlines become spaces; bare URLs and e-mail addresses get a WORD JOINER so that they are
    not turned into links. HTML is never enabled where this is used."""
    text = "" if value is None else str(value)
    text = _AUTOLINK.sub(lambda m: m.group(0) + WORD_JOINER, text)
    return _MD_SPECIAL.sub(r"\\\1", text.replace("\r", " ").replace("\n", " "))


def csv_cell(value: object) -> object:
    """A cell as it may go into a CSV export: text beginning with = + - @ tab or CR gets a
    leading apostrophe, so a spreadsheet shows it instead of evaluating it."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """A data frame as UTF-8 CSV (with BOM, for Excel), every text cell neutralised."""
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(csv_cell)
    safe.columns = [str(csv_cell(str(c))) for c in safe.columns]
    return safe.to_csv(index=False).encode("utf-8-sig")
