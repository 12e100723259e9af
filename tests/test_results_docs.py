"""README.md and docs/results.md quote benchmark numbers only through scripts/gen_results.py."""

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("gen_results", ROOT / "scripts" / "gen_results.py")
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)


def test_docs_match_the_json_results(capsys):
    rc = gen.main(["--check"])
    assert rc == 0, "stale generated numbers:\n" + capsys.readouterr().out


def test_every_region_is_used_and_markers_pair():
    texts = {rel: (ROOT / rel).read_text() for rel in gen.DOCS}
    used = {m["name"] for t in texts.values() for m in gen.MARKER.finditer(t)}
    assert used == set(gen.REGIONS)
    for rel, t in texts.items():
        opens = re.findall(r"<!-- results:([\w-]+) -->", t)
        closes = re.findall(r"<!-- /results:([\w-]+) -->", t)
        assert sorted(opens) == sorted(closes), rel


def test_known_drift_is_generated():
    readme = (ROOT / "README.md").read_text()
    unrolled = gen.load("solvers")["unrolled_memory_ratio_k16_k1"].values()
    assert f"(unrolled: {min(unrolled):.2f}–{max(unrolled):.2f}×)" in readme
    assert "8.93" in readme and "0.85 – 0.99" not in readme
    assert "median 93 s" in (ROOT / "docs" / "results.md").read_text()


def test_check_fails_on_a_changed_number(tmp_path, monkeypatch):
    (tmp_path / "docs").mkdir()
    for rel in gen.DOCS:
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    readme = tmp_path / "README.md"
    good = readme.read_text()
    readme.write_text(re.sub(r"\(unrolled: [^)]*\)", "(unrolled: 5.7–6.7×)", good))
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    assert gen.main(["--check"]) == 1
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0
    assert readme.read_text() == good


def test_unknown_marker_is_an_error():
    with pytest.raises(SystemExit, match="unknown results marker"):
        gen.fill("<!-- results:nope -->x<!-- /results:nope -->", "t.md")
