"""Weights URLs as an attacker writes them: nothing lands outside the download cache.

A local HTTP server on 127.0.0.1 serves every path it is asked for (a valid checkpoint, or
garbage), and records the requests: the attacks must be refused before any request is made,
any folder created or any byte written.
"""

from __future__ import annotations

import http.server
import io
import os
import pickle
import threading

import pytest
import torch
from torch import nn

from meshrecon.checkpoint import (
    Checkpointer,
    DownloadedFileError,
    UnsafePathError,
    cache_path_for_url,
    catalog,
)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _checkpoint_bytes(model: nn.Module) -> bytes:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict()}, buf)
    return buf.getvalue()


class _Server:
    """Serves ``routes[path]`` (or ``default``) for any GET; records the raw request paths."""

    def __init__(self, default: bytes):
        self.default = default
        self.routes: dict[str, bytes] = {}
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                server.requests.append(self.path)
                body = server.routes.get(self.path, server.default)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def _tree(root) -> set[str]:
    """Every file, folder and link below ``root`` (relative), to compare before and after."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


@pytest.fixture(scope="module")
def server():
    server = _Server(_checkpoint_bytes(_net(0)))
    yield server
    server.close()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    """A cache three levels down in tmp_path (so '..' segments would land inside tmp_path, where
    the test can see them) and a server that would happily serve a valid checkpoint."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "home" / "user" / "cache"
    cache.mkdir(parents=True)
    monkeypatch.setenv("MESHRECON_CACHE", str(cache))
    server.routes.clear()
    server.requests.clear()
    return {"tmp": tmp_path, "cache": cache, "server": server}


TRAVERSALS = [
    "/../../../evil.pth",
    "/models/../../../../evil.pth",
    "/%2e%2e/%2e%2e/%2e%2e/evil.pth",
    "/%2E%2E/%2E%2E/%2E%2E/evil.pth",
    "/..%2f..%2f..%2fevil.pth",
    "/models/..%5c..%5c..%5cevil.pth",
    "/models\\..\\..\\..\\evil.pth",
    "//etc/evil.pth",
    "/models//evil.pth",
    "/./evil.pth",
    "/models/%00/evil.pth",
    "/models/evil%00.pth",
    "/C:/evil.pth",
    "/models/\n/evil.pth",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversing_url_is_refused_before_anything_is_written(env, path):
    url = env["server"].base + path
    before = _tree(env["tmp"])
    with pytest.raises(UnsafePathError) as err:
        Checkpointer(_net(1)).load(url)
    msg = str(err.value)
    assert "Refusing weights URL" in msg and repr(url)[1:-1] in msg
    assert str(env["cache"]) in msg
    assert _tree(env["tmp"]) == before  # no file, no folder, anywhere in the tmp tree
    assert env["server"].requests == []  # refused before contacting the host


@pytest.mark.parametrize("prefix", ["meshrcnn://", "shapenet://", "detectron2://"])
@pytest.mark.parametrize("name", ["../../../../evil.pth", "%2e%2e/%2e%2e/evil.pth", "/evil.pth"])
def test_traversing_prefixed_name_is_refused(env, monkeypatch, prefix, name):
    # The prefixes build URLs from a base and the name; point the base at the local server.
    handler = catalog._PREFIX_HANDLERS[prefix]
    monkeypatch.setattr(handler, "base_url", env["server"].base + "/zoo/models/")
    before = _tree(env["tmp"])
    with pytest.raises(UnsafePathError, match="Refusing weights URL") as err:
        Checkpointer(_net(1)).load(prefix + name)
    assert prefix + name in str(err.value)
    assert _tree(env["tmp"]) == before
    assert env["server"].requests == []


def test_prefixed_name_downloads_into_the_cache(env, monkeypatch):
    handler = catalog._PREFIX_HANDLERS["meshrcnn://"]
    monkeypatch.setattr(handler, "base_url", env["server"].base + "/meshrcnn/pix3d/")
    dst = _net(1)
    Checkpointer(dst).load("meshrcnn://good_R50.pth")
    assert torch.equal(dst[0].weight, _net(0)[0].weight)
    assert (env["cache"] / "meshrcnn" / "pix3d" / "good_R50.pth").is_file()


def test_symlink_in_the_cache_leading_out_is_refused(env):
    outside = env["tmp"] / "outside"
    outside.mkdir()
    os.symlink(outside, env["cache"] / "models")
    before = _tree(env["tmp"])
    with pytest.raises(UnsafePathError, match="symlink") as err:
        Checkpointer(_net(1)).load(env["server"].base + "/models/sub/x.pth")
    assert str(outside) in str(err.value)
    assert _tree(env["tmp"]) == before and os.listdir(outside) == []
    assert env["server"].requests == []

    # A link at the file itself, to a file that does not exist yet, is refused the same way.
    os.symlink(outside / "planted.pth", env["cache"] / "x.pth")
    with pytest.raises(UnsafePathError, match="symlink"):
        Checkpointer(_net(1)).load(env["server"].base + "/x.pth")
    assert os.listdir(outside) == [] and env["server"].requests == []


def test_cache_folder_itself_may_be_a_symlink(env, monkeypatch):
    real = env["tmp"] / "big_disk" / "cache"
    real.mkdir(parents=True)
    link = env["tmp"] / "linked_cache"
    os.symlink(real, link)
    monkeypatch.setenv("MESHRECON_CACHE", str(link))
    dst = _net(1)
    Checkpointer(dst).load(env["server"].base + "/models/m.pth")
    assert torch.equal(dst[0].weight, _net(0)[0].weight)
    assert (real / "models" / "m.pth").is_file()


@pytest.mark.parametrize(
    "name, body",
    [
        ("page.pth", b"<html><body>404 - not here</body></html>"),
        ("truncated.pth", b""),
        # A pickle that would run a command when loaded unsafely.
        ("hostile.pkl", pickle.dumps({"model": {}, "x": os.system}, protocol=2)),
    ],
)
def test_download_that_does_not_load_leaves_nothing_in_the_cache(env, name, body):
    server = env["server"]
    server.routes[f"/models/{name}"] = body
    with pytest.raises(DownloadedFileError) as err:
        Checkpointer(_net(1)).load(f"{server.base}/models/{name}")
    assert "nothing was kept in the cache" in str(err.value) and name in str(err.value)
    assert server.requests == [f"/models/{name}"]
    assert _tree(env["cache"]) == set()  # no file, no temp file, no folder
    # The next attempt downloads again (nothing poisoned the cache).
    with pytest.raises(DownloadedFileError):
        Checkpointer(_net(1)).load(f"{server.base}/models/{name}")
    assert len(server.requests) == 2


def test_normal_url_downloads_once_and_loads(env):
    server = env["server"]
    url = f"{server.base}/detectron2/models/model_final.pth?dl=1"
    dst = _net(1)
    Checkpointer(dst).load(url)
    assert torch.equal(dst[2].weight, _net(0)[2].weight)
    cached = env["cache"] / "detectron2" / "models" / "model_final.pth"
    assert cache_path_for_url(url) == str(cached) and cached.is_file()
    assert _tree(env["cache"]) == {
        "detectron2",
        os.path.join("detectron2", "models"),
        os.path.join("detectron2", "models", "model_final.pth"),
    }
    Checkpointer(_net(2)).load(url)  # second load: from the cache
    assert server.requests == ["/detectron2/models/model_final.pth?dl=1"]


def test_oversized_download_is_abandoned(env, monkeypatch):
    monkeypatch.setattr(catalog, "MAX_DOWNLOAD_BYTES", 100)
    with pytest.raises(catalog.WeightsDownloadError, match="MAX_DOWNLOAD_BYTES"):
        Checkpointer(_net(1)).load(env["server"].base + "/big.pth")
    assert _tree(env["cache"]) == set()


def test_exists_on_a_traversing_url_raises(env):
    with pytest.raises(UnsafePathError):
        catalog.PathManager.exists(env["server"].base + "/../x.pth")
