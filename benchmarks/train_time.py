"""One weekly retrain on ML-100K with this checkout's code beside another commit's, interleaved in one run.

    python -m benchmarks.train_time --baseline REF [--rounds 3] [--week 28] [--json PATH] [--quick]

``REF`` is checked out into a temporary git worktree (sharing this checkout's ``.venv`` and raw data). Each round
runs ``recsys train --as-of-week WEEK`` once with each side, in turn, in fresh processes with their own var dir
(so the machine's drift hits both alike); the table gives the median wall seconds, the model's own fit seconds,
the ratio to the baseline, and the held-out NDCG@10 of the ranker (equal when the change keeps the model).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = ("import sys, recsys; from recsys.cli import app; "
          "assert recsys.__file__.startswith(sys.path[1]), recsys.__file__; sys.argv[0] = 'recsys'; app()")
"""The ``recsys`` command of the code on PYTHONPATH (asserted: not the checkout the venv was installed from)."""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True,  # nosec B603, B607: git on PATH, argv from this module, no shell
                          capture_output=True, text=True).stdout.strip()


def train_once(code: Path, week: int, work: Path) -> dict[str, Any]:
    var = Path(tempfile.mkdtemp(prefix="var-", dir=work))
    env = {**os.environ, "PYTHONPATH": str(code), "RECSYS_DATA_DIR": str(ROOT / "data"), "RECSYS_VAR_DIR": str(var),
           "RECSYS_PARAMS_FILE": str(code / "params.yaml"), "RECSYS_TRAINING_SOURCE": "raw"}
    t0 = time.perf_counter()
    out = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", LAUNCH, "train",  # nosec B603: the venv's python, argv from this module, no shell
                          "--as-of-week", str(week), "--out", str(var / "model"), "--json"],
                         cwd=code, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"train in {code} failed: {out.stderr[-1500:]}")
    result = json.loads(out.stdout)
    ndcg = (result.get("holdout") or {}).get("metrics", {}).get("all", {}).get("ranker", {}).get("ndcg@10")
    return {"seconds": seconds, "fit_seconds": result["fit_seconds"], "ndcg@10": ndcg}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="a git ref (commit, tag, branch)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--week", type=int, default=28)
    parser.add_argument("--json", type=Path, default=Path("bench-results/train_time.json"))
    parser.add_argument("--quick", action="store_true", help="one round")
    args = parser.parse_args()
    rounds = 1 if args.quick else args.rounds
    sha = git("rev-parse", "--short", args.baseline)
    with tempfile.TemporaryDirectory(prefix="recsys-train-time-") as tmp:
        work = Path(tmp)
        base = work / "baseline"
        git("worktree", "add", "--detach", str(base), sha)
        try:
            runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "this": []}
            for _ in range(rounds):
                runs["baseline"].append(train_once(base, args.week, work))
                runs["this"].append(train_once(ROOT, args.week, work))
        finally:
            git("worktree", "remove", "--force", str(base))
    summary = {side: {"median_seconds": round(statistics.median(r["seconds"] for r in rs), 2),
                      "median_fit_seconds": round(statistics.median(r["fit_seconds"] for r in rs), 2),
                      "ndcg@10": rs[0]["ndcg@10"], "runs": rs} for side, rs in runs.items()}
    ratio = summary["this"]["median_seconds"] / summary["baseline"]["median_seconds"]
    fit_ratio = summary["this"]["median_fit_seconds"] / summary["baseline"]["median_fit_seconds"]
    table = Table("code", "median wall s", "median fit s", "× baseline (wall / fit)", "held-out NDCG@10",
                  title=f"recsys train --as-of-week {args.week} on ML-100K, {rounds} interleaved round(s)")
    table.add_row(f"baseline {sha}", f"{summary['baseline']['median_seconds']:.1f}",
                  f"{summary['baseline']['median_fit_seconds']:.1f}", "1.00", str(summary["baseline"]["ndcg@10"]))
    table.add_row(f"this ({git('rev-parse', '--short', 'HEAD')}, worktree)", f"{summary['this']['median_seconds']:.1f}",
                  f"{summary['this']['median_fit_seconds']:.1f}", f"{ratio:.2f} / {fit_ratio:.2f}",
                  str(summary["this"]["ndcg@10"]))
    Console(width=140).print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"baseline": sha, "week": args.week, "ratio": round(ratio, 3),
                                     "fit_ratio": round(fit_ratio, 3), **summary}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
