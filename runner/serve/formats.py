"""Alert bodies as the monitoring systems send them -> `Alert`s; ValueError (a 400) says what is wrong.
Everything here is data: labels and annotations are kept as strings and never interpreted."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

MAX_ALERTS = 1000  # one request; Alertmanager's groups are far smaller
MAX_FIELD = 4096  # characters of one label or annotation value


@dataclass(frozen=True)
class Alert:
    fingerprint: str
    status: str  # firing | resolved
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: str
    generator_url: str = ""

    def field(self, ref: str) -> str | None:
        """`labels.X` / `annotations.X` of this alert, or None when it has no such field."""
        section, _, name = ref.partition(".")
        source = self.labels if section == "labels" else self.annotations if section == "annotations" else {}
        return source.get(name)

    def to_dict(self, hook: str) -> dict[str, Any]:
        return {"hook": hook, "fingerprint": self.fingerprint, "status": self.status, "labels": dict(self.labels),
                "annotations": dict(self.annotations), "startsAt": self.starts_at, "generatorURL": self.generator_url}


def parse_body(kind: str, body: bytes) -> list[Alert]:
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise ValueError("the body is not JSON") from None
    if kind == "alertmanager":
        return _alertmanager(data)
    return _json(data)


def _alertmanager(data: Any) -> list[Alert]:
    """Alertmanager's webhook_config body: version "4", groupKey, status, receiver, alerts[]."""
    if not isinstance(data, dict) or not isinstance(data.get("alerts"), list):
        raise ValueError("not an Alertmanager webhook body: expected an object with an alerts list")
    if str(data.get("version", "4")) != "4":
        raise ValueError(f"Alertmanager webhook version {data.get('version')!r}: only version 4 is understood")
    return _alerts(data["alerts"])


def _json(data: Any) -> list[Alert]:
    """Our plain format: {"alerts": [ALERT, ...]} or one ALERT, with Alertmanager's alert keys."""
    if isinstance(data, dict) and isinstance(data.get("alerts"), list):
        return _alerts(data["alerts"])
    if isinstance(data, dict) and "labels" in data:
        return _alerts([data])
    raise ValueError('expected {"alerts": [...]} or one alert object with labels')


def _alerts(items: list[Any]) -> list[Alert]:
    if len(items) > MAX_ALERTS:
        raise ValueError(f"{len(items)} alerts in one request: at most {MAX_ALERTS}")
    return [_alert(item, index) for index, item in enumerate(items)]


def _alert(item: Any, index: int) -> Alert:
    where = f"alerts[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected an object")
    labels = _strings(item.get("labels"), f"{where}.labels")
    if not labels:
        raise ValueError(f"{where}.labels: an alert needs labels")
    annotations = _strings(item.get("annotations", {}), f"{where}.annotations")
    status = item.get("status", "firing")
    if status not in ("firing", "resolved"):
        raise ValueError(f"{where}.status: {str(status)[:40]!r} is not firing or resolved")
    starts_at = _text(item.get("startsAt", ""), f"{where}.startsAt")
    fingerprint = _text(item.get("fingerprint", ""), f"{where}.fingerprint") or _fingerprint(labels)
    return Alert(fingerprint, status, labels, annotations, starts_at, _text(item.get("generatorURL", ""), f"{where}.generatorURL"))


def _strings(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected an object of strings")
    return {_text(k, where): _text(v, f"{where}.{str(k)[:40]}") for k, v in value.items()}


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected a string")
    if len(value) > MAX_FIELD or "\0" in value:
        raise ValueError(f"{where}: longer than {MAX_FIELD} characters or holding NUL")
    return value


def _fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's own fingerprint is a hash of the label set: the same for an alert without one."""
    return hashlib.sha256(json.dumps(sorted(labels.items())).encode()).hexdigest()[:16]
