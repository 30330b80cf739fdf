"""Verifies webhook deliveries with the official Standard Webhooks library.

stdin: {"now": <unix seconds or null>, "cases": [{"secret": "whsec_...", "headers": {...}, "body": "..."}]}
stdout: one JSON list, per case the verified payload's "type" or {"error": "<exception name>"}.

"now" lets a test that moved the service's clock judge the timestamp at the same moment: the
library checks webhook-timestamp against datetime.now() (5 minutes tolerance), so it is given a
datetime whose now() is that moment. Nothing else about the library is changed.
"""
import json
import sys
from datetime import datetime, timezone

import standardwebhooks.webhooks as sw
from standardwebhooks import Webhook

req = json.load(sys.stdin)
if req.get("now") is not None:
    fixed = float(req["now"])

    class _Moved(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(fixed, tz=tz or timezone.utc)

    sw.datetime = _Moved

out = []
for case in req["cases"]:
    try:
        payload = Webhook(case["secret"]).verify(case["body"], case["headers"])
        out.append(payload["type"])
    except Exception as e:  # the library raises WebhookVerificationError
        out.append({"error": type(e).__name__})
print(json.dumps(out))
