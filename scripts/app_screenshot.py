"""The screenshot of fastnst-app in docs/app.md: the app on a free loopback port, a photo painted in
headless Chromium (Debian's chromium and chromium-driver), the window saved as a JPEG.

    python scripts/app_screenshot.py                       # docs/app.jpg
    python scripts/app_screenshot.py --model checkpoints/demo/wave.ckpt --photo my.jpg
"""

from __future__ import annotations

import argparse
import io
import tempfile
import threading
import time
from pathlib import Path

import torch
from common import REPO
from common import SHARED_DATA as SHARED
from PIL import Image

from fastnst import app


def start_chromium(
    chromium: str,
    chromedriver: str,
    profile: Path,
    window: tuple[int, int],
    downloads: Path | None = None,
):
    """Headless Chromium under Selenium, through the chromedriver given (never a download).

    The flags keep a browser on a machine without internet from reaching out (background
    networking, component updates, sync) and let it run as root in a container.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--window-size={window[0]},{window[1]}",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    if downloads is not None:
        options.add_experimental_option(
            "prefs",
            {"download.default_directory": str(downloads), "download.prompt_for_download": False},
        )
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "checkpoints/demo/starry_night.ckpt")
    parser.add_argument("--photo", type=Path, default=SHARED / "content" / "chicago.jpg")
    parser.add_argument("--size", default="512")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "app.jpg")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args(argv)
    if not args.model.is_file():
        parser.error(f"{args.model}: no such model; make demo trains one")

    from selenium.webdriver.common.by import By

    library = app.Library([args.model], torch.device("cpu"))
    sock = app.bind("127.0.0.1", 0)
    server = app.make_server(app.create_app(library, app.Limits()))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    while not server.started:
        time.sleep(0.05)
    with tempfile.TemporaryDirectory() as profile:
        driver = start_chromium(args.chromium, args.chromedriver, Path(profile), (1200, 820))
        try:
            driver.get(app.url_of(sock))
            while not driver.find_elements(By.CSS_SELECTOR, "#model option"):
                time.sleep(0.1)
            size = driver.find_element(By.ID, "size")
            size.clear()
            size.send_keys(args.size)
            driver.find_element(By.ID, "file").send_keys(str(args.photo.resolve()))
            driver.find_element(By.ID, "paint").click()
            while not driver.execute_script(
                "const i = document.getElementById('output-image');"
                "return document.body.dataset.done && i.complete && i.naturalWidth"
            ):
                time.sleep(0.1)
            png = driver.get_screenshot_as_png()
        finally:
            driver.quit()
            server.should_exit = True
            thread.join()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    Image.open(io.BytesIO(png)).convert("RGB").save(args.out, quality=85, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
