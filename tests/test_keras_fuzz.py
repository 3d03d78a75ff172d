"""Fuzzing the Keras readers (#16): `from_keras`, `load_keras_weights` and `read_keras_file`,
fed mutations of files Keras 3 itself saved (and the tf.keras 2 file in tests/data/keras),
raise only ModelFileError (and its subclasses), read no other file, run no code, and add no
more resident memory than MEMORY_PER_INPUT_BYTE times the input plus MEMORY_ALLOWANCE (the
child that parses HDF5 is held by its own address-space limit, ember/keras/isolation.py).

The mutations run in a worker process, `python tests/test_keras_fuzz.py READER SEEDS N RNG OUT`,
where each call's peak resident memory can be measured on its own and an audit hook sees every
file Python opens and all code it compiles or runs. Files outside (a canary with random bytes,
and an HDF5 file of them) sit in the worker's directory, and mutations point at them with HDF5
external storage, virtual datasets and links; no value read may contain their bytes.

Mutations: the byte-level and JSON ones of tests/fuzzing.py (truncation, bit flips, chunks
dropped or repeated; keys deleted, values of other types, 0, -1, 2**63), integers at 2, 4 and
8-byte fields set to 0, 2**31, 2**63, 2**64-1...; zip header fields set so; zips rebuilt with
valid CRCs around a mutated config.json, metadata.json or model.weights.h5, a member dropped,
duplicated, deflated; HDF5 files edited with h5py: a dataset replaced by external storage, a
virtual dataset, an external or soft link, 2**36 declared elements, strings, gzip; attributes
(layer_names, weight_names, model_config, name) given odd values; a group linked into itself.

EMBER_FUZZ_EXAMPLES sets the mutations per reader (default 100: 3-4 s each; 20000 for a
thorough run: 11-22 minutes per reader on a 2-core machine, 30-65 ms a mutation).
"""
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

import pytest

EXAMPLES = int(os.environ.get("EMBER_FUZZ_EXAMPLES", "100"))
WORKER_SECONDS = max(600, EXAMPLES // 4)  # a quarter of a second per mutation: several times what one takes
MEMORY_PER_INPUT_BYTE = 20  # bytes, arrays, parameters, converted copies, JSON objects: a few copies each
MEMORY_ALLOWANCE = 32 << 20  # allocator arenas, torch and h5py bookkeeping; the seeds are 10-100 KiB
TF_KERAS2_FILE = Path(__file__).parent / "data" / "keras" / "tf_keras2_convnet.h5"
READERS = ("read_keras_file", "from_keras", "load_keras_weights")


# --- the test ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    from testing.keras import save_keras_models

    folder = save_keras_models(tmp_path_factory.mktemp("keras_seeds"))
    shutil.copy(TF_KERAS2_FILE, folder)
    return folder


def _run_worker(reader, seeds_folder, count, out):
    # The worker imports the ember beside this test; glibc returns freed blocks above 128 KiB at
    # once, so that each call's peak resident memory is its own.
    repo = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
           "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    run = subprocess.run([sys.executable, __file__, reader, str(seeds_folder), str(count), "1", str(out)],
                         capture_output=True, text=True, env=env, timeout=WORKER_SECONDS)
    assert run.returncode == 0, run.stderr[-4000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.timeout(WORKER_SECONDS + 300)  # and the seeds, saved by Keras once per module
@pytest.mark.parametrize("reader", READERS)
def test_mutated_keras_files_raise_only_model_file_errors(seeds, reader, tmp_path):
    result = _run_worker(reader, seeds, EXAMPLES, tmp_path / "failing")
    print(f"\n{reader}: {result['cases']} mutations of {len(result['seeds'])} Keras files in {result['seconds']} s "
          f"(inputs of {result['smallest_input']}-{result['largest_input']} bytes); outcomes {result['outcomes']}; "
          f"largest peak {result['max_peak'] >> 10} KiB, for a {result['max_peak_input']}-byte input")
    assert result["problems"] == [], json.dumps(result["problems"], indent=1)
    assert result["outcomes"].get("ModelFileError", 0) > 0 and result["outcomes"].get("read", 0) > 0


def test_the_worker_reports_what_a_careless_reader_does(tmp_path):
    """A reader that raises KeyError, opens the canary, allocates 64 MiB and returns the
    canary's bytes is reported on each count: the fuzz test above can fail."""
    from testing.keras import write_dense_keras

    write_dense_keras(tmp_path / "dense.keras")
    result = _run_worker("careless", tmp_path, 12, tmp_path / "failing")
    kinds = {problem["problem"] for problem in result["problems"]}
    assert kinds == {"raised KeyError", "opened another file", "memory", "read the canary", "ran code"}, kinds
    assert sorted(p.name for p in (tmp_path / "failing").iterdir())[:1] == ["case-0.keras"]


# --- mutations -------------------------------------------------------------------------------------
SPECIAL_INTEGERS = [0, 1, 0x7F, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**62, 2**63 - 1, 2**63,
                    2**64 - 1]


def set_integer(data: bytes, rng: random.Random) -> bytes:
    """A 2, 4 or 8-byte little-endian field at a random (aligned) offset set to a special value:
    HDF5 sizes, addresses and dimensions are 8-byte fields, zip's 2 and 4."""
    width = rng.choice([2, 4, 8])
    offset = rng.randrange(0, max(1, len(data) - width)) // width * width
    value = rng.choice(SPECIAL_INTEGERS) % (1 << (8 * width))
    return data[:offset] + value.to_bytes(width, "little") + data[offset + width:]


ZIP_FIELDS = {b"PK\x03\x04": [(4, 2), (6, 2), (8, 2), (14, 4), (18, 4), (22, 4), (26, 2), (28, 2)],
              b"PK\x01\x02": [(6, 2), (8, 2), (10, 2), (16, 4), (20, 4), (24, 4), (28, 2), (30, 2), (34, 2),
                              (42, 4)],
              b"PK\x05\x06": [(4, 2), (8, 2), (10, 2), (12, 4), (16, 4), (20, 2)]}


def set_zip_field(data: bytes, rng: random.Random) -> bytes:
    """One field of a local header, a central directory entry or the end record (sizes, CRC,
    method, flags, name and extra lengths, offsets, counts) set to a special value."""
    signature = rng.choice(sorted(ZIP_FIELDS))
    starts = [i for i in range(len(data) - 4) if data.startswith(signature, i)]
    if not starts:
        return data
    start = rng.choice(starts)
    offset, width = rng.choice(ZIP_FIELDS[signature])
    value = rng.choice(SPECIAL_INTEGERS + [8, 12, 14, 99]) % (1 << (8 * width))
    at = start + offset
    return data[:at] + value.to_bytes(width, "little") + data[at + width:]


def rebuild_zip(data: bytes, rng: random.Random, outside: Path) -> bytes:
    """A CRC-valid .keras around a mutated member, or with members dropped, repeated, deflated."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    choice, compression = rng.random(), zipfile.ZIP_STORED
    index = rng.randrange(len(members))
    name, content = members[index]
    if choice < 0.5:
        if name.endswith(".json"):
            members[index] = (name, _mutated_json(content, rng).encode())
        else:
            members[index] = (name, mutate_hdf5(content, rng, outside))
    elif choice < 0.6:
        del members[index]
    elif choice < 0.7:
        members.insert(rng.randrange(len(members) + 1), (name, _mutated_copy(content, rng)))
    elif choice < 0.8:
        compression = zipfile.ZIP_DEFLATED
    elif choice < 0.9:
        members[index] = (name, content + b" " * rng.choice([1, 1 << 16, 4 << 20]))  # deflates to little
        compression = zipfile.ZIP_DEFLATED
    else:
        members.append((rng.choice(["assets/x", "model.weights.npz", "config.json/", ""]), b"x"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for member, content in members:
            if member:
                archive.writestr(member, content)
    return out.getvalue()


def _mutated_json(text, rng: random.Random) -> str:
    """JSON text changed by tests/fuzzing.py's mutate_json. That inserts its ODD_VALUES lists
    and dicts themselves, so a later change can grow them, even into a value holding itself:
    they are restored before each try, and a result that does not serialize is tried again;
    so is one it fails on (IndexError, when a change empties the document)."""
    import fuzzing

    for _ in range(10):
        fuzzing.ODD_VALUES[:] = json.loads(PRISTINE_ODD_VALUES)
        try:
            return json.dumps(fuzzing.mutate_json(json.loads(text), rng))
        except (IndexError, ValueError):
            continue
    return json.dumps(rng.choice(json.loads(PRISTINE_ODD_VALUES)))


def _mutated_copy(content: bytes, rng: random.Random) -> bytes:
    """A second, changed copy of a member (or the same bytes, half the time)."""
    from fuzzing import mutate_bytes

    return mutate_bytes(content, rng) if content and rng.random() < 0.5 else content


def mutate_hdf5(data: bytes, rng: random.Random, outside: Path) -> bytes:
    from fuzzing import mutate_bytes

    choice = rng.random()
    if choice < 0.3:
        return mutate_bytes(data, rng)
    if choice < 0.5:
        return set_integer(data, rng)
    try:
        return edit_hdf5(data, rng, outside)
    except Exception:  # noqa: BLE001 - an edit h5py refuses (a name in use...): mutate the bytes instead
        return set_integer(data, rng)


def edit_hdf5(data: bytes, rng: random.Random, outside: Path) -> bytes:
    """The file edited with h5py: a dataset replaced by something pointing outside or lying
    about its size, an attribute given an odd value, links added or removed."""
    import h5py
    import numpy as np

    from fuzzing import ODD_VALUES

    buffer = io.BytesIO(data)
    with h5py.File(buffer, "r+") as h5:
        datasets, groups = [], []
        h5.visititems(lambda name, obj: (datasets if isinstance(obj, h5py.Dataset) else groups).append(name))
        choice = rng.random()
        if datasets and choice < 0.55:
            path = rng.choice(datasets)
            shape, dtype = h5[path].shape or (1,), h5[path].dtype
            parent, name = h5[path].parent, path.rsplit("/", 1)[-1]
            del parent[name]
            canary = rng.choice([str(outside / "canary.bin"), "canary.bin", "../canary.bin"])
            count = int(np.prod(shape)) if dtype.kind in "fiub" and int(np.prod(shape)) * 4 <= 4096 else 16
            replacements = [
                lambda: parent.create_dataset(name, shape=(count,), dtype="float32",
                                              external=[(canary, 0, count * 4)]),
                lambda: parent.create_virtual_dataset(name, _virtual_layout(outside, count)),
                lambda: parent.__setitem__(name, h5py.ExternalLink(rng.choice([str(outside / "canary.h5"),
                                                                               "canary.h5"]), "/x")),
                lambda: parent.__setitem__(name, h5py.SoftLink(rng.choice(["/" + rng.choice(datasets), "/x", "."]))),
                lambda: parent.create_dataset(name, shape=(2 ** rng.randint(20, 40),), dtype="float32"),
                lambda: parent.create_dataset(name, data=np.array([b"kernel"] * count)),
                lambda: parent.create_dataset(name, shape=(1 << 22,), dtype="float32", chunks=(1 << 16,),
                                              compression="gzip", fillvalue=1.0),
                lambda: parent.create_dataset(name, data=np.zeros(tuple(rng.randint(0, 5) for _ in shape), "f4")),
                lambda: parent.create_dataset(name, data=np.zeros(shape, ">f8")),
                lambda: parent.create_dataset(name, shape=shape, dtype="float32"),  # fill value only
            ]
            rng.choice(replacements)()
        elif choice < 0.8:
            target = h5[rng.choice(groups)] if groups and rng.random() < 0.7 else h5
            names = list(target.attrs) or ["layer_names"]
            name = rng.choice(names + ["layer_names", "weight_names", "model_config", "name", "keras_version"])
            value = target.attrs.get(name)
            if name == "model_config" and value is not None:
                target.attrs[name] = _mutated_json(value, rng)
            else:
                odd = rng.choice(ODD_VALUES + [np.array([[b"a"]]), np.arange(3), b"\xff\xfe", "/x", "a/../b",
                                               np.array([b"layers"] * 3)])
                target.attrs[name] = np.array(odd) if isinstance(odd, (list, dict)) else odd
        elif groups:
            group = h5[rng.choice(groups)]
            action = rng.random()
            if action < 0.4:
                group[f"loop{rng.randrange(9)}"] = rng.choice([group, group.parent, h5])
            elif action < 0.7 and datasets:
                group[f"twin{rng.randrange(9)}"] = h5[rng.choice(datasets)]
            else:
                del group.parent[group.name.rsplit("/", 1)[-1]]
    return buffer.getvalue()


def _virtual_layout(outside, count):
    import h5py

    layout = h5py.VirtualLayout(shape=(count,), dtype="float32")
    layout[:] = h5py.VirtualSource(str(outside / "canary.h5"), "x", shape=(count,))
    return layout


def mutate(data: bytes, rng: random.Random, outside: Path) -> bytes:
    from fuzzing import mutate_bytes

    is_zip = data.startswith(b"PK\x03\x04")
    choice = rng.random()
    if choice < 0.2:
        return mutate_bytes(data, rng)
    if choice < 0.35:
        return set_zip_field(data, rng) if is_zip else set_integer(data, rng)
    return rebuild_zip(data, rng, outside) if is_zip else mutate_hdf5(data, rng, outside)


# --- the worker ---------------------------------------------------------------------------------------
class Audit:
    """Records, while `on`, files opened other than `allowed`, code compiled or unmarshalled
    from the input's bytes, and anything that unpickles, runs a program or loads a library:
    a reader only parses JSON and reads arrays. (Python compiles snippets of its own sources
    to underline them in tracebacks: code that is not the input's is not the input running.)
    Events go to a log file, so that those of the child reading HDF5 (ember/keras/isolation.py
    forks one) are seen too."""

    ALWAYS = ("pickle.find_class", "os.system", "subprocess.Popen", "ctypes.dlopen", "os.exec", "os.posix_spawn")

    def __init__(self, log: Path):
        import ember
        import testing

        self.on, self.allowed, self.log, self.data = False, set(), log, b""
        self.fd = os.open(log, os.O_RDWR | os.O_CREAT | os.O_APPEND)
        # Source files may be read: torch's FakeTensorMode reads the source lines of the whole call stack
        # (traceback.extract_stack), which runs through the test helpers (testing.keras.peak_memory_of).
        self.roots = tuple({os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
                           | {str(Path(package.__file__).resolve().parent) for package in (ember, testing)})
        sys.addaudithook(self.hook)

    def during(self, call, data, *args):
        """call(*args) on an input of bytes `data`, audited: events() are then those it caused."""
        os.ftruncate(self.fd, 0)
        self.data, self.on = data, True
        try:
            outcome = call(*args)
        finally:
            self.on = False
        return outcome

    def events(self):
        lines = self.log.read_text(errors="replace").splitlines()
        return [tuple(line.split("\t", 1)) for line in lines if "\t" in line]

    def is_module(self, path):
        return path.startswith(self.roots) and path.endswith((".py", ".pyc", ".so"))

    def hook(self, event, args):
        if not self.on:
            return
        if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(args[0]))
            if path not in self.allowed and not self.is_module(path) and not os.path.isdir(path) \
                    and not path.startswith(f"/proc/{os.getpid()}/"):  # the forked child's own limits
                self.record("opened another file", path)
        elif event in self.ALWAYS:
            self.record("ran code", f"{event} {str(args)[:200]}")
        elif event in ("compile", "marshal.loads") and isinstance(args[0], (str, bytes)) and len(args[0]) >= 4:
            source = args[0].encode(errors="replace") if isinstance(args[0], str) else args[0]
            if source in self.data:
                self.record("ran code", f"{event} of the input's bytes {source[:100]!r}")

    def record(self, kind, detail):
        os.write(self.fd, f"{kind}\t{detail}\n".replace("\n", " ").encode() + b"\n")


def reader_setups(seeds: Path):
    """{reader: ([seed paths], read(path) -> bytes of every value read)} for the seeds present."""
    import numpy as np

    from ember.keras import from_keras, load_keras_weights
    from ember.keras.files import read_keras_file

    def values(model):
        return b"".join(t.detach().numpy().tobytes() for t in model.state_dict().values())

    def arrays(path):
        weights = read_keras_file(path).weights
        return b"".join(np.ascontiguousarray(a).tobytes() for arrays in weights.by_path.values() or
                        weights.by_name.values() for a in arrays)

    files = sorted(p for p in seeds.iterdir() if p.suffix in (".keras", ".h5"))
    models = [p for p in files if not p.name.endswith(".weights.h5")]
    convnet = [p for p in files if p.name.startswith("convnet.")]
    target = {}

    def load_weights(path):
        if "model" not in target:
            target["model"] = from_keras(seeds / "convnet.keras")
        return values(load_keras_weights(target["model"], path))

    return {"read_keras_file": (files, arrays), "from_keras": (models, lambda path: values(from_keras(path))),
            "load_keras_weights": (convnet, load_weights), "careless": (files, careless_reader)}


def careless_reader(path):
    """For the worker's own test: every kind of misbehaviour, one per call."""
    careless_reader.calls = getattr(careless_reader, "calls", 0) + 1
    kind = careless_reader.calls % 4
    if kind == 0:
        raise KeyError("a raw error")
    if kind == 1:
        return Path("canary.bin").read_bytes()[:64]  # opens another file, and returns its bytes
    if kind == 2:
        return bytes(bytearray(64 << 20))[:0]
    import pickle

    pickle.loads(pickle.dumps(Path("unpickled")))  # unpickles: the class is looked up by name
    return b""


def work(reader: str, seeds: Path, count: int, rng_seed: int, failing: Path) -> dict:
    import warnings

    from ember.saving import ModelFileError
    from testing.keras import peak_memory_of

    warnings.simplefilter("ignore")
    outside = Path(tempfile.mkdtemp(prefix="ember-keras-fuzz-"))
    os.chdir(outside)  # relative names in a mutated file resolve next to the canary
    canary = random.Random(rng_seed).randbytes(1 << 16)
    (outside / "canary.bin").write_bytes(canary)
    _write_canary_h5(outside / "canary.h5", canary)
    seed_paths, read = reader_setups(seeds)[reader]
    case_path = outside / "case"
    audit = Audit(outside / "audit.log")
    audit.allowed = {str(case_path.resolve())}
    for seed in seed_paths:  # each seed reads (warming every import) before mutations are judged
        case_path.write_bytes(seed.read_bytes())
        if reader != "careless":
            read(case_path)
    rng, problems, outcomes = random.Random(rng_seed), [], {}
    max_peak, max_peak_input, sizes, start = 0, 0, (float("inf"), 0), time.perf_counter()
    for case in range(count):
        seed = seed_paths[case % len(seed_paths)]
        data = mutate(seed.read_bytes(), rng, outside)
        case_path.write_bytes(data)
        print(f"case {case} ({seed.name}, {len(data)} bytes)", file=sys.stderr, flush=True)  # the last one, if it hangs
        outcome, peak = peak_memory_of(lambda: audit.during(read, data, case_path))
        found = _judge(outcome, peak, len(data), audit.events(), canary, ModelFileError)
        name = type(outcome).__name__ if isinstance(outcome, BaseException) else "read"
        outcomes[name] = outcomes.get(name, 0) + 1
        if peak > max_peak:
            max_peak, max_peak_input = peak, len(data)
        sizes = (min(sizes[0], len(data)), max(sizes[1], len(data)))
        if found:
            failing.mkdir(parents=True, exist_ok=True)
            kept = failing / f"case-{case}{seed.suffix}"
            kept.write_bytes(data)
            problems.extend({"case": case, "seed": seed.name, "kept": str(kept), **problem} for problem in found)
    return {"reader": reader, "seeds": [p.name for p in seed_paths], "cases": count,
            "seconds": round(time.perf_counter() - start, 2), "outcomes": outcomes, "max_peak": max_peak,
            "max_peak_input": max_peak_input, "smallest_input": sizes[0], "largest_input": sizes[1],
            "problems": problems[:30]}


def _judge(outcome, peak, size, audit_events, canary, allowed_error):
    problems = [{"problem": kind, "detail": detail} for kind, detail in audit_events[:3]]
    if isinstance(outcome, BaseException) and not isinstance(outcome, (allowed_error, FileNotFoundError)):
        where = "".join(traceback.format_tb(outcome.__traceback__)[-2:])[-600:]
        problems.append({"problem": f"raised {type(outcome).__name__}", "detail": f"{outcome}"[:300] + "\n" + where})
    if peak > MEMORY_PER_INPUT_BYTE * size + MEMORY_ALLOWANCE:
        problems.append({"problem": "memory", "detail": f"{peak} bytes for a {size}-byte input"})
    if isinstance(outcome, bytes) and canary[:16] in outcome:
        problems.append({"problem": "read the canary", "detail": "a value read holds the outside file's bytes"})
    return problems


def _write_canary_h5(path, canary):
    import h5py
    import numpy as np

    with h5py.File(path, "w") as h5:
        h5["x"] = np.frombuffer(canary, dtype="float32")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))  # tests/fuzzing.py: the byte and JSON mutations
    import fuzzing

    PRISTINE_ODD_VALUES = json.dumps(fuzzing.ODD_VALUES)
    reader_name, seeds_folder, cases, rng_seed, failing_folder = sys.argv[1:6]
    print(json.dumps(work(reader_name, Path(seeds_folder).resolve(), int(cases), int(rng_seed),
                          Path(failing_folder).resolve())))
