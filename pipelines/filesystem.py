"""One filesystem interface for every reader and writer of the lake outside Spark: ``pyarrow.fs``.

A *location* is a local path (``str`` or ``Path``) or a URI: ``file:///srv/lake/...``, ``s3://``,
``gs://``, ``abfs://``, ``hdfs://`` (what ``pyarrow.fs.FileSystem.from_uri`` opens). Every function
here resolves its location to a ``pyarrow.fs.FileSystem`` and a path on it, so a local lake and an
object store are one code path: the stages call these and never ``open``, ``pathlib``'s readers or
Parquet on a bare path. ``join`` keeps the caller's kind of location (a ``Path`` stays a ``Path``).

What an object store does not give is the commit: a partition is swapped in by a rename
(``pipelines.io.atomic_partition``), and the README says how it is committed there instead. The
functions that need what only a POSIX filesystem has (``append_text``) say so when they get a
location that is not one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs

if TYPE_CHECKING:
    import pyarrow.parquet as pq

Location = str | os.PathLike
LINE_BLOCK = 1 << 20  # bytes read at a time when a file is read line by line
_LOCAL = pafs.LocalFileSystem()


def resolve(location: Location) -> tuple[pafs.FileSystem, str]:
    """The filesystem that holds ``location`` and its path there."""
    text = os.fspath(location)
    if "://" in text:
        try:
            return pafs.FileSystem.from_uri(text)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as err:
            raise ValueError(f"{text}: no filesystem for this URI ({err}); use a local path, file://, s3://, "
                             f"gs://, abfs:// or hdfs://") from None
    return _LOCAL, str(Path(text).absolute())


def is_local(location: Location) -> bool:
    return isinstance(resolve(location)[0], pafs.LocalFileSystem)


def join(location: Location, *names: str) -> Location:
    """``location`` / ``names``, of the same kind: a ``Path`` for a ``Path``, a URI for a URI (names quoted)."""
    if isinstance(location, os.PathLike):
        return Path(location).joinpath(*names)
    if "://" in location:
        names = tuple(quote(name, safe="=") for name in names)
    return "/".join([location.rstrip("/"), *names]) if names else location


def parent(location: Location) -> Location:
    """The folder that holds ``location``, of the same kind."""
    if isinstance(location, os.PathLike):
        return Path(location).parent
    return location.rstrip("/").rsplit("/", 1)[0]


def name_of(location: Location) -> str:
    """The last name of ``location`` (a URI's unquoted, as ``pathlib`` names a path's)."""
    text = os.fspath(location)
    name = text.rstrip("/").rsplit("/", 1)[-1]
    return unquote(name) if "://" in text else name


def relative_name(location: Location, folder: Location) -> str:
    """``location``'s names below ``folder``, joined with '/' (the same for a path and its URI)."""
    path, below = resolve(location)[1], resolve(folder)[1].rstrip("/")
    if not path.startswith(below + "/"):
        raise ValueError(f"{os.fspath(location)} is not under {os.fspath(folder)}")
    return path[len(below) + 1:]


def _info(location: Location) -> pafs.FileInfo:
    filesystem, path = resolve(location)
    return filesystem.get_file_info(path)


def exists(location: Location) -> bool:
    return _info(location).type != pafs.FileType.NotFound


def is_file(location: Location) -> bool:
    return _info(location).type == pafs.FileType.File


def is_dir(location: Location) -> bool:
    return _info(location).type == pafs.FileType.Directory


def modified_at(location: Location) -> float:
    """Seconds since the epoch of the last change (``FileInfo.mtime``)."""
    return _info(location).mtime.timestamp()


def list_dir(location: Location, suffix: str = "", kind: str = "file", hidden: bool = False) -> list[Location]:
    """The files (``kind="file"``) or folders (``"dir"``) right in ``location``, by name; [] if it is absent.

    Names starting with '.' or '_' (writers' staging, Spark's markers, our sidecars) are left out
    unless ``hidden``; ``suffix`` keeps names that end with it.
    """
    filesystem, path = resolve(location)
    wanted = pafs.FileType.File if kind == "file" else pafs.FileType.Directory
    try:
        infos = filesystem.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    except NotADirectoryError:
        return []
    names = sorted(info.base_name for info in infos if info.type == wanted and info.base_name.endswith(suffix)
                   and (hidden or not info.base_name.startswith((".", "_"))))
    return [join(location, name) for name in names]


def open_input(location: Location):
    """A readable binary stream of the file (use it as a context manager)."""
    filesystem, path = resolve(location)
    return filesystem.open_input_stream(path)


def read_bytes(location: Location) -> bytes:
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def read_text(location: Location, errors: str = "strict") -> str:
    return read_bytes(location).decode("utf-8", errors=errors)


def read_json(location: Location) -> Any:
    return json.loads(read_bytes(location))


def read_json_lines(location: Location) -> list[Any]:
    """The JSON value of each non-blank line; [] if the file is absent."""
    if not exists(location):
        return []
    return [json.loads(line) for line in read_text(location).splitlines() if line.strip()]


def iter_lines(location: Location) -> Iterator[bytes]:
    """The file's lines as bytes, without their ``\\n`` (a ``\\r`` stays), read a block at a time."""
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        rest = b""
        while block := stream.read(LINE_BLOCK):
            lines = (rest + block).split(b"\n")
            rest = lines.pop()
            yield from lines
        if rest:
            yield rest


def write_bytes(location: Location, data: bytes) -> None:
    """Write ``data`` as the whole file (one PUT on an object store); its folder is made first."""
    filesystem, path = resolve(location)
    filesystem.create_dir(os.path.dirname(path), recursive=True)
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


def write_text(location: Location, text: str) -> None:
    write_bytes(location, text.encode("utf-8"))


def append_text(location: Location, text: str) -> None:
    """Append ``text`` to a log file (made if absent) and fsync it; a POSIX filesystem only.

    Object stores cannot append: a log kept there would be rewritten whole, so this refuses them.
    """
    filesystem, path = resolve(location)
    if not isinstance(filesystem, pafs.LocalFileSystem):
        raise ValueError(f"{os.fspath(location)}: appending needs a POSIX filesystem; {type(filesystem).__name__} "
                         f"objects cannot be appended to. Keep this log on a local or mounted path")
    filesystem.create_dir(os.path.dirname(path), recursive=True)
    with open(path, "a", encoding="utf-8") as handle:  # noqa: PTH123 - fsync needs the descriptor
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def move(source: Location, target: Location) -> None:
    """Rename a file (a copy and a delete on an object store)."""
    filesystem, path = resolve(source)
    filesystem.move(path, resolve(target)[1])


def remove(location: Location) -> None:
    """Delete a file or a whole folder; nothing if it is absent."""
    filesystem, path = resolve(location)
    kind = filesystem.get_file_info(path).type
    if kind == pafs.FileType.Directory:
        filesystem.delete_dir(path)
    elif kind != pafs.FileType.NotFound:
        filesystem.delete_file(path)


def read_parquet(location: Location, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file, or every Parquet file of a folder (hidden ones left out), as one table."""
    import pyarrow.parquet as pq  # lazily, like the rest of Parquet: lake (and so every DAG file) imports this

    filesystem, path = resolve(location)
    return pq.read_table(path, columns=columns, filesystem=filesystem)


def parquet_dataset(location: Location):
    """A ``pyarrow.dataset.Dataset`` of the Parquet files under ``location``, read as scanned."""
    import pyarrow.dataset as ds_api  # imports pandas: not at the DAG files' parse time

    filesystem, path = resolve(location)
    return ds_api.dataset(path, format="parquet", filesystem=filesystem)


def parquet_file(location: Location) -> pq.ParquetFile:
    """A Parquet file's footer and row groups, read as asked."""
    import pyarrow.parquet as pq

    filesystem, path = resolve(location)
    return pq.ParquetFile(filesystem.open_input_file(path))


def write_parquet(table: pa.Table, location: Location, **options: Any) -> None:
    import pyarrow.parquet as pq

    filesystem, path = resolve(location)
    filesystem.create_dir(os.path.dirname(path), recursive=True)
    pq.write_table(table, path, filesystem=filesystem, **options)


def parquet_writer(location: Location, schema: pa.Schema, **options: Any) -> pq.ParquetWriter:
    """A writer that appends row groups to one Parquet file (use it as a context manager)."""
    import pyarrow.parquet as pq

    filesystem, path = resolve(location)
    filesystem.create_dir(os.path.dirname(path), recursive=True)
    return pq.ParquetWriter(path, schema, filesystem=filesystem, **options)
