"""``recsys serve`` and ``recsys bake``: run the service locally; stage a registry bundle into the Bento."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from recsys.cli.common import JsonOption, ModelOption, emit, err, run, serving_settings, settings
from recsys.schema import CHAMPION


def serve(
    port: Annotated[int, typer.Option(min=1, max=65535, help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 to listen on every one).")] = "127.0.0.1",
    bundle: Annotated[Path | None, typer.Option(
        help="A bundle directory to serve as the champion until (or unless) the registry provides one.")] = None,
    watch_interval: Annotated[float | None, typer.Option(
        "--watch-interval", min=0, help="Seconds between checks of the registry aliases (0: never; default: "
                                        "RECSYS_WATCH_INTERVAL, else 10).")] = None,
    access_log: Annotated[bool | None, typer.Option(
        "--access-log/--no-access-log",
        help="BentoML's per-request access log (default off: it costs ~15 % of the throughput; the assignment "
             "log records every request).")] = None,
    model: ModelOption = None,
) -> None:
    """Run the recommendation service (BentoML) locally on the registry's champion; Ctrl-C stops it."""
    from recsys.stages.serve import ServeParams, serve_spec

    spec = run(lambda: serve_spec(serving_settings(model), ServeParams(
        port=port, host=host, bundle=bundle, watch_interval=watch_interval, access_log=access_log)))
    url = spec.url
    err.print(f"serving on {url} (docs {url}/docs, metrics {url}/metrics); admin token: {spec.admin_token}",
              soft_wrap=True, markup=False)
    err.print(f"try: curl -s -X POST {url}/predict -H 'Content-Type: application/json' "
              "-d '{\"user_id\": 1, \"n\": 5}'", soft_wrap=True, markup=False)
    proc = subprocess.Popen(spec.command, cwd=spec.cwd, env=spec.env)  # nosec B603: the bentoml argv the serve stage builds, no shell
    # a SIGTERM (a script stopping the service it started, a pod) reaches BentoML, which stops its workers
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    except KeyboardInterrupt:  # Ctrl-C reached BentoML too (the same process group): let it finish
        code = 0 if proc.wait() in (0, -signal.SIGINT) else proc.returncode
    raise typer.Exit(0 if code == -signal.SIGTERM else code)


def bake(
    alias: Annotated[str, typer.Option(help="Registry alias whose bundle to bake.")] = CHAMPION,
    out_dir: Annotated[Path | None, typer.Option(
        "--out", help="Where the bundle goes (default: bentos/bundle, what `bentoml build bentos` includes).")
    ] = None,
    model: ModelOption = None,
    as_json: JsonOption = False,
) -> None:
    """Copy the registry's bundle for an alias into the Bento's build context, so a replica starts without MLflow."""
    from recsys.stages.bake import BakeParams
    from recsys.stages.bake import bake as bake_stage

    params = BakeParams(alias=alias) if out_dir is None else BakeParams(alias=alias, out_dir=out_dir)
    result = run(lambda: bake_stage(settings(model=model), params))
    emit(result, as_json, lambda: [f"{result.model} v{result.version} ({alias}) baked into {result.out_dir}; "
                                   "build the Bento with `make bento`"])
