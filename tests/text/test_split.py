"""Tests for ctxcomp.text.split: expected splits for the hard cases, and invariants for any text."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxcomp.errors import InputError
from ctxcomp.text import split_sentences, split_spans
from ctxcomp.types import Document, Sentence


def sents(text: str, **kwargs: int) -> list[str]:
    spans = split_spans(text, **kwargs)
    check_invariants(text, spans, kwargs.get("max_chars", 1000))
    return [text[s:e] for s, e in spans]


def check_invariants(text: str, spans: list[tuple[int, int]], max_chars: int) -> None:
    prev_end = 0
    for s, e in spans:
        assert prev_end <= s < e <= len(text), (s, e, prev_end)
        assert e - s <= max_chars
        assert not text[s].isspace() and not text[e - 1].isspace()
        assert text[prev_end:s].strip() == "", "non-whitespace text fell between spans"
        prev_end = e
    assert text[prev_end:].strip() == ""
    kept = "".join(ch for s, e in spans for ch in text[s:e] if not ch.isspace())
    assert kept == "".join(ch for ch in text if not ch.isspace())


# --- basics ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", " ", "\n\n\t \r\n", "\u3000\u2028"])
def test_empty_and_whitespace_give_nothing(text: str) -> None:
    assert split_spans(text) == []


def test_simple_sentences_and_offsets() -> None:
    text = "  Paris is in France.  It is big!\nIs it old? Yes.  "
    spans = split_spans(text)
    assert [text[s:e] for s, e in spans] == ["Paris is in France.", "It is big!", "Is it old?", "Yes."]
    assert spans[0] == (2, 21)


def test_no_final_punctuation() -> None:
    assert sents("One sentence without a stop") == ["One sentence without a stop"]


# --- abbreviations, numbers, urls -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
        ("Mrs. Brown and Prof. White came. It rained.", ["Mrs. Brown and Prof. White came.", "It rained."]),
        ("Use fruit, e.g. Apples. Or not.", ["Use fruit, e.g. Apples.", "Or not."]),
        ("Some fruit, i.e. Pears, are sweet.", ["Some fruit, i.e. Pears, are sweet."]),
        (
            "Bring pens, paper, etc. The rest is supplied.",
            ["Bring pens, paper, etc.", "The rest is supplied."],
        ),
        ("He works at Acme Inc. The company is small.", ["He works at Acme Inc.", "The company is small."]),
        ("Acme Inc. Headquarters moved.", ["Acme Inc. Headquarters moved."]),
        ("She lives on Baker St. Near the park.", ["She lives on Baker St. Near the park."]),
        ("The U.S. Army is large. It has bases.", ["The U.S. Army is large.", "It has bases."]),
        ("He moved to the U.S. He liked it.", ["He moved to the U.S.", "He liked it."]),
        ("We met at 9 a.m. The talk began.", ["We met at 9 a.m.", "The talk began."]),
        ("We met at 9 a.m. on Monday.", ["We met at 9 a.m. on Monday."]),
        ("It starts at 5 p.m. Mr. Smith chairs.", ["It starts at 5 p.m.", "Mr. Smith chairs."]),
        ("J. R. R. Tolkien wrote it. He was British.", ["J. R. R. Tolkien wrote it.", "He was British."]),
        ("George W. Bush spoke. J. A. Smith listened.", ["George W. Bush spoke.", "J. A. Smith listened."]),
        ("See Fig. 3 and No. 5 for details. Done.", ["See Fig. 3 and No. 5 for details.", "Done."]),
        ("The answer was no. We left.", ["The answer was no.", "We left."]),
        ("Roe v. Wade was decided. It mattered.", ["Roe v. Wade was decided.", "It mattered."]),
        ("He holds a Ph.D. The thesis was long.", ["He holds a Ph.D.", "The thesis was long."]),
        ("Smith et al. Found it. Then lost it.", ["Smith et al. Found it.", "Then lost it."]),
        ("Smith et al. The study failed.", ["Smith et al.", "The study failed."]),
    ],
)
def test_abbreviations(text: str, expected: list[str]) -> None:
    assert sents(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pi is 3.14 roughly. Next.", ["Pi is 3.14 roughly.", "Next."]),
        ("It cost $2.5 million. Cheap.", ["It cost $2.5 million.", "Cheap."]),
        (
            "Version 1.2.3 is out. Python 3.12. Rust 1.80.0.",
            ["Version 1.2.3 is out.", "Python 3.12.", "Rust 1.80.0."],
        ),
        ("It happened in 1990. The end.", ["It happened in 1990.", "The end."]),
        ("Growth was 4.5%. Not bad.", ["Growth was 4.5%.", "Not bad."]),
        (
            "Go to https://example.com/a.b?x=1 now. Thanks.",
            ["Go to https://example.com/a.b?x=1 now.", "Thanks."],
        ),
        (
            "Visit https://example.com/a.b?x=1. Then leave.",
            ["Visit https://example.com/a.b?x=1.", "Then leave."],
        ),
        ("Mail john.doe@mail.example.org today. Ok.", ["Mail john.doe@mail.example.org today.", "Ok."]),
        ("Write to a.b@c.io. Then wait.", ["Write to a.b@c.io.", "Then wait."]),
        ("See www.python.org/3.12/?q=a!b for docs. Ok.", ["See www.python.org/3.12/?q=a!b for docs.", "Ok."]),
    ],
)
def test_numbers_versions_urls_emails(text: str, expected: list[str]) -> None:
    assert sents(text) == expected


# --- ellipses, quotes, brackets -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wait... what happened? Nothing.", ["Wait... what happened?", "Nothing."]),
        ("He paused... Then he left.", ["He paused...", "Then he left."]),
        ("He paused… Then he left.", ["He paused…", "Then he left."]),
        ("Really?! Yes!!! Ok.", ["Really?!", "Yes!!!", "Ok."]),
        ('He said "Stop." Then he ran.', ['He said "Stop."', "Then he ran."]),
        ("He said “Stop.” Then he ran.", ["He said “Stop.”", "Then he ran."]),
        ("She asked 'Why?' He shrugged.", ["She asked 'Why?'", "He shrugged."]),
        ('"Help!" he cried. Nobody came.', ['"Help!" he cried.', "Nobody came."]),
        ("(This is aside.) The main point.", ["(This is aside.)", "The main point."]),
        ('It ended. "Why?" she asked.', ["It ended.", '"Why?" she asked.']),
        ("Yahoo! is a company. Sure.", ["Yahoo! is a company.", "Sure."]),
    ],
)
def test_ellipses_quotes_brackets(text: str, expected: list[str]) -> None:
    assert sents(text) == expected


# --- lines, lists, headings, code -----------------------------------------------------------------


def test_blank_line_ends_sentence() -> None:
    assert sents("A heading without stop\n\nThe body starts here") == [
        "A heading without stop",
        "The body starts here",
    ]
    assert sents("one\r\n\r\ntwo\n \t\nthree") == ["one", "two", "three"]


def test_single_newline_inside_prose_does_not_split() -> None:
    text = "This sentence is hard\nwrapped over lines. Next one."
    assert sents(text) == ["This sentence is hard\nwrapped over lines.", "Next one."]


def test_bullet_lists() -> None:
    text = "Ingredients:\n- flour\n- two eggs\n* milk\n• sugar\n+ salt\nMix well."
    assert sents(text) == [
        "Ingredients:",
        "- flour",
        "- two eggs",
        "* milk",
        "• sugar",
        "+ salt",
        "Mix well.",
    ]


def test_numbered_lists() -> None:
    text = "Steps\n1. Open the box\n2. Take it out. Check it.\n3) Close\n(4) Done\na) extra\n10. last"
    assert sents(text) == [
        "Steps",
        "1. Open the box",
        "2. Take it out.",
        "Check it.",
        "3) Close",
        "(4) Done",
        "a) extra",
        "10. last",
    ]


def test_list_item_continuation_and_headings() -> None:
    text = "# Intro\nSome text here\n## Part two\n- item that\n  continues\nplain line"
    assert sents(text) == [
        "# Intro",
        "Some text here",
        "## Part two",
        "- item that\n  continues",
        "plain line",
    ]


def test_hashtag_is_not_a_heading() -> None:
    assert sents("I like\n#python a lot") == ["I like\n#python a lot"]


def test_fenced_code_block_is_one_unit() -> None:
    code = "```python\nx = 1. \nprint(x)! Done.\n\nif x: y = 2. Then\n```"
    text = f"Look at this.\n{code}\nAfter it. Done."
    assert sents(text) == ["Look at this.", code, "After it.", "Done."]


def test_tilde_fence_and_unclosed_fence() -> None:
    assert sents("Intro.\n~~~\na. b.\n\nc.\n~~~\nOutro.") == ["Intro.", "~~~\na. b.\n\nc.\n~~~", "Outro."]
    assert sents("Intro.\n```\nnever closed. Really.\n\nStill code.") == [
        "Intro.",
        "```\nnever closed. Really.\n\nStill code.",
    ]


def test_long_code_block_splits_at_lines() -> None:
    lines = [f"line_{i} = {i}.  # comment. Another." for i in range(40)]
    code = "```\n" + "\n".join(lines) + "\n```"
    out = sents(code, max_chars=200)
    assert len(out) > 1
    # every piece is made of whole lines of the block
    body_lines = code.split("\n")
    for piece in out:
        assert all(line in body_lines for line in piece.split("\n"))


def test_indented_code_treated_as_lines() -> None:
    text = "Example:\n\n    x = 1\n    y = 2\n\nDone."
    assert sents(text) == ["Example:", "x = 1\n    y = 2", "Done."]


# --- CJK, mixed scripts, emoji -----------------------------------------------------------------------


def test_cjk_punctuation_without_spaces() -> None:
    assert sents("你好。我是学生！你呢？好的；再见。") == [
        "你好。",
        "我是学生！",
        "你呢？",
        "好的；",
        "再见。",
    ]
    assert sents("今日は晴れです。明日は雨？") == ["今日は晴れです。", "明日は雨？"]
    assert sents("他说：“走吧。”我们走了。") == ["他说：“走吧。”", "我们走了。"]
    assert sents("「はい。」そうです。") == ["「はい。」", "そうです。"]


def test_fullwidth_and_ascii_marks_between_cjk() -> None:
    assert sents("真的！！不是吗？！是的") == ["真的！！", "不是吗？！", "是的"]
    assert sents("好!我来了?是的") == ["好!", "我来了?", "是的"]


def test_mixed_scripts_and_emoji() -> None:
    text = "Hello world. 你好世界。Привет, мир! Это тест. 🎉 Party time! 😀"
    assert sents(text) == ["Hello world.", "你好世界。", "Привет, мир!", "Это тест.", "🎉 Party time!", "😀"]
    assert sents("Γειά σου. αυτό συνεχίζει. Τέλος.") == ["Γειά σου. αυτό συνεχίζει.", "Τέλος."]
    assert sents("هل أنت بخير؟ نعم.") == ["هل أنت بخير؟", "نعم."]
    assert sents("नमस्ते दुनिया। यह परीक्षण है। Done.") == ["नमस्ते दुनिया।", "यह परीक्षण है।", "Done."]


# --- long sentences -------------------------------------------------------------------------------


def test_long_sentence_split_at_clauses() -> None:
    clause = "word " * 15 + "end"
    text = "; ".join([clause] * 4) + "."
    out = sents(text, max_chars=len(clause) + 1)
    assert out == [clause + ";"] * 3 + [clause + "."]


def test_long_sentence_split_at_dashes_and_cjk_commas() -> None:
    text = "alpha beta — gamma delta – epsilon zeta"
    assert sents(text, max_chars=12) == ["alpha beta —", "gamma delta", "–", "epsilon zeta"]
    assert sents("一二三四，五六七八、九十一二", max_chars=5) == ["一二三四，", "五六七八、", "九十一二"]


def test_long_sentence_falls_back_to_whitespace_then_hard() -> None:
    assert sents("aaa bbb ccc ddd", max_chars=7) == ["aaa bbb", "ccc ddd"]
    assert sents("abcdefghij", max_chars=4) == ["abcd", "efgh", "ij"]


def test_clause_split_prefers_furthest_fitting_boundary() -> None:
    text = "a, b, c, d, e, f, g, h."
    out = sents(text, max_chars=9)
    assert out == ["a, b, c,", "d, e, f,", "g, h."]


def test_hard_split_keeps_emoji_sequences_together() -> None:
    family = "👨\u200d👩\u200d👧"
    text = family * 10
    for piece in sents(text, max_chars=7):
        assert not piece.startswith("\u200d") and not piece.endswith("\u200d")


def test_50k_unbroken_sentence_is_fast() -> None:
    text = "x" * 50_000
    t0 = time.perf_counter()
    spans = split_spans(text, max_chars=1000)
    elapsed = time.perf_counter() - t0
    assert elapsed < 1.0
    assert len(spans) == 50
    assert all(e - s == 1000 for s, e in spans)
    check_invariants(text, spans, 1000)


def test_50k_pathological_inputs_are_fast() -> None:
    cases = ["a." * 25_000, ". " * 25_000, "a," * 25_000, "a, " * 17_000, "-\n" * 25_000, "”." * 25_000]
    for text in cases:
        t0 = time.perf_counter()
        spans = split_spans(text, max_chars=100)
        assert time.perf_counter() - t0 < 1.0, text[:10]
        check_invariants(text, spans, 100)


def test_one_megabyte_of_prose_is_fast() -> None:
    para = (
        "Dr. Smith arrived at 9 a.m. and met the U.S. delegation. They discussed version 2.1.3 of the "
        "treaty, e.g. the tariffs on steel; it cost $2.5 million! Was it worth it? Nobody knew... "
        "See https://example.com/a.b?x=1 for details. 研究表明。结果很好！\n\n- a bullet item\n"
    )
    text = para * (1_000_000 // len(para) + 1)
    t0 = time.perf_counter()
    spans = split_spans(text)
    elapsed = time.perf_counter() - t0
    assert elapsed < 2.0
    assert len(spans) > 10_000
    check_invariants(text, spans, 1000)


# --- determinism, documents, errors ---------------------------------------------------------------


def test_deterministic() -> None:
    text = "One. Two! Three? 四。五！\n- six\n```\nseven. eight.\n```"
    assert split_spans(text) == split_spans(text)


def test_split_sentences_returns_sentences() -> None:
    doc = Document("doc-7", "First one. Second one!\n\n- third", metadata={"k": 1})
    out = split_sentences(doc)
    assert all(isinstance(s, Sentence) for s in out)
    assert [s.index for s in out] == [0, 1, 2]
    assert {s.doc_id for s in out} == {"doc-7"}
    assert [s.text for s in out] == ["First one.", "Second one!", "- third"]
    for s in out:
        assert doc.text[s.start : s.end] == s.text


def test_split_sentences_empty_document() -> None:
    assert split_sentences(Document("e", "   ")) == []


@pytest.mark.parametrize("bad", [0, -5, 1.5, True, "10"])
def test_bad_max_chars_names_the_field(bad: object) -> None:
    with pytest.raises(InputError) as info:
        split_spans("Text.", max_chars=bad)  # type: ignore[arg-type]
    assert info.value.field == "max_chars"


def test_bad_inputs_name_the_field() -> None:
    with pytest.raises(InputError) as info:
        split_spans(b"bytes")  # type: ignore[arg-type]
    assert info.value.field == "text"
    with pytest.raises(InputError) as info:
        split_sentences("not a doc")  # type: ignore[arg-type]
    assert info.value.field == "doc"


# --- properties -----------------------------------------------------------------------------------

_PIECES = [
    "```",
    "~~~",
    "\n\n",
    "\n- ",
    "\n1. ",
    "\n# ",
    "Mr.",
    "e.g.",
    "U.S.",
    "J. ",
    "3.14",
    "...",
    "你好",
    "😀",
]
_ALPHABET = st.sampled_from(
    [*"abcXYZ .!?…,;:—–-*#•1234567890\"'()”“」「。！？；，、`~\n\n\r\t\u3000\u2028\u200d\ufe0f", *_PIECES]
)
_STRUCTURED = st.lists(_ALPHABET, max_size=200).map("".join)
_ANY_TEXT = st.text(max_size=400)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(_STRUCTURED, _ANY_TEXT), max_chars=st.integers(min_value=1, max_value=60))
def test_property_invariants_small_max(text: str, max_chars: int) -> None:
    check_invariants(text, split_spans(text, max_chars=max_chars), max_chars)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(_STRUCTURED, _ANY_TEXT))
def test_property_invariants_default_max(text: str) -> None:
    spans = split_spans(text)
    check_invariants(text, spans, 1000)
    assert spans == split_spans(text)


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(_STRUCTURED, _ANY_TEXT), doc_id=st.text(max_size=5))
def test_property_split_sentences_matches_spans(text: str, doc_id: str) -> None:
    doc = Document(doc_id, text)
    out = split_sentences(doc, max_chars=50)
    assert [(s.start, s.end) for s in out] == split_spans(text, max_chars=50)
    assert [s.index for s in out] == list(range(len(out)))
    for s in out:
        assert s.doc_id == doc_id
        assert doc.text[s.start : s.end] == s.text
