#!/usr/bin/env bash
# `make demo`: a fresh archive with the real shared studies, a demo user, and the server.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RADSIGHT_SHARED_DATA:-$(realpath ../shared/data)}
HOME_DIR=${RADSIGHT_DEMO_HOME:-$PWD/demo-home}
HTTP_PORT=${RADSIGHT_HTTP_PORT:-8042}
DICOM_PORT=${RADSIGHT_DICOM_PORT:-11112}
PASSWORD=${RADSIGHT_DEMO_PASSWORD:-radsight-demo}
rm -rf "$HOME_DIR"
export RADSIGHT_HOME="$HOME_DIR"
BIN=.venv/bin
echo "== importing the real studies in $DATA"
$BIN/radsight import --fill-missing-uids "$DATA/ct/totalsegmentator/example_ct_dicom" "$DATA/dicom/wg04" "$DATA/dicom/dcmqi"
echo "$PASSWORD" | $BIN/radsight user add demo --role admin --password-stdin
cat <<MSG

RadSight demo
  web / REST / DICOMweb : http://127.0.0.1:$HTTP_PORT/        (DICOMweb root: /dicomweb)
  DICOM (DIMSE)         : AE title RADSIGHT, port $DICOM_PORT
  user / password       : demo / $PASSWORD
  try: curl -u demo:$PASSWORD http://127.0.0.1:$HTTP_PORT/dicomweb/studies
Stop with Ctrl-C.
MSG
RADSIGHT_ALLOW_ANY_CALLING_AE=true exec $BIN/radsight serve --http-port "$HTTP_PORT" --dicom-port "$DICOM_PORT"
