"""A real Prometheus on a free loopback port (built by hack/prometheus.sh), started and stopped through the
supervisor: the monitoring tests evaluate cityhub's rules with it, reports read from it, and `cityhub
dashboard` starts one for the embedded default (recorded, so `cityhub operator status|stop` see it)."""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from cityhub import paths, supervisor


class Prometheus:
    def __init__(
        self,
        directory: Path,
        rules: str,
        scrape: dict[str, list[str]],
        interval: str = "1s",
        *,
        records: supervisor.Supervisor | None = None,
        serves: str = "",
        retention: str | None = None,
    ) -> None:
        """`rules`: a rule file's text; `scrape`: job name → targets (host:port); `records`: where to record
        the process (else it is private to its caller); `serves`: what `cityhub operator status` says;
        `retention`: --storage.tsdb.retention.time (Prometheus's default 15d deletes older backfills)."""
        self.directory, self.port = directory, supervisor.free_port()
        self.retention = retention
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cityhub.rules.yaml").write_text(rules)
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": ["cityhub.rules.yaml"],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in scrape.items()
            ],
        }
        (directory / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = supervisor.Managed("prometheus", records)
        self.serves = serves

    @property
    def record(self) -> supervisor.Record | None:
        return self.process.record

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Prometheus:
        binary = paths.tool("prometheus")
        self.process.launch(
            [
                str(binary),
                f"--config.file={self.directory / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                *([f"--storage.tsdb.retention.time={self.retention}"] if self.retention else []),
            ],
            ready=lambda: supervisor.http_ok(f"{self.url}/-/ready", timeout=5),
            timeout=timeout,
            log=self.directory / "prometheus.log",
            ports={"http": self.port},
            serves=self.serves,
            url=self.url,
        )
        return self

    def stop(self) -> None:
        self.process.stop()

    def _get(self, path: str, **params: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=5) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/query", query=expr)["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def alerts(self, name: str, state: str = "firing") -> list[dict[str, Any]]:
        return [
            a
            for a in self._get("/api/v1/alerts")["alerts"]
            if a["labels"]["alertname"] == name and a["state"] == state
        ]
