"""How this project's Airflow DAGs reach the ``recsys`` library: the runner (a task = one ``recsys ... --json``
command, locally a subprocess of the library env, on Kubernetes a pod of the recsys image), the DAGs' shared
settings (:mod:`recsys_airflow.config`) and the failure notifiers (:mod:`recsys_airflow.notify`).

Airflow puts ``plugins/`` on ``sys.path``, so the DAG files import this package; it needs nothing of the library
env (the two environments never share a resolver).
"""

from recsys_airflow.config import CONFIG, RunnerConfig, pull
from recsys_airflow.runner import RecsysCommandError, recsys_task

__all__ = ["CONFIG", "RecsysCommandError", "RunnerConfig", "pull", "recsys_task"]
