#!/usr/bin/env bash
# The REST API with curl: health, the model, a whole clip, then a session fed frame batches.
#
#   examples/rest.sh                              # a replica or the balancer on localhost:8000
#   POSELIFT_URL=http://lb:8000 POSELIFT_API_KEY=... examples/rest.sh
#
# Needs curl and jq. Two frames of a person 4 m from a 1920x1080 camera (h36m17 joint order, pixels).
set -euo pipefail

B=${POSELIFT_URL:-http://localhost:8000}
AUTH=()
if [ -n "${POSELIFT_API_KEY:-}" ]; then AUTH=(-H "Authorization: Bearer $POSELIFT_API_KEY"); fi
JSON=(-H 'Content-Type: application/json')

KP0='[[959.6,538.2],[938.3,538.3],[925.3,623.7],[933.9,613.1],[981,538.1],[969,625.5],[954.8,700.5],[961.9,482.3],[972.2,415.3],[979.7,375.3],[978.8,354.1],[998.9,430.1],[1000.2,499],[989.8,475.6],[941.8,421.8],[920.3,477.7],[919.3,514.5]]'
KP1='[[960.4,541.8],[938.4,542.3],[924.3,623.4],[931.7,632],[982.3,541.4],[969.2,632.8],[952.5,697.4],[962,484.5],[972.8,415.5],[980.8,374.2],[980.8,352.3],[1000.5,431.3],[1002.1,504],[988.7,471.6],[941.9,421.8],[922,477.1],[913.9,516.7]]'
CAMERA='"layout": "h36m17", "width": 1920, "height": 1080, "fps": 30'

say() { printf '\n$ %s\n' "$*" >&2; }

say "GET /healthz, /readyz, /v1/model"
curl -sf "$B/healthz"; echo
curl -s "$B/readyz"; echo
curl -sf "${AUTH[@]}" "$B/v1/model" | jq -c '{kind, window, checkpoint_id, device}'

say "POST /v1/lift (two frames; the head joint of each pose, mm)"
curl -sf "${AUTH[@]}" "${JSON[@]}" -X POST "$B/v1/lift" \
    -d "{$CAMERA, \"keypoints\": [$KP0, $KP1]}" | jq -c '[.poses[] | .[10]]'

say "POST /v1/sessions"
SID=$(curl -sf "${AUTH[@]}" "${JSON[@]}" -X POST "$B/v1/sessions" -d "{$CAMERA}" | jq -r .session_id)
echo "session $SID"

say "POST /v1/sessions/\$SID/frames (seq 0, then seq 0 again and seq 2: a resend and a dropped frame)"
curl -sf "${AUTH[@]}" "${JSON[@]}" -X POST "$B/v1/sessions/$SID/frames" \
    -d "{\"frames\": [{\"seq\": 0, \"keypoints\": $KP0}]}" | jq -c '[.poses[] | {seq, head: .joints[10]}]'
curl -sf "${AUTH[@]}" "${JSON[@]}" -X POST "$B/v1/sessions/$SID/frames" \
    -d "{\"frames\": [{\"seq\": 0, \"keypoints\": $KP0}, {\"seq\": 2, \"keypoints\": $KP1}]}" \
    | jq -c '[.poses[] | {seq, head: .joints[10]}]'

say "GET /v1/sessions/\$SID"
curl -sf "${AUTH[@]}" "$B/v1/sessions/$SID"; echo

say "POST seq 1 now: refused, seq 2 was processed"
curl -s "${AUTH[@]}" "${JSON[@]}" -X POST "$B/v1/sessions/$SID/frames" \
    -d "{\"frames\": [{\"seq\": 1, \"keypoints\": $KP0}]}"; echo

say "DELETE /v1/sessions/\$SID"
curl -s -o /dev/null -w '%{http_code}\n' "${AUTH[@]}" -X DELETE "$B/v1/sessions/$SID"
