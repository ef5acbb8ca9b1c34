"""The benchmark harness: random round order, the allocator pin."""

import platform
import subprocess
import sys

from experiments.benchmarks import _harness


def test_interleaved_calls_each_function_once_per_round_in_varying_order():
  calls = []
  fns = {name: (lambda name=name: calls.append(name)) for name in "abcde"}
  times = _harness.interleaved(fns, warmup=1, min_reps=20, max_reps=20, budget_s=0.0)
  assert {name: len(ts) for name, ts in times.items()} == dict.fromkeys("abcde", 20)
  rounds = [calls[i : i + 5] for i in range(5, len(calls), 5)]  # after the warm-up round
  assert all(sorted(r) == list("abcde") for r in rounds)
  # Neighbours vary: "a" is followed by more than one function across rounds.
  followers = {r[r.index("a") + 1] for r in rounds if r[-1] != "a"}
  assert len(followers) > 1


def test_allocator_pin_takes_on_glibc_and_is_recorded():
  # In a subprocess: the pin changes malloc for the whole process.
  script = (
    "from experiments.benchmarks import _harness\n"
    "assert not _harness.machine_info()['allocator_pinned']\n"
    "print(_harness.pin_allocator(), _harness.machine_info()['allocator_pinned'])\n"
  )
  out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
  glibc = platform.libc_ver()[0] == "glibc"
  assert out.stdout.split() == [str(glibc), str(glibc)]
