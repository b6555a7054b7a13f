#!/usr/bin/env bash
# Set everything up, then run the DICOM node end to end on this machine: DCMTK's storescu sends a
# synthetic CT perfusion study as a scanner would, `triage serve` analyses it, and DCMTK's
# storescp, playing the PACS, receives the Secondary Captures, the Segmentation and the SR.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
work="demo/node"
rm -rf "$work"
mkdir -p "$work/pacs"
free_port() { .venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
node_port=$(free_port)
pacs_port=$(free_port)
.venv/bin/python -m sample_data --case mismatch --out "$work/study"

pids=()
stop() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done; }
trap stop EXIT
/usr/bin/storescp -aet PACS +xa -od "$work/pacs" "$pacs_port" & pids+=($!)
.venv/bin/triage serve --data-dir "$work/node" --dicom-port "$node_port" --listen-address 127.0.0.1 \
    --allow-aet SCANNER --pacs "PACS@127.0.0.1:$pacs_port" --quiet-seconds 2 2> "$work/node.log" & pids+=($!)
for _ in $(seq 100); do /usr/bin/echoscu -aet SCANNER -aec TRIAGE 127.0.0.1 "$node_port" 2>/dev/null && break; sleep 0.2; done

echo "sending $(find "$work/study/dicom" -type f | wc -l) images to the node (AE TRIAGE, port $node_port)"
TCP_NODELAY=1 /usr/bin/storescu -aet SCANNER -aec TRIAGE +sd +r 127.0.0.1 "$node_port" "$work/study/dicom"
sent=$(date +%s.%N)
for _ in $(seq 240); do
    grep -q "sent [0-9]* objects" "$work/node.log" && break
    sleep 0.5
done
echo
grep -E "received|analysis of|sent [0-9]+ objects|error" "$work/node.log" | sed 's/^/node: /' || true
echo
echo "objects at the PACS ($work/pacs), $(.venv/bin/python -c "import time; print(round(time.time() - $sent, 1))") s after the last image:"
for f in "$work"/pacs/*; do
    /usr/bin/dcmdump -q +P Modality +P SeriesDescription "$f" | tr -s ' ' | cut -d'#' -f1 | paste -sd' ' | sed 's/^/  /'
done
echo "Node data (spool, job database, results): $work/node; log: $work/node.log"
