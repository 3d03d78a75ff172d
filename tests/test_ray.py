"""Ray Train: a local Ray cluster (started and stopped by the test: `ray.init(num_cpus=2)`, two CPU
workers, gloo) runs ember's plain `fit(strategy="ddp")` in a `TorchTrainer`. One worker is killed mid
epoch on the first attempt; Ray restarts the worker group from the checkpoint `RayTrainCheckpoint`
reported, and the final weights equal those of the same 2-process run never interrupted (under
`ember launch`), bit for bit, and single-process training's within float tolerance.

Run as a script, this file is the job: `python tests/test_ray.py ray OUT` (the Ray driver) or
`ember launch -n 2 tests/test_ray.py launch OUT` (the uninterrupted reference).
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

EPOCHS, SAMPLES, BATCH, KILL_AT = 4, 64, 8, (2, 3)  # killed after batch 3 of epoch 3 (0-based 2)


def fit(out: Path, callbacks) -> None:
    import numpy as np

    import ember
    from ember import layers

    ember.seed(0)
    x = np.random.default_rng(0).random((SAMPLES, 10), dtype=np.float32)
    y = (x[:, :3].sum(1) > 1.5).astype("int64")
    model = ember.Sequential([layers.Dense(16, activation="relu"), layers.Dense(2)])  # no dropout: DDP == one process
    strategy = "ddp" if os.environ.get("WORLD_SIZE") else "single"
    model.compile("adamw", "cross_entropy", lr=0.01, strategy=strategy, precision="fp32")
    model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    if int(os.environ.get("RANK", 0)) == 0:
        model.save_weights(out)


def ray_job(out: Path) -> None:
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    def train_loop(config):
        import ray.train

        from ember.callbacks import Callback
        from ember.integrations.ray import RayTrainCheckpoint

        class KillOnce(Callback):
            """SIGKILL worker 1 in the middle of an epoch, on the first attempt only."""

            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch

            def on_train_batch_end(self, batch, logs=None):
                marker = Path(config["out"]).with_suffix(".killed")
                if (self.epoch, batch) == KILL_AT and ray.train.get_context().get_world_rank() == 1 \
                        and not marker.exists():
                    marker.write_text("killed")
                    os.kill(os.getpid(), 9)

        fit(Path(config["out"]), [KillOnce(), RayTrainCheckpoint()])

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = TorchTrainer(
            train_loop, train_loop_config={"out": str(out)},
            scaling_config=ScalingConfig(num_workers=2, use_gpu=False, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(storage_path=str(out.parent / "ray"), name="ember",
                                 failure_config=FailureConfig(max_failures=1))).fit()
        print(f"epochs reported: {result.metrics['epoch']}; restarted: {out.with_suffix('.killed').exists()}")
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_restarts_a_killed_worker_from_embers_checkpoint_and_ends_bit_identical(tmp_path):
    pytest.importorskip("ray.train")
    from safetensors.torch import load_file

    root = Path(__file__).parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "RAY_DEDUP_LOGS": "0",
           "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}

    def run(*args, timeout=600):
        job = subprocess.run([*args], env=env, capture_output=True, text=True, timeout=timeout, cwd=tmp_path)
        assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-4000:]
        return job.stdout

    run(sys.executable, "-m", "ember.cli", "launch", "-n", "2", __file__, "launch", str(tmp_path / "launch.st"))
    run(sys.executable, __file__, "single", str(tmp_path / "single.st"))
    output = run(sys.executable, __file__, "ray", str(tmp_path / "ray.st"))
    assert "restarted: True" in output and f"epochs reported: {EPOCHS}" in output, output
    ray_weights, reference = load_file(tmp_path / "ray.st"), load_file(tmp_path / "launch.st")
    single = load_file(tmp_path / "single.st")
    import torch

    for name in reference:
        assert torch.equal(ray_weights[name], reference[name]), name
        torch.testing.assert_close(ray_weights[name], single[name], rtol=1e-5, atol=1e-6)


if __name__ == "__main__":
    mode, target = sys.argv[1], Path(sys.argv[2])
    if mode == "ray":
        ray_job(target)
    else:  # "launch" (under ember launch) or "single"
        fit(target, [])
