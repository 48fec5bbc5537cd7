"""运营评价: a period's evaluation report (`cityhub report --period YYYY-MM`), per department x type.

query.py        PromQL over the HTTP API of the Prometheus that scrapes the operator
model.py        typed figures (sums that add up) and what follows from them (ratios, p95, Apdex)
build.py        query results → the report: the period, departments, the ranking of what needs attention
prices.py       the price sheet a city sets (schemas/price-sheet.schema.json), validated with readable errors
cost.py         成本分摊 / cost showback: component-hours per department x type, priced by the sheet
render_json.py  the machine-readable report (schema cityhub.io/report/v1, docs/report.md)
render_html.py  the static bilingual page (中文 first)
command.py      the CLI subcommand
"""
