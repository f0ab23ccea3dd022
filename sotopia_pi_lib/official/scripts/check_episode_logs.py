"""Validate exported episodes against the official `EpisodeLog` model (fields, types, validators).

Reads {"lines": [json text, ...]} on stdin; prints {"errors": [null | message, ...]} and, for lines
that validate, what the model parsed ("pk", "rewards"). pydantic's `validate_model` runs every field
and root validator without building the redis-om object, whose constructor would look for a Redis
server.
"""

import contextlib
import json
import sys

from pydantic import validate_model
from sotopia.database.logs import EpisodeLog

payload = json.load(sys.stdin)
out = {"errors": [], "parsed": []}
with contextlib.redirect_stdout(sys.stderr):
    for text in payload["lines"]:
        values, _, error = validate_model(EpisodeLog, json.loads(text))
        out["errors"].append(None if error is None else str(error))
        out["parsed"].append(None if error else {"pk": values.get("pk"), "rewards": values.get("rewards"),
                                                 "messages": values.get("messages")})
json.dump(out, sys.stdout)
