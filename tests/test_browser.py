"""The report in a real browser: headless Chromium loads index.html; every image decodes, nothing errs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from browser import Browser, chromium
from conftest import TINY

DECODE_ALL = """(async () => {
  const seen = [];
  for (const img of document.images) {
    let decoded = true;
    try { await img.decode(); } catch (e) { decoded = false; }
    seen.push({alt: img.alt, decoded: decoded && img.naturalWidth > 0, width: img.naturalWidth});
  }
  return seen;
})()"""


@pytest.mark.slow
def test_index_html_renders_in_headless_chromium(cli, tmp_path):
    if chromium() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's package)")
    sweep = tmp_path / "sweep"
    assert cli("sweep", *TINY, "model=lstm,gru", "model.activation.candidate=tanh,relu", "seed=0,1",
               f"hydra.sweep.dir={sweep}").exit_code == 0
    assert cli("report", str(sweep)).exit_code == 0
    index = sweep / "report" / "index.html"
    browser = Browser(width=1400)
    try:
        browser.open(index)
        images = browser.evaluate(DECODE_ALL)
        overflow = browser.evaluate("document.documentElement.scrollWidth > document.documentElement.clientWidth")
        browser.screenshot(tmp_path / "index_1400.png")
    finally:
        browser.quit()
    assert browser.errors == []
    assert len(images) >= 6 and all(i["decoded"] for i in images), [i for i in images if not i["decoded"]]
    assert not overflow  # nothing wider than a 1400 px window
    assert (tmp_path / "index_1400.png").read_bytes()[:4] == b"\x89PNG"
    keep = os.environ.get("ACTSTUDY_SCREENSHOT")  # a path: keep the screenshot to look at
    if keep:
        shutil.copy(tmp_path / "index_1400.png", Path(keep))
