"""The README as a newcomer meets it: short, installs first, every Python
block runs as written top to bottom in one fresh interpreter, every local
link (and its anchor) resolves."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks(text: str) -> list[str]:
  return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def github_anchor(heading: str) -> str:
  """The anchor GitHub gives a markdown heading."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_readme_is_short_and_installs_first():
  lines = README.splitlines()
  assert len(lines) <= 180, len(lines)
  assert any("pip install" in line for line in lines[:40])


def test_readme_python_blocks_run_top_to_bottom():
  blocks = python_blocks(README)
  assert blocks, "README.md has no Python block"
  result = subprocess.run(
    [sys.executable, "-c", "\n".join(blocks)], cwd=ROOT, capture_output=True, text=True
  )
  assert result.returncode == 0, result.stderr[-4000:]


def test_readme_links_resolve():
  links = re.findall(r"\]\(([^)#]+?)(?:#([^)]*))?\)", README)
  local = [(path, anchor) for path, anchor in links if not path.startswith("http")]
  assert len(local) > 20
  for path, anchor in local:
    target = ROOT / path
    assert target.exists(), f"README links to {path}, which does not exist"
    if anchor:
      headings = re.findall(r"^#+ (.+)$", target.read_text(), re.MULTILINE)
      assert anchor in {github_anchor(h) for h in headings}, f"no heading #{anchor} in {path}"


def test_docs_page_check_names_a_missing_entry(tmp_path):
  """`make docs` runs docs/check_pages.py on the built site: it passes when
  every public name has an entry and names the one that has none."""
  sys.path.insert(0, str(ROOT / "docs"))
  import check_pages

  names = [f"{m}.{n}" for m in check_pages.PACKAGES for n in check_pages.public_names(m)]
  assert "margin_jax.losses.arcface_loss" in names and "margin_jax.parallel.shard_classes" in names
  page = "".join(
    f'<dt id="{name}"></dt>' for name in names if name != "margin_jax.metrics.tar_at_far"
  )
  (tmp_path / "index.html").write_text(page)
  assert check_pages.missing_entries(tmp_path) == ["margin_jax.metrics.tar_at_far"]
  assert check_pages.main([str(tmp_path)]) == 1
  (tmp_path / "index.html").write_text(page + '<dt id="margin_jax.metrics.tar_at_far"></dt>')
  assert check_pages.main([str(tmp_path)]) == 0
