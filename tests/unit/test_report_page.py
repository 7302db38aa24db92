"""The HTML report escapes whatever Azure or a person wrote (a message, a tag): it is text on the
page, never markup (issue 28 item 2)."""

from __future__ import annotations

from datetime import UTC, datetime

from rotation.doors.cli.report_page import page
from rotation.estate.inventory import Estate
from rotation.estate.report import AgeReport


def test_a_message_with_markup_is_shown_as_text() -> None:
    stale = {
        "resourceId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerRegistry/registries/r1",
        "keyId": "https://v.vault.azure.net/keys/k",
        "effectiveVersion": "0a" * 16,
        "ageDays": 400,
        "stale": ["created 400 days ago (over 90)"],
        "notMoved": 'opted out (<script>alert("x")</script>)',
    }
    report = AgeReport(datetime(2026, 12, 7, tzinfo=UTC), 90, 30, [stale], [])
    html = page(report, Estate(()), {})
    assert "<script>" not in html
    assert "opted out (&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;)" in html
    assert "Every key in use is in an allowed vault." in html
