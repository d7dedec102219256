"""Start and stop a `moepack serve` process on a free loopback port (shared by the serve scripts)."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_MODEL = os.path.join(ROOT, "Sources", "moepack", "Resources", "tiny-moe")


def default_binary():
    for config in ("release", "debug"):
        path = os.path.join(ROOT, ".build", config, "moepack")
        if os.path.exists(path):
            return path
    return os.path.join(ROOT, ".build", "debug", "moepack")


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A running `moepack serve`; use as a context manager. `stop()` sends SIGTERM and returns the exit code."""

    def __init__(self, binary, model, extra_args=(), startup_timeout=120, log_path=None):
        """`log_path`: where the server's output goes (a long run must not fill an unread pipe)."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        args = [binary, "serve", model, "--host", "127.0.0.1", "--port", str(self.port), *extra_args]
        output = open(log_path, "w") if log_path else subprocess.PIPE
        self.process = subprocess.Popen(args, stdout=output, stderr=subprocess.STDOUT, text=True)
        deadline = time.time() + startup_timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                out = self.process.stdout.read() if self.process.stdout else open(log_path).read()
                raise RuntimeError(f"moepack serve exited with {self.process.returncode}:\n{out}")
            try:
                with urllib.request.urlopen(self.base_url + "/health", timeout=2) as r:
                    if json.load(r).get("status") == "ok":
                        return
            except OSError:
                time.sleep(0.2)
        self.process.kill()
        raise RuntimeError("moepack serve did not become healthy in time")

    def model_id(self):
        with urllib.request.urlopen(self.base_url + "/v1/models", timeout=10) as r:
            return json.load(r)["data"][0]["id"]

    def metrics(self):
        with urllib.request.urlopen(self.base_url + "/metrics", timeout=10) as r:
            return r.read().decode()

    def stop(self, timeout=60):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def metric_value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)
