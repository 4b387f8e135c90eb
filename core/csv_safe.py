"""CSV and TSV that are safe to open in a spreadsheet: every CSV EmoForge writes goes through here.

A spreadsheet runs a cell that starts with `=`, `+`, `-` or `@` as a formula (and a leading tab or
carriage return can hide one), so a text from a story, a label name or an LLM answer could call out
to the network or run a command when someone opens the file. Such a cell gets a leading apostrophe,
which spreadsheets show as plain text. Plain numbers ("-0.25", "+3") are left alone: they are no
formula and analysis scripts must still read them as numbers.

The escape can be undone exactly (`restore`): a text that already starts with apostrophes before a
formula character gets one more, so `restore(neutralise(text)) == text` for every text. EmoForge's
own importers restore what they read from .csv and .tsv files.
"""

from __future__ import annotations

import csv
import re
from typing import Any

FORMULA_CHARACTERS = "=+-@\t\r"
_FORMULA = r"^'*[=+\-@\t\r]"  # RE2 and Python syntax alike: also used by pyarrow.compute
_NUMBER = r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$"
_formula = re.compile(_FORMULA)
_number = re.compile(_NUMBER)


def needs_escape(text: str) -> bool:
    return bool(_formula.match(text)) and not _number.match(text)


def neutralise(value: Any) -> Any:
    """The cell as a spreadsheet shows it as text; anything but a string is returned unchanged."""
    if isinstance(value, str) and needs_escape(value):
        return "'" + value
    return value


def restore(text: str) -> str:
    """Undo `neutralise` (for importers reading files EmoForge may have written)."""
    if text.startswith("'") and needs_escape(text[1:]):
        return text[1:]
    return text


class SafeWriter:
    """`csv.writer` whose rows are neutralised cell by cell."""

    def __init__(self, handle, **options: Any):
        self._writer = csv.writer(handle, **options)

    def writerow(self, row) -> Any:
        return self._writer.writerow([neutralise(cell) for cell in row])

    def writerows(self, rows) -> None:
        for row in rows:
            self.writerow(row)


def writer(handle, **options: Any) -> SafeWriter:
    """Use instead of `csv.writer` for every file a person may open (same options)."""
    return SafeWriter(handle, **options)


def neutralise_array(array):
    """The same rule over a pyarrow string array (the dataset CSV export writes with pyarrow)."""
    import pyarrow.compute as pc

    escape = pc.and_(pc.match_substring_regex(array, _FORMULA), pc.invert(pc.match_substring_regex(array, _NUMBER)))
    if not pc.any(escape).as_py():
        return array
    return pc.if_else(escape, pc.binary_join_element_wise("'", array, ""), array)
