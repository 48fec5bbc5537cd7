"""Run the operator: `python -m cityhub_operator` (settings from CITYHUB_* environment variables).

Locally it uses $KUBECONFIG (e.g. the embedded cluster's); in a pod, its service account. With
CITYHUB_PEERING, replicas elect a leader through that ClusterKopfPeering (kopf peering): the others stay
paused until it stops keeping itself alive.
"""

from __future__ import annotations

import logging
import os
import sys

import kopf

from cityhub_api import registry
from cityhub_api.registry import SchemaError
from cityhub_operator import drivers_loader, handlers
from cityhub_operator.settings import OperatorSettings
from cityhub_operator.watchdog import Peering


def main() -> int:
    try:
        settings = OperatorSettings.from_env()
        declared = registry.component_types()
        unknown = [c for c in settings.components if c not in declared]
        if unknown:
            raise ValueError(
                f"Invalid CITYHUB_COMPONENTS={','.join(settings.components)}: needs to name declared "
                f"component types ({', '.join(sorted(declared))}); unknown: {', '.join(unknown)}"
            )
        types = [declared[n] for n in (settings.components or sorted(declared))]
        asked = bool(settings.components)
        drivers = {t.name: drivers_loader.load_driver(t, os.environ, required=asked) for t in types}
    except (ValueError, drivers_loader.DriverLoadError, SchemaError) as e:
        print(f"cityhub-operator: {e}", file=sys.stderr)
        return 2
    kopf.configure(
        log_format=kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.PLAIN,
        verbose=settings.log_level == "DEBUG",
    )
    logging.getLogger().setLevel(settings.log_level)
    logging.getLogger("cityhub_operator").setLevel(settings.log_level)
    # /healthz is asked every few seconds: log its failures (kopf logs them as errors), not each answer.
    for chatty in ("aiohttp.access", "kopf.activities.probe"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.getLogger("kopf.objects").addFilter(_quiet_timers)
    ops = kopf.OperatorRegistry()
    peering = Peering.of(settings)
    handlers.register(ops, settings, drivers, types, peering=peering)
    kopf.run(
        registry=ops,
        # Standalone never joins a peering it was not told of (another kopf operator's `default` one).
        standalone=not peering.name,
        peering_name=peering.name or None,
        priority=peering.priority,
        identity=peering.identity or None,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz" if settings.health_port else None,
    )
    return 0


def _quiet_timers(record: logging.LogRecord) -> bool:
    """Drop kopf's INFO line for each timer run that succeeds: with the drift and probe timers of thousands
    of requests, hundreds of lines a second (and the CPU to format them); failed runs are still logged."""
    message = str(record.msg)
    return not (
        record.levelno == logging.INFO and message.startswith("Timer ") and message.endswith(" succeeded.")
    )


if __name__ == "__main__":
    sys.exit(main())
