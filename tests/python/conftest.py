"""Fixtures for the end-to-end tests: the real `tributary` binary, started on a free loopback
port with a temporary data root, and stopped when the test ends."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

BINARY = os.environ.get("TRIBUTARY_BIN", "tributary")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `tributary serve` process; `uri` is its Flight SQL address, `http` the base URL of its
    HTTP collection API."""

    def __init__(self, data, env=None, args=(), http_addr="127.0.0.1:0"):
        self.data = data
        self.http_addr = http_addr
        self.env = env
        self.args = list(args)
        self.process = None
        self.address = None
        self.http_address = None
        self.banner = []

    def start(self):
        env = dict(os.environ, **(self.env or {}))
        self.process = subprocess.Popen(
            [BINARY, "serve", "--flight-addr", "127.0.0.1:0", "--http-addr", self.http_addr,
             "--data", str(self.data), *self.args],
            stdout=subprocess.PIPE, stderr=sys.stderr, text=True, env=env,
        )
        self.address = self.http_address = None
        self.banner = []
        deadline = time.time() + 60
        while time.time() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError(f"tributary serve exited with {self.process.wait()}")
            self.banner.append(line)
            match = re.match(r"Tributary Flight SQL listening on (\S+)", line)
            if match:
                self.address = match.group(1)
            match = re.match(r"Tributary HTTP collection API listening on (\S+)", line)
            if match:
                self.http_address = match.group(1)
            if self.address and self.http_address:
                return self
        raise RuntimeError("tributary serve did not start within 60 s")

    @property
    def http(self):
        return f"http://{self.http_address}"

    def kill(self):
        """Ends the server at once, as a crash would (SIGKILL)."""
        self.process.kill()
        self.process.wait()

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


def generate(out, customers, seed):
    """Writes `tributary generate`'s sample data (events, identities, orders…) into `out`."""
    subprocess.run(
        [BINARY, "generate", "--customers", str(customers), "--seed", str(seed), "--out", str(out)],
        check=True, capture_output=True, timeout=600,
    )
    return out


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


@pytest.fixture
def s3_server(tmp_path):
    """An S3-compatible server (moto) on a free loopback port with a bucket `cdp`; yields the
    environment a client needs to reach it."""
    port = free_port()
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except Exception:
            time.sleep(0.2)
    import boto3
    env = {
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
    }
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket="cdp")
    yield env
    process.terminate()
    process.wait(timeout=10)
