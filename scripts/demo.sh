#!/usr/bin/env bash
# `make demo`: a fresh archive with the real shared studies and demo data made from the real
# shared images (chest X-rays as DX, the NIfTI CT as a 112-slice CT series), a demo user, and
# the server. RADSIGHT_DEMO_NO_SERVE=1 prepares everything but does not start the server.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RADSIGHT_SHARED_DATA:-$(realpath ../shared/data)}
HOME_DIR=${RADSIGHT_DEMO_HOME:-$PWD/demo-home}
HTTP_PORT=${RADSIGHT_HTTP_PORT:-8042}
DICOM_PORT=${RADSIGHT_DICOM_PORT:-11112}
PASSWORD=${RADSIGHT_DEMO_PASSWORD:-radsight-demo}
CXR_COUNT=${RADSIGHT_DEMO_CXR:-40}
rm -rf "$HOME_DIR"
export RADSIGHT_HOME="$HOME_DIR"
export RADSIGHT_SHARED_DATA="$DATA"
BIN=.venv/bin
echo "== writing demo DICOM from the real shared images into $HOME_DIR/demo-data"
$BIN/radsight demo-data "$HOME_DIR/demo-data" --cxr "$CXR_COUNT"
echo "== importing the demo data and the real studies in $DATA"
$BIN/radsight import --fill-missing-uids "$HOME_DIR/demo-data" \
  "$DATA/ct/totalsegmentator/example_ct_dicom" "$DATA/dicom/wg04" "$DATA/dicom/dcmqi"
echo "$PASSWORD" | $BIN/radsight user add demo --role admin --password-stdin
$BIN/radsight check
if [ -n "${RADSIGHT_DEMO_NO_SERVE:-}" ]; then
  exit 0
fi
cat <<MSG

RadSight demo
  web / REST / DICOMweb : http://127.0.0.1:$HTTP_PORT/        (DICOMweb root: /dicomweb)
  DICOM (DIMSE)         : AE title RADSIGHT, port $DICOM_PORT
  user / password       : demo / $PASSWORD
  try: curl -u demo:$PASSWORD http://127.0.0.1:$HTTP_PORT/dicomweb/studies
Stop with Ctrl-C.
MSG
RADSIGHT_ALLOW_ANY_CALLING_AE=true exec $BIN/radsight serve --http-port "$HTTP_PORT" --dicom-port "$DICOM_PORT"
