"""`cityhub dashboard`: the live hub capability dashboard (中枢能力仪表盘): cluster.py reads the API server,
state.py assembles the state (reusing cityhub.report's queries and model), page.py renders it, serve.py serves
it, local.py starts the embedded default's Prometheus when no other is named."""
