#!/usr/bin/env bash
# Device check (needs nvidia-smi): `driftline cluster` offers the GPUs it finds as nvidia.com/gpu,
# a Job asking for one runs and sees only its device, and one asking for 9 stays Unschedulable.
# Run from the repository root after `cargo build`: OUT=/tmp/out bench/runner/gpu-check.sh
set -u

DL=${DRIFTLINE:-target/debug/driftline}; cp "$DL" /tmp/driftline
nvidia-smi -L
rm -rf /tmp/rc; /tmp/driftline cluster --port 0 --state-dir /tmp/rc > /tmp/rc.out 2>&1 &
CL=$!
for i in $(seq 1 50); do [ -f /tmp/rc/kubeconfig ] && break; sleep 0.2; done
sleep 1
TOKEN=$(grep token: /tmp/rc/kubeconfig | awk '{print $2}'); URL=$(grep server: /tmp/rc/kubeconfig | awk '{print $2}')
H="Authorization: Bearer $TOKEN"
echo "node allocatable:"; curl -sk -H "$H" $URL/api/v1/nodes/driftline-node | python3 -c "import json,sys; print(json.load(sys.stdin)['status']['allocatable'])"
job() { curl -sk -o /dev/null -w "create $1: %{http_code}\n" -H "$H" -H 'Content-Type: application/json' -X POST $URL/apis/batch/v1/namespaces/default/jobs -d "{\"apiVersion\":\"batch/v1\",\"kind\":\"Job\",\"metadata\":{\"name\":\"$1\"},\"spec\":{\"backoffLimit\":0,\"template\":{\"spec\":{\"restartPolicy\":\"Never\",\"containers\":[{\"name\":\"main\",\"image\":\"x\",\"command\":[\"sh\",\"-c\",\"echo CUDA=\$CUDA_VISIBLE_DEVICES; nvidia-smi -L\"],\"resources\":{\"limits\":{\"nvidia.com/gpu\":\"$2\"}}}]}}}}"; }
job gpu1 1
job gpu9 9
for i in $(seq 1 100); do
  s=$(curl -sk -H "$H" $URL/apis/batch/v1/namespaces/default/jobs/gpu1 | python3 -c "import json,sys; print(' '.join(c['type'] for c in json.load(sys.stdin).get('status',{}).get('conditions',[]) if c['status']=='True'))")
  [ -n "$s" ] && break; sleep 0.2
done
echo "gpu1 conditions: $s"
echo "gpu1 log:"; cat /tmp/rc/logs/default/gpu1-*/main.log
echo "gpu9 pod:"; curl -sk -H "$H" "$URL/api/v1/namespaces/default/pods?labelSelector=job-name%3Dgpu9" | python3 -c "import json,sys; [print(p['status'].get('phase'), p['status'].get('conditions')) for p in json.load(sys.stdin)['items']]"
kill -INT $CL; wait $CL
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"; cp -r /tmp/rc/logs "$OUT/" 2>/dev/null; cp /tmp/rc.out "$OUT/"
