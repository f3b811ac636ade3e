"""A Tether webhook receiver in FastAPI: verifies each request with the
`standardwebhooks` library and acts on the event.

    pip install fastapi uvicorn standardwebhooks
    TETHER_WEBHOOK_SECRET=whsec_... PORT=8000 python3 receiver.py

Tether POSTs every event as JSON with the Standard Webhooks headers
`webhook-id` (the event id: the same on every retry, so use it to ignore
duplicates), `webhook-timestamp` and `webhook-signature`. Answer 2xx quickly:
anything else, or no answer within 15 s, is retried later.
"""

import json
import os
import sys

import uvicorn
from fastapi import FastAPI, Request, Response
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

SECRET = os.environ.get("TETHER_WEBHOOK_SECRET")
if not SECRET:
    sys.exit("set TETHER_WEBHOOK_SECRET to the [[webhooks]] secret (whsec_...)")

hook = Webhook(SECRET)
seen: set[str] = set()  # webhook-ids handled (keep these in your database)
app = FastAPI()


@app.post("/tether")
async def tether_webhook(request: Request) -> Response:
    # Verify the raw body: re-serialised JSON would not match the signature.
    body = (await request.body()).decode()
    try:
        event = hook.verify(body, dict(request.headers))
    except WebhookVerificationError as e:
        print(json.dumps({"verified": False, "error": str(e)}), flush=True)
        return Response(status_code=400)
    webhook_id = request.headers["webhook-id"]
    if webhook_id not in seen:
        seen.add(webhook_id)
        handle(event)
    return Response(status_code=204)


def handle(event: dict) -> None:
    """What the seed apps do with it: the marketplace cancels a request nobody
    took, the interview platform starts grading when an interview ends."""
    s = event["session"]
    if event["type"] == "session.ended" and s["kind"] == "request" and event.get("reason") == "waiting_timeout":
        pass  # cancel the customer's pending request, tell the customer
    elif event["type"] == "session.ended" and s["kind"] == "interview":
        pass  # start grading the interview of s["user_id"]
    print(json.dumps({"verified": True, "id": event["id"], "type": event["type"], "session": s["id"], "kind": s["kind"]}), flush=True)


if __name__ == "__main__":
    port = int(os.environ.get("PORT", "8000"))
    print(f"listening on http://127.0.0.1:{port}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
