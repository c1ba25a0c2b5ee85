"""Reading rows from files and from the Hugging Face hub.

Readers here know file formats, not tasks: they turn a file into ``(line, row)`` pairs, and
:func:`convert_rows` turns rows into records with a task's converter. Every malformed row is either
an error naming ``file:line`` (``on_error="raise"``, the default) or is skipped *and counted*
(``on_error="skip"``): nothing is dropped silently.

Format traps of the official files (see ``../shared/data/SOURCES.md``):

- GLUE ``.tsv`` must be read with quoting off (``csv.QUOTE_NONE``): RTE, WNLI and QNLI sentences
  contain unbalanced ``"``.
- MRPC starts with a UTF-8 byte order mark; every file is read as ``utf-8-sig``, which drops it.
- CoLA has no header row; some files have no newline after the last row (harmless here).
"""

from __future__ import annotations

import collections
import csv
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from hyperprompt.errors import DataFormatError, InputError, MissingFileError

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
Record = dict[str, Any]


class RowError(ValueError):
    """Raised by converters for a bad row; :func:`convert_rows` adds the file and line."""


class Malformed:
    """A row that could not even be parsed (bad JSON, wrong column count)."""

    def __init__(self, message: str):
        self.message = message


def _check_not_empty(path: Path) -> None:
    if not path.is_file():
        raise MissingFileError(f"{path}: no such file")
    with open(path, "rb") as f:
        if not f.read(4096).strip(b"\xef\xbb\xbf \t\r\n"):
            raise InputError(f"{path}: file is empty (expected one example per line)")


#: the longest CSV / TSV field read (csv's default, 128 KiB, is too small for long documents)
FIELD_SIZE_LIMIT = 64 * 1024 * 1024


def _utf8_lines(path: Path, lines: Iterable[bytes]) -> Iterator[str]:
    """Decode a file's lines as UTF-8 (a leading BOM dropped); a bad byte is a DataFormatError at its line."""
    for number, line in enumerate(lines, start=1):
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as error:
            raise DataFormatError(path, number, f"not valid UTF-8 (byte {line[error.start:error.start + 1]!r} at "
                                  f"column {error.start + 1}); save the file as UTF-8") from None
        yield text.removeprefix("\ufeff") if number == 1 else text


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict | Malformed]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSON Lines file."""
    path = Path(path)
    _check_not_empty(path)
    with open(path, "rb") as f:
        for line_number, line in enumerate(_utf8_lines(path, f), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield line_number, Malformed(f"invalid JSON ({e.msg}, column {e.colno})")
                continue
            if not isinstance(obj, dict):
                yield line_number, Malformed(f"expected a JSON object, got {type(obj).__name__}")
            else:
                yield line_number, obj


def iter_delimited(
    path: str | Path,
    *,
    delimiter: str,
    quoting: int,
    columns: tuple[str, ...] | None = None,
) -> Iterator[tuple[int, dict[str, str] | Malformed]]:
    """Yield ``(line_number, {column: value})`` for each data row of a CSV / TSV file.

    Args:
        path: the file.
        delimiter: ``","`` or ``"\\t"``.
        quoting: a ``csv`` quoting constant (GLUE needs ``csv.QUOTE_NONE``).
        columns: column names for a file without a header row (CoLA); ``None`` reads the header.
    """
    path = Path(path)
    _check_not_empty(path)
    csv.field_size_limit(max(csv.field_size_limit(), FIELD_SIZE_LIMIT))
    with open(path, "rb") as f:
        reader = csv.reader(_utf8_lines(path, f), delimiter=delimiter, quoting=quoting, strict=True)
        header = columns
        previous_end = 0
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as e:  # an unterminated quote, a huge field: the rest cannot be read
                raise DataFormatError(path, reader.line_num, f"unreadable row, stopping here ({e})") from None
            start, previous_end = previous_end + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = tuple(name.strip() for name in row)
                continue
            if len(row) != len(header):
                yield (
                    start,
                    Malformed(f"expected {len(header)} columns ({', '.join(header)}), found {len(row)}"),
                )
            else:
                yield start, dict(zip(header, row, strict=True))
        if header is None:
            raise InputError(f"{path}: file is empty (no header row)")


def iter_glue_tsv(path: str | Path, columns: tuple[str, ...] | None = None):
    """Rows of an official GLUE ``.tsv`` (tab separated, quoting off)."""
    return iter_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE, columns=columns)


def iter_table(path: str | Path) -> Iterator[tuple[int, dict | Malformed]]:
    """Rows of a user file, chosen by extension: ``.jsonl`` / ``.json``, ``.csv`` or ``.tsv``."""
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json"):
        return iter_jsonl(path)
    if suffix == ".csv":
        return iter_delimited(path, delimiter=",", quoting=csv.QUOTE_MINIMAL)
    if suffix == ".tsv":
        return iter_delimited(path, delimiter="\t", quoting=csv.QUOTE_NONE)
    raise InputError(f"{path}: unsupported file type {suffix!r}; use .jsonl, .csv or .tsv")


def convert_rows(
    path: str | Path,
    rows: Iterable[tuple[int, Any]],
    convert: Callable[[Any, int], Record | list[Record]],
    *,
    on_error: OnError = "raise",
    skipped: collections.Counter | None = None,
    counter_key: str = "",
) -> list[Record]:
    """Convert parsed rows to records, raising or skipping (and counting) bad ones.

    Args:
        path: the file the rows come from, for messages.
        rows: ``(line_number, row)`` pairs; a :class:`Malformed` row is an error.
        convert: ``(row, position) -> record or list of records``; raises :class:`RowError`
            (or ``KeyError`` / ``TypeError`` / ``ValueError``) for a bad row. ``position`` counts
            the rows accepted so far (the official ``idx`` of GLUE rows).
        on_error: ``"raise"`` or ``"skip"``.
        skipped: a counter incremented at ``counter_key`` for every skipped row.
        counter_key: the key in ``skipped`` (e.g. the split).
    """
    if on_error not in ("raise", "skip"):
        raise InputError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    records: list[Record] = []
    n_skipped = 0
    first_problem = ""
    position = 0
    for line, row in rows:
        try:
            if isinstance(row, Malformed):
                raise RowError(row.message)
            converted = convert(row, position)
        except (RowError, KeyError, TypeError, ValueError) as e:
            message = f"missing field {e}" if isinstance(e, KeyError) else str(e)
            if on_error == "raise":
                raise DataFormatError(path, line, message) from None
            n_skipped += 1
            first_problem = first_problem or f"{path}:{line}: {message}"
            continue
        position += 1
        if isinstance(converted, list):
            records.extend(converted)
        else:
            records.append(converted)
    if n_skipped:
        logger.warning("skipped %d malformed row(s) of %s; first: %s", n_skipped, path, first_problem)
        if skipped is not None:
            skipped[counter_key] += n_skipped
    if not records:
        raise InputError(f"{path}: no usable examples ({n_skipped} malformed row(s) skipped)")
    return records


# ----------------------------------------------------------------------------------------------
# Field helpers for converters: they raise RowError with a readable message.


def text_field(row: dict, name: str) -> str:
    """``row[name]`` as a string; missing or non-string values are errors."""
    if name not in row:
        raise RowError(f"missing field {name!r}")
    value = row[name]
    if not isinstance(value, str):
        raise RowError(f"field {name!r} must be text, got {type(value).__name__}")
    return value


def int_field(row: dict, name: str) -> int:
    """``row[name]`` as an int (accepts digit strings, as in AX-b's ``idx``)."""
    if name not in row:
        raise RowError(f"missing field {name!r}")
    value = row[name]
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise RowError(f"field {name!r} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise RowError(f"field {name!r} must be an integer, got {value!r}") from None


# ----------------------------------------------------------------------------------------------
# The Hugging Face hub.


def load_hub_split(hub_id: str, config: str, split: str) -> tuple[list[Record], Any]:
    """Load one split of a hub dataset as a list of rows, plus its ``features``.

    ``hub_id`` may also be a local directory in the hub's layout (``<config>/<split>-*.parquet``
    and a ``README.md`` whose ``configs:`` list them): the same code path, used by the tests.
    """
    import datasets  # slow import; only needed for the hub

    try:
        dataset = datasets.load_dataset(hub_id, config, split=split)
    except Exception as e:  # offline, unknown id, unknown config: all end here
        raise RuntimeError(
            f"could not load split {split!r} of config {config!r} of {hub_id!r} from the Hugging Face hub "
            f"({type(e).__name__}: {e}). If you are offline, pass data_dir=... pointing at the official "
            "GLUE .tsv / SuperGLUE .jsonl files (see docs/data.md), or hub_id=... pointing at a local copy "
            "of the dataset in the hub's layout."
        ) from e
    return dataset.to_list(), dataset.features
