#!/bin/bash
# mass-expiry-stages.sh BIN N id|full → wall seconds from a shared deadline of N sessions (SQLite,
# restart trick) until the first and the last end is ended/committed/published/written, from
# tether_expiry_stage_lateness_seconds counts on /metrics polled every 50 ms (no valgrind).
set -euo pipefail
BIN=$1; N=$2; FORM=$3; D=$(mktemp -d /tmp/massstages.XXXX); echo "dir $D"
IDLE=${IDLE:-15s}
. "$(dirname "$0")/lib/mass-expiry-setup.sh"
"$BIN" serve --store "sqlite://$D/t.db" --listen 127.0.0.1:$PORT --config "$D/t.toml" >"$D/log1" 2>&1 &
V=$!
until curl -sf $B/readyz >/dev/null; do sleep 0.1; done
Q=""; [ "$FORM" = id ] && Q="?session=id"
curl -sN -H "authorization: Bearer $KEY" "$B/v1/events$Q" | grep --line-buffered -c '^event: session.ended' > "$D/count" &
EXP=$(curl -sf -H "authorization: Bearer $KEY" "$B/v1/sessions/$SID" | python3 -c "import json,sys;d=json.load(sys.stdin);d=d.get('session',d);print(d['expires_at'])")
python3 - "$B" "$KEY" "$N" "$EXP" <<'PY'
import sys, json, time, datetime, urllib.request
b, key, n, exp = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
t = datetime.datetime.fromisoformat(exp.replace('Z','+00:00')).timestamp()
seen = {}; first = {}
while time.time() < t + 120 and len(seen) < 4:
    m = urllib.request.urlopen(b + "/metrics").read().decode()
    for st in ("ended", "committed", "published", "written"):
        for l in m.split('\n'):
            if l.startswith('tether_expiry_stage_lateness_seconds_count{stage="%s"}' % st):
                c = float(l.split()[-1])
                if c > 0 and 'first_' + st not in first: first['first_' + st] = round(time.time() - t, 2)
                if c >= n and st not in seen: seen[st] = round(time.time() - t, 2)
    time.sleep(0.05)
print("seconds after the deadline (polled every 50 ms):", first, seen)
PY
kill $V; wait $V 2>/dev/null || true
