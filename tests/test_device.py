"""Devices: names are checked with one clear error, and where torch sees a CUDA GPU every
algorithm trains on it, matches the CPU's numbers, and resumes across devices. (The GPU tests
are skipped on CPU-only machines; see the README's "On a GPU" for where they last ran.)"""
import math

import pytest
import torch

from archer_lite.actor import Actor
from archer_lite.critic import DoubleCritic
from archer_lite.paths import sft_checkpoint_dir
from archer_lite.seeding import resolve_device
from archer_lite.sft_checkpoints import build_sft_checkpoint
from archer_lite.train import TrainConfig, preset, read_metrics, train
from tests.test_train import _numbers, tiny_config

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch sees no CUDA GPU")


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if CUDA else "cpu")
    for bad in ("gpu", "banana", "meta", ""):
        with pytest.raises(ValueError, match="use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'"):
            resolve_device(bad)
    with pytest.raises(ValueError, match="Unknown device 'gpu'"):
        TrainConfig(device="gpu")
    assert TrainConfig(device="cuda:3").device == "cuda:3"  # a config may be written for another machine


@pytest.mark.skipif(CUDA, reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_fails_before_writing_anything(tmp_path):
    with pytest.raises(ValueError, match="sees no CUDA GPU: install a CUDA build of torch .* or use device='cpu'"):
        train(tiny_config(tmp_path / "run", device="cuda"))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match="sees no CUDA GPU"):
        build_sft_checkpoint("corridor", epochs=1, eval_episodes=4, out=tmp_path / "sft", device="cuda")
    assert not (tmp_path / "sft").exists()


def test_a_checkpoint_saved_on_a_gpu_resumes_on_a_machine_without_one(tmp_path, monkeypatch):
    """Every tensor of state.pt tagged "cuda:0", as a GPU run saves it (torch's location taggers
    are patched while it is written), then resumed on the CPU: the numbers of an uninterrupted run."""
    import torch.serialization as serialization

    full = _numbers(train(tiny_config(tmp_path / "full", iterations=3)))
    registry = serialization._package_registry
    monkeypatch.setattr(serialization, "_package_registry",
                        [(0, lambda storage: "cuda:0", lambda storage, location: None)] + registry)
    train(tiny_config(tmp_path / "part", iterations=2))
    monkeypatch.setattr(serialization, "_package_registry", registry)
    if not CUDA:  # what torch.load does with it by default where there is no GPU
        with pytest.raises(RuntimeError, match="CUDA"):
            torch.load(tmp_path / "part" / "checkpoint" / "state.pt", weights_only=False)
    assert _numbers(train(tiny_config(tmp_path / "part", iterations=3))) == full


@needs_cuda
def test_an_sft_actor_trained_on_cuda_loads_and_plays_on_the_cpu(tmp_path):
    report = build_sft_checkpoint("corridor", epochs=1, eval_episodes=4, out=tmp_path / "sft", device="cuda",
                                  actor={"n_embd": 32, "n_head": 2})
    assert report["device"] == "cuda" and math.isfinite(report["final_loss"])
    actor = Actor.load(tmp_path / "sft")
    assert actor.device.type == "cpu"
    assert torch.isfinite(actor.utterance_logprob(["Position 0.\n"], ["right"])).all()


@needs_cuda
def test_actor_and_critic_numbers_match_the_cpu_on_cuda():
    env = "guess_my_city"
    actor = Actor.load(sft_checkpoint_dir(env))
    critic = DoubleCritic.from_config(preset("cpu_course", env=env).critic, env=env)
    states = ["Questions:\n", "Questions:\nIs it in Europe? No.\n"] * 3
    actions = ["Is it in Asia?", "Is the city's population above 5 million?"] * 3
    with torch.no_grad():
        lp_cpu, q_cpu = actor.utterance_logprob(states, actions), torch.stack(critic.q_v(states, actions))
        actor.to("cuda"), critic.to("cuda")
        lp_gpu, q_gpu = actor.utterance_logprob(states, actions), torch.stack(critic.q_v(states, actions))
    assert lp_gpu.device.type == "cuda" and q_gpu.device.type == "cuda"
    torch.testing.assert_close(lp_gpu.cpu(), lp_cpu, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(q_gpu.cpu(), q_cpu, atol=1e-4, rtol=1e-4)
    texts = actor.sample(states)  # batched KV-cache sampling on the GPU gives text
    assert len(texts) == 6 and all(isinstance(t, str) for t in texts)


@needs_cuda
@pytest.mark.parametrize("algo", ["archer", "archer_baseline", "chai", "filtered_bc", "ppo"])
def test_every_algorithm_trains_on_cuda(tmp_path, algo):
    run = train(tiny_config(tmp_path / "run", algo, device="cuda"))
    rows = read_metrics(run)
    assert [r["trajectories"] for r in rows] == [4, 8, 12]
    assert all(math.isfinite(v) for r in rows for v in r.values() if isinstance(v, float))
    assert -20.0 <= rows[-1]["eval_sampled_mean_return"] <= 0.0


def _close(a: list[dict], b: list[dict], tol: float = 1e-4) -> bool:
    """Same keys, equal counts and texts, floats equal to ``tol`` (CUDA's atomic adds in backward
    passes may reorder float sums between runs, so GPU runs agree to rounding, not bit for bit)."""
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(math.isclose(x[k], y[k], rel_tol=tol, abs_tol=tol)
                                     if isinstance(x[k], float) else x[k] == y[k] for k in x)
        for x, y in zip(a, b))


@needs_cuda
def test_a_gpu_run_resumes_on_cuda_as_uninterrupted_and_on_the_cpu(tmp_path):
    full = _numbers(train(tiny_config(tmp_path / "full", iterations=4, device="cuda")))
    assert _close(_numbers(train(tiny_config(tmp_path / "again", iterations=4, device="cuda"))), full)
    train(tiny_config(tmp_path / "part", iterations=2, device="cuda"))
    assert _close(_numbers(train(tiny_config(tmp_path / "part", iterations=4, device="cuda"))), full)
    train(tiny_config(tmp_path / "cpu", iterations=2, device="cuda"))
    on_cpu = _numbers(train(tiny_config(tmp_path / "cpu", iterations=3, device="cpu")))  # GPU checkpoint, CPU run
    assert len(on_cpu) == 3 and _close(on_cpu[:2], full[:2])
    assert all(math.isfinite(v) for v in on_cpu[2].values() if isinstance(v, float))
