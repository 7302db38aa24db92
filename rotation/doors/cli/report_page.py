"""`rotation report --html FILE`: one self-contained page a platform team attaches to a compliance
review. Inline CSS and SVG only: no script, no font, no image, nothing loaded from the network,
so it reads the same offline, in a mail client or in an archive years later.

Per key: consumers per version and the age of the version they hold (the numbers of
estate/pictures.py as bars), who keeps each consumer current (the service by itself, or this
system on a pinned version, or a person), the key's last rotation (run store), then the stale
consumers and the vaults this system may not touch with what they hold. Every value from Azure
is escaped: a resource name is text, never markup."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any

from rotation.model.decisions import KEPT_CURRENT

if TYPE_CHECKING:
    from rotation.estate.inventory import Estate, Row
    from rotation.estate.pictures import KeyPicture
    from rotation.estate.report import AgeReport

BAR = 200  # the longest bar, in pixels
ROW = 22  # one bar's row
LABEL = 170  # room for the labels left of the bars

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; color: #1f2328; margin: 24px; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 18px; margin: 28px 0 8px; }
h3 { font-size: 15px; margin: 0 0 6px; } .muted { color: #59636e; }
.key { border: 1px solid #d1d9e0; border-radius: 6px; padding: 12px 16px; margin: 12px 0; }
.charts { display: flex; flex-wrap: wrap; gap: 24px; }
figure { margin: 0; } figcaption { font-size: 12px; color: #59636e; margin-bottom: 2px; }
svg text { font: 12px system-ui, sans-serif; fill: #1f2328; dominant-baseline: middle; }
rect { shape-rendering: crispEdges; }
rect.desired { fill: #1a7f37; } rect.older { fill: #d4a72c; } rect.age { fill: #0969da; }
table { border-collapse: collapse; margin: 6px 0; } th, td { text-align: left; padding: 3px 10px 3px 0; }
th { border-bottom: 1px solid #d1d9e0; } td { border-bottom: 1px solid #eef1f4; vertical-align: top; }
td:first-child { font-size: 12px; word-break: break-all; min-width: 300px; max-width: 420px; } td { min-width: 64px; }
.totals span { margin-right: 18px; } .bad { color: #cf222e; font-weight: 600; }
"""


def page(report: AgeReport, estate: Estate, last: dict[str, dict[str, Any] | None]) -> str:
    rows = estate.rows
    by_key: dict[str, list[Row]] = {}
    for row in rows:
        by_key.setdefault(row.key_id, []).append(row)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>CMK rotation report</title>",
        f"<style>{STYLE}</style></head><body>",
        _header(report, rows),
        "<h2>Keys</h2>",
        *(_key(p, by_key.get(p.key_id, []), last.get(p.key_id)) for p in report.pictures),
        _stale(report),
        _outside(rows),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _header(report: AgeReport, rows: Sequence[Row]) -> str:
    outside = sum(1 for r in rows if r.outside)
    totals = [
        ("keys", len(report.pictures)),
        ("consumers", len(rows)),
        ("stale", len(report.stale)),
        ("in vaults not allowed", outside),
    ]
    return (
        "<h1>CMK rotation report</h1>"
        f'<p class="muted">generated {_when(report.generated_at)}; a version is stale when older than '
        f"{report.max_age_days} days or expiring within {report.expiry_window_days} days</p>"
        '<p class="totals">'
        + "".join(f'<span data-total="{escape(name)}"><b>{n}</b> {escape(name)}</span>' for name, n in totals)
        + "</p>"
    )


def _key(picture: KeyPicture, rows: Sequence[Row], last: dict[str, Any] | None) -> str:
    versions = [(v.label, v.consumers, "desired" if v.desired else "older") for v in picture.versions]
    ages = [(label, n, "age") for label, n in picture.ages]
    where = " (vault not allowed: listed from ARM only, never read or written)" if picture.outside else ""
    return (
        f'<section class="key" data-key="{escape(picture.key_id)}">'
        f'<h3>{escape(picture.name)} <span class="muted">{escape(picture.vault)}{where}</span></h3>'
        f"<p>{_last_rotation(last, picture.outside)}</p>"
        '<div class="charts">'
        + _chart("consumers per version", "versions", versions)
        + _chart("age of the version held", "ages", ages)
        + "</div>"
        + _keepers(picture, rows)
        + "</section>"
    )


def _chart(title: str, name: str, bars: Sequence[tuple[str, int, str]]) -> str:
    """Horizontal bars, the longest BAR pixels wide, each with its label and its count."""
    top = max((n for _, n, _ in bars), default=0) or 1
    height = ROW * max(1, len(bars))
    body = []
    for i, (label, n, kind) in enumerate(bars):
        y, width = i * ROW, round(n / top * BAR)
        body.append(
            f'<g class="bar" data-label="{escape(label)}" data-count="{n}">'
            f'<text x="0" y="{y + ROW // 2}">{escape(label)}</text>'
            f'<rect class="{kind}" x="{LABEL}" y="{y + 4}" width="{width}" height="{ROW - 8}"></rect>'
            f'<text class="count" x="{LABEL + width + 6}" y="{y + ROW // 2}">{n}</text></g>'
        )
    return (
        f'<figure class="chart" data-chart="{name}"><figcaption>{escape(title)}</figcaption>'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{LABEL + BAR + 48}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">{"".join(body)}</svg></figure>'
    )


def _last_rotation(run: dict[str, Any] | None, outside: bool) -> str:
    if outside:
        return '<span class="muted">never rotated by this system</span>'
    if run is None:
        return '<span class="muted">last rotation: no run of this system has held this key yet</span>'
    summary = run.get("summary")
    counts: dict[str, Any] = summary if isinstance(summary, dict) else {}
    moved = ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items())) or "no consumers"
    status = escape(str(run.get("status") or "unknown"))
    css = "bad" if status in ("failed", "interrupted") else ""
    return (
        f'<span data-last-run="{escape(str(run.get("runId")))}">last rotation: run '
        f"<code>{escape(str(run.get('runId')))}</code>, "
        f'<span class="{css}">{status}</span>, finished {escape(str(run.get("finishedAt") or "-"))} '
        f"({escape(moved)})</span>"
    )


def _keepers(picture: KeyPicture, rows: Sequence[Row]) -> str:
    """Who keeps each consumer on the desired version, as a list an auditor can open."""
    if picture.outside:
        return ""
    groups = {
        "follow new versions by themselves (auto-rotating)": [r for r in rows if r.follows_new_versions],
        "pinned, kept current by this system": [
            r for r in rows if not r.follows_new_versions and r.action in KEPT_CURRENT
        ],
        "pinned, not moved by this system (see why)": [
            r for r in rows if not r.follows_new_versions and r.action not in KEPT_CURRENT
        ],
    }
    return "".join(
        f'<details data-keepers="{escape(title)}" data-count="{len(found)}"><summary>{len(found)} '
        f"{escape(title)}</summary>"
        + _table(("resource", "kind", "holds", "action", "why"), _consumer_cells(found))
        + "</details>"
        for title, found in groups.items()
        if found
    )


def _consumer_cells(rows: Iterable[Row]) -> list[tuple[str, ...]]:
    return [
        (
            r.resource_id,
            r.kind,
            r.version[:8] if r.version != "versionless" else r.version,
            r.action or "-",
            r.message,
        )
        for r in rows
    ]


def _stale(report: AgeReport) -> str:
    cells = [
        (
            r["resourceId"],
            r["keyId"].split("/keys/")[-1],
            r["effectiveVersion"][:8],
            str(r["ageDays"]),
            "; ".join(r["stale"]),
            r["notMoved"],
        )
        for r in report.stale
    ]
    if not cells:
        return f"<h2>Stale consumers</h2><p>No consumer is on a version older than {report.max_age_days} days.</p>"
    columns = ("resource", "key", "version", "age (days)", "why stale", "why not moved")
    return f'<h2>Stale consumers <span class="muted">({len(cells)})</span></h2>' + _table(
        columns, cells, "stale"
    )


def _outside(rows: Sequence[Row]) -> str:
    """The vaults not in ROTATION_ALLOWED_VAULTS, the keys of theirs that consumers hold, and who."""
    by_vault: dict[str, list[Row]] = {}
    for row in rows:
        if row.outside:
            by_vault.setdefault(row.key_id.split("/")[2], []).append(row)
    if not by_vault:
        return "<h2>Vaults not allowed</h2><p>Every key in use is in an allowed vault.</p>"
    sections = [
        f'<h3 data-vault="{escape(vault)}">{escape(vault)} <span class="muted">({len(held)} consumers)</span></h3>'
        + _table(
            ("resource", "kind", "key", "holds"),
            [(r.resource_id, r.kind, r.key_id.split("/keys/")[-1], r.version[:8]) for r in held],
        )
        for vault, held in sorted(by_vault.items())
    ]
    return "<h2>Vaults not allowed</h2>" + "".join(sections)


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]], name: str = "") -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table data-table="{name}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _when(moment: datetime) -> str:
    return escape(moment.strftime("%Y-%m-%d %H:%M UTC"))
