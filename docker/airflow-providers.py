"""Install the Airflow providers the DAGs need that the apache/airflow base image lacks, at the lock's pins.

Run at image build time as the ``airflow`` user: ``python airflow-providers.py requirements-airflow.txt``.
A provider the base already ships stays at the base's version: that version belongs to the image's own
constraints (its golden set), and replacing it would break them. A missing one is installed at the version
pinned in requirements-airflow.txt, together with ``apache-airflow==<the base's version>`` so that pip can never
up- or downgrade Airflow itself (the maintainers' advice for adding packages to the image), then ``pip check``
fails the build on any conflict.
"""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

# requirements-airflow.in's providers (tests/deploy/test_docker.py checks that the two lists agree).
PROVIDERS = (
    "apache-airflow-providers-standard",
    "apache-airflow-providers-slack",
    "apache-airflow-providers-smtp",
    "apache-airflow-providers-cncf-kubernetes",
    "apache-airflow-providers-postgres",
    "apache-airflow-providers-celery",
)


def pins(lock: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line of a uv/pip-compile lock."""
    found = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9._-]+)==([^\s;#]+)", line)
        if m:
            found[m[1].lower()] = m[2]
    return found


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def main(lock: Path) -> int:
    locked = pins(lock)
    airflow = installed("apache-airflow")
    if airflow is None:
        print("error: apache-airflow is not installed: is this the apache/airflow image?", file=sys.stderr)
        return 1
    if locked.get("apache-airflow") != airflow:
        print(f"error: the base has apache-airflow {airflow}, the lock pins {locked.get('apache-airflow')}",
              file=sys.stderr)
        return 1
    missing = []
    for name in PROVIDERS:
        have, want = installed(name), locked.get(name)
        if want is None:
            print(f"error: {name} is not pinned in {lock}", file=sys.stderr)
            return 1
        if have is None:
            missing.append(f"{name}=={want}")
            print(f"{name}: missing from the base, installing {want}")
        else:
            note = "" if have == want else f" (the lock has {want}; the base's constraints win)"
            print(f"{name}: {have} from the base{note}")
    if missing:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", f"apache-airflow=={airflow}",
                        *missing], check=True)
    subprocess.run([sys.executable, "-m", "pip", "check"], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
