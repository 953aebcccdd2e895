"""Import every module of the library, then print what changed in the environment (run by test_imports.py).

scikit-learn (also through LightGBM) sets two OpenMP variables when it is imported: it is imported first, so
that only what the library itself does is reported.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil

import recsys


def main() -> None:
    import sklearn  # noqa: F401  (third party: sets KMP_DUPLICATE_LIB_OK and KMP_INIT_AT_FORK at import)

    before = dict(os.environ)
    names = [m.name for m in pkgutil.walk_packages(recsys.__path__, "recsys.")]
    for name in names:
        importlib.import_module(name)
    keys = set(before) | set(os.environ)
    changed = {k: [before.get(k), os.environ.get(k)] for k in sorted(keys) if before.get(k) != os.environ.get(k)}
    print(json.dumps({"modules": names, "changed": changed}))


if __name__ == "__main__":
    main()
