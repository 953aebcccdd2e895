"""Writing model artifacts byte for byte reproducibly: the same arrays give the same file.

``np.savez`` and ``scipy.sparse.save_npz`` stamp each zip member with the wall clock, so two saves of the same
model differed (and a DVC stage that saves a bundle was never up to date). These write the same ``.npz`` layout
(``np.load`` and ``scipy.sparse.load_npz`` read them unchanged) with a fixed timestamp.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""Every member's timestamp: the earliest a zip file can hold."""


def save_npz(path: Path, arrays: Mapping[str, Any], compressed: bool = False) -> None:
    """``np.savez`` (or ``np.savez_compressed``) of ``arrays`` with fixed member timestamps."""
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as zf:
        for name, array in arrays.items():
            member = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_EPOCH)
            member.compress_type = method
            with zf.open(member, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(array), allow_pickle=False)


def save_sparse_npz(path: Path, matrix: Any) -> None:
    """``scipy.sparse.save_npz`` of a CSR/CSC matrix (compressed, as scipy does) with fixed member timestamps."""
    arrays: dict[str, Any] = {"indices": matrix.indices, "indptr": matrix.indptr,
                              "format": matrix.format.encode("ascii"), "shape": matrix.shape, "data": matrix.data}
    if isinstance(matrix, sp.sparray):  # scipy marks the newer array classes so that load_npz returns one
        arrays["_is_array"] = True
    save_npz(path, arrays, compressed=True)
