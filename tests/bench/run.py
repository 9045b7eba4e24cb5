"""backbeat's performance benchmarks: ``make bench`` (all, full) or a subset.

Usage (from the repository root)::

    .venv/bin/python tests/bench/run.py                         # all, full (~11 min)
    .venv/bin/python tests/bench/run.py --quick                 # all, short (~3 min)
    .venv/bin/python tests/bench/run.py --only utilisation,paused

Each run starts its own redis-server (free port), simulator (``backbeat sim``, its own process;
the chaos run hosts one in this process to drive its faults) and worker processes, stops them
all at the end (on error too), and rewrites the sections it ran in docs/BENCHMARKS.md (a full
run by default; a --quick run only with --write-doc), with their plots (docs/bench-*.png).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_accounts  # noqa: E402
import bench_adaptive  # noqa: E402
import bench_credits  # noqa: E402
import bench_fairness  # noqa: E402
import bench_memory  # noqa: E402
import bench_paused  # noqa: E402
import bench_peers  # noqa: E402
import bench_pipeline  # noqa: E402
import bench_reconcile  # noqa: E402
import bench_reliability  # noqa: E402
import bench_soak  # noqa: E402
import bench_throughput  # noqa: E402
import bench_utilisation  # noqa: E402
import report  # noqa: E402
from common import ROOT, Section, Stack, machine_facts  # noqa: E402

BENCHMARKS = {
    "throughput": bench_throughput,
    "utilisation": bench_utilisation,
    "adaptive": bench_adaptive,
    "paused": bench_paused,
    "reconcile": bench_reconcile,
    "accounts": bench_accounts,
    "fairness": bench_fairness,
    "credits": bench_credits,
    "peers": bench_peers,
    "reliability": bench_reliability,
    "pipeline": bench_pipeline,
    "memory": bench_memory,
    "soak": bench_soak,
}
#: run only when named (``make chaos``, ``make soak``): each takes several minutes on its own
ON_REQUEST = {"reliability", "soak"}


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through every ``with``: processes are stopped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", default="", help=f"comma-separated subset of {list(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke / CI)")
    parser.add_argument("--doc", default=str(ROOT / "docs" / "BENCHMARKS.md"))
    parser.add_argument("--no-doc", action="store_true", help="print only")
    parser.add_argument("--write-doc", action="store_true", help="write the doc after --quick")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [
        n for n in BENCHMARKS if n not in ON_REQUEST]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    signal.signal(signal.SIGTERM, _terminate)

    shown = ".venv/bin/python tests/bench/run.py" + "".join(
        f" {shlex.quote(a)}" for a in (sys.argv[1:] if argv is None else argv))
    facts = machine_facts()
    print(f"$ {shown}")
    for k, v in facts.items():
        print(f"{k}: {v}")
    sections: list[tuple[Section, list[str], float]] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="backbeat-bench-") as tmp, Stack(Path(tmp)) as stack:
        print(f"redis-server on port {stack.redis_port}, simulator at {stack.sim.url}")
        for name in names:
            raw: list[str] = []

            def log(line: str, raw: list[str] = raw) -> None:
                print(line, flush=True)
                raw.append(line)

            print(f"\n=== {name} ===", flush=True)
            started = time.monotonic()
            try:
                section = BENCHMARKS[name].run(stack, args.quick, log)
            except Exception:  # noqa: BLE001 - report it, keep the other benchmarks
                failed = True
                traceback.print_exc()
                continue
            sections.append((section, raw, time.monotonic() - started))
            print(f"({name}: {time.monotonic() - started:.0f} s)")
    print("\n=== summary ===")
    for section, _, took in sections:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[section.met]
        print(f"{section.key:12s} goal {verdict:6s} ({took:.0f} s)  {section.goal}")
    if sections and not args.no_doc and (not args.quick or args.write_doc):
        report.write(Path(args.doc), sections, shown, facts, args.quick)
        print(f"wrote {args.doc}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
