"""Word wrapping of styled text into terminal rows.

Widths are prompt_toolkit's own (``get_cwidth``), so a row never holds more
columns than the screen it is drawn on thinks it has. Words move whole to
the next row when they fit one; only a word longer than a row is cut.
"""

from __future__ import annotations

import re

from prompt_toolkit.utils import get_cwidth

Fragments = list[tuple[str, str]]

_TOKENS = re.compile(r"\s+|\S+")


def text_width(text: str) -> int:
    return get_cwidth(text)


def wrap(prefix: Fragments, body: Fragments, width: int) -> list[Fragments]:
    """Rows of at most ``width`` columns; continuation rows indent under the body.

    ``prefix`` is the clock and nick; when it takes more than half the row,
    continuation rows indent by two columns instead (narrow panes).
    """
    width = max(1, width)
    indent = sum(get_cwidth(text) for _, text in prefix)
    if indent > width // 2:
        indent = 2 if width > 8 else 0
    pad = " " * indent
    rows: list[Fragments] = []
    row: Fragments = []
    col = 0

    def new_row() -> None:
        nonlocal row, col
        if row and row[-1][1].endswith(" "):  # no blanks at the end of a broken row
            style, last = row[-1]
            row[-1] = (style, last.rstrip(" "))
        rows.append(row)
        row = [("", pad)] if indent else []
        col = indent

    for style, text in (*prefix, *body):
        for token in _TOKENS.findall(text):
            w = get_cwidth(token)
            if token[0].isspace():
                if col == indent and rows:
                    continue  # no leading blanks on a continuation row
                if col + w <= width:
                    row.append((style, token))
                    col += w
                else:
                    new_row()  # the blank is where the row breaks
                continue
            if col + w <= width:
                row.append((style, token))
                col += w
                continue
            if w <= width - indent and col > indent:
                new_row()
                row.append((style, token))
                col += w
                continue
            # Longer than a row: cut it, a character at a time (joiners stay put).
            piece = ""
            for ch in token:
                cw = get_cwidth(ch)
                if col + cw > width and col > indent:
                    if piece:
                        row.append((style, piece))
                        piece = ""
                    new_row()
                piece += ch
                col += cw
            if piece:
                row.append((style, piece))
    if rows and all(not text.strip() for _, text in row):
        return rows  # only the indent: a blank that broke the row was the last thing
    rows.append(row)
    return rows


def clip(fragments: Fragments, width: int) -> Fragments:
    """The fragments cut to ``width`` columns (one row, no wrapping)."""
    out: Fragments = []
    col = 0
    for style, text in fragments:
        w = get_cwidth(text)
        if col + w <= width:
            out.append((style, text))
            col += w
            continue
        piece = ""
        for ch in text:
            cw = get_cwidth(ch)
            if col + cw > width:
                break
            piece += ch
            col += cw
        if piece:
            out.append((style, piece))
        break
    return out
