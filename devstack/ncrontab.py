"""NCRONTAB, the six-field schedule the Functions timer trigger reads:
`{second} {minute} {hour} {day} {month} {day-of-week}`, each `*`, a number, a range `a-b`, a
list `a,b`, or a step `*/n` / `a-b/n`; day-of-week 0-6 from Sunday (7 is Sunday too). As in
cron, when both day and day-of-week are restricted, either may match."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

_FIELDS = (
    ("second", 0, 59),
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("dow", 0, 7),
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], 1
    )
}
_DAYS = {d: i for i, d in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"])}


def _number(text: str, name: str) -> int:
    names = _MONTHS if name == "month" else _DAYS if name == "dow" else {}
    return names[text.upper()] if text.upper() in names else int(text)


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        spec, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if spec == "*":
            start, end = low, high
        elif "-" in spec:
            first, _, last = spec.partition("-")
            start, end = _number(first, name), _number(last, name)
        else:
            start = _number(spec, name)
            end = high if step_text else start
        if step < 1 or not low <= start <= end <= high:
            raise ValueError(f"NCRONTAB {name} field {part!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    if name == "dow" and 7 in values:
        values = (values - {7}) | {0}
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    expression: str
    second: frozenset[int]
    minute: frozenset[int]
    hour: frozenset[int]
    day: frozenset[int]
    month: frozenset[int]
    dow: frozenset[int]
    any_day: bool
    any_dow: bool

    @classmethod
    def parse(cls, expression: str) -> Schedule:
        parts = expression.split()
        if len(parts) != 6:
            raise ValueError(
                f"NCRONTAB needs six fields (second minute hour day month day-of-week): {expression!r}"
            )
        try:
            sets = [_field(p, name, low, high) for p, (name, low, high) in zip(parts, _FIELDS, strict=True)]
        except (KeyError, ValueError) as exc:
            raise ValueError(f"invalid NCRONTAB {expression!r}: {exc}") from exc
        second, minute, hour, day, month, dow = sets
        return cls(expression, second, minute, hour, day, month, dow, parts[3] == "*", parts[5] == "*")

    def _day_matches(self, moment: datetime) -> bool:
        dom, dow = moment.day in self.day, (moment.isoweekday() % 7) in self.dow
        if self.any_day or self.any_dow:
            return dom and dow
        return dom or dow

    def next_after(self, moment: datetime) -> datetime:
        """The first matching second strictly after `moment`."""
        candidate = moment.replace(microsecond=0) + timedelta(seconds=1)
        limit = candidate + timedelta(days=366 * 5)
        while candidate < limit:
            if candidate.month not in self.month or not self._day_matches(candidate):
                candidate = (candidate + timedelta(days=1)).replace(hour=0, minute=0, second=0)
            elif candidate.hour not in self.hour:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0)
            elif candidate.minute not in self.minute:
                candidate = (candidate + timedelta(minutes=1)).replace(second=0)
            elif candidate.second not in self.second:
                candidate += timedelta(seconds=1)
            else:
                return candidate
        raise ValueError(f"NCRONTAB {self.expression!r} never matches")
