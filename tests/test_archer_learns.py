"""End to end: a short seeded ArCHer run on the 20Q subset beats its SFT start.

The SFT actor shipped in data/checkpoints/twenty_questions_subset/ (since 2026-12-07) samples a
mean return of -10.22 on the 200 fixed evaluation episodes (eval.json; repeats 3.4%, greedy -3.46).
The cpu_course schedule (16 trajectories, 10 critic + 2 actor steps of 64 per iteration, 3 warm-up
iterations) with the actor fine-tuned through LoRA adapters (rank 8 on the attention projections)
raises it to -8.96 within 15 iterations (240 trajectories); the test asks for a margin of 1.0.
Measured from this actor with all its weights fine-tuned instead (the preset's default), the same
run ends at -10.16, no better: repeats rise 3.4% -> 30% and greedy return falls -3.46 -> -14.04
(the fine-tuned 0.56M actor loses track of what it asked, README; after 30 iterations -14.81); with
the conservative critic term (``archer.conservative_coef=1``) -9.54. The run is seeded and uses one
torch thread, so on one machine type it is exactly reproducible; the std of a 200-episode mean is
~0.45, so on other hardware (other float rounding -> other samples) the margin could be closer than
it looks here.
"""
import json

import pytest

from archer_lite.train import preset, read_metrics, sft_checkpoint_dir, train

ITERATIONS = 15
MARGIN = 1.0


@pytest.mark.slow
def test_archer_improves_sampled_return_over_sft(tmp_path):
    sft = json.loads((sft_checkpoint_dir("twenty_questions_subset") / "eval.json").read_text())
    cfg = preset("cpu_course", env="twenty_questions_subset", iterations=ITERATIONS, seed=0,
                 eval_every=ITERATIONS, eval_episodes=200, run_dir=str(tmp_path / "run"),
                 progress=False, checkpoint_every=0, threads=1, actor={"lora": True})
    final = read_metrics(train(cfg))[-1]
    assert final["trajectories"] == ITERATIONS * 16
    assert final["eval_sampled_mean_return"] > sft["sampled_mean_return"] + MARGIN, (
        f"ArCHer {final['eval_sampled_mean_return']:.2f} vs SFT {sft['sampled_mean_return']:.2f}")
    assert final["eval_sampled_repeat_rate"] < 0.05  # through LoRA it keeps track of what it asked
# Measured with this exact config (seed 0, one torch thread, AVX2 CPU): eval sampled return -8.96
# after 15 iterations (SFT -10.22); success 84% (SFT 75%); repeats 3.8% (SFT 3.4%); invalid 3.9%
# (SFT 5.4%); greedy -3.465 (SFT -3.465). One thread keeps the numbers identical on any machine
# with this torch build and avoids thread oversubscription when other jobs share the cores.
