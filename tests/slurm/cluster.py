"""Start and stop a throw-away single-node SLURM cluster on localhost (for tests only).

Needs root and Debian's ``slurm-wlm`` + ``munge`` packages (``.ci/install_slurm.sh``).
It writes ``/etc/slurm/slurm.conf`` and ``/etc/slurm/gres.conf`` (the job-step plugin strips
``SLURM_CONF`` from the job environment, so a config elsewhere breaks ``srun`` inside jobs),
backs up any existing files and restores them on stop. Only the daemons it started are
stopped; a munged that was already running is left alone.

The node advertises one fake GPU (a GRES backed by /dev/null) so that profile requests such
as ``gpu: 1`` are accepted by the scheduler; nothing runs on a GPU.

Command line (state is kept in ``STATE_DIR/cluster.json``)::

    python tests/slurm/cluster.py start STATE_DIR
    python tests/slurm/cluster.py stop STATE_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

SLURM_ETC = Path("/etc/slurm")
MANAGED_CONFIGS = ("slurm.conf", "gres.conf")
BACKUP_SUFFIX = ".hmmrnn-backup"
PARTITION = "debug"

SLURM_CONF_TEMPLATE = """\
# Written by hmmrnn tests/slurm/cluster.py; restored/removed when the test cluster stops.
ClusterName=hmmrnn-test
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# squeue-based status checks need finished jobs to stay visible for >= 3x the plugin's
# initial status delay; an hour also keeps a whole test session's jobs listed for checks.
MinJobAge=3600
ReturnToService=2
GresTypes=gpu
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName={host} CPUs={cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName={partition} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""

GRES_CONF_TEMPLATE = """\
# Written by hmmrnn tests/slurm/cluster.py: one fake GPU. slurmd ignores a GPU without a
# device file, so /dev/null stands in for one.
NodeName={host} Name=gpu File=/dev/null
"""


# The daemons live in sbin directories, which are often not on a non-root user's PATH.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"])


def tool(name: str) -> str | None:
    """Full path of a SLURM/munge program, or None."""
    return shutil.which(name, path=SEARCH_PATH)


class SlurmUnavailable(RuntimeError):
    """SLURM cannot be started here (not installed, not root, or another cluster running)."""


def unavailable_reason() -> str | None:
    """Say why a local cluster cannot be started, or return None if it can."""
    missing = [
        name
        for name in ("slurmctld", "slurmd", "munged", "sbatch", "squeue", "sinfo")
        if tool(name) is None
    ]
    if missing:
        return f"SLURM not installed ({', '.join(missing)} not on PATH): run .ci/install_slurm.sh"
    if os.geteuid() != 0:
        return "a local SLURM cluster needs root (it writes /etc/slurm and starts daemons)"
    return None


def _run(cmd: list[str], timeout: float = 10) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def _munge_works() -> bool:
    try:
        cred = _run(["munge", "-n"])
        if cred.returncode != 0:
            return False
        check = subprocess.run(
            ["unmunge"], input=cred.stdout, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return check.returncode == 0


def _controller_answers() -> bool:
    try:
        return _run(["scontrol", "ping"], timeout=5).stdout.count("UP") > 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _memory_mb() -> int:
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                total_mb = int(line.split()[1]) // 1024
                # slurmd drains a node whose RealMemory exceeds what it measures.
                return int(total_mb * 0.9)
    raise RuntimeError("MemTotal not found in /proc/meminfo")


def _spawn(cmd: list[str], log: Path, user: str | None = None) -> int:
    # Streams go to a log file: an inherited pipe would keep a pipeline around the caller
    # open for as long as the daemon lives.
    with open(log, "ab") as fh:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            user=user,
            group=user,
        )
    return proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (we are its parent) counts as gone.
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return waited == 0


def _terminate(pid: int, grace: float = 10.0) -> None:
    if not _alive(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not _alive(pid):
            return
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)


class LocalSlurm:
    """A single-node SLURM cluster (partition ``debug``) whose state lives in ``state_dir``.

    Parameters
    ----------
    state_dir : path
        Directory for spool/state/log files and ``cluster.json`` (PIDs started, backups made).
    """

    def __init__(self, state_dir: str | os.PathLike):
        self.state_dir = Path(state_dir).resolve()
        self.host = socket.gethostname().split(".")[0]
        self.partition = PARTITION
        self.pids: dict[str, int] = {}
        self.backups: dict[str, str | None] = {}
        self._state_file = self.state_dir / "cluster.json"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> LocalSlurm:
        """Start munged (if needed), slurmctld and slurmd; wait until the node is idle."""
        reason = unavailable_reason()
        if reason:
            raise SlurmUnavailable(reason)
        if _controller_answers():
            raise SlurmUnavailable("a SLURM controller already answers on this machine")
        for name in ("ctld", "spool"):
            (self.state_dir / name).mkdir(parents=True, exist_ok=True)
        try:
            self._write_configs()
            self._start_munge()
            self.pids["slurmctld"] = _spawn(
                [tool("slurmctld"), "-D", "-c"], self.state_dir / "slurmctld.stdout.log"
            )
            self._save()
            self._wait(_controller_answers, timeout, "slurmctld to answer `scontrol ping`")
            slurmd_log = self.state_dir / "slurmd.stdout.log"
            self.pids["slurmd"] = _spawn([tool("slurmd"), "-D"], slurmd_log)
            self._save()
            self._wait(self._node_idle, timeout, f"node {self.host} to become idle")
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Cancel leftover jobs, stop the daemons this object started, restore the configs."""
        if "slurmctld" in self.pids and _controller_answers():
            try:
                _run(["scancel", "--partition", self.partition], timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is not None:
                _terminate(pid)
        for name, backup in self.backups.items():
            target = SLURM_ETC / name
            if backup is None:
                target.unlink(missing_ok=True)
            else:
                os.replace(backup, target)
        self.backups = {}
        self._state_file.unlink(missing_ok=True)

    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------------------------
    def _write_configs(self) -> None:
        SLURM_ETC.mkdir(parents=True, exist_ok=True)
        values = {
            "host": self.host,
            "state": self.state_dir,
            "cpus": os.cpu_count() or 1,
            "memory_mb": _memory_mb(),
            "partition": self.partition,
        }
        texts = {
            "slurm.conf": SLURM_CONF_TEMPLATE.format(**values),
            "gres.conf": GRES_CONF_TEMPLATE.format(**values),
        }
        for name in MANAGED_CONFIGS:
            target = SLURM_ETC / name
            backup = target.with_name(name + BACKUP_SUFFIX)
            if backup.exists():
                raise SlurmUnavailable(
                    f"{backup} exists: a previous test cluster was not stopped cleanly; "
                    f"restore it to {target} by hand"
                )
            if target.exists():
                shutil.copy2(target, backup)
                self.backups[name] = str(backup)
            else:
                self.backups[name] = None
            self._save()
            target.write_text(texts[name])
            target.chmod(0o644)

    def _start_munge(self) -> None:
        if _munge_works():
            return
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run([tool("mungekey"), "--create", "--keyfile", str(key)], check=True)
        munge = pwd.getpwnam("munge")
        dirs = ("/etc/munge", "/run/munge", "/var/lib/munge", "/var/log/munge")
        for path in map(Path, dirs):
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, munge.pw_uid, munge.pw_gid)
        os.chown(key, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        self.pids["munged"] = _spawn(
            [tool("munged"), "--foreground"], self.state_dir / "munged.log", user="munge"
        )
        self._save()
        self._wait(_munge_works, 20, "munged to answer")

    def _node_idle(self) -> bool:
        out = _run(["sinfo", "--noheader", "--nodes", self.host, "--format", "%t"]).stdout
        return out.strip().rstrip("*") == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, pid in self.pids.items():
                if not _alive(pid):
                    raise RuntimeError(f"{name} exited while waiting for {what}; {self.logs()}")
            if ready():
                return
            time.sleep(0.5)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}; {self.logs()}")

    def logs(self, lines: int = 20) -> str:
        """Return the tail of every daemon log, for error messages."""
        parts = []
        for log in sorted(self.state_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def _save(self) -> None:
        self._state_file.write_text(json.dumps({"pids": self.pids, "backups": self.backups}))

    @classmethod
    def load(cls, state_dir: str | os.PathLike) -> LocalSlurm:
        """Recreate the handle of a cluster started by ``start`` in another process."""
        cluster = cls(state_dir)
        state = json.loads(cluster._state_file.read_text())
        cluster.pids = {k: int(v) for k, v in state["pids"].items()}
        cluster.backups = state["backups"]
        return cluster


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("state_dir")
    args = parser.parse_args(argv)
    if args.action == "start":
        cluster = LocalSlurm(args.state_dir).start()
        print(f"SLURM up: node {cluster.host}, partition {cluster.partition}, pids {cluster.pids}")
    else:
        LocalSlurm.load(args.state_dir).stop()
        print("SLURM stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
