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


def test_sigusr1_is_passed_on_to_the_workers_unless_told_otherwise():
    assert parse(["train.py"]).signals_to_handle.split(",") == ["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1"]
    assert parse(["--signals-to-handle=SIGTERM", "train.py"]).signals_to_handle == "SIGTERM"


def test_a_preempted_worker_s_exit_code_is_the_job_s(tmp_path):
    preempted, crashed = tmp_path / "preempted.py", tmp_path / "crashed.py"
    preempted.write_text("raise SystemExit(138)\n")  # what fit() raises after its backup on SIGUSR1
    crashed.write_text("raise SystemExit(3)\n")
    assert launch.run(parse(["-n", "1", str(preempted)])) == 138
    assert launch.run(parse(["-n", "1", str(crashed)])) == 1
