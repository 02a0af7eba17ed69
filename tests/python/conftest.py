"""Fixtures for the end-to-end tests: the real `tributary` binary, started on a free loopback
port with a temporary data root, and stopped when the test ends."""

import os
import re
import socket
import subprocess
import sys
import time

import pytest

BINARY = os.environ.get("TRIBUTARY_BIN", "tributary")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `tributary serve` process; `uri` is its Flight SQL address."""

    def __init__(self, data, env=None):
        self.data = data
        self.env = env
        self.process = None
        self.address = None

    def start(self):
        env = dict(os.environ, **(self.env or {}))
        self.process = subprocess.Popen(
            [BINARY, "serve", "--flight-addr", "127.0.0.1:0", "--data", str(self.data)],
            stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"tributary serve exited with {self.process.wait()}")
            match = re.match(r"Tributary Flight SQL listening on (\S+)", line)
            if match:
                self.address = match.group(1)
                return self
        raise RuntimeError("tributary serve did not start within 60 s")

    @property
    def uri(self):
        return f"grpc://{self.address}"

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args, check=True):
        """Runs a client subcommand against this server."""
        result = subprocess.run(
            [BINARY, *args, "--server", self.address], capture_output=True, text=True, timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tributary {' '.join(args)} failed:\n{result.stderr}")
        return result


@pytest.fixture
def server(tmp_path):
    srv = Server(tmp_path / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def connect():
    from adbc_driver_flightsql import dbapi

    connections = []

    def _connect(srv):
        conn = dbapi.connect(srv.uri, autocommit=True)
        connections.append(conn)
        return conn

    yield _connect
    for conn in connections:
        conn.close()
