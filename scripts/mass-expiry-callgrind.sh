#!/bin/bash
# mass-expiry-callgrind.sh BIN N id|full → Ir of the window from 1.5 s before a shared deadline of N
# sessions (SQLite, restart trick of docs/PERFORMANCE.md "Mass expiry") until /v1/admin/health
# reports 0 live and one SSE subscriber (outside valgrind; id = ?session=id) has every end.
# Per-function costs: callgrind_annotate --inclusive=yes DIR/cg.out.1. VGOPTS=--dump-instr=yes
# splits costs by call site. IDLE (default 40s) must exceed recovery under valgrind.
set -euo pipefail
BIN=$1; N=$2; FORM=$3; D=$(mktemp -d /tmp/massprof.XXXX); echo "dir $D"
IDLE=${IDLE:-40s}
. "$(dirname "$0")/lib/mass-expiry-setup.sh"
valgrind --tool=callgrind --instr-atstart=no ${VGOPTS:-} --callgrind-out-file="$D/cg.out" \
  "$BIN" serve --store "sqlite://$D/t.db" --listen 127.0.0.1:$PORT --config "$D/t.toml" >"$D/log1" 2>&1 &
V=$!
until curl -sf $B/readyz >/dev/null; do sleep 0.5; done
Q=""; [ "$FORM" = id ] && Q="?session=id"
curl -sN -H "authorization: Bearer $KEY" "$B/v1/events$Q" > "$D/sse" &
C=$!
EXP=$(curl -sf -H "authorization: Bearer $KEY" "$B/v1/sessions/$SID" | python3 -c "import json,sys;d=json.load(sys.stdin);d=d.get('session',d);print(d['expires_at'])")
echo "expires_at $EXP"
python3 - "$EXP" <<'PY'
import sys, datetime, time
t = datetime.datetime.fromisoformat(sys.argv[1].replace('Z','+00:00')).timestamp()
d = t - time.time() - 1.5
print("sleeping", round(d,1)); time.sleep(max(0,d))
PY
callgrind_control -i on $V >/dev/null; callgrind_control -z $V >/dev/null
T0=$(date +%s.%N)
while :; do
  tot=$(curl -sf -H "authorization: Bearer $KEY" $B/v1/admin/health | python3 -c "import json,sys;print(json.load(sys.stdin)['sessions']['total'])" || echo x)
  got=$(grep -c '^event: session.ended' "$D/sse" || true)
  [ "$tot" = 0 ] && [ "$got" -ge "$N" ] && break
  sleep 0.5
done
T1=$(date +%s.%N)
callgrind_control -d $V >/dev/null
echo "window $(python3 -c "print(round($T1-$T0,1))") s, events $got"
curl -sf $B/metrics | grep -E 'expiry_stage_lateness_seconds_(sum|count)' || true
kill $C; kill $V; wait $V 2>/dev/null || true
grep -h '^summary:' "$D"/cg.out.*
