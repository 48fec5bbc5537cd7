"""SLO rules vs Sloth (issue 17, item 4): cityhub's probe-availability SLO rules and the rules Sloth v0.16.0
generates for the same SLO, evaluated by the same Prometheus on the same series.

    .venv/bin/python bench/peer_slo.py [--quick] [--json PATH]

Two measurements, both sides in one run each (bench/peers-slo.md explains the method):
  correctness  `promtool test rules` with both rule files over one scripted 4-day scenario (zero traffic, a
               fast burn, a slow burn, a blip): when each side's page/ticket fires and resolves, and what the
               SLO series hold while there is no traffic (bench/peer_slo_scenario.py);
  cost         one real Prometheus with both rule files at the same interval over backfilled history: rule
               evaluation time per cycle (prometheus_rule_group_last_duration_seconds, median of the
               cycles), samples written per cycle, series in the TSDB (bench/peer_slo_live.py).
Needs ~/.cache/cityhub/bin/{prometheus,promtool} (hack/prometheus.sh) and sloth (hack/peers/sloth.sh).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import peer_slo_live as live
import peer_slo_rules as rules
import peer_slo_scenario as scenario

from cityhub.local_prometheus import Prometheus
from components.monitoring_rules import duration_seconds

FULL = {"pairs": 100, "history_days": 30, "interval": "15s", "long_interval": "75s", "cycles": 20,
        "long_cycles": 5, "settle_s": 90}
QUICK = {"pairs": 10, "history_days": 1, "interval": "5s", "long_interval": "25s", "cycles": 5,
         "long_cycles": 2, "settle_s": 5}
"""settle_s: how long the TSDB must go without a compaction before the cycles are measured (Prometheus
checks for compactions every minute; --quick does not wait: its figures only show both sides ran).
long_interval: cityhub's cityhub-sli-long group, at the shipped ratio to the short interval (2m30s : 30s);
Sloth's groups have no interval of their own, so they run at `interval`. The cost compared is evaluation time
per `interval` of wall time: a group's median cycle x interval / its own interval."""
CORRECTNESS_INTERVALS = ("1m", "2m30s")
"""promtool test rules evaluates every group at the test's own interval (1m) whatever the group's."""


def correctness(work: Path, cityhub: list[dict], sloth: list[dict], tl: scenario.Timeline) -> dict[str, Any]:
    (work / "cityhub.rules.yaml").write_text(rules.rules_text(cityhub))
    (work / "sloth.rules.yaml").write_text(rules.rules_text(sloth))
    c_alerts, s_alerts = rules.alert_names(cityhub), rules.alert_names(sloth)
    c_records, s_records = rules.recorded_names(cityhub), rules.recorded_names(sloth)
    test = scenario.test_file(
        ["cityhub.rules.yaml", "sloth.rules.yaml"], c_alerts + s_alerts, c_records + s_records, tl,
        # Recording groups first: each side's alerts read the ratios of the same minute.
        sorted((g["name"] for g in cityhub + sloth), key=lambda n: ("alert" in n, n)),
    )
    outcome = scenario.run(work, test)
    zero = scenario.zero_traffic(outcome, c_records + s_records, tl)
    sides = {}
    for side, alerts, records in (("cityhub", c_alerts, c_records), ("sloth", s_alerts, s_records)):
        per_name = {n: zero["per_name"][n] for n in records}
        # Sloth's constant series (objective, budget, period, info) carry no department.
        constant = ("slo:objective:", "slo:error_budget:", "slo:time_period:", "sloth_slo_info")
        per_dept = [n for n in records if not n.startswith(constant)]
        sides[side] = {
            "alerts": scenario.alert_summary(outcome, alerts, tl),
            "zero_traffic": {
                "checks": zero["checks"],
                "per_name": per_name,
                "nan": sum(per_name[n]["nan"] for n in per_dept),
                "absent": sum(per_name[n]["absent"] for n in per_dept),
                "number": sum(per_name[n]["number"] for n in per_dept),
                "per_department_names": len(per_dept),
            },
            "after_idle": {k: v for k, v in scenario.values_at(outcome, tl.length, "huanbao").items()
                           if k.startswith(("cityhub:", "slo:")) and k.split("[")[0] in records},
            "never_failing_series": len(scenario.values_at(outcome, tl.length, "minzheng")),
        }
    return {"promtool_seconds": outcome.seconds, "length_min": tl.length, "idle_end_min": tl.idle[1], **sides}


def cost(work: Path, cityhub_groups_fn: Any, sloth: list[dict], opts: dict[str, Any]) -> dict[str, Any]:
    now = time.time()
    t0 = now - opts["history_days"] * 86400
    end = now - 120
    series = live.pairs(opts["pairs"], now)
    exporter = live.serve(series, t0)
    target = f"{exporter.server_address[0]}:{exporter.server_address[1]}"
    prom_dir = work / "prometheus"
    data = prom_dir / "data"
    data.mkdir(parents=True)
    started = time.perf_counter()
    samples = live.backfill_raw(data, work, series, t0, end)
    backfill_s = time.perf_counter() - started
    cityhub = cityhub_groups_fn(opts["interval"], opts["long_interval"])
    five_minutes = [r for g in sloth for r in g["rules"] if r.get("record") == "slo:sli_error:ratio_rate5m"]
    five = [{"name": "sloth-5m", "interval": "60s", "rules": five_minutes}]
    (work / "sloth-5m.rules.yaml").write_text(rules.rules_text(five))
    prom = Prometheus(prom_dir, "", {"probes": [target]}, interval="60s", retention="400d")
    # Not cityhub.rules.yaml: the Prometheus class writes its own (empty here) rule file under that name.
    (prom_dir / "probe-slo-cityhub.yaml").write_text(rules.rules_text(cityhub))
    (prom_dir / "probe-slo-sloth.yaml").write_text(rules.rules_text(sloth))
    try:
        live.write_config(prom_dir, [], opts["interval"])
        prom.start(timeout=120.0)
        blocks = work / "rule-blocks"
        live.blocks_from_rules(prom.url, t0, end, blocks, work / "sloth-5m.rules.yaml")
        prom.stop()
        for block in blocks.iterdir():
            shutil.move(str(block), data / block.name)
        live.write_config(prom_dir, ["probe-slo-cityhub.yaml", "probe-slo-sloth.yaml"], opts["interval"])
        prom.start(timeout=120.0)
        backfill_s = time.perf_counter() - started
        tsdb_blocks = live.settle(prom, quiet=opts["settle_s"], timeout=900)
        groups = {"cityhub": [g["name"] for g in cityhub], "sloth": [g["name"] for g in sloth]}
        base = duration_seconds(opts["interval"])
        every = {g["name"]: duration_seconds(g.get("interval", opts["interval"])) for g in cityhub + sloth}
        wanted = {g: opts["cycles"] if every[g] == base else opts["long_cycles"] for g in every}
        cycles = live.measure_cycles(
            prom, wanted, timeout=max(n * every[g] for g, n in wanted.items()) * 2 + 180,
        )
        own = live.own_metrics(prom.url)
        per_rule = live.rule_times(prom)
        out: dict[str, Any] = {"history_samples": samples, "setup_s": backfill_s, "tsdb_blocks": tsdb_blocks}
        for side, pattern in (("cityhub", "cityhub:probe_.*"), ("sloth", "slo:.*|sloth_slo_info")):
            medians = {g: statistics.median(cycles[g]) for g in groups[side] if cycles[g]}
            # Per `interval` of wall time: a group evaluated 5x less often costs a fifth of its cycle.
            share = {g: base / every[g] for g in groups[side]}
            short = [cycles[g] for g in groups[side] if share[g] == 1]
            per_cycle = [sum(v) for v in zip(*short, strict=False)]
            amortised_long = sum(medians.get(g, 0.0) * share[g] for g in groups[side] if share[g] != 1)
            out[side] = {
                "groups": groups[side],
                "cycles": {g: cycles[g] for g in groups[side]},
                "median_group_s": medians,
                "intervals_s": {g: every[g] for g in groups[side]},
                "median_cycle_s": sum(medians[g] * share[g] for g in medians),
                "p99_cycle_s": _p99(per_cycle) + amortised_long,
                "samples_per_cycle": sum(
                    own.get("prometheus_rule_group_last_evaluation_samples", {}).get(g, 0) * share[g]
                    for g in groups[side]
                ),
                "tsdb": live.tsdb_series(prom, pattern),
                "rule_s_last_cycle": {k: v for k, v in per_rule.items() if k.split("/")[0] in groups[side]},
            }
        return out
    finally:
        prom.stop()
        exporter.shutdown()
        exporter.server_close()


def _p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "—"


def _burn_cells(side: dict[str, Any], severity: str, index: int) -> str:
    burns = side["alerts"].get(severity, {}).get("burns", [])
    if index >= len(burns):
        return "—"
    b = burns[index]
    if b["first"] is None:
        return "**missed**"
    return f"fires +{scenario.hhmm(b['detect_min'])}, last +{scenario.hhmm(b['reset_min'])} after end"


def table(result: dict[str, Any]) -> str:
    c, s = result["rules"]["cityhub"], result["rules"]["sloth"]
    cc, sc = result["correctness"]["cityhub"], result["correctness"]["sloth"]
    rows = [
        ("rule groups", c["groups"], s["groups"], _ratio(c["groups"], s["groups"])),
        ("rules (recording + alerting)", f"{c['rules']} ({c['recording']} + {c['alerting']})",
         f"{s['rules']} ({s['recording']} + {s['alerting']})", _ratio(c["rules"], s["rules"])),
    ]
    if "cost" in result:
        lc, ls = result["cost"]["cityhub"], result["cost"]["sloth"]
        every = opts_interval(result)
        rows += [
            (f"evaluation per {every} of wall time, median (ms)", f"{lc['median_cycle_s'] * 1000:.1f}",
             f"{ls['median_cycle_s'] * 1000:.1f}", _ratio(lc["median_cycle_s"], ls["median_cycle_s"])),
            (f"evaluation per {every} of wall time, p99 (ms)", f"{lc['p99_cycle_s'] * 1000:.1f}",
             f"{ls['p99_cycle_s'] * 1000:.1f}", _ratio(lc["p99_cycle_s"], ls["p99_cycle_s"])),
            (f"samples written per {every}", int(lc["samples_per_cycle"]), int(ls["samples_per_cycle"]),
             _ratio(lc["samples_per_cycle"], ls["samples_per_cycle"])),
            ("series created by the rules", lc["tsdb"]["series"], ls["tsdb"]["series"],
             _ratio(lc["tsdb"]["series"], ls["tsdb"]["series"])),
            ("of them NaN now (idle pairs)", lc["tsdb"]["nan_series"], ls["tsdb"]["nan_series"], ""),
        ]
    zc, zs = cc["zero_traffic"], sc["zero_traffic"]
    period_c = cc["after_idle"].get("cityhub:probe_error_budget:remaining")
    period_s = sc["after_idle"].get("slo:period_error_budget_remaining:ratio[30d]")
    after_idle = result["correctness"]["length_min"] - result["correctness"]["idle_end_min"]
    rows += [
        (f"zero traffic: NaN results ({zc['checks']} checks x per-dept series)", zc["nan"], zs["nan"], ""),
        ("zero traffic: absent results", zc["absent"], zs["absent"], ""),
        ("zero traffic: numbers", zc["number"], zs["number"], ""),
        (f"budget remaining {scenario.hhmm(after_idle)} after traffic returned",
         _num(period_c), _num(period_s), ""),
        ("never-failing department: SLO series", cc["never_failing_series"], sc["never_failing_series"], ""),
        ("page, fast burn (40x, 30 min)", _burn_cells(cc, "page", 0), _burn_cells(sc, "page", 0), ""),
        *([] if result["quick"] else [
            ("page, slow burn (8x, 10 h)", _burn_cells(cc, "page", 1), _burn_cells(sc, "page", 1), "")]),
        ("ticket, slow burn (8x, 10 h)" if not result["quick"] else "ticket, fast burn (only data: 8 h)",
         _burn_cells(cc, "ticket", 0), _burn_cells(sc, "ticket", 0), ""),
        ("false positives (blip, idle, healthy): firing checks",
         sum(v["false_positive_checks"] for v in cc["alerts"].values()),
         sum(v["false_positive_checks"] for v in sc["alerts"].values()), ""),
    ]
    lines = ["| | cityhub | Sloth v0.16.0 | cityhub / Sloth |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c_} | {d} |" for a, b, c_, d in rows]
    return "\n".join(lines)


def opts_interval(result: dict[str, Any]) -> str:
    return str(result["options"]["interval"])


def _num(v: float | None) -> str:
    return "absent" if v is None else ("NaN" if v != v else f"{v:.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/peer_slo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short scenario, 1 day of history, 10 pairs")
    parser.add_argument("--json", type=Path, help="write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (rule files, outputs)")
    args = parser.parse_args(argv)
    opts = QUICK if args.quick else FULL
    timeline = scenario.QUICK if args.quick else scenario.FULL
    work = Path(tempfile.mkdtemp(prefix="peer-slo-"))
    try:
        cityhub, sloth = rules.cityhub_groups(*CORRECTNESS_INTERVALS), rules.sloth_groups(work)
        result: dict[str, Any] = {
            "date": time.strftime("%Y-%m-%d"),
            "quick": args.quick,
            "options": opts,
            "sloth_version": rules.sloth_version(),
            "sloth_spec": rules.SPEC,
            "rules": {"cityhub": rules.count(cityhub), "sloth": rules.count(sloth)},
        }
        print("correctness: promtool test rules over the scripted scenario …", file=sys.stderr)
        result["correctness"] = correctness(work, cityhub, sloth, timeline)
        print(f"cost: {opts['pairs']} pairs, {opts['history_days']}d history, interval {opts['interval']} …",
              file=sys.stderr)
        result["cost"] = cost(work, rules.cityhub_groups, sloth, opts)
        text = table(result)
        result["table"] = text
        print(text)
        if args.json:
            args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
