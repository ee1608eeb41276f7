"""Long texts cut at word boundaries into pieces the server takes (``max_text`` bytes each)."""

from __future__ import annotations

import re

_WORDS = re.compile(r"\S+\s*|\s+")


def split_text(text: str, max_bytes: int) -> list[str]:
    """Pieces of at most ``max_bytes`` UTF-8 bytes, cut after a blank where there is one.

    A word longer than a piece is cut between characters. Pieces lose the
    blanks they end on; none is empty.
    """
    if len(text.encode()) <= max_bytes:
        return [text]
    pieces: list[str] = []
    current = ""
    size = 0
    for word in _WORDS.findall(text):
        w = len(word.encode())
        if size + len(word.rstrip().encode()) <= max_bytes:
            current += word
            size += w
            continue
        if current.strip():
            pieces.append(current.rstrip())
        current, size = "", 0
        while len(word.rstrip().encode()) > max_bytes:
            cut = _cut(word, max_bytes)
            pieces.append(word[:cut])
            word = word[cut:]
        current, size = word, len(word.encode())
    if current.strip():
        pieces.append(current.rstrip())
    return pieces


def _cut(word: str, max_bytes: int) -> int:
    """The most characters of ``word`` that fit in ``max_bytes``."""
    size = 0
    for index, ch in enumerate(word):
        size += len(ch.encode())
        if size > max_bytes:
            return max(1, index)
    return len(word)
