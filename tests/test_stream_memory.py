"""A stream of shards ten times larger than a memory cap trains with the process's memory growth under
that cap (ember/data/streams.py keeps one shuffle block of undecoded samples and a few decoded batches).

Run as a script, this file is the training job: `python tests/test_stream_memory.py SHARDS_DIR`; it prints
how far its RSS rose above its RSS after the first batches, in MB.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

CAP_MB = 32
SHARDS, PER_SHARD, SIDE = 10, 1200, 96  # 12,000 uncompressed 96x96 RGB PNGs: ~330 MB


def train(folder: Path) -> None:
    import threading

    import ember
    from ember import layers
    from ember.callbacks import Callback
    from ember.data import image_stream

    def resident_mb():
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    class PeakAfterWarmUp(Callback):
        """The RSS after the first batches (imports, pools and buffers in place), then its peak: sampled
        every 5 ms by a thread until training ends (ru_maxrss would count the imports' peak too)."""

        def on_train_batch_end(self, batch, logs=None):
            if batch == 5:
                self.warm_mb = self.peak_mb = resident_mb()
                self.sampling = threading.Thread(target=self.sample, daemon=True)
                self.sampling.start()

        def sample(self):
            while not self.done.wait(0.005):
                self.peak_mb = max(self.peak_mb, resident_mb())

        def on_train_end(self, logs=None):
            self.done.set()
            self.sampling.join()

    stream = image_stream(sorted(folder.glob("*.tar")), image_size=(32, 32), batch_size=64, seed=0,
                          shuffle_buffer=256, workers=2)
    model = ember.Sequential([layers.Rescaling(1 / 255, input_shape=(3, 32, 32)), layers.Conv2D(4, 3, strides=2),
                              layers.GlobalAveragePooling2D(), layers.Dense(3)])
    model.compile("adam", loss="cross_entropy")
    peak = PeakAfterWarmUp()
    peak.done = threading.Event()
    model.fit(stream, epochs=1, verbose=0, callbacks=[peak])
    print(f"{peak.peak_mb - peak.warm_mb:.1f}")


@pytest.mark.slow
def test_a_stream_ten_times_the_cap_trains_within_the_cap(tmp_path):
    from testing.image_folders import make_shards

    shards = make_shards(tmp_path, shards=SHARDS, per_shard=PER_SHARD, image_shape=(SIDE, SIDE, 3), raw_noise=True)
    size_mb = sum(p.stat().st_size for p in shards) / 2**20
    assert size_mb >= 10 * CAP_MB
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    job = subprocess.run([sys.executable, __file__, str(tmp_path)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert job.returncode == 0, job.stderr[-3000:]
    growth_mb = float(job.stdout.strip().splitlines()[-1])
    print(f"streamed {size_mb:.0f} MB; peak RSS grew {growth_mb:.1f} MB (cap {CAP_MB} MB)")
    assert growth_mb < CAP_MB, f"peak RSS grew {growth_mb:.1f} MB while streaming {size_mb:.0f} MB of shards"


if __name__ == "__main__":
    train(Path(sys.argv[1]))
