"""Mutations of valid files, for fuzzing ember's readers (tests/test_fuzz_files.py).

`python tests/fuzzing.py READER N SEED` runs one reader on N mutations of a valid file in a
fresh process and prints one JSON line: cases run, seconds, the peak resident memory before
and after (so a mutation that makes the reader allocate by the file's whim shows), and every
exception that is not the reader's documented error type.

Mutations are of two kinds: bytes (truncation, bit flips, bytes set to 0x00/0xff, a chunk
duplicated or dropped), which the zip's CRC mostly catches, and structure: the zip rebuilt with
valid CRCs around a changed JSON document (keys deleted, values replaced by other types, by 0,
-1 or 2**63, lists duplicated), missing or duplicated members, a compressed member, a pickle
in place of a member. The second kind reaches the code that interprets the content.
"""
import io
import json
import pickle
import random
import resource
import sys
import tempfile
import time
import traceback
import zipfile
from pathlib import Path

ODD_VALUES = [0, -1, 1, 2**63, -2**63, 2**31, 1.5, float("nan"), "x", "", None, True, False, [], {}, [[]],
              {"__tensor__": "missing"}, {"__ndarray__": [1, 2], "dtype": "object"}, {"__tuple__": 3}]


def mutate_json(document, rng: random.Random):
    """A copy of `document` with 1-3 random changes somewhere in it."""
    document = json.loads(json.dumps(document))
    for _ in range(rng.randint(1, 3)):
        nodes = list(_nodes(document))
        if not nodes:  # an earlier change emptied it
            break
        parent, key = rng.choice(nodes)
        choice = rng.random()
        if choice < 0.25 and isinstance(parent, dict):
            del parent[key]
        elif choice < 0.35 and isinstance(parent[key], list) and parent[key]:
            parent[key].append(parent[key][0])
        elif choice < 0.45 and isinstance(parent[key], (int, float)) and not isinstance(parent[key], bool):
            parent[key] = rng.choice([0, -1, 2**63 - 1, -2**63, parent[key] * 1000 + 1])
        else:
            parent[key] = json.loads(json.dumps(rng.choice(ODD_VALUES)))  # a copy: later changes may edit it
    return document


def _nodes(value):
    """(container, key) for every value below the top."""
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        yield value, key
        yield from _nodes(child)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    choice = rng.random()
    if choice < 0.25:
        return bytes(data[:rng.randrange(len(data))])
    if choice < 0.5:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        return bytes(data)
    if choice < 0.7:
        i = rng.randrange(len(data))
        data[i:i + rng.randint(1, 8)] = bytes([rng.choice([0, 0xFF])]) * rng.randint(1, 8)
        return bytes(data)
    i, j = sorted(rng.randrange(len(data)) for _ in range(2))
    return bytes(data[:j] + data[i:j] + data[j:]) if rng.random() < 0.5 else bytes(data[:i] + data[j:])


def mutate_container(data: bytes, json_member: str, rng: random.Random) -> bytes:
    """A CRC-valid zip whose members or JSON document are changed."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    choice, compression = rng.random(), zipfile.ZIP_STORED
    if choice < 0.6:
        members[json_member] = json.dumps(mutate_json(json.loads(members[json_member]), rng)).encode()
    elif choice < 0.7:
        members.pop(rng.choice(sorted(members)))
    elif choice < 0.8:
        members[rng.choice(sorted(members))] = pickle.dumps({"state": 1})
    elif choice < 0.9:
        compression = zipfile.ZIP_DEFLATED
        members[json_member] = members[json_member] + b" " * 2_000_000  # 2 MB of spaces: a tiny deflated member
    else:
        name = rng.choice(sorted(members))
        members[name] = mutate_bytes(members[name], rng)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, member in members.items():
            archive.writestr(name, member)
        if choice > 0.95:
            archive.writestr(json_member, members.get(json_member, b"{}"))  # a name twice
    return out.getvalue()


def mutations(valid: bytes, json_member: str, count: int, seed: int):
    rng = random.Random(seed)
    for _ in range(count):
        yield mutate_container(valid, json_member, rng) if rng.random() < 0.7 else mutate_bytes(valid, rng)


# ---------------------------------------------------------------- readers
def _model_file_reader(folder: Path):
    import numpy as np

    import ember
    from ember import layers
    from ember.saving import ModelFileError

    ember.seed(0)
    model = ember.Sequential([layers.Input((6,)), layers.Dense(8, activation="relu"), layers.BatchNorm(),
                              layers.Dense(3)])
    model.compile("adamw", "cross_entropy", ["accuracy"])
    model.fit(np.random.rand(8, 6).astype("float32"), np.zeros(8, dtype="int64"), epochs=1, verbose=0)
    model.save(folder / "valid.ember")

    def read(path):
        ember.load(path)
        model.load_weights(path)

    return (folder / "valid.ember").read_bytes(), "ember.json", read, (ModelFileError, FileNotFoundError)


def _backup_reader(folder: Path):
    import numpy as np

    import ember
    from ember import layers
    from ember.callbacks import BackupAndRestore
    from ember.train.checkpoint import BackupFileError, check_backup_state, read_backup

    ember.seed(0)
    model = ember.Sequential([layers.Dense(8, activation="relu"), layers.Dropout(0.2), layers.Dense(3)])
    model.compile("adamw", "cross_entropy", ["accuracy"])
    model.fit(np.random.rand(8, 6).astype("float32"), np.zeros(8, dtype="int64"), epochs=1, verbose=0,
              callbacks=[BackupAndRestore(folder / "run", delete_checkpoint=False)])
    valid = next((folder / "run").glob("backup-*.zip"))

    def read(path):
        check_backup_state(read_backup(path), path)

    return valid.read_bytes(), "backup.json", read, (BackupFileError,)


READERS = {"model": _model_file_reader, "backup": _backup_reader}


def run(reader: str, count: int, seed: int) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="ember-fuzz-"))
    valid, json_member, read, allowed = READERS[reader](folder)
    read_path = folder / "case"
    read_path.write_bytes(valid)
    read(read_path)  # the valid file reads (and warms every import) before the baseline is taken
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    failures, largest, start = [], len(valid), time.perf_counter()
    for case, data in enumerate(mutations(valid, json_member, count, seed)):
        read_path.write_bytes(data)
        largest = max(largest, len(data))
        try:
            read(read_path)
        except allowed:
            pass
        except Exception as error:  # noqa: BLE001 - what the test reports
            failures.append({"case": case, "error": f"{type(error).__name__}: {error}"[:300],
                             "where": traceback.format_tb(error.__traceback__)[-1][-300:]})
    return {"reader": reader, "cases": count, "seconds": round(time.perf_counter() - start, 2),
            "valid_bytes": len(valid), "largest_input": largest, "baseline_rss": baseline,
            "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "failures": failures[:20]}


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    print(json.dumps(run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))))
