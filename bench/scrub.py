"""The secret scrubber on a stream of Ansible-like events, as a ratio to the work every event costs
anyway (dumping it as JSON): events without a secret, and events that print one. Also the time to
build the scrubber for a token and for a PEM key (once per run).

    python bench/scrub.py [--events 5000]
"""
from __future__ import annotations

import argparse
import base64
import json
import time
from typing import Any, Callable

from runner.store.redact import Scrubber

TOKEN = 'pä"ss\\wörd-é7f3a'
PEM = "-----BEGIN PRIVATE KEY-----\n" + "\n".join(
    base64.b64encode(bytes(range(i, i + 48))).decode() for i in range(26)) + "\n-----END PRIVATE KEY-----"


def _event(i: int, secret: str) -> dict[str, Any]:
    result = {"changed": False, "msg": f"the value is {secret}", "stdout_lines": [f"line {n} of task {i}" for n in range(20)]}
    stdout = f"ok: [web{i % 40:02d}] => " + json.dumps(result, indent=4, ensure_ascii=False)
    return {"uuid": f"{i:032x}", "counter": i, "event": "runner_on_ok", "stdout": stdout,
            "event_data": {"host": f"web{i % 40:02d}", "task": f"task {i}", "res": result}}


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    args = parser.parse_args()
    for label, secrets in (("token", [TOKEN]), ("token + PEM key", [TOKEN, PEM])):
        build = _timed(lambda: Scrubber(secrets))
        scrub = Scrubber(secrets)
        for kind, shown in (("no secret", "an ordinary value"), ("secret printed", TOKEN)):
            events = [_event(i, shown) for i in range(args.events)]
            dump = _timed(lambda: [json.dumps(e) for e in events])
            scrubbed = _timed(lambda: [scrub.json(e) for e in events])
            print(f"{label:16} {kind:15} scrub+dump / dump = {scrubbed / dump:5.2f}x  "
                  f"({scrubbed / args.events * 1e6:6.1f} us/event; build {build * 1e3:.0f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
