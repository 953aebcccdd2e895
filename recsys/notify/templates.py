"""One template per event kind: the facts a person needs (what happened, which model and version, the numbers)
and where to look (the MLflow run, the Data Docs, the event's runbook).

:func:`build` turns an event and its details (what the code that noticed it knows: a gate decision, a drift
result, a quarantined batch's checks) into a :class:`~recsys.notify.models.Notification` with a title, a body,
labelled facts, links and a dedup key. The channels only lay that out (Slack blocks, an e-mail's text and HTML,
a JSON line), so every channel says the same thing. An event without a template gets a generic one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recsys.notify.models import Fact, Link, Notification, Severity
from recsys.settings import Settings

RUNBOOKS = {
    "batch_quarantined": "batch-quarantined", "gate_rejected": "gate-rejected",
    "approval_requested": "approval-requested", "rejected": "approval-requested", "promoted": "promoted",
    "rolled_back": "rolled-back", "model_swap_failed": "model-swap-failed", "drift_detected": "drift-detected",
    "ctr_degraded": "ctr-degraded",
}
"""Event -> its runbook page, ``docs/runbooks/<name>.md`` (a test notification has none)."""


@dataclass
class Rendered:
    title: str
    body: str
    severity: Severity = "info"
    facts: list[tuple[str, Any]] = field(default_factory=list)
    links: list[tuple[str, str | None]] = field(default_factory=list)
    subject: str = ""
    """What makes this alert this alert besides event, model and version (a week, a variant, an audit id)."""


@dataclass(frozen=True)
class Bases:
    """Where links point (from the settings)."""

    mlflow_ui: str | None = None
    data_docs: str | None = None
    runbooks: str = "docs/runbooks/"

    @classmethod
    def of(cls, settings: Settings) -> Bases:
        return cls(settings.mlflow_ui_url, settings.data_docs_url, settings.runbook_base_url)

    def run(self, run_id: str | None) -> str | None:
        return f"{self.mlflow_ui.rstrip('/')}/#/runs/{run_id}" if self.mlflow_ui and run_id else None

    def model_version(self, name: str | None, version: int | None) -> str | None:
        if not (self.mlflow_ui and name and version):
            return None
        return f"{self.mlflow_ui.rstrip('/')}/#/models/{name}/versions/{version}"

    def runbook(self, event: str) -> str | None:
        name = RUNBOOKS.get(event)
        if name is None:
            return None
        return f"{self.runbooks}{'' if self.runbooks.endswith('/') else '/'}{name}.md"


def _num(value: Any, spec: str = "+.4f") -> str:
    return "–" if value is None else format(value, spec)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{value:.1%}"


def _ver(v: Any) -> str:
    return "–" if v is None else f"v{v}"


Renderer = Callable[[dict[str, Any], str | None, int | None, Bases], Rendered]


def _gate_facts(gate: dict[str, Any]) -> list[tuple[str, Any]]:
    """A gate decision's headline: the metric, its delta and CI against what, and the verdict."""
    decision = gate.get("decision", gate)
    ndcg = (decision.get("checks") or {}).get("ndcg") or {}
    conf = ndcg.get("confidence")
    ci = f"[{_num(ndcg.get('ci_low'))}, {_num(ndcg.get('ci_high'))}]"
    against = "best generator" if decision.get("mode") == "first_model" else "champion"
    facts: list[tuple[str, Any]] = [
        ("Metric", f"NDCG@10 vs {against} {decision.get('reference', '')}".strip()),
        ("Delta", _num(ndcg.get("diff"))),
        (f"{conf:.0%} CI" if conf else "CI", f"{ci} (margin {_num(ndcg.get('threshold'))}, n={ndcg.get('n', '–')})"),
        ("Decision", decision.get("verdict", "–")),
    ]
    failed = [name for name, check in (decision.get("checks") or {}).items() if not check.get("passed", True)]
    if failed:
        facts.append(("Failed checks", ", ".join(failed)))
    if gate.get("policy"):
        facts.append(("Policy", gate["policy"]))
    return facts


def _promoted(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    gate = d.get("gate")
    facts: list[tuple[str, Any]] = [("Model", model), ("Champion", f"{_ver(d.get('from_version'))} → {_ver(version)}"),
                                    ("By", d.get("actor"))]
    if gate:
        facts += _gate_facts(gate)
    reason = d.get("reason") or "no reason given"
    return Rendered(title=f"{model}: promoted ({_ver(d.get('from_version'))} → {_ver(version)})",
                    body=f"by {d.get('actor')}: {reason}", facts=facts,
                    links=[("MLflow run", b.run(d.get("run_id"))), ("Model version", b.model_version(model, version))],
                    subject=f"audit={d.get('id', '')}")


def _rolled_back(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    moved = f"{_ver(d.get('from_version'))} → {_ver(version)}"
    return Rendered(title=f"{model}: rolled back ({moved})", severity="warning",
                    body=f"by {d.get('actor')}: {d.get('reason') or 'no reason given'}",
                    facts=[("Model", model), ("Champion", moved), ("By", d.get("actor"))],
                    links=[("Model version", b.model_version(model, version))], subject=f"audit={d.get('id', '')}")


def _rejected(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    return Rendered(title=f"{model}: {_ver(version)} rejected by {d.get('actor')}", severity="warning",
                    body=f"by {d.get('actor')}: {d.get('reason') or 'no reason given'}",
                    facts=[("Model", model), ("Version", _ver(version)), ("By", d.get("actor"))],
                    links=[("Model version", b.model_version(model, version))], subject=f"audit={d.get('id', '')}")


def _gate_rejected(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    reasons = d.get("decision", {}).get("reasons") or []
    return Rendered(title=f"{model}: {_ver(version)} rejected by the promotion gate", severity="warning",
                    body="\n".join(f"- {r}" for r in reasons), facts=[("Model", model), ("Version", _ver(version)),
                                                                      *_gate_facts(d)],
                    links=[("MLflow run", b.run(d.get("run_id"))), ("Model version", b.model_version(model, version))])


def _approval_requested(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    evaluated = d.get("evaluated_version")
    via = f" (refit of {_ver(evaluated)})" if evaluated not in (None, version) else ""
    return Rendered(title=f"{model}: {_ver(version)} passed the gate and waits for approval",
                    body=f"approve: recsys registry approve --version {version} --by NAME --reason TEXT\n"
                         f"reject:  recsys registry reject --version {version} --by NAME --reason TEXT",
                    facts=[("Model", model), ("Version", f"{_ver(version)}{via}"), *_gate_facts(d)],
                    links=[("MLflow run", b.run(d.get("run_id"))), ("Model version", b.model_version(model, version))])


def _batch_quarantined(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    week = d.get("week")
    checks = d.get("failed_checks") or []
    what = "unreadable file" if d.get("error") else ", ".join(checks)
    docs = f"{b.data_docs.rstrip('/')}/index.html" if b.data_docs else d.get("data_docs")
    facts: list[tuple[str, Any]] = [("Week", f"{week:02d}" if isinstance(week, int) else week),
                                    ("Rows", d.get("rows")),
                                    ("Failed checks", f"{len(checks)}: {', '.join(checks)}" if checks else "–")]
    if d.get("error"):
        facts.append(("Error", d["error"]))
    facts.append(("Quarantined at", d.get("quarantine_path")))
    return Rendered(title=f"week {week:02d} batch quarantined: {what}" if isinstance(week, int)
                    else f"batch quarantined: {what}", severity="warning", body=str(d.get("summary") or ""),
                    facts=facts, links=[("Data Docs", str(docs) if docs else None)],
                    # the same week failing the same way again (a retried task) is one alert; failing otherwise is news
                    subject=f"week={week}:{'unreadable' if d.get('error') else ','.join(sorted(checks))}")


def _drift(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    cols = d.get("drifted") or []
    names = ", ".join(f"{c['column']} ({c['score']:.2f}/{c['threshold']:.2f})" for c in cols[:8])
    more = f" and {len(cols) - 8} more" if len(cols) > 8 else ""
    return Rendered(title=f"{model} {_ver(version)}: feature drift detected (share {_num(d.get('share'), '.2f')})",
                    severity="warning", body=str(d.get("reason") or ""),
                    facts=[("Model", f"{model} {_ver(version)}"),
                           ("Drift share", f"{_num(d.get('share'), '.2f')} (threshold "
                                           f"{_num(d.get('share_threshold'), '.2f')})"),
                           ("Drifted columns", f"{len(cols)}: {names}{more}" if cols else "–"),
                           ("Window", f"{d['window_start']} .. {d.get('window_end')}" if d.get("window_start")
                            else None),
                           ("Rows compared", d.get("rows"))],
                    links=[("Drift report", d.get("report_html")), ("Model version", b.model_version(model, version))])


def _ctr(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    variant = d.get("variant")
    return Rendered(title=f"{model} {_ver(version)} ({variant}): CTR dropped {_pct(d.get('relative_drop'))} "
                          "below its baseline", severity="warning",
                    body=f"window {d.get('start')} .. {d.get('end')}",
                    facts=[("Variant / version", f"{variant} / {_ver(version)}"), ("CTR", _pct(d.get("ctr"))),
                           ("Baseline CTR", _pct(d.get("baseline_ctr"))),
                           ("Relative drop", _pct(d.get("relative_drop"))),
                           ("Impressions", d.get("impressions")),
                           ("p (one-sided)", "–" if d.get("p_value") is None else f"{d['p_value']:.3g}")],
                    links=[("Model version", b.model_version(model, version))], subject=f"variant={variant}")


def _swap_failed(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    return Rendered(title=f"{model}: the service could not swap to {_ver(version)}", severity="critical",
                    body=str(d.get("error") or ""),
                    facts=[("Model", model), ("Version", _ver(version)), ("Still serving", _ver(d.get("serving"))),
                           ("Error", d.get("error"))],
                    links=[("Model version", b.model_version(model, version))])


def _test(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
    return Rendered(title="recsys test notification", body="If you can read this, the channel works.",
                    facts=[("Sent by", d.get("actor")), ("Channel check", "recsys notify test")],
                    subject=f"test={d.get('nonce', '')}")


def _generic(event: str) -> Renderer:
    def render(d: dict[str, Any], model: str | None, version: int | None, b: Bases) -> Rendered:
        return Rendered(title=f"{model or 'recsys'}: {event.replace('_', ' ')}", body=str(d.get("reason") or ""),
                        facts=[("Model", model), ("Version", _ver(version))])
    return render


TEMPLATES: dict[str, Renderer] = {
    "promoted": _promoted, "rolled_back": _rolled_back, "rejected": _rejected, "gate_rejected": _gate_rejected,
    "approval_requested": _approval_requested, "batch_quarantined": _batch_quarantined,
    "drift_detected": _drift, "ctr_degraded": _ctr, "model_swap_failed": _swap_failed, "test": _test,
}


def build(event: str, details: dict[str, Any] | None = None, *, model_name: str | None = None,
          version: int | None = None, bases: Bases | None = None, severity: Severity | None = None,
          title: str | None = None, body: str | None = None) -> Notification:
    """The notification of ``event`` from its ``details`` (see the module docstring); ``title``, ``body`` and
    ``severity`` override the template's."""
    d = dict(details or {})
    bases = bases or Bases()
    r = TEMPLATES.get(event, _generic(event))(d, model_name, version, bases)
    links = [Link(label=label, url=url) for label, url in r.links if url]
    if (runbook := bases.runbook(event)) is not None:
        links.append(Link(label="Runbook", url=runbook))
    facts = [Fact(label=label, value=str(value)) for label, value in r.facts if value not in (None, "")]
    key = ":".join([event, model_name or "", "" if version is None else str(version), r.subject])
    return Notification(event=event, severity=severity or r.severity, title=title or r.title,
                        body=r.body if body is None else body, details=d, model_name=model_name, version=version,
                        facts=facts, links=links, dedup_key=key)


# -- layouts: one per medium, the same facts in each ---------------------------------------------------------
_TEXT = """{{ n.title }}
{% if n.body %}
{{ n.body }}
{% endif %}
{% for f in n.facts %}{{ f.label }}: {{ f.value }}
{% endfor %}{% if n.links %}
{% for l in n.links %}{{ l.label }}: {{ l.url }}
{% endfor %}{% endif %}
event {{ n.event }} · severity {{ n.severity }} · {{ n.ts.isoformat() }} · notification {{ n.id }}
"""

_HTML = """<!doctype html>
<html><body style="font-family: sans-serif">
<h2 style="color: {{ colour }}">{{ n.title }}</h2>
{% if n.body %}<pre style="white-space: pre-wrap">{{ n.body }}</pre>{% endif %}
<table cellpadding="4" style="border-collapse: collapse">
{% for f in n.facts %}<tr><th align="left">{{ f.label }}</th><td>{{ f.value }}</td></tr>
{% endfor %}</table>
{% if n.links %}<p>{% for l in n.links %}{% if l.absolute %}<a href="{{ l.url }}">{{ l.label }}</a>{% else %}
{{ l.label }}: <code>{{ l.url }}</code>{% endif %}{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
<p style="color: #666; font-size: small">event {{ n.event }} · severity {{ n.severity }} · {{ n.ts.isoformat() }}
· notification {{ n.id }}</p>
</body></html>
"""

COLOURS = {"info": "#2e7d32", "warning": "#e65100", "critical": "#b71c1c"}


def _env() -> Any:
    import jinja2

    return jinja2.Environment(autoescape=jinja2.select_autoescape(default_for_string=True, default=True),
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def text(n: Notification) -> str:
    """The plain-text rendering (the e-mail's text part)."""
    import jinja2

    env = jinja2.Environment(autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=True)  # nosec B701: plain-text body; the HTML part escapes
    return str(env.from_string(_TEXT).render(n=n))


def html(n: Notification) -> str:
    """The HTML rendering (the e-mail's alternative part), every value escaped."""
    return str(_env().from_string(_HTML).render(n=n, colour=COLOURS[n.severity]))
