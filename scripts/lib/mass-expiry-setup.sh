# Shared by scripts/mass-expiry-callgrind.sh and scripts/mass-expiry-stages.sh (sourced, not run):
# given BIN, N, D and IDLE, starts a server on a fresh SQLite store in $D, creates N sessions
# (idle_timeout 2h), kills it (kill -9) and writes the config that restarts them with idle_timeout
# $IDLE, so that all N share one deadline after the restart (docs/PERFORMANCE.md "Mass expiry").
KEY=profile-key-0123456789
cfg() { cat > "$D/t.toml" <<TOML
[auth]
api_keys = ["$KEY"]
[limits]
user_rate = "off"
[kinds.p]
idle_timeout = "$1"
TOML
}
PORT=$((20000 + RANDOM % 20000)); B=http://127.0.0.1:$PORT
cfg 2h
"$BIN" serve --store "sqlite://$D/t.db" --listen 127.0.0.1:$PORT --config "$D/t.toml" >"$D/log0" 2>&1 &
S0=$!
until curl -sf $B/readyz >/dev/null; do sleep 0.2; done
python3 - "$B" "$KEY" "$N" <<'PY'
import sys, json, urllib.request
b, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
i = 0
while i < n:
    k = min(1000, n - i)
    body = json.dumps({"sessions": [{"kind": "p", "user_id": f"u{i+j}"} for j in range(k)]}).encode()
    r = urllib.request.Request(b + "/v1/sessions/batch", data=body, method="POST",
        headers={"authorization": "Bearer " + key, "content-type": "application/json"})
    urllib.request.urlopen(r).read()
    i += k
PY
SID=$(curl -sf -H "authorization: Bearer $KEY" "$B/v1/sessions?limit=1" | python3 -c "import json,sys;d=json.load(sys.stdin);print((d.get('sessions') or d.get('items') or d['data'])[0]['id'])")
kill -9 $S0; wait $S0 2>/dev/null || true
cfg "$IDLE"
