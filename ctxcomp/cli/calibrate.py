"""The ``ctxcomp calibrate`` command: measure a reader's positional attention profile.

Example:
    $ ctxcomp calibrate --model gemma-3-270m --data benchmarks/data/nq-open-dev.jsonl --slots 10 --n 24 \\
        --out profile.json --plot profile.png
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ctxcomp.cli.common import EXIT_OK
from ctxcomp.errors import InputError, ProbeMismatchError


def add_parser(subparsers: Any) -> None:
    """Register ``calibrate`` on the main CLI's subparsers.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Example:
        >>> import argparse
        >>> sub = argparse.ArgumentParser().add_subparsers()
        >>> add_parser(sub)
    """
    from ctxcomp.config import DEFAULT_PROXY

    p = subparsers.add_parser(
        "calibrate",
        help="measure where a reader LLM looks across document slots (profile for reorder='attnrank')",
        description=(
            "Run N prompts of K documents through the reader, rotating documents through the slots, and "
            "record how much attention the answer position pays to each slot. Writes a profile JSON "
            "(top-level 'means': K per-slot shares) and optionally a plot."
        ),
    )
    p.add_argument("--model", default=DEFAULT_PROXY, help=f"reader model spec (default: {DEFAULT_PROXY})")
    p.add_argument(
        "--data",
        required=True,
        help='kv-retrieval or NQ-open JSONL(.gz) from the shared data, or lines of {"query", "docs"}',
    )
    p.add_argument("--slots", type=int, required=True, help="documents per prompt (K)")
    p.add_argument("--out", required=True, help="profile JSON to write")
    p.add_argument("--plot", help="PNG plot of the profile with its 95%% interval (needs matplotlib)")
    p.add_argument("--n", type=int, default=24, help="calibration prompts (default 24)")
    p.add_argument(
        "--rotations",
        type=int,
        help="rotations per prompt (default: all K when N*K <= --max-prefills, else a Latin-square subset)",
    )
    p.add_argument(
        "--max-prefills", type=int, default=120, help="cap for the default rotations (default 120)"
    )
    p.add_argument(
        "--records-per-doc", type=int, default=1, help="kv-retrieval records per document (default 1)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the document choices and bootstrap")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--force",
        action="store_true",
        help="overwrite an --out file that holds another model's profile",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``ctxcomp calibrate`` for parsed arguments.

    Args:
        args: Parsed arguments (see :func:`add_parser`).

    Returns:
        The exit status (0).

    Raises:
        InputError: Bad arguments or data.
        ProbeMismatchError: ``--out`` holds another model's profile and ``--force`` is not set.
        PlotDependencyError: ``--plot`` without matplotlib (checked before any work).

    Example:
        >>> from ctxcomp.cli import main
        >>> main(["calibrate", "--data", "kv.jsonl.gz", "--slots", "10", "--out", "p.json"])  # doctest: +SKIP
        0
    """
    from ctxcomp.compressors.profile import PositionProfile
    from ctxcomp.compressors.reader import Reader
    from ctxcomp.training.calibrate import calibrate
    from ctxcomp.training.plots import plot_profile, pyplot

    if args.slots < 1:
        raise InputError(
            "--slots", f"must be >= 1, got {args.slots}", "pass the number of document slots, e.g. 10"
        )
    if args.n < 1:
        raise InputError("--n", f"must be >= 1, got {args.n}", "pass the number of calibration prompts")
    if not Path(args.data).is_file():
        raise InputError("--data", f"{args.data!r} does not exist", "pass a JSONL or .jsonl.gz file")
    if args.plot:
        pyplot()  # fail before a long calibration when matplotlib is missing
    reader = Reader(args.model, device=args.device)
    out = Path(args.out)
    if out.is_file() and not args.force:
        try:
            old = PositionProfile.load(out)
        except InputError:
            old = None
        if old is not None:
            try:
                old.check_model(reader.model_id, reader.weights_sha256)
            except ProbeMismatchError as err:
                raise ProbeMismatchError(
                    f"--out: {out} holds a profile of {old.model_id!r}, not of {reader.model_id!r}. "
                    "Fix: choose another --out, or pass --force to overwrite it."
                ) from err
    command = "ctxcomp calibrate " + " ".join(shlex.quote(a) for a in _argv_of(args))
    profile = calibrate(
        reader,
        args.data,
        args.slots,
        args.n,
        rotations=args.rotations,
        max_prefills=args.max_prefills,
        seed=args.seed,
        records_per_doc=args.records_per_doc,
        progress=sys.stderr.isatty(),
        meta={"command": command},
    )
    profile.save(out)
    print(f"wrote {out} ({profile.model_id}, K={profile.k}, n={profile.n})", file=sys.stderr)
    if args.plot:
        plot_profile(profile, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    means = " ".join(f"{m:.3f}" for m in profile.means)
    print(f"per-slot attention share: {means}", file=sys.stderr)
    return EXIT_OK


def _argv_of(args: argparse.Namespace) -> list[str]:
    """A canonical command line for the profile's provenance (data given by file name only)."""
    out = [
        "--model",
        args.model,
        "--data",
        Path(args.data).name,
        "--slots",
        str(args.slots),
        "--n",
        str(args.n),
    ]
    if args.rotations is not None:
        out += ["--rotations", str(args.rotations)]
    if args.max_prefills != 120:
        out += ["--max-prefills", str(args.max_prefills)]
    if args.records_per_doc != 1:
        out += ["--records-per-doc", str(args.records_per_doc)]
    if args.seed:
        out += ["--seed", str(args.seed)]
    return out


__all__ = ["add_parser", "run"]
