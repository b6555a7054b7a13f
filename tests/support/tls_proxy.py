"""stunnel (Debian package ``stunnel4``) as the TLS reverse proxy in front of a loopback server,
the way an https DICOMweb service is often published.

:func:`tls_proxy` runs ``stunnel`` in the foreground as a child process: it accepts TLS on a
free loopback port with the given certificate and key and relays the plain bytes to
127.0.0.1:``target_port``. It yields the port once it accepts connections and stops the process
by its id on exit.
"""

from __future__ import annotations

import shutil
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tests.support import peers


@contextmanager
def tls_proxy(root: Path, target_port: int, certificate: Path, key: Path) -> Iterator[int]:
    """TLS on a free loopback port (yielded) to plain TCP on 127.0.0.1:``target_port``; the
    configuration and log (``stunnel.log``) under ``root``."""
    stunnel = shutil.which("stunnel4") or shutil.which("stunnel")
    if stunnel is None:
        raise RuntimeError("stunnel is missing: run scripts/setup.sh (apt-get install stunnel4)")
    root.mkdir(parents=True, exist_ok=True)
    port = peers.free_port()
    config = root / "stunnel.conf"
    config.write_text(f"foreground = yes\npid =\noutput = {root / 'stunnel.log'}\n\n[https]\n"
                      f"accept = 127.0.0.1:{port}\nconnect = 127.0.0.1:{target_port}\n"
                      f"cert = {certificate}\nkey = {key}\n")
    process = subprocess.Popen([stunnel, str(config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.STDOUT)
    try:
        peers.wait_for_port(port, timeout=15, process=process)
        yield port
    finally:
        peers.stop_process(process)
