"""ansible-runner's awx_display stdout callback with every event's data sent in-band.

awx_display hands the data of each event (task results included, before anything is scrubbed) to
ansible-runner through one `<uuid>-partial.json` file per event in the artifacts folder. Here the whole
event travels inside the base64 marker awx_display already writes on stdout, which ansible-runner's
OutputEventFilter decodes: no event ever touches a disk, so runbook scrubs it before anything is kept.
Loaded by ansible-playbook (not by runbook): it takes awx_display from ansible-runner's own callback
folder, which ansible-runner puts on ANSIBLE_CALLBACK_PLUGINS after this one."""
from __future__ import annotations

import base64
import json
import sys
from typing import IO, Any

from ansible.plugins.loader import callback_loader

DOCUMENTATION = """
    name: runbook_events
    short_description: ansible-runner's event dispatcher, with event data in-band on stdout
    description:
        - awx_display from ansible-runner, except that event data never goes through files.
    type: stdout
    extends_documentation_fragment:
      - default_callback
    requirements:
      - Set as stdout callback by runbook
"""

_awx: Any = callback_loader.get("awx_display", class_only=True)
if _awx is None:
    raise ImportError("ansible-runner's awx_display callback is not on ANSIBLE_CALLBACK_PLUGINS")


_module = sys.modules[_awx.__module__]


def _dump_begin(self: Any, fileobj: IO[str], max_width: int = 78) -> None:
    """awx_display's dump() of the whole event, with the encoder its partial files use (dates, vault)."""
    data = json.dumps(self.get_begin_dict(), cls=_module.AnsibleJSONEncoderLocal)
    b64data = base64.b64encode(data.encode("utf-8")).decode()
    # the framing OutputEventFilter expects: ESC[K, chunks each followed by ESC[<len>D, ESC[K
    chunks = (b64data[i:i + max_width] for i in range(0, len(b64data), max_width))
    framed = "\x1b[K" + "".join(f"{chunk}\x1b[{len(chunk)}D" for chunk in chunks) + "\x1b[K"
    with self.display_lock:
        fileobj.write(framed)


_module.EventContext.dump_begin = _dump_begin


class CallbackModule(_awx):  # type: ignore[misc]
    CALLBACK_NAME = "runbook_events"
