"""The installed package, used from outside the source tree (as users run it)."""

import importlib.metadata
import os
import subprocess
import sys
from pathlib import Path

import pytest

try:
    importlib.metadata.distribution("leanvec")
except importlib.metadata.PackageNotFoundError:
    pytest.skip("leanvec is not installed", allow_module_level=True)

SCRIPTS = Path(sys.executable).parent


def _run(args, cwd):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_import_and_search_from_another_folder(tmp_path):
    code = ("import leanvec\n"
            "data = leanvec.datasets.load(leanvec.datasets.DEFAULT_DATASET)\n"
            "index = leanvec.FlatIndex(data.metric).fit(data.database)\n"
            "ids = index.search(data.queries[:20], 10).ids\n"
            "print(leanvec.recall_at_k(ids, data.gt_ids[:20], 10))\n")
    done = _run([sys.executable, "-c", code], tmp_path)
    assert done.returncode == 0, done.stderr
    assert float(done.stdout.split()[-1]) == 1.0


@pytest.mark.parametrize("command", [["leanvec-bench", "datasets"],
                                     ["json2vec", "--help"]])
def test_console_scripts_run(tmp_path, command):
    script = SCRIPTS / command[0]
    if not script.exists():
        pytest.skip(f"{command[0]} is not on this environment's script path")
    done = _run([str(script), *command[1:]], tmp_path)
    assert done.returncode == 0, done.stderr
    if command[0] == "leanvec-bench":
        assert "wordnet-minilm-384-angular-ood-10k" in done.stdout
