"""CPU threads (w2vcli/cpu.py): the usable cores shared among the processes on the machine,
OMP_NUM_THREADS respected, --threads to override (issue 14, case 8)."""

from __future__ import annotations

import pytest
import torch
from train_data import make_corpus
from typer.testing import CliRunner

from w2vcli import cpu
from w2vcli.cli import app


@pytest.fixture
def eight_cores(monkeypatch):
    monkeypatch.setattr(cpu, "usable_cores", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_training_threads_share_the_cores(eight_cores, monkeypatch):
    assert cpu.training_threads(cpu.AUTO, processes=1, workers=2, device="cpu") == 8
    assert cpu.training_threads(cpu.AUTO, processes=2, workers=2, device="cpu") == 4
    assert cpu.training_threads(cpu.AUTO, processes=2, workers=2, device="cuda") == 2  # workers get cores
    assert cpu.training_threads(cpu.AUTO, processes=8, workers=6, device="cuda") == 1
    assert cpu.training_threads(3, processes=2, workers=2, device="cpu") == 3  # --threads
    assert cpu.training_threads(cpu.TORCH_DEFAULT, processes=2, workers=2, device="cpu") == 0
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # the user's choice, per process
    assert cpu.training_threads(cpu.AUTO, processes=2, workers=2, device="cpu") == 5


def test_inference_threads_leave_cores_to_decoder_processes(eight_cores):
    assert cpu.inference_threads(cpu.AUTO, decoder_processes=1) == 8
    assert cpu.inference_threads(cpu.AUTO, decoder_processes=3) == 5
    assert cpu.inference_threads(cpu.AUTO, decoder_processes=12) == 1
    assert cpu.inference_threads(2, decoder_processes=3) == 2


def test_cgroup_quota_and_physical_cores(tmp_path):
    (tmp_path / "cpu.max").write_text("250000 100000\n")
    assert cpu.cgroup_cpu_quota(tmp_path) == 2.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpu.cgroup_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu.cgroup_cpu_quota(tmp_path) == 3.0
    # two hyperthreads of core 0, one of core 1: two physical cores
    for n, core in enumerate([0, 0, 1]):
        topology = tmp_path / "sys" / f"cpu{n}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text("0\n")
        (topology / "core_id").write_text(f"{core}\n")
    assert cpu.physical_cores([0, 1, 2], tmp_path / "sys") == 2
    assert cpu.physical_cores([0, 1], tmp_path / "sys") == 1
    assert cpu.physical_cores([7], tmp_path / "sys") == 0  # unknown: the caller counts logical CPUs


def test_training_sets_the_threads(eight_cores, restore_threads, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "usable_cores", lambda: 3)
    train = make_corpus(tmp_path, "train", 4, seed=0)
    args = ["pretrain", "--train", str(train), "--preset", "tiny", "--max-tokens", "64000", "--max-updates", "1",
            "--num-workers", "0"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    assert torch.get_num_threads() == 3  # all three usable cores: one process
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "b"), "--threads", "2"])
    assert res.exit_code == 0, res.output
    assert torch.get_num_threads() == 2


def test_engine_divides_the_cores_among_local_processes(eight_cores, restore_threads, monkeypatch):
    from w2vcli.train.config import PretrainConfig
    from w2vcli.train.distributed import Dist
    from w2vcli.train.engine import set_threads

    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    set_threads(PretrainConfig(num_workers=2), Dist(rank=1, world_size=4, local_rank=1))
    assert torch.get_num_threads() == 2  # 8 cores / 4 processes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # torchrun: 2 of the 4 processes on this node
    set_threads(PretrainConfig(num_workers=2), Dist(rank=1, world_size=4, local_rank=1))
    assert torch.get_num_threads() == 4


def test_transcribe_takes_threads(tmp_path, restore_threads, real_mini):
    from w2vcli.model.build import build_model
    from w2vcli.model.checkpoint import save_checkpoint
    from w2vcli.model.config import tiny
    from w2vcli.text import SPECIALS, Vocabulary

    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, build_model("ctc", tiny(), Vocabulary(list(SPECIALS) + list("|AB"))))
    flac = sorted(real_mini.rglob("*.flac"))[0]
    res = CliRunner().invoke(app, ["transcribe", str(ckpt), str(flac), "--threads", "2"])
    assert res.exit_code == 0, res.output
    assert torch.get_num_threads() == 2


def test_openmp_threads_sleep_instead_of_spinning():
    """`w2v` makes waiting OpenMP threads sleep, so two runs sharing cores do not spin against each
    other (bench/studies/concurrent_training.py); a user's own OMP_WAIT_POLICY is kept."""
    import os
    import subprocess
    import sys

    code = "import os, w2vcli.cli; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    out = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "ACTIVE"


def test_large_tensors_reuse_freed_memory():
    """`w2v` has glibc keep freed memory for the next tensors instead of unmapping it (w2vcli/cpu.py
    keep_freed_memory): freeing a 64 MiB tensor leaves the resident size as it was. With
    W2V_KEEP_MEMORY=0 (or a MALLOC_* variable of the user's) glibc returns those pages at once."""
    import os
    import platform
    import subprocess
    import sys

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("glibc only")
    code = (
        "import os, torch\n"
        "from typer.testing import CliRunner\n"
        "from w2vcli.cli import app\n"
        "assert CliRunner().invoke(app, ['score', '--help']).exit_code == 0\n"
        "def rss(): return int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE')\n"
        "x = torch.ones(16 * 2**20)  # 64 MiB, over any mmap threshold\n"
        "before = rss(); del x\n"
        "print((before - rss()) / 2**20)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "LD_PRELOAD"}

    def freed_mib(extra: dict) -> float:
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, capture_output=True, text=True,
                             check=True)  # fmt: skip
        return float(out.stdout.strip().splitlines()[-1])

    assert freed_mib({}) < 1
    assert freed_mib({"W2V_KEEP_MEMORY": "0"}) > 60
    assert freed_mib({"MALLOC_ARENA_MAX": "4"}) > 60
