"""Style images by URL: fetched once, verified, cached; tested against a server on 127.0.0.1."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fastnst.download import DownloadError, cached_download, file_digest
from fastnst.jobs import CONF_DIR

from .conftest import STYLES

pytestmark = pytest.mark.shared_data
STYLE_CONFIGS = sorted((CONF_DIR / "style").glob("*.yaml"))


class _Handler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        type(self).requests.append(self.path)
        super().do_GET()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path, monkeypatch) -> Iterator[tuple[str, list[str]]]:
    """Serves ../shared/data/styles at http://127.0.0.1:PORT/; yields (base url, requests)."""
    handler = type("Handler", (_Handler,), {"requests": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=STYLES))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path / "cache"))
    for var in ("http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(var, raising=False)
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("config", STYLE_CONFIGS, ids=lambda p: p.stem)
def test_each_style_config_checksum_matches_the_painting(config, server):
    base, _ = server
    style = OmegaConf.load(config)
    filename = Path(style["url"]).name
    assert style["name"] == config.stem
    assert style["url"].startswith("https://")
    # The same file as the URL names, served locally: the config's checksum must accept it.
    path = cached_download(f"{base}/{filename}", style["sha256"], f"styles/{style['name']}.jpg")
    assert file_digest(path) == style["sha256"]


def test_fetched_once_then_served_from_cache(server, tmp_path):
    base, requests = server
    digest = file_digest(STYLES / "wave.jpg")
    first = cached_download(f"{base}/wave.jpg", digest, "styles/wave.jpg")
    second = cached_download(f"{base}/wave.jpg", digest, "styles/wave.jpg")
    assert first == second == tmp_path / "cache" / "styles" / "wave.jpg"
    assert first.read_bytes() == (STYLES / "wave.jpg").read_bytes()
    assert requests == ["/wave.jpg"]


def test_wrong_bytes_are_rejected_and_not_cached(server, tmp_path):
    base, _ = server
    with pytest.raises(DownloadError, match="sha256 .* expected 0000"):
        cached_download(f"{base}/wave.jpg", "0" * 64, "styles/wave.jpg")
    assert not any((tmp_path / "cache" / "styles").iterdir())


def test_offline_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTNST_CACHE", str(tmp_path))
    with pytest.raises(DownloadError) as info:
        # Nothing listens on port 9 of the loopback interface.
        cached_download("http://127.0.0.1:9/starry_night.jpg", "0" * 64, "styles/s.jpg")
    message = str(info.value)
    assert "could not download" in message and str(tmp_path / "styles" / "s.jpg") in message
    assert not (tmp_path / "styles" / "s.jpg").exists()
