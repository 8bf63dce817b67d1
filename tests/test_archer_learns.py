"""End to end: a short seeded ArCHer run on the 20Q subset beats its SFT start.

The SFT actor shipped in data/checkpoints/twenty_questions_subset/ samples a mean return of
-14.05 on the 200 fixed evaluation episodes (eval.json). The cpu_course schedule (16 trajectories,
10 critic + 2 actor steps of 64 per iteration, 3 warm-up iterations) raises it to -11.09 within
15 iterations (240 trajectories); the test asks for a margin of 1.0. The run is seeded and uses
one torch thread, so on one machine type it is exactly reproducible; the std of a 200-episode
mean is ~0.5 (another draw of the SFT actor's 200 episodes gave -13.30), so on other hardware
(other float rounding -> other samples) the margin could be closer than it looks here.
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
                 progress=False, checkpoint_every=0, threads=1)
    final = read_metrics(train(cfg))[-1]
    assert final["trajectories"] == ITERATIONS * 16
    assert final["eval_sampled_mean_return"] > sft["sampled_mean_return"] + MARGIN, (
        f"ArCHer {final['eval_sampled_mean_return']:.2f} vs SFT {sft['sampled_mean_return']:.2f}")
# Measured with this exact config (seed 0, one torch thread): eval sampled return -11.09 after
# 15 iterations (SFT -14.05); success 65.5% (SFT 53.5%); invalid 8.2% (SFT 17.7%); but the repeat
# rate rose to 33.6% (SFT 9.3%) and greedy return fell to -14.75 (SFT -8.98): the critic barely
# tells a repeated question from a new one (see the issue notes). One thread keeps the numbers
# identical on any machine with this torch build and avoids thread oversubscription when other
# jobs share the cores.
