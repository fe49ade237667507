#!/usr/bin/env bash
# Compress a JSONL corpus of {id, query, docs} records with the ctxcomp CLI, then show the results.
#
#   examples/compress_corpus.sh [OUT.jsonl]
#
# Offline with the default proxy preset; set CTXCOMP_PROXY to use another proxy model.
# Exit status is the CLI's: 0 all compressed, 3 some records in the errors file, 2 usage error.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
IN="$HERE/sample_corpus.jsonl"
OUT="${1:-${TMPDIR:-/tmp}/ctxcomp-sample.out.jsonl}"
VENV="$HERE/../.venv/bin"   # the checkout's venv (make demo), when ctxcomp is not on PATH
if [[ -z "${PYTHON:-}" && -x "$VENV/python" ]] && ! command -v ctxcomp >/dev/null 2>&1; then PYTHON="$VENV/python"; fi
PY="${PYTHON:-python3}"
if [[ -n "${PYTHON:-}" ]]; then CLI=("$PY" -m ctxcomp); elif command -v ctxcomp >/dev/null 2>&1; then CLI=(ctxcomp); else CLI=("$PY" -m ctxcomp); fi
PROXY_ARGS=()
if [[ -n "${CTXCOMP_PROXY:-}" ]]; then PROXY_ARGS=(--proxy "$CTXCOMP_PROXY" --scorer attention); fi

"${CLI[@]}" compress-jsonl "$IN" "$OUT" --ratio 0.4 --overwrite "${PROXY_ARGS[@]}"

echo
echo "== $OUT =="
"$PY" - "$OUT" <<'PYEOF'
import json, sys
for line in open(sys.argv[1], encoding="utf-8"):
    r = json.loads(line)
    s = r["stats"]
    print(f"[{r['id']}] {s['kept_tokens']}/{s['original_tokens']} tokens: {r['text']!r}")
    for k in r["sentences"]:
        print(f"    from {k['doc_id']} #{k['index']} [{k['start']}:{k['end']}] score {k['score']:.3f}")
PYEOF
