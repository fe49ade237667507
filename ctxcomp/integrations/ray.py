"""Distributed batch compression on Ray Data: an actor pool, one loaded proxy model per actor.

:func:`compress_dataset` maps a dataset of ``{id, query, docs}`` rows (or rows holding one JSON
record in a string column) to one row per input row, never dropping one: a row that fails becomes an
error row with the reason, the same shapes as ``ctxcomp compress-jsonl`` writes. Install with
``pip install 'ctxcomp[ray]'``; see ``docs/scale.md`` for multi-node clusters and GPUs.

Output columns:

* ``line`` (int or null) — the value of ``line_field`` when given, so results can be put back in order;
* ``id`` (str or null) — the record id as a string (null when the row had no valid id);
* ``ok`` (bool) — compressed (``True``) or an error row (``False``);
* ``record`` (str) — the JSON of the output record (``id``, ``line``, ``text``, ``sentences``,
  ``documents``, ``stats``, ``extra``) or of the error record (``line``, ``id``, ``error``, ``field``,
  ``reason``). Records are JSON strings because document metadata is free-form, which a typed Arrow
  column cannot hold faithfully.

Example:
    >>> import ray
    >>> from ctxcomp import CompressionConfig
    >>> from ctxcomp.integrations.ray import compress_dataset
    >>> rows = [{"id": "q1", "query": "Who?", "docs": ["Ann did it. Bob watched."]}]
    >>> ds = ray.data.from_items(rows)  # doctest: +SKIP
    >>> out = compress_dataset(ds, CompressionConfig(), num_workers=2, ratio=0.5)  # doctest: +SKIP
    >>> [r["ok"] for r in out.iter_rows()]  # doctest: +SKIP
    [True]
"""

from __future__ import annotations

import heapq
import json
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ctxcomp._deps import require
from ctxcomp.config import CompressionConfig
from ctxcomp.errors import ConfigError, InputError
from ctxcomp.integrations.jsonl import Task
from ctxcomp.records import Fields, compress_records, error_record, load_json

#: Bytes of raw records gathered on the driver before they are put into the object store.
CHUNK_BYTES = 32 << 20


class CompressBatch:
    """The ``map_batches`` callable: holds one :class:`~ctxcomp.Compressor` per Ray actor.

    Args:
        config: Compression settings (the model loads in ``__init__``, once per actor).
        fields: Record field names.
        budget: Token budget per record.
        ratio: Keep ratio per record.
        json_field: Column holding one JSON record per row (``None``: rows are records).
        line_field: Column carried to the output ``line`` (``None``: null).

    Example:
        >>> fn = CompressBatch(CompressionConfig(), Fields(), None, 0.3)  # doctest: +SKIP
        >>> fn(pyarrow_table).column("ok")  # doctest: +SKIP
    """

    def __init__(
        self,
        config: CompressionConfig,
        fields: Fields,
        budget: int | None,
        ratio: float | None,
        json_field: str | None = None,
        line_field: str | None = None,
    ) -> None:
        from ctxcomp.api import Compressor

        self.compressor = Compressor(config).load()
        self.fields = fields
        self.budget = budget
        self.ratio = ratio
        self.json_field = json_field
        self.line_field = line_field

    def __call__(self, batch: Any) -> Any:
        """Compress every row of a ``pyarrow.Table`` batch; returns a table with the output columns."""
        import pyarrow as pa

        lines: list[int | None] = []
        results: list[tuple[bool, dict[str, Any]] | None] = []
        todo: list[tuple[int, int | None, Any]] = []  # (slot, line, parsed record)
        for row in batch.to_pylist():
            line = row.get(self.line_field) if self.line_field else None
            lines.append(line)
            parsed = self._parse(row, line)
            if isinstance(parsed, tuple):
                results.append(parsed)
            else:
                todo.append((len(results), line, parsed))
                results.append(None)
        done = compress_records(
            self.compressor, [(line, obj) for _, line, obj in todo], self.fields, self.budget, self.ratio
        )  # one batch: its prefills share padded forward passes where the compressor batches
        for (slot, _, _), res in zip(todo, done, strict=True):
            results[slot] = res
        ids: list[str | None] = []
        oks: list[bool] = []
        records: list[str] = []
        for entry in results:
            assert entry is not None
            ok, rec = entry
            ids.append(None if rec["id"] is None else str(rec["id"]))
            oks.append(ok)
            records.append(json.dumps(rec, ensure_ascii=False, allow_nan=False))
        return pa.table(
            {
                "line": pa.array(lines, pa.int64()),
                "id": pa.array(ids, pa.string()),
                "ok": pa.array(oks, pa.bool_()),
                "record": pa.array(records, pa.string()),
            }
        )

    def _parse(self, row: dict[str, Any], line: int | None) -> Any:
        """The row's record object, or an ``(False, error record)`` pair for a row that is not JSON."""
        if self.json_field is not None:
            try:
                return load_json(row.get(self.json_field) or "", where=self.json_field)
            except InputError as err:
                return False, error_record(line, None, err)
        return {k: v for k, v in row.items() if k != self.line_field}


def compress_dataset(
    ds: Any,
    config: CompressionConfig | None = None,
    *,
    num_workers: int = 1,
    num_gpus_per_worker: float = 0.0,
    num_cpus_per_worker: float = 1.0,
    budget: int | None = None,
    ratio: float | None = None,
    query_field: str = "query",
    docs_field: str = "docs",
    id_field: str = "id",
    json_field: str | None = None,
    line_field: str | None = None,
    batch_size: int = 16,
) -> Any:
    """Compress every row of a Ray dataset with a pool of actors, one loaded model each.

    Rows are records ``{id_field, query_field, docs_field, ...}`` (docs: strings or ``{"id", "text",
    "metadata"}``), or, with ``json_field``, rows whose ``json_field`` column holds one JSON record
    (as ``ray.data.read_text`` gives). Prefer ``json_field`` for free-form metadata: typed Arrow
    columns give every row the union of all rows' metadata keys (missing ones as null).

    Args:
        ds: A ``ray.data.Dataset``.
        config: Compression settings (default: the offline preset).
        num_workers: Actors, each holding one model.
        num_gpus_per_worker: GPUs reserved per actor (``CompressionConfig.device="auto"`` then uses CUDA).
        num_cpus_per_worker: CPUs reserved per actor.
        budget: Token budget per record (exclusive with ``ratio``).
        ratio: Keep ratio per record; neither = 0.25.
        query_field: Field holding the question.
        docs_field: Field holding the documents.
        id_field: Field holding the record id.
        json_field: Column holding a JSON record per row, or ``None``.
        line_field: Column copied to the output ``line`` column (e.g. the input line number), or ``None``.
        batch_size: Rows per actor call.

    Returns:
        A lazy dataset with columns ``line``, ``id``, ``ok``, ``record`` (see the module docstring),
        one row per input row. Rows keep the input order when
        ``ray.data.DataContext.get_current().execution_options.preserve_order`` is ``True``.

    Raises:
        ConfigError: Bad ``num_workers``, resources or ``batch_size``.
        InputError: Bad ``budget``/``ratio``.
        MissingDependencyError: Ray is not installed (``pip install 'ctxcomp[ray]'``).

    Example:
        >>> out = compress_dataset(ray.data.read_text("corpus.jsonl"), json_field="text",
        ...                        num_workers=4, num_gpus_per_worker=1, budget=300)  # doctest: +SKIP
        >>> out.filter(lambda r: not r["ok"]).count()  # doctest: +SKIP
        0
    """
    ray = require("ray", "ray", "compress_dataset")
    require("ray.data", "ray", "compress_dataset")
    from ctxcomp.api import resolve_budget

    if budget is not None or ratio is not None:
        resolve_budget(1, budget, ratio)
    for name, value, least in (("num_workers", num_workers, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(name, f"must be an int >= {least}, got {value!r}", f"pass e.g. {name}=1")
    for name, amount in (
        ("num_gpus_per_worker", num_gpus_per_worker),
        ("num_cpus_per_worker", num_cpus_per_worker),
    ):
        if not isinstance(amount, (int, float)) or amount < 0:
            raise ConfigError(name, f"must be a number >= 0, got {amount!r}", "pass e.g. 1")
    fields = Fields(query=query_field, docs=docs_field, id=id_field)
    return ds.map_batches(
        CompressBatch,
        fn_constructor_kwargs={
            "config": config or CompressionConfig(),
            "fields": fields,
            "budget": budget,
            "ratio": ratio,
            "json_field": json_field,
            "line_field": line_field,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=num_workers),
        num_cpus=num_cpus_per_worker,
        num_gpus=num_gpus_per_worker,
    )


def _put_chunks(
    items: Iterable[Task | dict[str, Any]], pre_errors: Any, ray: Any, block_rows: int
) -> tuple[list[Any], int]:
    """Tasks -> Arrow tables (``block_rows`` rows, at most :data:`CHUNK_BYTES`) in the object store.

    The driver holds one block at a time; error records go to the ``pre_errors`` file.
    """
    import pyarrow as pa

    refs: list[Any] = []
    lines: list[int] = []
    raws: list[str] = []
    size = n = 0

    def flush() -> None:
        nonlocal size
        if lines:
            refs.append(
                ray.put(pa.table({"line": pa.array(lines, pa.int64()), "raw": pa.array(raws, pa.string())}))
            )
            lines.clear()
            raws.clear()
            size = 0

    for item in items:
        if isinstance(item, Task):
            lines.append(item.line)
            raws.append(item.raw.decode("utf-8"))
            size += len(item.raw)
            n += 1
            if size >= CHUNK_BYTES or len(lines) >= block_rows:
                flush()
        else:
            pre_errors.write(json.dumps(item, ensure_ascii=False) + "\n")
    flush()
    return refs, n


def run_tasks(
    items: Iterable[Task | dict[str, Any]],
    write: Callable[[bool, dict[str, Any]], None],
    config: CompressionConfig,
    *,
    fields: Fields,
    budget: int | None,
    ratio: float | None,
    num_workers: int,
    num_gpus_per_worker: float,
    num_cpus_per_worker: float,
    batch_size: int,
    address: str | None = None,
) -> None:
    """The ``compress-jsonl --engine ray`` runner: compress planned lines on Ray, write all in line order.

    Connects to ``address`` (default ``$RAY_ADDRESS``, else starts a local cluster) unless Ray is
    already initialised. Records are gathered into the object store first (spilled to disk by Ray
    when large), then compressed by :func:`compress_dataset`; results stream back in input order and
    are merged with the lines that failed before compression (bad JSON, duplicate ids).

    Args:
        items: :class:`~ctxcomp.integrations.jsonl.Task` objects and error records, in line order.
        write: Called with ``(ok, record)`` for every line, in line order.
        config: Compression settings.
        fields: Record field names.
        budget: Token budget per record.
        ratio: Keep ratio per record.
        num_workers: Actors.
        num_gpus_per_worker: GPUs per actor.
        num_cpus_per_worker: CPUs per actor.
        batch_size: Rows per actor call.
        address: Ray cluster address.

    Example:
        >>> run_tasks(items, sink.write, CompressionConfig(), fields=Fields(), budget=None,
        ...           ratio=0.3, num_workers=2, num_gpus_per_worker=0, num_cpus_per_worker=1,
        ...           batch_size=16)  # doctest: +SKIP
    """
    ray = require("ray", "ray", "compress-jsonl --engine ray")
    require("ray.data", "ray", "compress-jsonl --engine ray")
    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False)
        started = True
    ctx = ray.data.DataContext.get_current()
    saved = (ctx.execution_options.preserve_order, ctx.enable_progress_bars)
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False  # ctxcomp shows its own bar; Ray's would garble stderr
    try:
        with tempfile.TemporaryFile("w+", encoding="utf-8") as pre_errors:
            refs, n_tasks = _put_chunks(items, pre_errors, ray, block_rows=4 * batch_size)
            pre_errors.seek(0)
            early: Iterator[tuple[int, bool, dict[str, Any]]] = (
                (rec["line"], False, rec) for rec in map(json.loads, pre_errors)
            )
            results: Iterator[tuple[int, bool, dict[str, Any]]] = iter(())
            if n_tasks:
                out = compress_dataset(
                    ray.data.from_arrow_refs(refs),
                    config,
                    num_workers=num_workers,
                    num_gpus_per_worker=num_gpus_per_worker,
                    num_cpus_per_worker=num_cpus_per_worker,
                    budget=budget,
                    ratio=ratio,
                    query_field=fields.query,
                    docs_field=fields.docs,
                    id_field=fields.id,
                    json_field="raw",
                    line_field="line",
                    batch_size=batch_size,
                )
                results = (
                    (row["line"], bool(row["ok"]), json.loads(row["record"])) for row in out.iter_rows()
                )
            last = 0
            for line, ok, rec in heapq.merge(early, results, key=lambda t: t[0]):
                if line <= last:
                    raise RuntimeError(
                        f"Ray returned line {line} after line {last}: input order was not kept"
                    )
                last = line
                write(ok, rec)
    finally:
        ctx.execution_options.preserve_order, ctx.enable_progress_bars = saved
        if started:
            ray.shutdown()


__all__ = ["CompressBatch", "compress_dataset", "run_tasks"]
