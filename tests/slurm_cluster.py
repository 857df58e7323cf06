"""A real single-node Slurm for the tests: Debian's munge, slurmctld and slurmd (``make system``
installs them), run as root from a private folder (own munge key and socket, own ports, no
accounting), so the tests drive what users drive: sbatch job arrays, squeue, scancel, requeue.

Where the packages or root are missing the Slurm tests are skipped, except under CI
(CELLPIPE_REQUIRE_SLURM=1, set by .ci/run), where that is a failure.
"""
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

DAEMONS = ("munged", "slurmctld", "slurmd")
REQUIRE = "CELLPIPE_REQUIRE_SLURM"


def _missing() -> str:
    gone = [d for d in (*DAEMONS, "sbatch", "squeue", "scancel", "sinfo") if shutil.which(d) is None]
    if gone:
        return f"Slurm/munge not installed ({', '.join(gone)} missing; `make system` installs them)"
    if os.geteuid() != 0:
        return "the test cluster runs slurmd as root"
    return ""


def _conf(root: Path, ports) -> str:
    cpus, mem_mb = os.cpu_count() or 1, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2 ** 20
    return "\n".join([
        "ClusterName=cellpipe-test", f"SlurmctldHost={socket.gethostname()}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", f"AuthInfo=socket={root}/munge/socket,cred_expire=5",  # requeued jobs wait cred_expire
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core", "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none", "MpiDefault=none", "ReturnToService=2", "MinJobAge=300",
        "SchedulerType=sched/backfill", "SlurmdTimeout=300", "KillWait=2",
        f"StateSaveLocation={root}/state", f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid", f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log", f"SlurmdLogFile={root}/slurmd.log",
        f"SlurmctldPort={ports[0]}", f"SlurmdPort={ports[1]}",
        f"NodeName={socket.gethostname()} CPUs={cpus} RealMemory={int(mem_mb * 0.8)} State=UNKNOWN",
        f"PartitionName=cpu Nodes={socket.gethostname()} Default=YES MaxTime=INFINITE State=UP", ""])


def _free_ports(n: int):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class Cluster:
    def __init__(self, root: Path):
        self.root = root
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd, check=True) -> str:
        out = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip()}")
        return out.stdout

    def start(self):
        (self.root / "munge").mkdir(parents=True, mode=0o700)
        for d in ("state", "spool"):
            (self.root / d).mkdir()
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        m = self.root / "munge"
        subprocess.run(["munged", "--force", f"--key-file={key}", f"--socket={m}/socket", f"--log-file={m}/log",
                        f"--pid-file={m}/pid", f"--seed-file={m}/seed"], check=True, timeout=30)
        self.conf.write_text(_conf(self.root, _free_ports(2)))
        subprocess.run(["slurmctld", "-f", str(self.conf)], env=self.env, check=True, timeout=30)
        self.start_slurmd()
        return self

    def start_slurmd(self):
        subprocess.run(["slurmd", "-f", str(self.conf)], env=self.env, check=True, timeout=30)
        self.wait(lambda: self.run("sinfo", "-h", "-o", "%t", check=False).strip() == "idle", "the node to be idle")

    def wait(self, ok, what, timeout_s=180):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if ok():
                return
            time.sleep(0.5)
        raise TimeoutError(f"Slurm test cluster: gave up waiting for {what}; logs in {self.root}")

    def jobs(self, states="all"):
        """{job id: state} of the queue."""
        lines = self.run("squeue", "-h", "-t", states, "-o", "%i|%T").split()
        return dict(line.split("|") for line in lines)

    def node_failure(self):
        """What a node's power loss does to a job: slurmd, its step daemons and every process of every
        job on the node killed at once; the controller is told the node went down (as it would after
        SlurmdTimeout), so it requeues the node's batch jobs; then slurmd starts again."""
        pids = _pids_with_env("SLURM_JOB_ID") + _pids_named("slurmstepd") + _pids_named("slurmd")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.run("scontrol", "update", f"NodeName={socket.gethostname()}", "State=DOWN", "Reason=power loss")
        self.start_slurmd()

    def stop(self):
        for pidfile in ("slurmd.pid", "slurmctld.pid", "munge/pid"):
            path = self.root / pidfile
            if path.is_file():
                try:
                    os.kill(int(path.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass
        for pid in _pids_with_env("SLURM_JOB_ID") + _pids_named("slurmstepd"):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _pids_named(name):
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and (p / "comm").read_text().strip() == name:
                out.append(int(p.name))
        except OSError:
            pass
    return out


def _pids_with_env(key):
    needle = key.encode() + b"="
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and int(p.name) != os.getpid() and \
                    any(e.startswith(needle) for e in (p / "environ").read_bytes().split(b"\0")):
                out.append(int(p.name))
        except OSError:
            pass
    return out


def cluster_or_skip(tmp_path_factory):
    why = _missing()
    if why:
        if os.environ.get(REQUIRE) == "1":
            pytest.fail(f"{REQUIRE}=1 but {why}")
        pytest.skip(why)
    return Cluster(tmp_path_factory.mktemp("slurm")).start()
