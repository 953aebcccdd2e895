"""Fetch MovieLens-100K from the ``recbole==1.2.1`` wheel on PyPI (the only registry this system may reach).

The wheel is downloaded once with ``pip download --no-deps`` into a cache folder, checked against a pinned
sha256, and the three atomic files are extracted and checked again. RecBole itself is never installed.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import zipfile
from pathlib import Path

from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

log = logging.getLogger(__name__)

WHEEL_SPEC = "recbole==1.2.1"
WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
MEMBER_DIR = "recbole/dataset_example/ml-100k"
FILES_SHA256 = {
    "ml-100k.inter": "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff",
    "ml-100k.user": "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972",
    "ml-100k.item": "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532",
}


class DataUnavailableError(RuntimeError):
    """The dataset could not be fetched or failed its checksum."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class _PipDownloadError(RuntimeError):
    pass


@retry(
    retry=retry_if_exception_type(_PipDownloadError),
    stop=stop_after_attempt(3),
    wait=wait_exponential(multiplier=1, max=8),
    reraise=True,
)
def _pip_download(dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--quiet", WHEEL_SPEC, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)  # nosec B603: pip download of a pinned wheel spec, no shell
    if proc.returncode != 0:
        raise _PipDownloadError(proc.stderr.strip()[-800:] or f"pip exited with {proc.returncode}")


def download_wheel(cache_dir: Path) -> Path:
    """Return the verified wheel, downloading it into ``cache_dir`` unless a good copy is there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    wheel = cache_dir / WHEEL_NAME
    if wheel.exists() and sha256_file(wheel) == WHEEL_SHA256:
        return wheel
    wheel.unlink(missing_ok=True)
    log.info("downloading %s into %s", WHEEL_SPEC, cache_dir)
    try:
        _pip_download(cache_dir)
    except _PipDownloadError as exc:
        raise DataUnavailableError(
            f"could not download {WHEEL_SPEC} from the package index (needed for MovieLens-100K): {exc}"
        ) from exc
    if not wheel.exists():
        raise DataUnavailableError(f"pip reported success but {wheel} is missing")
    digest = sha256_file(wheel)
    if digest != WHEEL_SHA256:
        wheel.unlink()
        raise DataUnavailableError(f"{wheel.name}: sha256 {digest} != expected {WHEEL_SHA256}")
    return wheel


def extract_dataset(wheel: Path, raw_dir: Path) -> None:
    """Extract and verify the three atomic files of ML-100K from the wheel."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as zf:
            for name, expected in FILES_SHA256.items():
                data = zf.read(f"{MEMBER_DIR}/{name}")
                if hashlib.sha256(data).hexdigest() != expected:
                    raise DataUnavailableError(f"{name} inside {wheel.name} fails its sha256 check")
                tmp = raw_dir / f".{name}.tmp"
                tmp.write_bytes(data)
                tmp.replace(raw_dir / name)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise DataUnavailableError(f"{wheel} is not a usable recbole wheel: {exc}") from exc


def raw_files_ok(raw_dir: Path) -> bool:
    return all((raw_dir / n).exists() and sha256_file(raw_dir / n) == h for n, h in FILES_SHA256.items())


def fetch_movielens(raw_dir: Path, cache_dir: Path) -> Path:
    """Make sure verified ML-100K files are in ``raw_dir`` (idempotent) and return it."""
    if raw_files_ok(raw_dir):
        return raw_dir
    extract_dataset(download_wheel(cache_dir), raw_dir)
    return raw_dir
