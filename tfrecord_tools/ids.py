"""Video ids: the one rule every reader applies, and duplicate detection across files.

An id is the key of a video in every later stage (embedding files, ``result.json``), so a bad id
is refused where the record is read, naming the file and record:

* not valid UTF-8;
* empty;
* holding whitespace, a control or format character or a separator (Unicode categories ``Cc``,
  ``Cf``, ``Zs``, ``Zl``, ``Zp``: a tab, a newline, U+3000, a zero-width space, ...).

``ID_PATTERN`` is the same rule for ``tf.strings.regex_full_match`` (RE2), so the ``tf.data``
readers check it in-graph and hand only a failing record to ``check_video_id`` for the message.
``UniqueIds`` names both places of an id seen twice. (The official ids are decimal strings; the
fold writer and label reader additionally require that.)
"""
from __future__ import annotations

import unicodedata

from tfrecord_tools.errors import RecordError

_BAD_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# RE2: one or more characters none of which is whitespace, control, format or separator.
ID_PATTERN = r"[^\s\p{Cc}\p{Cf}\p{Z}]+"


def id_problem(raw: bytes | str) -> str | None:
    """Why ``raw`` is not a usable video id, or None when it is."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            return f"video id {raw[:40]!r} is not valid UTF-8 ({error.reason} at byte {error.start})"
    else:
        text = raw
    if text.isascii() and text.isdigit():  # the official form: nothing more to check
        return None
    if not text:
        return "video id is empty"
    for position, char in enumerate(text):
        category = unicodedata.category(char)
        if category in _BAD_CATEGORIES or char.isspace():
            name = unicodedata.name(char, "")
            return (f"video id {text[:40]!r} holds U+{ord(char):04X}{' ' + name if name else ''} (category "
                    f"{category}) at position {position}: ids may not contain whitespace, control or format "
                    "characters")
    return None


def check_video_id(raw: bytes | str, path: str, index: int | None, key: str = "id") -> str:
    """``raw`` decoded, or RecordError(path, index) saying what is wrong with it."""
    problem = id_problem(raw)
    if problem is not None:
        raise RecordError(path, index, problem if key == "id" else f"key '{key}': {problem}")
    return raw.decode("utf-8") if isinstance(raw, bytes) else raw


class UniqueIds:
    """Remembers where each id was seen; a second sighting is a RecordError naming both places."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, int]] = {}

    def add(self, video_id: str, path: str, index: int) -> None:
        previous = self._seen.setdefault(video_id, (path, index))
        if previous != (path, index):
            raise RecordError(path, index, f"duplicate video id {video_id}: already in {previous[0]}, "
                                           f"record {previous[1]}")

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._seen
