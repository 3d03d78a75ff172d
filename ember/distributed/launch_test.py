import argparse

from ember.distributed import launch


def parse(argv):
    parser = argparse.ArgumentParser(prog="ember launch")
    launch.add_arguments(parser)
    return parser.parse_args(argv)


def test_torchrun_options_pass_through_and_n_is_nproc_per_node():
    args = parse(["-n", "4", "--nnodes=2", "--rdzv-backend=c10d", "--rdzv-endpoint=node0:29400",
                  "--rdzv-id=job", "--max-restarts=3", "train.py", "--epochs", "5"])
    assert (args.nproc_per_node, args.nnodes, args.rdzv_backend, args.rdzv_endpoint, args.rdzv_id,
            args.max_restarts) == ("4", "2", "c10d", "node0:29400", "job", 3)
    assert (args.training_script, args.training_script_args) == ("train.py", ["--epochs", "5"])


def test_a_successful_job_returns_zero(tmp_path):
    script = tmp_path / "job.py"
    script.write_text("import os\nopen(os.environ['OUT'] + os.environ['RANK'], 'w').write('ok')\n")
    import os

    os.environ["OUT"] = str(tmp_path / "rank")
    try:
        assert launch.run(parse(["-n", "2", str(script)])) == 0
    finally:
        del os.environ["OUT"]
    assert sorted(p.name for p in tmp_path.glob("rank*")) == ["rank0", "rank1"]
