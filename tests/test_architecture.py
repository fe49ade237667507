"""The house rules, checked: public names pinned, no import cycles, no private reaches, small files."""

from __future__ import annotations

import ast
from pathlib import Path

import ctxcomp

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "ctxcomp"
MAX_LINES = 700


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {_module_name(p): p for p in PKG.rglob("*.py")}


def _owner(name: str) -> str | None:
    """The module a dotted import target lives in (``ctxcomp.a.b.C`` -> ``ctxcomp.a.b``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _lazy_nodes(tree: ast.Module, is_package: bool) -> set[int]:
    """Nodes under ``if TYPE_CHECKING:`` and, in a package ``__init__``, under ``__getattr__``."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for b in node.body for n in ast.walk(b)}
        if is_package and isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            out |= {id(n) for n in ast.walk(node)}
    return out


def _imports(path: Path) -> set[str]:
    """ctxcomp modules imported by ``path`` anywhere (functions included), lazy re-exports excepted."""
    me = _module_name(path)
    is_pkg = path.name == "__init__.py"
    tree = ast.parse(path.read_text())
    lazy = _lazy_nodes(tree, is_pkg)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in lazy:
            continue
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = me.split(".") if is_pkg else me.split(".")[:-1]
                base = ".".join(anchor[: len(anchor) - node.level + 1] + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names]
        for t in targets:
            owner = _owner(t) if t.startswith("ctxcomp") else None
            if owner and owner != me:
                out.add(owner)
    return out


def test_public_names_are_pinned() -> None:
    assert set(ctxcomp.__all__) == {
        "DEFAULT_PROXY",
        "DEFAULT_RATIO",
        "CompressedContext",
        "CompressedDocument",
        "CompressionConfig",
        "Compressor",
        "CtxcompError",
        "Document",
        "ScoredSentence",
        "Stats",
        "__version__",
        "compress",
    }
    for name in ctxcomp.__all__:
        assert getattr(ctxcomp, name) is not None
    from ctxcomp.cli import build_parser

    usage = build_parser().format_usage()  # "{compress,compress-jsonl,...}"
    listed = set(usage[usage.index("{") + 1 : usage.index("}")].split(","))
    assert listed == {
        "compress",
        "compress-jsonl",
        "index",
        "query",
        "train-probe",
        "calibrate",
        "serve",
        "cache",
    }
    from ctxcomp.integrations.langchain import CtxcompCompressor, CtxcompReorder, CtxcompRetriever

    assert CtxcompCompressor and CtxcompReorder and CtxcompRetriever
    assert set(ctxcomp.CompressionConfig.model_fields) >= {
        "proxy_model",
        "reader_tokenizer",
        "scorer",
        "probe_path",
        "force_probe",
        "probe_layers",
        "query_positions",
        "null_query",
        "device",
        "dtype",
        "max_proxy_tokens",
        "kernel_backend",
        "reorder",
        "reader_model",
        "position_profile",
        "force_position_profile",
        "max_sentence_chars",
    }


def test_no_import_cycles() -> None:
    graph = {m: _imports(p) for m, p in MODULES.items()}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n) :], n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def _own_privates(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def test_no_reaches_into_private_names() -> None:
    allowed = {"_asdict", "_replace", "_fields", "_make", "_exit", "_getframe", "_field_defaults"}
    found = []
    for path in [*sorted(PKG.rglob("*.py")), *sorted((ROOT / "benchmarks").rglob("*.py"))]:
        tree = ast.parse(path.read_text())
        mine = _own_privates(tree)
        me = _module_name(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ctxcomp"):
                for a in node.names:
                    private = a.name.startswith("_") and not a.name.startswith("__")
                    if private and _owner(f"{node.module}.{a.name}") != me:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {a.name}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                base = node.value
                if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                    continue
                if node.attr not in allowed and node.attr not in mine:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} reaches .{node.attr}")
    assert not found, "\n".join(found)


def test_files_stay_small() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert not big, big


def test_core_never_imports_an_integration() -> None:
    entry = ("ctxcomp.integrations", "ctxcomp.cli", "ctxcomp.__main__")
    core = {m: p for m, p in MODULES.items() if not m.startswith(entry)}
    bad = {
        m: sorted(i for i in _imports(p) if i.startswith(("ctxcomp.integrations", "ctxcomp.cli")))
        for m, p in core.items()
    }
    assert not {m: v for m, v in bad.items() if v}
