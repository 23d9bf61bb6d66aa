"""`renewal-worker preview [KIND] [--locale L] [--out DIR]`: sample emails as files.

Every kind x audience x locale (French and English unless a locale is named) is
rendered from `worker.mail.samples` and written as `<kind>.<audience>.<locale>.html` (the
HTML part, to open in a browser) and `.eml` (the whole message, to open in a mail
client), with an `index.html` linking them all under their subject lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from worker.config.bounds import check_locale
from worker.config.policy import Policy
from worker.mail.messages import message_bytes, message_id_for
from worker.mail.render import render_notification
from worker.mail.samples import SAMPLE_MOMENT, sample_rows
from worker.rules.notices import KINDS

DEFAULT_LOCALES = ("fr", "en")


@dataclass(frozen=True, slots=True)
class Preview:
    """One written sample: what it is and the file stem it was written under."""

    kind: str
    audience: str
    locale: str
    subject: str
    stem: str


def preview_kinds(kind: str | None) -> tuple[str, ...]:
    """The kinds to preview; an unknown one is a ValueError naming the known ones."""
    if kind is None:
        return KINDS
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; one of: {', '.join(KINDS)}")
    return (kind,)


def preview_locales(locale: str | None) -> tuple[str, ...]:
    """French and English, or the one locale named (normalised: fr-CA -> fr_CA)."""
    if locale is None:
        return DEFAULT_LOCALES
    return (check_locale(locale),)  # ValueError: the same locales as the import


def _write_one(out_dir: Path, row: dict[str, Any]) -> Preview:
    rendered = render_notification(row)
    message_id = message_id_for(row["id"], row["payload"]["reseller"]["email"])
    data = message_bytes(row, rendered, message_id=message_id, date=SAMPLE_MOMENT)
    stem = f"{row['kind']}.{row['audience']}.{row['locale']}"
    (out_dir / f"{stem}.html").write_text(rendered.html, encoding="utf-8")
    (out_dir / f"{stem}.eml").write_bytes(data)
    return Preview(row["kind"], row["audience"], row["locale"], rendered.subject, stem)


def _index_row(preview: Preview) -> str:
    stem = escape(preview.stem)
    return (
        f"<tr><td>{escape(preview.kind)}</td><td>{escape(preview.audience)}</td>"
        f"<td>{escape(preview.locale)}</td>"
        f'<td><a href="{stem}.html">{escape(preview.subject)}</a></td>'
        f'<td><a href="{stem}.eml">.eml</a></td></tr>'
    )


def index_html(previews: list[Preview]) -> str:
    """A page linking every preview, with its subject line."""
    rows = "\n".join(_index_row(preview) for preview in previews)
    return f"""<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Email previews</title>
<style>
body {{ font: 14px/1.5 Arial, Helvetica, sans-serif; margin: 24px; color: #1f2937; }}
table {{ border-collapse: collapse; }}
th, td {{ padding: 4px 12px 4px 0; border-bottom: 1px solid #e5e7eb; text-align: left; }}
</style></head>
<body>
<h1>Email previews</h1>
<p>{len(previews)} messages rendered from sample data.</p>
<table>
<tr><th>Kind</th><th>Audience</th><th>Locale</th><th>Subject (HTML part)</th><th>Message</th></tr>
{rows}
</table>
</body>
</html>
"""


def write_previews(
    out_dir: Path, kind: str | None = None, locale: str | None = None,
    policy: Policy | None = None,
) -> Path:
    """Render the samples into `out_dir` (created if needed); return the index's path.

    Raises ValueError for an unknown kind or locale (the CLI's exit status 2).
    """
    rows = sample_rows(preview_kinds(kind), preview_locales(locale), policy)
    out_dir.mkdir(parents=True, exist_ok=True)
    previews = [_write_one(out_dir, row) for row in rows]
    index = out_dir / "index.html"
    index.write_text(index_html(previews), encoding="utf-8")
    return index
