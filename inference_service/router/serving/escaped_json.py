"""JSON responses that can carry any text: every non-ASCII character escaped as ``\\uXXXX``.

Starlette's JSONResponse encodes its text as UTF-8, and that fails - an unhandled
UnicodeEncodeError, a 500 - on a lone surrogate: JSON may carry one (a client that sends
``{"model": "\\udfff"}`` gets it back in its 404), UTF-8 cannot. Escaped, any ``str``
renders, and every JSON decoder reads the very same text back. Used for what echoes
client input (error envelopes) or arbitrary logged text (log tails).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.responses import JSONResponse


class EscapedJSONResponse(JSONResponse):
    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
