"""Print a results file of benchmarks/run.py as a Markdown table (for docs/performance.md).

    python -m benchmarks.report [benchmarks/results/latest.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.run import fmt  # noqa: E402


def markdown(doc: dict) -> str:
    m = doc["machine"]
    pg = doc.get("postgres", {})
    lines = [
        f"{doc['mode']} run, {doc['date']}, {doc['seconds']} s: {m['nproc']} cores, {m['cpu']}, "
        f"{m['memory_gb']} GB RAM, Python {m['python']}, PostgreSQL {pg.get('server_version')} "
        f"(embedded); load average {doc['load_before']} before, {doc['load_after']} after.",
        "",
        "| figure | genisss | baseline | ratio | target | result |",
        "|---|---:|---:|---:|---|---|",
    ]
    for f in doc["figures"]:
        result = f["result"]
        if f.get("note") and result != "pass":
            result += f" ({f['note']})"
        ratio = "-" if f["ratio"] is None else f"{f['ratio']:.2f}"
        cells = [f["figure"], fmt(f["genisss"], f["unit"]), fmt(f["baseline"], f["unit"]), ratio,
                 f["target"], result]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0]) if argv else Path(__file__).resolve().parent / "results" / "latest.json"
    sys.stdout.write(markdown(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
