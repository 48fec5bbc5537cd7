"""The assessment as JSON (schema cityhub.io/maturity/v1, in the report under `maturity`), as text for the
terminal, and as the report page's HTML section (中文 first)."""

# ruff: noqa: RUF001  (Chinese text uses full-width punctuation)

from __future__ import annotations

from html import escape
from typing import Any

from cityhub.maturity.model import LEVELS, MODEL, Assessment, Text

DISCLAIMER = Text(
    "本成熟度模型是 cityhub 依据行动方案各领域自行制定的自评模型，不是国家标准。",
    "This maturity model is cityhub's own, derived from the action plan's areas; "
    "it is not a national standard.",
)


def _text(t: Text | None) -> dict[str, str] | None:
    return None if t is None else {"zh": t.zh, "en": t.en}


def to_dict(a: Assessment) -> dict[str, Any]:
    overall = a.overall
    return {
        "schema": MODEL,
        "assessedAt": a.assessed_at.isoformat(timespec="seconds"),
        "disclaimer": _text(DISCLAIMER),
        "overall": {"level": overall, "name": _text(Text(*LEVELS[overall])), "mean": round(a.mean, 2)},
        "dimensions": [
            {
                "key": d.key,
                "name": _text(d.name),
                "level": d.level,
                "levelName": _text(d.level_name),
                "evidence": _text(d.evidence),
                "nextStep": _text(d.next_step),
                "facts": dict(d.facts),
            }
            for d in a.dimensions
        ],
    }


def dashboard_dict(a: Assessment) -> dict[str, Any]:
    """The dashboard's shape: dimensions of {zh, en, level, maxLevel, evidence}, and the overall level."""
    top = max(LEVELS)
    return {
        "overall": {"level": a.overall, "maxLevel": top},
        "dimensions": [
            {
                "key": d.key,
                "zh": d.name.zh,
                "en": d.name.en,
                "level": d.level,
                "maxLevel": top,
                "evidence": d.evidence.zh,
                "nextStep": _text(d.next_step),
            }
            for d in a.dimensions
        ],
        "model": to_dict(a),
    }


def text(a: Assessment) -> str:
    lines = [
        f"成熟度自评 / maturity self-assessment: 总体 {a.overall} 级（{LEVELS[a.overall][0]} / "
        f"{LEVELS[a.overall][1]}），均值 {a.mean:.1f}",
        f"  {DISCLAIMER.zh}",
    ]
    for d in a.dimensions:
        lines.append(f"{d.level}/5  {d.name.zh} / {d.name.en}")
        lines.append(f"      {d.evidence.zh}")
        if d.next_step is not None:
            lines.append(f"      下一步 / next: {d.next_step.zh} / {d.next_step.en}")
    return "\n".join(lines) + "\n"


def _both(t: Text) -> str:
    return f"{escape(t.zh)}<br><span class=en>{escape(t.en)}</span>"


def html(a: Assessment) -> str:
    top = Text("已达最高级", "top level")
    rows = "".join(
        f"<tr><td>{_both(d.name)}</td><td>{d.level} / 5<br><span class=en>{escape(d.level_name.zh)} · "
        f"{escape(d.level_name.en)}</span></td><td style='text-align:left'>{_both(d.evidence)}</td>"
        f"<td style='text-align:left'>{_both(d.next_step or top)}</td></tr>"
        for d in a.dimensions
    )
    name = LEVELS[a.overall]
    return (
        f"<p>总体 <b>{a.overall} 级（{name[0]}）</b>，各维度均值 {a.mean:.1f}。"
        f'<span class="en">Overall level {a.overall} ({name[1]}): the lowest dimension; mean '
        f"{a.mean:.1f}.</span>"
        f'<br><span class="meta">{escape(DISCLAIMER.zh)} <span class="en">{escape(DISCLAIMER.en)}</span> '
        "docs/maturity.md</span></p>"
        "<table><thead><tr><th>维度<br><span class=en>dimension</span></th><th>级别<br><span class=en>level"
        "</span></th><th>依据<br><span class=en>evidence</span></th><th>下一步<br><span class=en>next step"
        f"</span></th></tr></thead><tbody>{rows}</tbody></table>"
    )
