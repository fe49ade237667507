"""Sentence features from the proxy's attention: prompts, windows and the :class:`Prober`.

The sentences of one call are laid out as ``[documents ; question]`` prompts (:class:`PromptTemplate`),
packed into windows of whole documents that fit the proxy (:func:`pack_windows`), and read with
one truncated, probed prefill per window (:meth:`ctxcomp.models.probed.ProbedLM.prefill`). The
:class:`Prober` merges the windows into one :class:`ProbeFeatures` per call, so scores stay
comparable across windows.

Example:
    >>> from ctxcomp.compressors.probe import PromptTemplate
    >>> PromptTemplate().tail("Who?", focus=False)
    '\\nQuestion: Who?'
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ctxcomp.models.probed import PrefillResult, ProbedLM, SegmentedPrompt
from ctxcomp.types import Candidates, Document, Sentence


@dataclass(frozen=True)
class PromptTemplate:
    """How context and question are laid out for the proxy.

    The question comes after the context, so causal attention from the question reads it. The
    ``focus`` tail (AttentionRAG) ends on an answer hint whose last token is the focus token.

    Attributes:
        head: Text before the first document.
        doc_header: Format of each document's header; ``{n}`` is its 1-based number.
        doc_sep: Text after each document.
        question: Format of the question tail.
        focus_hint: Text appended after the question for the ``focus`` scorer.
    """

    head: str = "Read the documents, then answer the question.\n\n"
    doc_header: str = "Document [{n}]: "
    doc_sep: str = "\n\n"
    question: str = "\nQuestion: {q}"
    focus_hint: str = "\nAnswer: the answer is"

    def tail(self, query: str, *, focus: bool) -> str:
        """The text after the context.

        Args:
            query: The question.
            focus: Append the answer hint.

        Returns:
            The tail string.
        """
        return self.question.format(q=query) + (self.focus_hint if focus else "")


@dataclass(frozen=True)
class Unit:
    """A run of consecutive sentences of one document, shown to the proxy as one block.

    Attributes:
        doc_index: Index of the document in the call.
        first: Global index of the unit's first sentence.
        sentences: The sentences (document offsets).
    """

    doc_index: int
    first: int
    sentences: tuple[Sentence, ...]


@dataclass
class ProbeFeatures:
    """Attention features of every sentence of one call.

    Attributes:
        mass: ``[L, H, S]`` context-renormalised attention mass per sentence, averaged over the
            probe rows; across all windows each ``(layer, head)`` sums to 1 over sentences.
        n_tokens: ``[S]`` proxy tokens per sentence.
        layers: The probe layers, in the order of ``mass``'s first axis.
        n_windows: Number of prefills.
        n_context_tokens: Proxy tokens of all sentences together.
        group_mass: ``{group: [L, H, S]}`` the same for other probe-row groups (``"query"``: every
            question token reads the context), when asked for.
        hidden: ``{layer: [S, D]}`` mean hidden state of each sentence after that layer, when asked for.
        query_hidden: ``{layer: {group: [D]}}`` mean hidden state of each probe-row group (averaged
            over windows), when hidden layers were asked for.
    """

    mass: np.ndarray
    n_tokens: np.ndarray
    layers: tuple[int, ...]
    n_windows: int
    n_context_tokens: int
    group_mass: dict[str, np.ndarray] = field(default_factory=dict)
    hidden: dict[int, np.ndarray] = field(default_factory=dict)
    query_hidden: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    def lift(self, group: str = "last") -> np.ndarray:
        """Attention per token relative to uniform attention over the context, ``[L, H, S]``.

        1.0 means a sentence receives exactly its share of the context's tokens; sentences with
        no proxy token of their own get 0.

        Args:
            group: Probe-row group (``"last"``: :attr:`mass`; others from :attr:`group_mass`).

        Returns:
            The lift array.
        """
        mass = self.mass if group == "last" else self.group_mass[group]
        ntok = np.maximum(self.n_tokens, 1).astype(np.float32)  # [S]
        out = mass / ntok[None, None, :] * float(max(self.n_context_tokens, 1))  # [L, H, S]
        out[..., self.n_tokens == 0] = 0.0
        return out


def build_prompt(
    query: str, units: Sequence[Unit], docs: Sequence[Document], template: PromptTemplate, *, focus: bool
) -> tuple[str, np.ndarray]:
    """Lay out one window's prompt and the char -> global sentence index map.

    Args:
        query: The question.
        units: The window's sentence runs.
        docs: All documents of the call.
        template: The prompt template.
        focus: Use the answer-hint tail.

    Returns:
        ``(prompt, char_seg)`` where ``char_seg[c]`` is the global sentence index covering prompt
        character ``c``, or -1.
    """
    parts: list[str] = [template.head]
    spans: list[tuple[int, int, int]] = []  # (start, end, global sentence id)
    pos = len(template.head)
    for n, unit in enumerate(units, start=1):
        header = template.doc_header.format(n=n)
        parts.append(header)
        pos += len(header)
        text = docs[unit.doc_index].text
        base = unit.sentences[0].start
        body = text[base : unit.sentences[-1].end]
        for j, s in enumerate(unit.sentences):
            spans.append((pos + s.start - base, pos + s.end - base, unit.first + j))
        parts.append(body)
        pos += len(body)
        parts.append(template.doc_sep)
        pos += len(template.doc_sep)
    parts.append(template.tail(query, focus=focus))
    prompt = "".join(parts)
    char_seg = np.full(len(prompt), -1, dtype=np.int64)  # [C]
    for a, b, g in spans:
        char_seg[a:b] = g
    return prompt, char_seg


def query_span(prompt: str, query: str, template: PromptTemplate, *, focus: bool) -> tuple[int, int]:
    """Characters of the question inside a prompt built by :func:`build_prompt`.

    Args:
        prompt: The prompt.
        query: The question.
        template: The template it was built with.
        focus: Whether the answer-hint tail was used.

    Returns:
        ``(start, end)`` character offsets.

    Example:
        >>> t = PromptTemplate()
        >>> p = "ctx" + t.tail("Who?", focus=False)
        >>> a, b = query_span(p, "Who?", t, focus=False)
        >>> p[a:b]
        'Who?'
    """
    tail = template.tail(query, focus=focus)
    start = len(prompt) - len(tail) + template.question.index("{q}")
    return start, start + len(query)


def pack_windows(
    cands: Candidates, n_tokens: Sequence[int], cap: int, *, header_tokens: int = 6
) -> list[list[Unit]]:
    """Pack whole documents (or sentence runs of over-long ones) into windows of at most ``cap`` tokens.

    Args:
        cands: The call's documents and sentences.
        n_tokens: ``[S]`` proxy tokens of each sentence.
        cap: Token budget of one window's context (the prompt's head and question excluded).
        header_tokens: Tokens charged for each unit's header and separator.

    Returns:
        Windows in document order, each a list of units.

    Example:
        >>> from ctxcomp.text.split import split_documents
        >>> c = split_documents([Document("a", "One. Two."), Document("b", "Three.")])
        >>> [[u.doc_index for u in w] for w in pack_windows(c, [5, 5, 5], 14, header_tokens=1)]
        [[0], [1]]
    """
    units: list[tuple[Unit, int]] = []
    i = 0
    s_total = len(cands.sentences)
    while i < s_total:
        d = cands.doc_of[i]
        run: list[Sentence] = []
        cost = header_tokens
        first = i
        while i < s_total and cands.doc_of[i] == d:
            c = n_tokens[i] + 1
            if run and cost + c > cap:
                break
            run.append(cands.sentences[i])
            cost += c
            i += 1
        units.append((Unit(d, first, tuple(run)), cost))
    windows: list[list[Unit]] = []
    cur: list[Unit] = []
    used = 0
    for unit, cost in units:
        if cur and used + cost > cap:
            windows.append(cur)
            cur, used = [], 0
        cur.append(unit)
        used += cost
    if cur:
        windows.append(cur)
    return windows


@dataclass(frozen=True)
class ProbeRequest:
    """One kind of probed prefill a scorer needs for a question.

    Attributes:
        query: The question.
        layers: Probe layers (non-negative).
        m: Trailing positions of the ``"last"`` group.
        focus: End the prompt with the answer hint and read from its last token.
        groups: Probe-row groups (``"last"`` first).
        hidden_layers: Layers whose hidden states are pooled per sentence.

    Example:
        >>> ProbeRequest.of("Who?", layers=[5, 11], groups=["query"]).groups
        ('last', 'query')
    """

    query: str
    layers: tuple[int, ...]
    m: int = 1
    focus: bool = False
    groups: tuple[str, ...] = ("last",)
    hidden_layers: tuple[int, ...] = ()

    @classmethod
    def of(
        cls,
        query: str,
        *,
        layers: Sequence[int],
        m: int = 1,
        focus: bool = False,
        groups: Sequence[str] = ("last",),
        hidden_layers: Sequence[int] = (),
    ) -> ProbeRequest:
        """A request with normalised fields (tuples, ``"last"`` group first).

        Args:
            query: The question.
            layers: Probe layers.
            m: Trailing positions of the ``"last"`` group.
            focus: Answer-hint tail.
            groups: Probe-row groups.
            hidden_layers: Pooled hidden layers.

        Returns:
            The request.
        """
        return cls(
            query,
            tuple(int(li) for li in layers),
            int(m),
            bool(focus),
            ("last", *[g for g in groups if g != "last"]),
            tuple(int(li) for li in hidden_layers),
        )


class Prober:
    """Reads the proxy's attention to every sentence of one call, window by window.

    Results are memoised per :class:`ProbeRequest`; :func:`prefetch` fills the memos of many
    probers with batched prefills, so a batch of calls shares padded forward passes.

    Args:
        lm: The proxy model holder.
        cands: The call's documents and sentences.
        template: Prompt layout.
        max_tokens: Longest prompt given to the proxy in one prefill.
        batch_tokens: Padded tokens per batched prefill (``None``: the model holder's default).

    Attributes:
        n_prefills: Prefills run so far (for this call's prompts).
        seconds: Wall time spent in them (a batch's time is shared by token count).

    Example:
        >>> prober = Prober(ProbedLM("gemma-3-270m"), cands, PromptTemplate(), 8192)  # doctest: +SKIP
        >>> prober.features("Who?", layers=(5, 11), m=1).lift().shape  # doctest: +SKIP
        (2, 4, 7)
    """

    def __init__(
        self,
        lm: ProbedLM,
        cands: Candidates,
        template: PromptTemplate,
        max_tokens: int,
        *,
        batch_tokens: int | None = None,
    ) -> None:
        self.lm = lm
        self.cands = cands
        self.template = template
        self.max_tokens = max_tokens
        self.batch_tokens = batch_tokens
        self.n_prefills = 0
        self.seconds = 0.0
        self._memo: dict[ProbeRequest, ProbeFeatures] = {}

    def windows(self, query: str, *, focus: bool = False) -> list[list[Unit]]:
        """The windows the prompts of ``query`` are built from.

        Args:
            query: The question.
            focus: Whether the answer-hint tail is used (it takes room).

        Returns:
            The windows.
        """
        counter = self.lm.counter
        overhead = counter.count(self.template.head + self.template.tail(query, focus=focus)) + 8
        cap = max(32, self.max_tokens - overhead)
        return pack_windows(self.cands, self.cands.token_counts(counter), cap)

    def has(self, req: ProbeRequest) -> bool:
        """Whether the features of ``req`` are already memoised.

        Args:
            req: The request.

        Returns:
            True when :meth:`features` would not run a prefill.
        """
        return req in self._memo

    def prompts(self, req: ProbeRequest) -> tuple[list[list[Unit]], list[SegmentedPrompt]]:
        """The windows of a request and their prompts (sentence ids local to each window).

        Args:
            req: The request.

        Returns:
            ``(windows, prompts)``.
        """
        windows = self.windows(req.query, focus=req.focus)
        prompts = []
        for units in windows:
            text, char_seg = build_prompt(req.query, units, self.cands.docs, self.template, focus=req.focus)
            base = units[0].first
            local = np.where(char_seg >= 0, char_seg - base, -1)  # [C]
            n_local = units[-1].first + len(units[-1].sentences) - base
            span = query_span(text, req.query, self.template, focus=req.focus)
            prompts.append(SegmentedPrompt(text, local, n_local, span))
        return windows, prompts

    def features(
        self,
        query: str,
        *,
        layers: Sequence[int],
        m: int = 1,
        focus: bool = False,
        groups: Sequence[str] = ("last",),
        hidden_layers: Sequence[int] = (),
    ) -> ProbeFeatures:
        """Attention (and hidden-state) features of every sentence for ``query``, one prefill per window.

        Each window's masses are weighted by its share of all context tokens, so every
        ``(layer, head)`` sums to 1 over all sentences of the call.

        Args:
            query: The question.
            layers: Probe layers (non-negative).
            m: Trailing positions that read the context (the ``"last"`` group).
            focus: End the prompt with the answer hint and read from its last token.
            groups: Probe-row groups (``"last"`` always; ``"query"``: every question token).
            hidden_layers: Layers whose hidden states are pooled per sentence.

        Returns:
            The features (``n_windows`` = prefills run for them).
        """
        req = ProbeRequest.of(
            query, layers=layers, m=m, focus=focus, groups=groups, hidden_layers=hidden_layers
        )
        return self.fetch(req)

    def fetch(self, req: ProbeRequest) -> ProbeFeatures:
        """The features of ``req``: memoised (e.g. by :func:`prefetch`), or prefilled now.

        Args:
            req: The request.

        Returns:
            The features.
        """
        if req not in self._memo:
            prefetch([(self, req)])
        return self._memo[req]

    def store(
        self, req: ProbeRequest, windows: list[list[Unit]], results: Sequence[PrefillResult], seconds: float
    ) -> ProbeFeatures:
        """Merge one request's window results into :class:`ProbeFeatures` and memoise them.

        Args:
            req: The request.
            windows: Its windows (from :meth:`prompts`).
            results: One prefill result per window.
            seconds: Prefill time charged to this call.

        Returns:
            The merged features.
        """
        self.seconds += seconds
        self.n_prefills += len(results)
        s_total = len(self.cands.sentences)
        n_tokens = np.zeros(s_total, dtype=np.int64)  # [S]
        n_ctx = 0
        for units, res in zip(windows, results, strict=True):
            base = units[0].first
            n_tokens[base : base + len(res.segment_tokens)] = res.segment_tokens
            n_ctx += int(res.segment_tokens.sum())
        merged: dict[str, np.ndarray] = {}
        for g in req.groups:
            first = results[0].mass[g]
            full = np.zeros((first.shape[0], first.shape[1], s_total), dtype=np.float32)  # [L, H, S]
            for units, res in zip(windows, results, strict=True):
                base = units[0].first
                n_w = int(res.segment_tokens.sum())
                full[:, :, base : base + res.mass[g].shape[2]] = res.mass[g] * (n_w / max(n_ctx, 1))
            merged[g] = full
        hidden: dict[int, np.ndarray] = {}
        query_hidden: dict[int, dict[str, np.ndarray]] = {}
        for li in req.hidden_layers:
            dim = results[0].hidden[li].shape[1]
            h = np.zeros((s_total, dim), dtype=np.float32)  # [S, D]
            for units, res in zip(windows, results, strict=True):
                base = units[0].first
                h[base : base + res.hidden[li].shape[0]] = res.hidden[li]
            hidden[li] = h
            query_hidden[li] = {
                g: np.mean([res.group_hidden[li][g] for res in results], axis=0).astype(np.float32)
                for g in req.groups
            }
        feats = ProbeFeatures(
            merged["last"],
            n_tokens,
            req.layers,
            len(windows),
            n_ctx,
            {g: v for g, v in merged.items() if g != "last"},
            hidden,
            query_hidden,
        )
        self._memo[req] = feats
        return feats


def prefetch(work: Sequence[tuple[Prober, ProbeRequest]]) -> None:
    """Run the prefills of many (prober, request) pairs, batching prompts that share a prefill kind.

    All probers must hold the same model. Requests already memoised are skipped; the prefill time
    of a batch is charged to each call by its share of prompt characters.

    Args:
        work: Pairs of a call's prober and a request it will ask for.

    Example:
        >>> prefetch([(p, ProbeRequest.of(q, layers=(5, 11))) for p, q in calls])  # doctest: +SKIP
    """
    kinds: dict[tuple[Any, ...], list[tuple[Prober, ProbeRequest]]] = {}
    for prober, req in work:
        if not prober.has(req):
            kinds.setdefault((req.layers, req.m, req.groups, req.hidden_layers), []).append((prober, req))
    for (layers, m, groups, hidden), items in kinds.items():
        lm = items[0][0].lm
        planned = [(prober, req, *prober.prompts(req)) for prober, req in dict.fromkeys(items)]
        prompts = [p for *_, ps in planned for p in ps]
        t = time.perf_counter()
        batch = items[0][0].batch_tokens
        results = lm.prefill(
            prompts, layers=layers, m=m, groups=groups, hidden_layers=hidden, batch_tokens=batch
        )
        seconds = time.perf_counter() - t
        chars = max(sum(len(p.text) for p in prompts), 1)
        k = 0
        for prober, req, windows, ps in planned:
            share = seconds * sum(len(p.text) for p in ps) / chars
            prober.store(req, windows, results[k : k + len(ps)], share)
            k += len(ps)
