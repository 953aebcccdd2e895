"""What people look at: CTR per variant over time (PNG) and the A/B report as one self-contained HTML page."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from recsys.experiments.ab import ABReport
from recsys.experiments.attribution import Impression, attribute
from recsys.serving.feedback import FeedbackRecord


class DailyRate(BaseModel):
    day: str
    variant: str
    impressions: int
    ctr: float | None
    conversion: float | None


def daily_rates(impressions: Sequence[Impression], events: Sequence[FeedbackRecord],
                window: timedelta) -> list[DailyRate]:
    """Attributed CTR and conversion per UTC day (of the impression) and variant."""
    days: dict[str, list[Impression]] = {}
    for imp in impressions:
        days.setdefault(f"{imp.ts:%Y-%m-%d}", []).append(imp)
    out = []
    for day, group in sorted(days.items()):
        for variant, rates in attribute(group, events, window).by_variant().items():
            out.append(DailyRate(day=day, variant=variant, impressions=rates.impressions, ctr=rates.ctr,
                                 conversion=rates.conversion))
    return out


def plot_daily(rates: Sequence[DailyRate], path: Path, title: str) -> Path:
    """CTR (and conversion, dashed) per variant and day, with the day's impressions as bars below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True, height_ratios=[3, 1])
    days = sorted({r.day for r in rates})
    variants = sorted({r.variant for r in rates})
    width = 0.8 / max(1, len(variants))
    for k, variant in enumerate(variants):
        mine = {r.day: r for r in rates if r.variant == variant}
        xs = [i for i, d in enumerate(days) if d in mine]
        line = top.plot(xs, [mine[days[i]].ctr for i in xs], marker="o", label=f"{variant} CTR")[0]
        top.plot(xs, [mine[days[i]].conversion for i in xs], linestyle="--", color=line.get_color(),
                 label=f"{variant} conversion")
        bottom.bar([x + (k - (len(variants) - 1) / 2) * width for x in xs],
                   [mine[days[i]].impressions for i in xs], width=width, color=line.get_color())
    top.set_ylabel("rate (attributed)")
    top.set_title(title)
    top.legend(fontsize="small")
    top.grid(alpha=0.3)
    bottom.set_ylabel("impressions")
    bottom.set_xticks(range(len(days)), days, rotation=45, ha="right", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2%}"


def render_html(report: ABReport, plot: Path | None, title: str) -> str:
    """The report as a page: the decision and why, the counts and rates, both tests, the plan and SRM."""
    e = html.escape
    d = report.decision
    rows = "".join(
        f"<tr><td>{e(v.variant)}</td><td>{v.impressions:,}</td><td>{v.clicks:,}</td><td>{v.conversions:,}</td>"
        f"<td>{_pct(report.rates[v.variant]['ctr'])}</td><td>{_pct(report.rates[v.variant]['conversion'])}</td></tr>"
        for v in report.variants)
    tests = ""
    for name, cmp in (("CTR", report.ctr), ("conversion", report.conversion)):
        if cmp is None:
            continue
        seq = report.sequential_ctr if name == "CTR" else report.sequential_conversion
        lift = "–" if cmp.relative_lift is None else f"{cmp.relative_lift:+.1%}"
        ci = ("–" if cmp.relative_lift_ci is None else
              f"[{cmp.relative_lift_ci[0]:+.1%}, {cmp.relative_lift_ci[1]:+.1%}]")
        tests += (f"<tr><td>{name}</td><td>{lift}</td><td>{ci}</td><td>{cmp.p_value:.4g}</td>"
                  f"<td>{'–' if seq is None else f'{seq.p_value:.4g}'}</td>"
                  f"<td>{'yes' if cmp.significant else 'no'}</td></tr>")
    srm = report.srm
    srm_text = "no traffic yet" if srm is None else (
        f"{'passed' if srm.ok else '<b>FAILED</b>'}: p = {srm.p_value:.3g} (blocks decisions below "
        f"{srm.alpha}); observed {e(str(srm.observed))}, expected shares {e(str(srm.expected))}")
    plan = report.plan
    image = ""
    if plot is not None and plot.exists():
        image = f'<img alt="CTR per variant and day" src="data:image/png;base64,' \
                f'{base64.b64encode(plot.read_bytes()).decode()}">'
    reasons = "".join(f"<li>{e(r)}</li>" for r in d.reasons)
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>{e(title)}</title>
<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}.d{{font-size:1.4em}}</style></head><body>
<h1>{e(title)}</h1>
<p class="d">Decision: <b>{e(d.decision)}</b> ({e(d.mode)} test on {e(d.metric)}; {e(report.treatment)} against
{e(report.control)})</p><ul>{reasons}</ul>
<h2>Variants</h2><table><tr><th>variant</th><th>impressions</th><th>clicked</th><th>converted</th><th>CTR</th>
<th>conversion</th></tr>{rows}</table>
<h2>Tests</h2><table><tr><th>metric</th><th>relative lift</th><th>CI</th><th>p (fixed horizon)</th>
<th>p (always valid)</th><th>significant</th></tr>{tests}</table>
<h2>Plan and sample ratio</h2><p>Planned before the test: {plan.control:,} impressions for the control and
{plan.treatment:,} for the treatment, to detect {plan.mde_relative:+.0%} on a baseline of {plan.baseline_rate:.2%}
with power {plan.power:.0%} at α = {plan.alpha}.</p><p>Sample ratio: {srm_text}.</p>
{image}</body></html>"""
