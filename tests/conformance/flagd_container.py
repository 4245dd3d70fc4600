"""Replaces the provider's tests/e2e/flagd_container.py in the run tree.

The original starts the testbed's docker compose (flagd + launchpad + envoy)
and maps ports; this starts launchpad.py (Switchyard in flagd's place) and
maps the same names onto our fixed ports. The step definitions, which import
FlagdContainer from here, are left as shipped.
"""
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from openfeature.contrib.provider.flagd.config import ResolverType

FORBIDDEN = 9212
PORT = int(os.environ.get("CONF_PORT", "18013"))
LAUNCHPAD_PORT = int(os.environ.get("CONF_LAUNCHPAD_PORT", "18080"))
FORBIDDEN_PORT = int(os.environ.get("CONF_FORBIDDEN_PORT", "19212"))


class FlagdContainer:
    def __init__(self, feature: str | None = None, **kwargs) -> None:
        # Used by the file-mode steps only; kept for the interface.
        self.flagDir = Path("./flags")
        self.flagDir.mkdir(parents=True, exist_ok=True)
        self._proc = None

    def get_port(self, resolver_type: ResolverType) -> int:
        # flagd: 8013 evaluation, 8015 sync. Switchyard serves both on one port,
        # and not on 8013/8015 themselves: the "unavailable" scenario builds a
        # provider with the defaults (localhost:8013) and expects no answer.
        return PORT

    def get_exposed_port(self, port: int) -> int:
        return FORBIDDEN_PORT if port == FORBIDDEN else PORT

    def get_launchpad_url(self) -> str:
        return f"http://127.0.0.1:{LAUNCHPAD_PORT}"

    def start(self) -> "FlagdContainer":
        work = Path(os.environ["CONF_WORKDIR"])
        self._pidfile = work / "launchpad.pid"
        log = open(work / "launchpad.log", "ab")
        self._proc = subprocess.Popen(
            [sys.executable, os.environ["CONF_LAUNCHPAD"]], stdout=log, stderr=log,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        # For run.sh to end it should pytest be killed before stop().
        self._pidfile.write_text(str(self._proc.pid))
        # The compose file waits for flagd's health; we wait for launchpad,
        # which answers once its first start (config "default") is done.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ConnectionError("launchpad.py exited: see launchpad.log")
            try:
                urllib.request.urlopen(f"{self.get_launchpad_url()}/", timeout=1)
                return self
            except urllib.error.HTTPError:
                return self  # answering (404 for "/")
            except OSError:
                time.sleep(0.1)
        raise ConnectionError("launchpad.py not answering after 60 s")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
            self._pidfile.unlink(missing_ok=True)
