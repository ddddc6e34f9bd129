"""Log lines and text helpers of the SDK.

Log lines go to stderr as "executor=ID [flow_run=ID] event key=value ...",
the format of the C SDK, through the "drover_executor" logger.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

log = logging.getLogger("drover_executor")


def quote_value(value: Any) -> str:
    """Return value as text for a key=value pair, JSON-quoted when it has spaces or quotes."""
    text = str(value)
    if text == "" or any(c in text for c in ' "=\n\t'):
        return json.dumps(text)
    return text


def cut_utf8(text: str, max_bytes: int) -> str:
    """Return text cut to at most max_bytes of UTF-8 at a character boundary."""
    return text.encode("utf-8", "replace")[:max_bytes].decode("utf-8", "ignore")


def exception_text(exc: BaseException) -> str:
    """Return "ExceptionName: message", or the name alone when the message is empty."""
    text = str(exc)
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def configure_logging(stream: Any = None) -> None:
    """Send the SDK's log lines to stderr as they are: "executor=ID event key=value"."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
