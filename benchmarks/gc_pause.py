"""The pause of a full garbage collection in a serving process, before and after ``gc.freeze()``.

    python -m benchmarks.gc_pause [--bundle DIR] [--json PATH] [--repeat 5] [--quick]

Imports what a service worker imports (BentoML, MLflow, the runtime), loads a bundle the way the service does
(``ModelManager.load_bundle``, with the precomputed answers), then times ``gc.collect()`` (a generation-2 pass
walks every tracked object; Python runs one on its own after enough allocations, inside whichever request made
them) with the heap unfrozen and frozen. ``ModelManager`` freezes the heap after every load for this reason.
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

from rich.table import Table

from recsys.runtime import quiet_threads

quiet_threads()

from benchmarks.harness.report import arg_parser, machine, out, write_json


def pauses(repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        gc.collect()
        out.append(1000 * (time.perf_counter() - t0))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = arg_parser(__doc__, "gc_pause", "2 collections each instead of --repeat")
    parser.add_argument("--bundle", type=Path, default=Path("bentos/bundle"),
                        help="a model bundle (default bentos/bundle: `recsys bake` writes it)")
    parser.add_argument("--repeat", type=int, default=5, help="collections timed each way (default 5)")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat = 2
    if not (args.bundle / "manifest.json").exists():
        parser.error(f"{args.bundle} is not a bundle (run `make demo` and `recsys bake`, or pass --bundle)")

    import bentoml  # noqa: F401  (what a worker imports)
    import mlflow  # noqa: F401

    from recsys.serving.models import ModelManager

    ModelManager("content-ranker", tracking_uri=None, freeze_heap=False).load_bundle(args.bundle)
    objects = len(gc.get_objects())
    unfrozen = pauses(args.repeat)
    gc.freeze()
    frozen = pauses(args.repeat)
    report = {"benchmark": "gc_pause", "bundle": str(args.bundle), "tracked_objects": objects,
              "frozen_objects": gc.get_freeze_count(), "collect_ms_unfrozen": unfrozen, "collect_ms_frozen": frozen,
              "machine": machine()}
    table = Table("heap", "objects walked", "gc.collect() ms (median)", "max", title="full collection in a worker")
    table.add_row("unfrozen", f"{objects:,}", f"{sorted(unfrozen)[len(unfrozen) // 2]:.1f}", f"{max(unfrozen):.1f}")
    table.add_row("after gc.freeze()", f"{len(gc.get_objects()):,}", f"{sorted(frozen)[len(frozen) // 2]:.3f}",
                  f"{max(frozen):.3f}")
    out.print(table)
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
