"""Reading storey counts and heights as real files write them.

OpenStreetMap's ``building:levels`` is free text (https://wiki.openstreetmap.org/wiki/Key:building:levels),
and Chinese GIS exports add their own forms. What is read here, each as a pure function of one
value:

- a count with a unit: ``12``, ``12层``, ``12F``, ``12 floors``, ``12 storeys``, ``十二层``;
- a list (``7;8``, ``7,8``, ``7/8``: OSM's multi-value separator is ``;``) or a range (``3-5``,
  ``3~5``, ``3至5``): the maximum is taken and the reading says so;
- basements: ``B1``, ``B2``, ``-1``, ``地下2层`` are storeys below ground, counted separately
  (``12F+B1`` is 12 above and 1 below);
- decimals (``2.5``, a mezzanine or a roof storey) and halves (``3层半``): rounded up, and the
  reading says so;
- an approximate count (``约6层``, ``about 6``) is taken and said to be approximate; a remark in
  brackets (``15F(含地下1层)``) gives its basements and is otherwise left aside, said so.

A height is metres unless it says otherwise: ``12``, ``12 m``, ``12米``, ``40 ft``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

MAX_STOREYS = 200  # the buildings table's CHECK (storeys BETWEEN 1 AND 200)

_CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6,
              "七": 7, "八": 8, "九": 9}  # fmt: skip
_CN_NUMBER = re.compile(r"[零〇一二两三四五六七八九十百]+")
_BASEMENT = re.compile(r"(?:地下|负|b|-)\s*(\d+)\s*(?:层|f|floors?|levels?|storeys?|stories)?")
_UNIT = re.compile(r"(?:层|楼|f|floors?|levels?|storeys?|stories|fl\.?)$")
_NUMBER = r"\d+(?:\.\d+)?"
_RANGE = re.compile(rf"^({_NUMBER})\s*(?:-|~|–|—|至|到|to)\s*({_NUMBER})$")
_APPROXIMATE = re.compile(r"^(?:约为|大约|约|approx\.?|about|ca\.|~)\s*")
_REMARK = re.compile(r"[(\[]([^)\]]*)[)\]]")  # NFKC made （） into ()
_HALF = re.compile(r"(\d+)\s*(?:层|楼|f)?\s*半$")
_LIST_SEPARATORS = re.compile(r"\s*[;,/、，；]\s*")


def _chinese_number(text: str) -> int | None:
    """一 … 九十九 and 一百…: enough for storey counts."""
    if not text:
        return None
    if all(c in _CN_DIGITS for c in text):
        return int("".join(str(_CN_DIGITS[c]) for c in text))
    total, current = 0, 0
    for char in text:
        if char in _CN_DIGITS:
            current = _CN_DIGITS[char]
        elif char == "十":
            total += (current or 1) * 10
            current = 0
        elif char == "百":
            total += (current or 1) * 100
            current = 0
    return total + current


@dataclass(frozen=True)
class Storeys:
    """What one value says: storeys above ground, storeys below, and what was done to read
    it (empty when the value was taken as given)."""

    above: int | None
    below: int = 0
    note: str = ""


def parse_storeys(value: Any) -> Storeys:
    """Reads one ``building:levels``-like value; ``above`` is None when it holds no usable count
    above ground (then ``note`` says why, unless the value was empty)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return Storeys(None)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _whole(float(value), str(value), 0, [])
    original = str(value).strip()
    if not original:
        return Storeys(None)
    text = unicodedata.normalize("NFKC", original).lower().strip()
    text = _CN_NUMBER.sub(lambda m: str(_chinese_number(m.group())), text)
    text = text.removeprefix("地上").strip()
    notes: list[str] = []
    approximate = _APPROXIMATE.match(text)
    if approximate:
        text = text[approximate.end() :]
        notes.append(f"{original!r} is approximate: taken as given")
    below = 0
    for found in re.finditer(r"地下\s*(\d+)\s*层?", text):
        below = max(below, int(found.group(1)))
    text = re.sub(r"地下\s*\d+\s*层?", " ", text).strip()
    remark = _REMARK.search(text)
    if remark:
        text = _REMARK.sub(" ", text).strip()
        left = re.sub(r"含|包括|incl\.?|\s", "", remark.group(1))
        if left:
            notes.append(f"remark {remark.group(0)!r} in {original!r} left aside")
    text = _HALF.sub(lambda m: f"{m.group(1)}.5", text)
    # Basements first, so that "-1" or "b2" is never read as a range or a count above ground.
    # Also across a list: "12f/b2" (12 above, 2 below) is as common as "12+b1".
    joined = re.split(r"\s*\+\s*|\s+", text) if "+" in text else [text]
    parts = [p for j in joined for p in _LIST_SEPARATORS.split(j) if p]
    kept = []
    for part in parts:
        match = _BASEMENT.fullmatch(part)
        if match and not _RANGE.match(part):
            below = max(below, int(match.group(1)))
        else:
            kept.append(part)
    if below:
        notes.append(f"{below} basement storey{'s' if below > 1 else ''} counted separately")
    if not kept or not "".join(kept):
        return Storeys(None, below, f"{original!r} names only basements ({below} below ground)")
    text = "/".join(kept)
    pieces = [_UNIT.sub("", p).strip() for p in _LIST_SEPARATORS.split(text)]
    numbers: list[float] = []
    for piece in pieces:
        ranged = _RANGE.match(piece)
        if ranged:
            numbers += [float(ranged.group(1)), float(ranged.group(2))]
            notes.append(f"range {original!r}: the highest, {_fmt(max(numbers))}, taken")
            continue
        try:
            numbers.append(float(piece))
        except ValueError:
            return Storeys(None, below, f"{original!r} is not a storey count")
    if len(pieces) > 1:
        notes.append(f"list {original!r}: the highest, {_fmt(max(numbers))}, taken")
    return _whole(max(numbers), original, below, notes)


def _fmt(number: float) -> str:
    return str(int(number)) if number.is_integer() else str(number)


def _whole(number: float, original: str, below: int, notes: list[str]) -> Storeys:
    if not math.isfinite(number) or number < 1 or number > MAX_STOREYS:
        return Storeys(None, below, f"{original!r} is outside 1–{MAX_STOREYS} storeys: not used")
    if not number.is_integer():
        notes.append(f"{_fmt(number)} storeys rounded up to {math.ceil(number)}")
    return Storeys(math.ceil(number), below, "; ".join(notes))


_HEIGHT = re.compile(r"^(\d+(?:\.\d+)?)\s*(m|米|metres?|meters?|ft|feet|')?$")


def parse_height_m(value: Any) -> float | None:
    """A height in metres from ``12``, ``12 m``, ``12米``, ``40 ft``; None when unreadable or
    not above zero."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        text = unicodedata.normalize("NFKC", str(value)).strip().lower()
        match = _HEIGHT.match(text)
        if not match:
            return None
        number = float(match.group(1))
        if match.group(2) in {"ft", "feet", "'"}:
            number *= 0.3048
    return number if math.isfinite(number) and number > 0 else None
