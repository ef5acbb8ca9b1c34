"""The README as a newcomer meets it: short, installs first, every Python
block runs as written top to bottom in one fresh interpreter, every local
link (and its anchor) resolves."""

import os
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
  example = re.search(r"<!-- readme-example -->\n```python\n(.*?)```", README, re.DOTALL)
  assert 10 <= len([line for line in example.group(1).splitlines() if line.strip()]) <= 20


def test_readme_python_blocks_run_top_to_bottom():
  """All blocks in one interpreter, as a reader runs them, on 4 CPU devices so
  that the own-loss block's mesh splits the classes; then the own loss in
  every engine equals CosFace (values and W's gradient)."""
  blocks = python_blocks(README)
  assert blocks, "README.md has no Python block"
  own_loss = re.search(r"<!-- custom-loss-example -->\n```python\n(.*?)```", README, re.DOTALL)
  assert own_loss and len(own_loss.group(1).strip().splitlines()) <= 22
  check = """
import numpy as np
assert jax.device_count() == 4 and losses.TABLE["my_margin"] is spec
want = losses.cosface_loss(x, W, y, scale=16.0, margin=0.2)
for got in (
  loss(x, W, y),
  loss.streamed(chunk_size=256)(x, W, y),
  sharded(x, W, y, scale=16.0, margin=0.2),
  sharded_streamed(x, W, y, scale=16.0, margin=0.2),
):
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
grads = [
  jax.grad(lambda W: f(x, W, y, scale=16.0, margin=0.2).sum())(W)
  for f in (spec.fn, losses.chunked(spec.fn, chunk_size=128), sharded, sharded_streamed)
]
for g in grads[1:]:
  np.testing.assert_allclose(g, grads[0], rtol=1e-4, atol=1e-6)
"""
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
  result = subprocess.run(
    [sys.executable, "-c", "\n".join(blocks) + check],
    cwd=ROOT,
    env=env,
    capture_output=True,
    text=True,
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


def test_every_public_name_has_an_api_entry():
  """`make docs` checks the built site; the suite checks its source: every
  public name of the documented packages has an autodoc or ``py:data``
  directive in a page of docs/."""
  sys.path.insert(0, str(ROOT / "docs"))
  import check_pages

  pages = "\n".join(p.read_text() for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)
  entries = set(re.findall(r"^\.\. auto\w+:: (margin_jax\.[\w.]+)", pages, re.MULTILINE))
  entries |= {
    f"{module}.{name}"
    for name, module in re.findall(
      r"^\.\. py:data:: (\w+)\n\s+:module: (margin_jax[\w.]*)", pages, re.MULTILINE
    )
  }
  names = [f"{m}.{n}" for m in check_pages.PACKAGES for n in check_pages.public_names(m)]
  assert [name for name in names if name not in entries] == []
