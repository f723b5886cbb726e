"""ansible-runner's awx_display stdout callback, with every event sent whole to runbook and never to a file.

awx_display hands the data of each event (task results included, before anything is scrubbed) to
ansible-runner through one `<uuid>-partial.json` file per event in the artifacts folder. Here no event
ever touches a disk, so runbook scrubs it before anything is kept. Two ways, the first when it can:

- out of band: runbook names a pipe in RUNBOOK_EVENTS_PIPE (in its private scratch folder). Each event,
  with the text the default callback displays for it, goes there as one line of JSON; nothing goes to
  the terminal. runbook reads the pipe in 64 KiB reads on a thread of its own: at 2,000 hosts that is a
  few hundred reads instead of some 13,000 pty reads of base64 that ansible-runner decodes per event.
- in-band: inside the base64 marker awx_display already writes on stdout, which ansible-runner's
  OutputEventFilter decodes. When the pipe is not there (no reader), and for output before this plugin
  loads, which reaches runbook as ansible-runner's `verbose` events either way.

Loaded by ansible-playbook (not by runbook): it takes awx_display from ansible-runner's own callback
folder, which ansible-runner puts on ANSIBLE_CALLBACK_PLUGINS after this one."""
from __future__ import annotations

import base64
import functools
import inspect
import json
import multiprocessing
import os
import sys
import uuid
from typing import IO, Any

from ansible import constants as C
from ansible.plugins.loader import callback_loader
from ansible.utils.display import Display

DOCUMENTATION = """
    name: runbook_events
    short_description: ansible-runner's event dispatcher, with event data sent to runbook, never to files
    description:
        - awx_display from ansible-runner, except that event data never goes through files.
    type: stdout
    extends_documentation_fragment:
      - default_callback
    requirements:
      - Set as stdout callback by runbook
"""

PIPE_VARIABLE = "RUNBOOK_EVENTS_PIPE"  # set by runbook (ansible_step._EVENTS_PIPE), which cannot import this module

_awx: Any = callback_loader.get("awx_display", class_only=True)
if _awx is None:
    raise ImportError("ansible-runner's awx_display callback is not on ANSIBLE_CALLBACK_PLUGINS")


_module = sys.modules[_awx.__module__]


def _open_pipe() -> int | None:
    """The write end of runbook's events pipe, or None (no pipe named, or nobody reading it: in-band)."""
    path = os.environ.get(PIPE_VARIABLE)
    if not path:
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # ENXIO when no reader: never blocks
    except OSError:
        return None
    os.set_blocking(fd, True)  # a reader that falls behind holds ansible back, as a full pty would
    return fd


class _Capture:
    """What sys.stdout and sys.stderr are while an event is open: the text displayed for it, kept."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:  # fileno, isatty, encoding...: the terminal's
        return getattr(self._stream, name)


class _OutOfBand:
    """dump_begin and dump_end for the pipe. awx_display holds the display lock from one to the other,
    and Display writes to whatever sys.stdout and sys.stderr are at that moment."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.open: list[tuple[dict[str, Any], Any, Any, _Capture]] = []

    def begin(self, context: Any, fileobj: IO[str]) -> None:
        capture = _Capture(sys.stdout)
        self.open.append((context.get_begin_dict(), sys.stdout, sys.stderr, capture))
        sys.stdout = sys.stderr = capture

    def end(self, context: Any, fileobj: IO[str]) -> None:
        if not self.open:
            return
        event, sys.stdout, sys.stderr, capture = self.open.pop()
        event["stdout"] = "".join(capture.parts)  # whole: runbook counts its lines, then strips it
        line = json.dumps(event, cls=_module.AnsibleJSONEncoderLocal).encode("utf-8") + b"\n"
        view = memoryview(line)
        while view:
            view = view[os.write(self.fd, view):]


def _dump_begin(self: Any, fileobj: IO[str], max_width: int = 78) -> None:
    """awx_display's dump() of the whole event, with the encoder its partial files use (dates, vault)."""
    data = json.dumps(self.get_begin_dict(), cls=_module.AnsibleJSONEncoderLocal)
    b64data = base64.b64encode(data.encode("utf-8")).decode()
    # the framing OutputEventFilter expects: ESC[K, chunks each followed by ESC[<len>D, ESC[K
    chunks = (b64data[i:i + max_width] for i in range(0, len(b64data), max_width))
    framed = "\x1b[K" + "".join(f"{chunk}\x1b[{len(chunk)}D" for chunk in chunks) + "\x1b[K"
    with self.display_lock:
        fileobj.write(framed)


def _lighten_display() -> None:
    """awx_display wraps Display's methods so that what they print is tagged with its kind. Two of those
    wrappers cost at every call what they need only when something is printed: `debug`'s sets up its
    tag before Display learns that debug output is off (some 40 calls per host and task), and
    `display`'s binds its arguments with inspect at every call. Here the same wrappers, in that
    cheaper order. Left as they are if Display is not the one they were written for."""
    awx_debug = Display.debug
    if getattr(awx_debug, "__wrapped__", None) is not None:
        def debug(self: Any, msg: str, host: str | None = None) -> None:
            if C.DEFAULT_DEBUG:
                awx_debug(self, msg, host=host)

        Display.debug = functools.wraps(awx_debug)(debug)

    plain = getattr(Display.display, "__wrapped__", None)
    expected = ["self", "msg", "color", "stderr", "screen_only", "log_only", "newline", "caplevel"]
    if plain is None or list(inspect.signature(inspect.unwrap(plain)).parameters) != expected:
        return
    context = _module.event_context

    def display(self: Any, msg: str, color: str | None = None, stderr: bool = False, screen_only: bool = False,
                log_only: bool = False, newline: bool = True, caplevel: int | None = None) -> None:
        options = {"color": color, "stderr": stderr, "screen_only": screen_only, "log_only": log_only,
                   "newline": newline, "caplevel": caplevel}
        if multiprocessing.parent_process() is not None:  # a worker: Display sends it to the main process
            plain(self, msg, **options)
            return
        with context.display_lock:
            if log_only or context.get().get("uuid"):  # only logged, or printed inside an event already
                plain(self, msg, **options)
                return
            fileobj = sys.stderr if stderr else sys.stdout
            try:
                context.add_local(uuid=str(uuid.uuid4()))
                context.dump_begin(fileobj)
                plain(self, msg, **options)
            finally:
                context.dump_end(fileobj)
                context.remove_local(uuid=None)

    Display.display = functools.wraps(plain)(display)


_lighten_display()
_pipe = _open_pipe()
if _pipe is not None:
    _channel = _OutOfBand(_pipe)
    _module.EventContext.dump_begin = lambda self, fileobj: _channel.begin(self, fileobj)
    _module.EventContext.dump_end = lambda self, fileobj: _channel.end(self, fileobj)
else:
    _module.EventContext.dump_begin = _dump_begin


class CallbackModule(_awx):  # type: ignore[misc]
    CALLBACK_NAME = "runbook_events"
