"""Human-readable renderings: the pass summary, the forecast and the dashboard."""

from __future__ import annotations

import csv
import io
from typing import Any

from worker.passes.summary import PassSummary


def render_summary(summary: PassSummary) -> str:
    title = "Dry run (nothing written, nothing sent)" if summary.dry_run else "Pass"
    lines = [f"{title} as of {summary.as_of.isoformat()}"]
    evaluated = ", ".join(f"{n} {what}" for what, n in sorted(summary.evaluated.items()))
    lines.append(f"  evaluated: {evaluated or 'nothing due'}")
    lines.append(f"  status changes: {sum(summary.changes.values())}")
    lines += [f"    {n:>6}  {what}" for what, n in sorted(summary.changes.items())]
    lines.append(f"  notices queued: {sum(summary.queued.values())}")
    lines += [f"    {n:>6}  {kind}" for kind, n in sorted(summary.queued.items())]
    lines.append(f"  notices cancelled (overtaken): {summary.cancelled}")
    if summary.delivery or summary.transport:
        delivered = ", ".join(f"{n} {state}" for state, n in sorted(summary.delivery.items()))
        lines.append(f"  delivery: {delivered or 'nothing due'}")
    if summary.transport:
        lines.append(f"  mail transport: {summary.transport}")
    if summary.dry_run:
        lines.append("  would change:")
        lines += [f"    {t['date']}  {t['record']} {t['ref']}: {t['from']} -> {t['to']}"
                  for t in summary.transitions]
        lines.append("  would queue:")
        lines += [f"    {n['date']}  {n['kind']} {n['ref']} -> {', '.join(n['recipients'])}"
                  for n in summary.notices]
        lines.append("  would emit:")
        lines += [f"    {e['type']} {e['subject_id']}" for e in summary.events]
    lines.append(f"  records skipped: {len(summary.errors)}")
    lines += [f"    {error['record']} {error['id']}: {error['reason']}"
              for error in summary.errors]
    return "\n".join(lines)


def forecast_table(days: list[dict[str, Any]]) -> str:
    lines = []
    for day in days:
        for notice in day["notices"]:
            lines.append(f"{day['date']}  notice  {notice['kind']:<24} {notice['ref']:<16} "
                         f"{', '.join(notice['recipients'])}")
        for change in day["changes"]:
            lines.append(f"{day['date']}  change  {change['record']:<24} {change['ref']:<16} "
                         f"{change['from']} -> {change['to']}")
    return "\n".join(lines or ["nothing happens in this period"]) + "\n"


def forecast_json(days: list[dict[str, Any]]) -> dict[str, Any]:
    """Every notice and change of the period in two flat lists, and the same per day."""
    return {
        "notices": [notice for day in days for notice in day["notices"]],
        "changes": [change for day in days for change in day["changes"]],
        "days": days,
    }


def forecast_csv(days: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["date", "type", "kind", "ref", "recipients", "from", "to"])
    for day in days:
        for notice in day["notices"]:
            writer.writerow([day["date"], "notice", notice["kind"], notice["ref"],
                             ";".join(notice["recipients"]), "", ""])
        for change in day["changes"]:
            writer.writerow([day["date"], "change", change["field"], change["ref"], "",
                             change["from"], change["to"]])
    return buffer.getvalue()


def render_dashboard(board: dict[str, Any]) -> str:
    titles = {"subscriptions": "Subscriptions per bucket",
              "customers": "Customers per payment standing",
              "notifications": "Notices per delivery state",
              "passes": "Passes per outcome",
              "unprocessable": "Records the passes cannot evaluate"}
    lines: list[str] = []
    for section, title in titles.items():
        counts = board.get(section, {})
        lines.append(f"{title} ({sum(counts.values())})")
        lines += [f"  {name:<20} {count:>8}" for name, count in sorted(counts.items())]
    return "\n".join(lines + _webhook_lines(board.get("webhooks"))
                     + _mail_lines(board.get("mail")))


def _mail_lines(mail: dict[str, Any] | None) -> list[str]:
    """Suppressed addresses and bounced recipients, then the domains sending unsigned."""
    if not mail:
        return []
    lines = ["Mail",
             f"  {'suppressed':<20} {mail['suppressed']:>8}",
             f"  {'bounced':<20} {mail['bounced']:>8}"]
    for domain in mail["unsigned_domains"]:
        lines.append(f"  unsigned: {domain} (no DKIM key and no [mail] fallback_from)")
    return lines


def _webhook_lines(webhooks: dict[str, Any] | None) -> list[str]:
    """Webhook deliveries per state, then one line per endpoint (disabled ones say why)."""
    if not webhooks or not (webhooks["deliveries"] or webhooks["endpoints"]):
        return []
    counts = webhooks["deliveries"]
    lines = [f"Webhook deliveries per state ({sum(counts.values())})"]
    lines += [f"  {name:<20} {count:>8}" for name, count in sorted(counts.items())]
    lines.append(f"Webhook endpoints ({len(webhooks['endpoints'])})")
    for endpoint in webhooks["endpoints"]:
        state = endpoint["state"]
        if endpoint["disabled_at"]:
            state += f" since {endpoint['disabled_at']} ({endpoint['disabled_reason']})"
        lines.append(f"  {endpoint['name']:<20} {endpoint['url']}  {state}, "
                     f"{endpoint['waiting']} waiting")
    return lines
