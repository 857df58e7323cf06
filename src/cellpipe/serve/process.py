"""Start ``src/serve.py`` in a child process on a free local port and wait until it answers: for the
tests, the load benchmark and scripts that need a real server for a while."""
import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

SERVE = Path(__file__).resolve().parents[2] / "serve.py"


def partial_uploads(url: str, n: int = 3) -> None:
    """``n`` clients that announce a 200 kB upload to /predict, send 1 kB of it and close the socket."""
    port = int(url.rsplit(":", 1)[1])
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                      b"Content-Length: 200000\r\n\r\n--b\r\nContent-Disposition: form-data; name=\"image\"; "
                      b"filename=\"a.png\"\r\n\r\n\x89PNG" + b"0" * 1000)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(model, *flags: str, log=None, ready_s: float = 120.0) -> Iterator[str]:
    """Yield the base URL of ``serve.py --model model [flags]`` once /health answers; the server is
    stopped on exit. A server that exits or never answers within ``ready_s`` raises RuntimeError
    (``log``, when given, collects the server's output)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SERVE.parent), os.environ.get("PYTHONPATH", "")]))
    url = f"http://127.0.0.1:{port}"
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log, "w")) if log else subprocess.DEVNULL
        proc = subprocess.Popen([sys.executable, str(SERVE), "--model", str(model), "--port", str(port),
                                 "--log_level", "warning", *flags], stdout=out, stderr=subprocess.STDOUT, env=env)
        stack.callback(_stop, proc)
        _wait(proc, url, ready_s)
        yield url


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait(proc, url: str, ready_s: float) -> None:
    import httpx

    deadline = time.monotonic() + ready_s
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"serve.py exited with code {proc.returncode} before answering")
        try:
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"serve.py did not answer {url}/health within {ready_s} s")
        time.sleep(0.2)
