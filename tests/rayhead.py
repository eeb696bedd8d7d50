"""A `ray start --head` cluster with its dashboard (the Jobs API) and token auth, started and
stopped by a test. Where the kernel lets us (root, `unshare`), the head runs in network and PID
namespaces of its own: Ray binds the node's address whatever --node-ip-address says, so only a
private network keeps it to loopback; and when the namespace's first process (`ray start`) ends,
the kernel ends every process left in it, so nothing of this cluster outlives the test. Clients
reach it through `nsenter --net`. Without namespaces it runs on the host (as test_cli_runs does),
stopped by PID and temp-dir marker."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from tests.procs import kill_and_wait

RAY = shutil.which("ray") or str(Path(sys.executable).parent / "ray")


def namespaces_work() -> bool:
    if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        return False
    r = subprocess.run(["unshare", "--net", "--pid", "--fork", "--mount-proc", "true"],
                       capture_output=True)
    return r.returncode == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Head:
    url: str
    env: dict  # a client's environment: the token's path only, no RAY_AUTH_MODE
    home: Path  # the cluster's FFRAY_HOME
    proc: subprocess.Popen
    temp: str
    netns_pid: int | None = None
    notes: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        """A client command line, inside the head's network namespace where it has one."""
        pre = ["nsenter", f"--target={self.netns_pid}", "--net", "--"] if self.netns_pid else []
        return pre + list(args)

    def ffray(self, *args, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(sys.executable, "-m", "ffray", *map(str, args)),
                              capture_output=True, text=True, timeout=timeout, env=self.env)

    def stop(self) -> None:
        """SIGTERM `ray start` (it stops its own processes), then SIGKILL what is left of ours."""
        init = self._init_pid()
        if init is not None:
            try:
                os.kill(init, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # unshare --kill-child: the namespace's init and so all in it
            self.proc.wait(timeout=30)
        _kill_marked(self.temp)
        shutil.rmtree(self.temp, ignore_errors=True)

    def _init_pid(self) -> int | None:
        if self.netns_pid is None:
            return self.proc.pid
        try:
            kids = psutil.Process(self.proc.pid).children()
        except psutil.Error:
            return None
        return kids[0].pid if kids else None


def start_head(root: Path, num_cpus: int = 2, extra_env: dict | None = None) -> Head:
    temp = tempfile.mkdtemp(prefix="ffr-", dir="/tmp")  # short: Ray's socket paths have a limit
    token = root / "auth_token"
    token.write_text(secrets.token_hex(32))
    home = root / "cluster-home"
    home.mkdir()
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    base.update({"PYTHONUNBUFFERED": "1", "RAY_AUTH_TOKEN_PATH": str(token),
                 "RAY_USAGE_STATS_ENABLED": "0", **(extra_env or {})})
    # RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0: on SIGTERM `ray start` would otherwise drain the
    # node for up to 30 s, waiting for it to go idle, which a detached actor (ffray-slots) never
    # lets it do: every test file paid 30 s at teardown.
    env = {**base, "RAY_AUTH_MODE": "token", "RAY_TMPDIR": temp, "FFRAY_HOME": str(home),
           "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
    ns = namespaces_work()
    gcs, dash = (6379, 8265) if ns else (_free_port(), _free_port())
    cmd = [RAY, "start", "--head", "--block", f"--port={gcs}", "--node-ip-address=127.0.0.1",
           f"--num-cpus={num_cpus}", "--num-gpus=0", "--dashboard-host=127.0.0.1",
           f"--dashboard-port={dash}", f"--temp-dir={temp}", "--object-store-memory=100000000",
           "--disable-usage-stats"]
    if ns:
        cmd = ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child",
               sys.executable, "-m", "tests.rayhead", *cmd]
    log = open(root / "head.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    log.close()
    return Head(url=f"http://127.0.0.1:{dash}", env=base, home=home, proc=proc, temp=temp,
                netns_pid=proc.pid if ns else None,
                notes=[] if ns else ["no network namespace here: the head runs on the host"])


_PING = ("import sys, urllib.error, urllib.request\n"  # any HTTP answer (401 too): it is up
         "try:\n    urllib.request.urlopen(sys.argv[1] + '/api/version', timeout=2)\n"
         "except urllib.error.HTTPError:\n    pass\n"
         "except OSError:\n    sys.exit(1)\n")


def wait_ready(head: Head, deadline_s: float = 120) -> None:
    """Until the dashboard answers (a plain HTTP GET: cheaper than a client importing Ray)."""
    end = time.time() + deadline_s
    while True:
        r = subprocess.run(head.argv(sys.executable, "-c", _PING, head.url), env=head.env,
                           capture_output=True, timeout=30)
        if r.returncode == 0:
            return
        if time.time() > end or head.proc.poll() is not None:
            log = (Path(head.home).parent / "head.log").read_text(errors="replace")[-1500:]
            raise AssertionError(f"head not ready: {log}")
        time.sleep(0.5)


def _kill_marked(marker: str) -> None:
    """Host-mode leftovers: processes whose environment names our private RAY_TMPDIR."""
    needle = f"RAY_TMPDIR={marker}".encode()
    procs = []
    for p in psutil.process_iter():
        try:
            if p.pid != os.getpid() and needle in Path(f"/proc/{p.pid}/environ").read_bytes():
                procs.append(p)
        except (psutil.Error, OSError):
            pass
    kill_and_wait(procs)


def _ns_init(argv: Sequence[str]) -> int:
    """Inside the new namespaces (we are their PID 1): bring loopback up, run `ray start` as our
    child and reap every process orphaned in the namespace, as a host's init does. (When `ray
    start` itself was PID 1, it reaped nothing: an entrypoint's `/bin/sh` died on `ray job stop`,
    its `ffray swap` child ended as a zombie of PID 1, and Ray's supervisor, which waits for
    every process of the job to be gone, waited its whole 30 s grace for that zombie.) SIGTERM
    goes on to `ray start`; when it ends we end, and the kernel kills what is left in here."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    child = subprocess.Popen(list(argv))
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGTERM))
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 0
        if pid == child.pid:
            return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    sys.exit(_ns_init(sys.argv[1:]))
