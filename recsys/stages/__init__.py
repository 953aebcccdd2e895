"""One typed function per pipeline step; the CLI, DVC, the Airflow DAGs and the tests only wire them.

=============  ==============================  ===============================================================
stage          function                        result
=============  ==============================  ===============================================================
fetch          :func:`data.fetch`              the raw download: its folder, hash and sizes
ingest         :func:`data.ingest`             the weekly incoming batches written
validate       :func:`validate.validate`       per batch: accepted into the store or quarantined, and why
train          :func:`train.train`             bundle, held-out metrics, MLflow run, registry version
gate           :func:`gate.gate`               the decision record; promoted, pending approval or rejected
promote        :func:`registry.release`        the audit record of the alias move (also approve and reject)
rollback       :func:`registry.rollback`       the audit record of the alias move back
timeline       :func:`timeline.timeline`       the champion's version and NDCG@10 per gated week: files + run
evaluate       :func:`evaluate.evaluate`       both protocols' metrics, reports and the DVC metrics file
bake           :func:`bake.bake`               the bundle staged into the Bento's build context
tune           :func:`tune.tune`               the trials and the best config written for training
drift          :func:`drift.drift`             a traffic window against the bundle's reference: the verdict
simulate       :func:`simulate.simulate`       the replay against a live service: requests and feedback
monitor ctr    :func:`monitor.monitor_ctr`     CTR per model version against its baseline: degraded or not
ab report      :func:`ab.ab_report`            the A/B analysis (and ``ab.ab_decide``: acted on)
bandit         :func:`ab.bandit_update`        the Thompson-sampling posteriors stored
=============  ==============================  ===============================================================

Every stage takes the :class:`~recsys.settings.Settings` and a pydantic ``*Params`` model, reports progress
through a :class:`~recsys.stages.base.Reporter`, and returns a :class:`~recsys.stages.base.StageResult` (its
``to_json()`` is what ``recsys <command> --json`` prints and an Airflow task passes on). Modules are imported on
use: ``import recsys.stages`` costs nothing.
"""
