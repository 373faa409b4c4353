"""Warm start: stages run in a fork of a process that has already imported the heavy libraries.

Every DVC stage is a new Python process, and importing Keras on TensorFlow costs 5-9 s on a
small machine, MLflow 2 s more: an edit that trains for 3 s would wait a minute. So the first
stage starts a server in the background that imports those libraries once (never dl4cv's own
code, so edits take effect) and waits on a Unix socket. Each later stage script hands its
command line, working folder, environment and standard streams to the server, which forks a
worker to run the script exactly as `python stages/<stage>.py ...` would, and passes back its
exit status; signals (Ctrl-C) are forwarded, and a killed stage process takes its worker with it.

The server is keyed by the interpreter, its installed packages, this file and the environment
variables read at import time (KERAS_*, TF_*, ...): change any of them and a new server starts.
It exits after `DL4CV_WARM_IDLE` seconds without work (default 900). `DL4CV_WARM=0` turns it
all off; `python -m dl4cv.runtime.warmstart status|stop` inspects or stops it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import stat
import struct
import sys
import time
from pathlib import Path

PRELOAD = (  # third-party only: dl4cv's own modules are imported fresh by each worker
    # (DL4CV_WARM_PRELOAD, a comma-separated list, replaces this one)
    "numpy",
    "yaml",
    "cv2",
    "joblib",
    "tqdm",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.neighbors",
    "sklearn.linear_model",
    "matplotlib.pyplot",
    "mlflow",
    "mlflow.store.tracking.sqlalchemy_store",
    "keras",
)
# module:function, called once after the imports: what they cache, every worker inherits. MLflow
# maps import names to installed distributions (a read of every package's metadata: 1 s here,
# seconds where CUDA wheels are installed) the first time a process logs a model; done here,
# the trainings skip it. A name that no longer exists only loses the saving.
PRIME = ("mlflow.utils.requirements_utils:_init_modules_to_packages_map",)
ENV_PREFIXES = (
    "DL4CV_WARM",
    "KERAS_",
    "TF_",
    "CUDA_",
    "XLA_",
    "JAX_",
    "PYTHON",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
)
ENV_NAMES = ("HOME", "LD_LIBRARY_PATH", "LD_PRELOAD", "MPLBACKEND", "MPLCONFIGDIR")
DEFAULT_IDLE_S = 900.0
MAX_SOCKET_PATH = 100  # sun_path holds 108 bytes on Linux
_HEADER = struct.Struct("!I")
_in_worker = False  # set in a worker: its stage script must run, not be handed on again


def enabled() -> bool:
    """Off with DL4CV_WARM=0, off where fork and Unix sockets are missing, and off when the
    interpreter runs with options a worker would not have (-X importtime, -I...)."""
    if os.environ.get("DL4CV_WARM", "1").lower() in ("0", "off", "false", "no"):
        return False
    if not sys.platform.startswith("linux") or _in_worker:
        return False
    return not (sys._xoptions or sys.flags.isolated or sys.flags.no_site or sys.flags.optimize)


def hand_over() -> None:
    """Run this stage script in the warm server and exit with its status; return (to run it
    here, cold) when there is none yet, after starting one for the stages that follow."""
    if not enabled():
        return
    path = socket_path()
    if not _private(path.parent):
        return
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        conn.close()
        _start_server(path)
        return
    request = {"argv": sys.argv, "cwd": os.getcwd(), "env": dict(os.environ)}
    try:
        _send(conn, request, fds=[0, 1, 2])
        reply = _recv_line(conn)
    except OSError:
        reply = None
    if reply is None or not reply.startswith("pid "):  # the worker never started: run it here
        conn.close()
        return
    sys.exit(_follow(conn))


def _follow(conn: socket.socket) -> int:
    """Forward this process's signals to the worker until it ends; its exit status."""

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            conn.sendall(f"signal {signum}\n".encode())

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    line = _recv_line(conn)
    if line is None:
        sys.stderr.write("dl4cv warm start: the server went away; rerun with DL4CV_WARM=0\n")
        return 1
    kind, value = line.split()
    if kind == "signal":  # die of the same signal, as the stage itself would have
        signal.signal(int(value), signal.SIG_DFL)
        os.kill(os.getpid(), int(value))
    return int(value)


def _private(folder: Path) -> bool:
    """Whether `folder` (made if missing) is ours alone. Under /tmp anyone could have made it
    first and put a socket in it: a stage hands its environment and terminal only to a server
    in a folder that no other user can write to."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = folder.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077


def runtime_dir() -> Path:
    """$XDG_RUNTIME_DIR/dl4cv-warm-<uid>, or under /tmp where that would make a socket path
    longer than a Unix socket takes (108 bytes)."""
    folder = f"dl4cv-warm-{os.getuid()}"
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and len(os.path.join(base, folder, "0123456789abcdef.sock")) < MAX_SOCKET_PATH:
        return Path(base) / folder
    return Path("/tmp") / folder


def server_key() -> str:
    """What a preloaded process depends on: change any part and another server is used."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES) or k in ENV_NAMES}
    payload = json.dumps(
        {
            "python": sys.executable,
            "version": sys.version,
            "site": site.stat().st_mtime_ns if site.exists() else 0,
            "env": sorted(env.items()),
            "server": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
        }
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def socket_path() -> Path:
    return runtime_dir() / f"{server_key()}.sock"


def _start_server(path: Path) -> None:
    import subprocess

    log = open(path.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child
    subprocess.Popen(
        [sys.executable, "-c", "from dl4cv.runtime.warmstart import serve; serve()", str(path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        cwd="/",
        start_new_session=True,  # not killed with the stage that started it
    )
    log.close()


def serve() -> None:
    """The server: preload, then fork one handler per request until idle for too long."""
    import fcntl
    import importlib
    import selectors

    global _in_worker
    path = Path(sys.argv[1])
    lock = open(path.with_suffix(".lock"), "w")  # noqa: SIM115 - held for the server's life
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return  # another server with the same key is starting or running
    started = time.perf_counter()
    os.environ.setdefault("MPLBACKEND", "Agg")
    names = os.environ.get("DL4CV_WARM_PRELOAD")
    preload = names.split(",") if names is not None else PRELOAD
    for name in filter(None, preload):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing optional library only costs its import later
            _log(f"preload {name}: {exc!r}")
    for name in PRIME:
        module, function = name.split(":")
        try:
            getattr(importlib.import_module(module), function)()
        except Exception as exc:
            _log(f"prime {name}: {exc!r}")
    _log(f"preloaded {len(preload)} modules in {time.perf_counter() - started:.1f} s")
    idle = float(os.environ.get("DL4CV_WARM_IDLE", DEFAULT_IDLE_S))
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    bound = path.stat().st_ino  # the socket file's own inode (fstat of the socket is another)
    listener.listen(16)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # handlers are reaped by the kernel
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    try:
        while selector.select(timeout=idle):
            conn, _ = listener.accept()
            try:
                request, fds = _recv(conn)
            except (OSError, ValueError) as exc:
                _log(f"bad request: {exc!r}")
                conn.close()
                continue
            if "command" in request:  # status or stop, from `python -m dl4cv.runtime.warmstart`
                conn.sendall(f"{request['command']} {os.getpid()} {','.join(preload)}\n".encode())
                conn.close()
                if request["command"] == "stop":
                    break
                continue
            if os.fork() == 0:
                listener.close()
                lock.close()  # a long training must not keep the next server from starting
                _in_worker = True
                _handle(conn, request, fds)  # never returns
            conn.close()
            for fd in fds:
                os.close(fd)
    finally:
        if path.exists() and path.stat().st_ino == bound:  # not a newer server's socket
            path.unlink()
        _log("stopped")


def _handle(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """A handler process: fork the worker, relay signals to it, report how it ended."""
    import selectors

    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _work(request, fds)  # never returns
    for fd in fds:
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    selector = selectors.DefaultSelector()
    selector.register(conn, selectors.EVENT_READ)
    selector.register(pidfd, selectors.EVENT_READ)
    conn.sendall(f"pid {pid}\n".encode())
    buffer = b""
    while True:
        for key, _ in selector.select():
            if key.fileobj == pidfd:
                _, status = os.waitpid(pid, 0)
                code = os.waitstatus_to_exitcode(status)
                reply = f"signal {-code}" if code < 0 else f"exit {code}"
                _log(f"{' '.join(request['argv'])}: {reply} ({request['cwd']})")
                try:
                    conn.sendall(f"{reply}\n".encode())
                finally:
                    os._exit(0)
            data = conn.recv(4096)
            if not data:  # the stage process died (kill -9): its worker goes with it
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                os._exit(0)
            buffer += data
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                kind, value = line.decode().split()
                if kind == "signal":
                    os.kill(pid, int(value))


def _work(request: dict, fds: list[int]) -> None:
    """The worker: become the stage process the client would have been, then run its script."""
    import ctypes
    import runpy
    import traceback

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the handler
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = _text_stream(1, unbuffered)
    sys.stderr = _text_stream(2, True)
    argv = request["argv"]
    sys.argv = list(argv)
    sys.path[0] = str(Path(argv[0]).resolve().parent)
    code = 0
    try:
        runpy.run_path(argv[0], run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except KeyboardInterrupt:
        code = 128 + signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    os._exit(code)


def _text_stream(fd: int, line_buffered: bool) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    return io.TextIOWrapper(
        io.BufferedWriter(raw),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=line_buffered or os.isatty(fd),
        write_through=line_buffered,
    )


def _send(conn: socket.socket, message: dict, fds: list[int] = ()) -> None:
    body = json.dumps(message).encode()
    socket.send_fds(conn, [_HEADER.pack(len(body)) + body], fds)


def _recv(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 20, 8)
    if len(data) < _HEADER.size:
        raise ValueError("empty request")
    (size,) = _HEADER.unpack_from(data)
    body = data[_HEADER.size :]
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ValueError("truncated request")
        body += chunk
    return json.loads(body), list(fds)


def _recv_line(conn: socket.socket) -> str | None:
    """One reply line from the handler; None when it hung up first."""
    line = b""
    while not line.endswith(b"\n"):
        try:
            chunk = conn.recv(1)
        except InterruptedError:
            continue
        if not chunk:
            return None
        line += chunk
    return line.decode().strip()


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} [{os.getpid()}] {message}", flush=True)


def _command(argv: list[str]) -> int:
    """`python -m dl4cv.runtime.warmstart status|stop`: the server of this environment."""
    path = socket_path()
    action = argv[0] if argv else "status"
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(path))
    except OSError:
        print(f"no warm server at {path}")
        return 0 if action == "stop" else 1
    _send(conn, {"command": "stop" if action == "stop" else "status"})
    reply = _recv_line(conn)
    conn.close()
    if reply is None:
        print(f"the warm server at {path} did not answer")
        return 1
    _, pid, modules = reply.split(" ", 2)
    done = "stopped" if action == "stop" else "running"
    print(f"warm server {done}: pid {pid}, socket {path}, preloaded {modules or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(_command(sys.argv[1:]))
