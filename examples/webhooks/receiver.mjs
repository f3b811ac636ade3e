// A Tether webhook receiver in plain Node (no framework): verifies each
// request with the `standardwebhooks` library and acts on the event.
//
//   npm install            # in this directory: installs standardwebhooks
//   TETHER_WEBHOOK_SECRET=whsec_... PORT=8000 node receiver.mjs
//
// Tether POSTs every event as JSON with the Standard Webhooks headers
// `webhook-id` (the event id: the same on every retry, so use it to ignore
// duplicates), `webhook-timestamp` and `webhook-signature`. Answer 2xx
// quickly: anything else, or no answer within 15 s, is retried later.
import http from "node:http";
import { Webhook } from "standardwebhooks";

const secret = process.env.TETHER_WEBHOOK_SECRET;
if (!secret) {
  console.error("set TETHER_WEBHOOK_SECRET to the [[webhooks]] secret (whsec_...)");
  process.exit(2);
}
// The library takes the base64 part of the secret.
const hook = new Webhook(secret.replace(/^whsec_/, ""));
const seen = new Set(); // webhook-ids handled (keep these in your database)

const server = http.createServer((req, res) => {
  if (req.method !== "POST") {
    res.writeHead(405).end();
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    // Verify the raw body: re-serialised JSON would not match the signature.
    const body = Buffer.concat(chunks).toString("utf8");
    let event;
    try {
      event = hook.verify(body, req.headers);
    } catch (e) {
      console.log(JSON.stringify({ verified: false, error: String(e) }));
      res.writeHead(400).end();
      return;
    }
    const id = req.headers["webhook-id"];
    if (!seen.has(id)) {
      seen.add(id);
      handle(event);
    }
    res.writeHead(204).end();
  });
});

// What the seed apps do with it: the marketplace cancels a request nobody
// took, the interview platform starts grading when an interview ends.
function handle(event) {
  const s = event.session;
  if (event.type === "session.ended" && s.kind === "request" && event.reason === "waiting_timeout") {
    // cancel the customer's pending request, tell the customer
  } else if (event.type === "session.ended" && s.kind === "interview") {
    // start grading the interview of s.user_id
  }
  console.log(JSON.stringify({ verified: true, id: event.id, type: event.type, session: s.id, kind: s.kind }));
}

const port = Number(process.env.PORT || 8000);
server.listen(port, "127.0.0.1", () => {
  console.log(`listening on http://127.0.0.1:${server.address().port}`);
});
