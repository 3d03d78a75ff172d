"""HDF5 Keras files read as untrusted input: only what is inside the file, within its size.

An HDF5 file can point outside itself, and h5py follows: an external link opens another
HDF5 file, a soft link any path, a dataset with external storage reads raw bytes from any
local file (`create_dataset(..., external=[(path, offset, size)])`), a virtual dataset maps
datasets of other files. Keras writes none of these, so `H5File` refuses them all: it walks
groups one hard link at a time (`group.get(name, getlink=True)` reads a link without
following it) and checks every dataset before reading it.

Sizes come from the file's headers, which may lie: a 1 KiB file can declare a 256 GiB
dataset, and h5py allocates the array before HDF5 finds out that its bytes are missing.
Keras writes weights uncompressed, so a dataset is read only when its declared bytes are
stored in the file (`get_storage_size()`), and everything read from one file adds up to no
more than the file's size: memory stays proportional to the input.
"""
import io

import numpy as np

from ember.saving import ModelFileError
from ember.keras.model_config import describe

# What h5py raises on a damaged file: HDF5's errors as OSError, KeyError, ValueError or
# RuntimeError, TypeError for an object of an unexpected kind, OverflowError from its
# file-object driver asked to read at an address beyond 2**63.
H5PY_ERRORS = (OSError, KeyError, ValueError, TypeError, RuntimeError, OverflowError)
NUMERIC_KINDS = "fiub"  # float, int, unsigned, bool: what Keras stores its variables as
MAX_DEPTH = 32  # group nesting; Keras nests a few levels (layers/bidirectional/forward_layer/cell/vars)


def h5py_module():
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading Keras files needs h5py: pip install 'ember[keras]'") from error
    return h5py


class H5File:
    """An HDF5 file held in memory, read through hard links only, with a byte budget.

    `source` names the file in every error ("m.h5", "model.weights.h5 inside m.keras").
    Use as a context manager; `root` is the top group.
    """

    def __init__(self, data: bytes, source: str):
        self.source = source
        self.size = len(data)
        self.bytes_left = len(data)  # what datasets and attributes may still take
        self._seen = set()  # groups walked and datasets read: Keras writes a tree, never two links to one object
        h5py = h5py_module()
        try:
            # From the bytes in memory (h5py's file-object driver): the weights inside a .keras
            # never touch the disk, and no file can change between the checks and the reads.
            self._file = h5py.File(io.BytesIO(data), "r")
        except H5PY_ERRORS as error:
            raise ModelFileError(f"{source} is not a readable HDF5 file, corrupt or truncated ({error})") from error
        self.root = self._file

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()

    # --- groups and links -----------------------------------------------------------------
    def has(self, group, name: str) -> bool:
        """Whether `group` has a link called `name` (one path component; the link is not followed)."""
        return self._link(group, name) is not None

    def child(self, group, name: str):
        """The object a hard link `name` of `group` points to; any other link is refused."""
        link = self._link(group, name)
        if link is None:
            raise ModelFileError(f"{self.source}: {self._path(group, name)} is missing")
        h5py = h5py_module()
        if isinstance(link, h5py.ExternalLink):
            raise ModelFileError(f"{self.source}: {self._path(group, name)} is an external link to "
                                 f"'{link.path}' in file '{link.filename}': Keras files hold their weights "
                                 "themselves, and ember reads no other file")
        if not isinstance(link, h5py.HardLink):
            target = f" to '{link.path}'" if isinstance(link, h5py.SoftLink) else ""
            raise ModelFileError(f"{self.source}: {self._path(group, name)} is a {type(link).__name__}{target}; "
                                 "Keras files contain only hard links, and ember follows no other kind")
        return self._guard(lambda: group[name], group, name)

    def lookup(self, group, path: str):
        """The object at a relative `path` ("dense/kernel:0"), walked one hard link at a time."""
        parts = path.split("/")
        if any(part in ("", ".") for part in parts):
            raise ModelFileError(f"{self.source}: expected a relative HDF5 path such as 'dense/kernel:0', "
                                 f"found {path!r} under {name_of(group)}")
        for depth, part in enumerate(parts):
            if depth and not self.is_group(group):
                raise ModelFileError(f"{self.source}: {name_of(group)} is a dataset, expected a group holding "
                                     f"'{'/'.join(parts[depth:])}'")
            group = self.child(group, part)
        return group

    def subgroups(self, group, depth: int):
        """[(name, subgroup)] of `group`'s hard-linked subgroups, in name order, for a walk `depth`
        levels down. A group reached a second time is refused: Keras writes a tree, and a cycle
        or a lattice of links would make the walk endless or exponential."""
        if depth > MAX_DEPTH:
            raise ModelFileError(f"{self.source}: groups nest deeper than {MAX_DEPTH} levels at {name_of(group)}")
        names = self._guard(lambda: list(group.keys()), group)
        children = [(name, self.child(group, name)) for name in names]
        subgroups = [(name, child) for name, child in children if self.is_group(child)]
        for name, child in subgroups:
            self._visit(child, self._path(group, name))
        return subgroups

    def is_group(self, obj) -> bool:
        return isinstance(obj, h5py_module().Group)

    def group(self, group, name: str):
        """The subgroup `name` of `group`; a dataset there is refused."""
        child = self.child(group, name)
        if not self.is_group(child):
            raise ModelFileError(f"{self.source}: expected a group at {name_of(child)}, found a dataset")
        return child

    # --- data ------------------------------------------------------------------------------------
    def array(self, dataset) -> np.ndarray:
        """The dataset's values, once its storage is known to be in this file and to hold them."""
        if not isinstance(dataset, h5py_module().Dataset):
            raise ModelFileError(f"{self.source}: expected a dataset at {name_of(dataset)}, found a "
                                 f"{type(dataset).__name__}")
        where = f"{self.source}: dataset {name_of(dataset)}"

        def read():
            if dataset.id.get_create_plist().get_external_count() > 0:
                raise ModelFileError(f"{where} keeps its bytes in another file (HDF5 external storage); ember "
                                     "reads no file but the one it was given")
            if dataset.is_virtual:
                raise ModelFileError(f"{where} is a virtual dataset mapping other files; ember reads no file but "
                                     "the one it was given")
            dtype, shape = dataset.dtype, dataset.shape
            if dtype.kind not in NUMERIC_KINDS or dtype.itemsize > 8:
                raise ModelFileError(f"{where} holds {dtype}, expected numbers (float, int or bool) as Keras "
                                     "stores weights")
            if shape is None:
                raise ModelFileError(f"{where} has no dataspace, expected an array")
            declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
            stored = dataset.id.get_storage_size()
            if declared > stored:
                raise ModelFileError(f"{where} declares {declared} bytes ({shape} of {dtype}) but the file "
                                     f"stores {stored} bytes of it: its values are not in the file (Keras writes "
                                     "weights uncompressed)")
            self._visit(dataset, name_of(dataset))
            self._spend(declared, where)
            return dataset[()]

        array = np.asarray(self._guard(read, dataset))
        return array.astype(array.dtype.newbyteorder("="), copy=False)  # torch takes native byte order only

    def attribute(self, obj, name: str):
        """Attribute `name` of `obj` (None when absent), its declared size checked against the file."""
        def read():
            if name not in obj.attrs:
                return None
            attribute_id = obj.attrs.get_id(name)
            count = attribute_id.get_space().get_simple_extent_npoints()
            declared = count * attribute_id.dtype.itemsize
            # (HDF5 reports an empty attribute's storage size as an error: ask only for a non-empty one.)
            if declared and declared > attribute_id.get_storage_size():
                raise ModelFileError(f"{self.source}: attribute '{name}' of {name_of(obj)} declares {declared} "
                                     f"bytes but stores {attribute_id.get_storage_size()}")
            self._spend(declared, f"{self.source}: attribute '{name}' of {name_of(obj)}")
            return obj.attrs[name]

        return self._guard(read, obj, name)

    def text(self, obj, name: str):
        """A string attribute (str or bytes in the file), None when absent."""
        value = self.attribute(obj, name)
        if value is None:
            return None
        if isinstance(value, np.ndarray) and value.shape == ():
            value = value[()]
        return self._decode(value, f"attribute '{name}' of {name_of(obj)}")

    def texts(self, obj, name: str):
        """A list-of-strings attribute (Keras' `layer_names`, `weight_names`), None when absent."""
        value = self.attribute(obj, name)
        if value is None:
            return None
        if not isinstance(value, np.ndarray) or value.ndim != 1:
            raise ModelFileError(f"{self.source}: attribute '{name}' of {name_of(obj)} must be a list of names, "
                                 f"found {describe(value)}")
        return [self._decode(item, f"attribute '{name}' of {name_of(obj)}") for item in value]

    # --- helpers -----------------------------------------------------------------------------------
    def _link(self, group, name):
        if not isinstance(name, str) or not name or "/" in name:
            raise ModelFileError(f"{self.source}: expected one HDF5 link name under {name_of(group)}, "
                                 f"found {name!r}")
        return self._guard(lambda: group.get(name, getlink=True), group, name)

    def _visit(self, obj, path):
        if obj.id in self._seen:
            raise ModelFileError(f"{self.source}: {path} links to an object reached before; Keras writes each "
                                 "group and dataset once")
        self._seen.add(obj.id)

    def _spend(self, size, where):
        if size > self.bytes_left:
            raise ModelFileError(f"{where} declares {size} bytes, more than the {self.size}-byte file still holds "
                                 f"({self.bytes_left} bytes not yet read): its values cannot all be in the file")
        self.bytes_left -= size

    def _decode(self, value, what):
        if isinstance(value, (bytes, np.bytes_)):
            try:
                return bytes(value).decode("utf-8")
            except UnicodeDecodeError as error:
                raise ModelFileError(f"{self.source}: {what} is not UTF-8 text ({error})") from error
        if isinstance(value, str):
            return str(value)
        raise ModelFileError(f"{self.source}: {what} must be text, found {describe(value)}")

    def _path(self, group, name):
        return f"{name_of(group).rstrip('/')}/{name}"

    def _guard(self, read, obj, name=None):
        """Run an h5py call; HDF5's errors on a damaged file become ModelFileError naming the object."""
        try:
            return read()
        except ModelFileError:
            raise
        except H5PY_ERRORS as error:
            where = self._path(obj, name) if name else name_of(obj)
            raise ModelFileError(f"{self.source} is corrupt or truncated at {where} "
                                 f"({type(error).__name__}: {error})") from error


def name_of(obj) -> str:
    """The object's path in the file, for messages (asking HDF5 may itself fail on a damaged file)."""
    try:
        return obj.name
    except H5PY_ERRORS:
        return "(an object whose name HDF5 cannot read)"
