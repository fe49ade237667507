"""Sentence splitting with exact character offsets.

Every sentence is an exact substring of its text, given as a ``(start, end)`` span. Spans are sorted,
never overlap, never start or end with whitespace, and together hold every non-whitespace character of
the text. The splitter is rule-based (stdlib :mod:`re` only), deterministic and linear in the text size.

How it works, in three passes:

1. Lines are grouped into blocks: fenced code blocks (```` ``` ```` or ``~~~``) are one block each; a
   blank line ends a block; a list item (``-``, ``*``, ``•``, ``1.``, ``1)``, ``a)``) or a Markdown
   heading (``#``) starts a block of its own, so each list item is a sentence even without a final
   stop. Indented lines after a list item continue it.
2. Prose blocks are cut after terminal punctuation (``.``, ``!``, ``?``, ``…`` plus any closing quotes or
   brackets) followed by whitespace, unless the period belongs to an abbreviation (``Dr.``, ``e.g.``,
   ``U.S.``, initials such as ``J. R. R. Tolkien``) or the next word starts in lower case. CJK stops
   (``。！？；``) cut with no following space. Decimals, versions, URLs and e-mail addresses never cut
   because their dots are not followed by whitespace.
3. Pieces longer than ``max_chars`` are cut again: prose at clause marks (``; : , — –`` followed by a
   space, CJK ``，、``), then at whitespace, then hard at ``max_chars``; code blocks at line breaks.

Example:
    >>> from ctxcomp.text.split import split_spans
    >>> text = "Dr. Smith paid $2.5 million. He left at 5 p.m. on Friday."
    >>> [text[s:e] for s, e in split_spans(text)]
    ['Dr. Smith paid $2.5 million.', 'He left at 5 p.m. on Friday.']
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence

from ctxcomp.errors import InputError
from ctxcomp.types import Candidates, Document, Sentence

__all__ = ["split_sentences", "split_spans"]

Span = tuple[int, int]

# --- characters -------------------------------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|[\n\r\u2028\u2029\x85]")
# Start of a line: horizontal indentation, then maybe a code fence, a heading or a list marker.
_LINE_HEAD = re.compile(
    r"(?P<indent>[^\S\n\r\u2028\u2029\x85]*)"
    r"(?:(?P<fence>`{3,}|~{3,})"
    r"|(?P<heading>\#{1,6})(?=\s|$)"
    r"|(?P<item>[-*+•‣◦▪▫●○■□–](?=\s)"
    r"|\d{1,3}[.)](?=\s|$)"
    r"|\(?[a-zA-Z]\)(?=\s)"
    r"|\(\d{1,3}\)(?=\s)))?"
)
# Terminal punctuation runs. CJK stops end a sentence even without a following space.
_TERMINAL = re.compile(r"[.!?‽…。！？｡；।॥؟۔]+")  # Devanagari danda, Arabic marks
_CJK_STOPS = frozenset("。！？｡；")
_CLOSERS = frozenset("\"')]}»’”」』）】〕〉》›")
_OPENERS = frozenset("\"'([{«‘“¿¡「『（【〔〈《‹")
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_WS_RUN = re.compile(r"\s*")
_WORD = re.compile(r"[^\W\d_]+")
_NUMBER = re.compile(r"[-+$€£¥]?\d[\d,.]*%?")
_DOTTED = re.compile(r"(?:[^\W\d_]\.)+[^\W\d_]")

# Cut points for over-long pieces: a piece ends after a clause mark, or before whitespace / a line break.
_CLAUSE = re.compile(r"[;:,—–](?=\s)|[，、；：]")
_SPACE = re.compile(r"\s+")
_NEWLINE = re.compile(r"\n")

# --- abbreviations ------------------------------------------------------------------------------------


def _words(spec: str) -> frozenset[str]:
    return frozenset(spec.split())


# A period after these never ends a sentence.
_NEVER_END = _words(
    """mr mrs ms mx dr prof rev hon gen col capt cpt lt sgt maj adm cmdr gov sen rep pres st mt ft
    messrs mme mlle mssr e.g i.e cf viz vs v approx ca"""
)
# These end a sentence only when followed by a digit-free word (``No. 5``, ``Fig. 3`` do not end).
_BEFORE_NUMBER = _words("no nos nr vol vols p pp fig figs eq eqs ch chap sec art op tab ex")
# These may end a sentence; they do when the next word is a typical sentence opener.
_MAYBE_END = _words(
    """inc ltd co corp llc plc jr sr bros al ave blvd rd dept univ assn est govt intl natl
    jan feb mar apr jun jul aug sep sept oct nov dec mon tue tues wed thu thur thurs fri sat sun
    ph.d a.m p.m u.s u.k u.n e.u u.s.a"""
)
_SENTENCE_OPENERS = _words(
    """The A An He She It They We I You This That These Those There Then But And Or So Yet However
    In On At For From By With As After Before When While If Although Though Because Since Once Until
    His Her Its Their Our My Your What Who Why How Where Which Some Many Most All Not Also Still
    Meanwhile Today Now Later Finally First Second Third Thus Therefore Moreover Furthermore
    Instead Each Every Both Such To Of Is Are Was Were Do Does Did Can Could Will Would Should
    Here Other Another Several Few Nevertheless Nonetheless Otherwise Indeed Mr Mrs Ms Dr Prof"""
)
_TOKEN_LOOKBACK = 32


def split_spans(text: str, *, max_chars: int = 1000) -> list[tuple[int, int]]:
    """Sentence spans (start, end) into text; text[start:end] is the sentence.

    Spans are sorted and disjoint, never empty, never begin or end with whitespace, and are at most
    ``max_chars`` long. Whitespace between sentences belongs to no span; every other character
    belongs to exactly one.

    Args:
        text: The text to split.
        max_chars: Longest allowed span. Longer sentences are cut at clause marks, then whitespace,
            then hard; longer code blocks at line breaks.

    Returns:
        ``(start, end)`` character offsets, in text order. Empty or whitespace-only text gives ``[]``.

    Raises:
        InputError: ``text`` is not a str or ``max_chars`` is not a positive int.

    Example:
        >>> text = 'He said "Stop." Then J. R. R. Tolkien left.\\n\\n- eggs\\n- milk'
        >>> [text[s:e] for s, e in split_spans(text)]
        ['He said "Stop."', 'Then J. R. R. Tolkien left.', '- eggs', '- milk']
        >>> split_spans("下雨了。风很大！")
        [(0, 4), (4, 8)]
        >>> long = "alpha, beta gamma"
        >>> [long[s:e] for s, e in split_spans(long, max_chars=8)]
        ['alpha,', 'beta', 'gamma']
    """
    if not isinstance(text, str):
        raise InputError("text", f"must be a str, got {type(text).__name__}", "pass the text as a str")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
        raise InputError(
            "max_chars", f"must be a positive int, got {max_chars!r}", "pass e.g. max_chars=1000"
        )
    spans: list[Span] = []
    for start, end, kind, marker_end in _blocks(text):
        if kind == "code":
            pieces: Sequence[Span] = [_trim(text, start, end)]
            levels: tuple[re.Pattern[str], ...] = (_NEWLINE, _SPACE)
        else:
            pieces = _sentences(text, start, end, marker_end)
            levels = (_CLAUSE, _SPACE)
        for s, e in pieces:
            if s >= e:
                continue
            if e - s <= max_chars:
                spans.append((s, e))
            else:
                spans.extend(_split_long(text, s, e, max_chars, levels))
    return spans


def split_sentences(doc: Document, *, max_chars: int = 1000) -> list[Sentence]:
    """Split a document into :class:`~ctxcomp.types.Sentence` objects with exact offsets.

    Args:
        doc: The document to split.
        max_chars: Longest allowed sentence, as in :func:`split_spans`.

    Returns:
        Sentences in document order, indexed 0..n-1, each with ``doc.text[s.start:s.end] == s.text``.

    Raises:
        InputError: ``doc`` is not a Document or ``max_chars`` is not a positive int.

    Example:
        >>> from ctxcomp.types import Document
        >>> doc = Document("d1", "Paris is in France. It is big.")
        >>> [(s.index, s.start, s.end, s.text) for s in split_sentences(doc)]
        [(0, 0, 19, 'Paris is in France.'), (1, 20, 30, 'It is big.')]
    """
    if not isinstance(doc, Document):
        raise InputError(
            "doc", f"must be a ctxcomp.Document, got {type(doc).__name__}", "wrap text in Document"
        )
    text = doc.text
    return [
        Sentence(doc_id=doc.id, index=i, start=s, end=e, text=text[s:e])
        for i, (s, e) in enumerate(split_spans(text, max_chars=max_chars))
    ]


def split_documents(docs: Sequence[Document], *, max_chars: int = 1000) -> Candidates:
    """Split every document into sentences (the first step of the pipeline).

    Args:
        docs: The documents, in input order.
        max_chars: Longest allowed sentence, as in :func:`split_spans`.

    Returns:
        The :class:`~ctxcomp.types.Candidates` of the call.

    Example:
        >>> from ctxcomp.types import Document
        >>> split_documents([Document("a", "One. Two.")]).texts
        ['One.', 'Two.']
    """
    sentences: list[Sentence] = []
    doc_of: list[int] = []
    for i, d in enumerate(docs):
        for s in split_sentences(d, max_chars=max_chars):
            sentences.append(s)
            doc_of.append(i)
    return Candidates(list(docs), sentences, doc_of)


# --- pass 1: blocks ---------------------------------------------------------------------------------


def _lines(text: str) -> list[Span]:
    """(start, end) of every line, line breaks excluded."""
    lines: list[Span] = []
    pos = 0
    for m in _LINE_BREAK.finditer(text):
        lines.append((pos, m.start()))
        pos = m.end()
    lines.append((pos, len(text)))
    return lines


def _blocks(text: str) -> list[tuple[int, int, str, int]]:
    """Group lines into blocks ``(start, end, kind, marker_end)``.

    ``kind`` is ``"code"`` (a fenced block, never split at sentence ends) or ``"prose"``;
    ``marker_end`` is where a list item's marker ends (a period inside it is no sentence end), else -1.
    """
    blocks: list[tuple[int, int, str, int]] = []
    lines = _lines(text)
    cur_start = -1  # start of the prose block being built, -1 when none
    cur_end = -1
    cur_marker = -1
    cur_is_item = False

    def flush() -> None:
        nonlocal cur_start, cur_is_item, cur_marker
        if cur_start >= 0:
            blocks.append((cur_start, cur_end, "prose", cur_marker))
        cur_start, cur_is_item, cur_marker = -1, False, -1

    i, n = 0, len(lines)
    while i < n:
        ls, le = lines[i]
        head = _LINE_HEAD.match(text, ls, le)
        assert head is not None  # every group is optional: the pattern always matches
        content = head.end("indent")
        if content == le:  # blank line
            flush()
            i += 1
            continue
        fence = head.group("fence")
        if fence is not None:
            flush()
            j = i + 1
            while j < n and not _closes_fence(text, lines[j], fence):
                j += 1
            last = min(j, n - 1)
            blocks.append((content, lines[last][1], "code", -1))
            i = last + 1
            continue
        if head.group("heading") is not None:
            flush()
            blocks.append((content, le, "prose", -1))
            i += 1
            continue
        if head.group("item") is not None:
            flush()
            cur_start, cur_end, cur_marker, cur_is_item = content, le, head.end("item"), True
            i += 1
            continue
        if cur_is_item and content == ls:  # an unindented line after a list item starts a new block
            flush()
        if cur_start < 0:
            cur_start = content
        cur_end = le
        i += 1
    flush()
    return blocks


def _closes_fence(text: str, line: Span, fence: str) -> bool:
    stripped = text[line[0] : line[1]].strip()
    return len(stripped) >= len(fence) and stripped == fence[0] * len(stripped)


# --- pass 2: sentence ends inside a prose block -----------------------------------------------------------


def _sentences(text: str, start: int, end: int, marker_end: int) -> list[Span]:
    """Trimmed sentence spans of the prose block ``text[start:end]``."""
    out: list[Span] = []
    cur = start
    for m in _TERMINAL.finditer(text, start, end):
        rs, re_ = m.span()
        if re_ <= marker_end or re_ <= cur:
            continue
        after = re_
        while after < end and text[after] in _CLOSERS:
            after += 1
        if after >= end:
            break
        if _ends_sentence(text, rs, re_, after, start, end):
            s, e = _trim(text, cur, after)
            if s < e:
                out.append((s, e))
            cur = after
    s, e = _trim(text, cur, end)
    if s < e:
        out.append((s, e))
    return out


def _ends_sentence(text: str, rs: int, re_: int, after: int, start: int, end: int) -> bool:
    """Whether the terminal run ``text[rs:re_]`` (closers up to ``after``) ends a sentence."""
    run = text[rs:re_]
    if any(ch in _CJK_STOPS for ch in run):
        return True
    if not text[after].isspace():
        # "好!我": ASCII !/? between CJK characters; anything else glued to the next word is no end.
        return (
            after == re_
            and rs > start
            and "." not in run
            and _CJK_CHAR.match(text[rs - 1]) is not None
            and _CJK_CHAR.match(text[after]) is not None
        )
    j = _skip_ws(text, after, end)
    while j < end and text[j] in _OPENERS:
        j += 1
    if j >= end:
        return True
    nxt = text[j]
    if nxt.islower():
        return False
    if run != "." or after > re_:  # ! ? … .. or a stop inside quotes/brackets
        return True
    token = _token_before(text, rs, start)
    if not token:
        return True
    key = token.lower()
    if key in _NEVER_END:
        return False
    if key in _BEFORE_NUMBER:
        return not nxt.isdigit()
    if _NUMBER.fullmatch(token):
        return True
    if key in _MAYBE_END or _DOTTED.fullmatch(key) or (len(token) == 1 and token.isupper()):
        return _opens_sentence(text, j, end)
    return True


def _token_before(text: str, pos: int, start: int) -> str:
    """The word glued to the period at ``pos``, opening quotes stripped; "" if none or too long."""
    lo = max(start, pos - _TOKEN_LOOKBACK)
    chunk = text[lo:pos]
    if not chunk or chunk[-1].isspace():
        return ""
    parts = chunk.split()
    if len(parts) == 1 and lo > start and not text[lo - 1].isspace():
        return "~" * _TOKEN_LOOKBACK  # longer than any abbreviation: an ordinary word
    return parts[-1].lstrip("".join(_OPENERS))


def _opens_sentence(text: str, j: int, end: int) -> bool:
    """Whether the word at ``j`` is a capitalised, common sentence opener (and not an initial)."""
    m = _WORD.match(text, j, end)
    if m is None or not text[j].isupper():
        return False
    if m.end() - m.start() == 1 and m.end() < end and text[m.end()] == ".":
        return False  # "J. A. Smith": the next word is itself an initial
    return m.group() in _SENTENCE_OPENERS


# --- pass 3: over-long pieces -----------------------------------------------------------------------------


def _trim(text: str, start: int, end: int) -> Span:
    """Shrink ``[start, end)`` to exclude surrounding whitespace (empty spans come back with s >= e)."""
    piece = text[start:end]
    stripped_left = piece.lstrip()
    s = start + len(piece) - len(stripped_left)
    e = s + len(stripped_left.rstrip())
    return s, e


def _skip_ws(text: str, pos: int, end: int) -> int:
    """First non-whitespace position at or after ``pos`` (``end`` if none)."""
    m = _WS_RUN.match(text, pos, end)
    return m.end() if m is not None else pos


def _cut_points(text: str, start: int, end: int, pattern: re.Pattern[str]) -> list[int]:
    """Positions where a piece may end: after clause marks, before whitespace or line breaks."""
    if pattern is _CLAUSE:
        return [m.end() for m in pattern.finditer(text, start, end)]
    return [m.start() for m in pattern.finditer(text, start, end)]


def _split_long(
    text: str, start: int, end: int, max_chars: int, levels: Sequence[re.Pattern[str]]
) -> list[Span]:
    """Cut the trimmed span ``[start, end)`` into trimmed pieces of at most ``max_chars``.

    Greedy: each piece ends at the furthest cut point of the most preferred level that keeps it within
    ``max_chars``; failing all levels, it is cut hard at ``max_chars``.
    """
    cuts = [_cut_points(text, start, end, p) for p in levels]
    out: list[Span] = []
    pos = start
    while end - pos > max_chars:
        limit = pos + max_chars
        cut = -1
        for points in cuts:
            k = bisect_right(points, limit) - 1
            if k >= 0 and points[k] > pos:
                cut = points[k]
                break
        if cut < 0:
            cut = _hard_cut(text, pos, limit)
        s, e = _trim(text, pos, cut)
        if s < e:
            out.append((s, e))
        pos = _skip_ws(text, cut, end)
    if pos < end:
        out.append((pos, end))
    return out


def _hard_cut(text: str, pos: int, limit: int) -> int:
    """``limit``, moved back a little so a joiner, variation selector or combining mark stays attached."""
    cut = limit
    while cut > pos + 1 and cut > limit - 8 and _is_attached(text[cut], text[cut - 1]):
        cut -= 1
    return limit if _is_attached(text[cut], text[cut - 1]) else cut


def _is_attached(ch: str, prev: str) -> bool:
    o = ord(ch)
    return (
        prev == "\u200d"
        or o == 0x200D
        or 0xFE00 <= o <= 0xFE0F
        or 0x0300 <= o <= 0x036F
        or 0x1F3FB <= o <= 0x1F3FF
        or 0xE0020 <= o <= 0xE007F
    )
