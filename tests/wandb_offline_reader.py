"""Read an offline W&B run back from its run-<id>.wandb transaction log (for tests).

The file is a LevelDB-style log: a 7-byte header (b":W&B", uint16 0xBEE1, uint8 version 0), then
32 KiB blocks of chunks [crc32:uint32 LE][length:uint16 LE][type:uint8][payload]; type 1=FULL,
2=FIRST, 3=MIDDLE, 4=LAST; crc = zlib.crc32(payload, zlib.crc32(bytes([type]))). Each
reassembled payload is a wandb.proto.wandb_internal_pb2.Record.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_BLOCK, _HDR = 32768, 7
_FULL, _FIRST, _LAST = 1, 2, 4


def iter_records(path: Path) -> Iterator[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    ident, magic, version = struct.unpack("<4sHB", data[:7])
    if ident != b":W&B" or magic != 0xBEE1 or version != 0:
        raise ValueError(f"{path}: not a .wandb log (header {data[:7]!r})")
    pos, parts = 7, []
    while pos + _HDR <= len(data):
        space = _BLOCK - pos % _BLOCK
        if space < _HDR:
            pos += space
            continue
        crc, length, rtype = struct.unpack("<IHB", data[pos:pos + _HDR])
        if rtype == 0 and length == 0:
            break
        payload = data[pos + _HDR:pos + _HDR + length]
        if len(payload) < length or zlib.crc32(payload, zlib.crc32(bytes([rtype]))) != crc:
            break  # torn tail
        pos += _HDR + length
        parts = [payload] if rtype in (_FULL, _FIRST) else [*parts, payload]
        if rtype in (_FULL, _LAST):
            rec = pb.Record()
            rec.ParseFromString(b"".join(parts))
            yield rec


def _key(item: Any) -> str:
    return item.key or ".".join(item.nested_key)


def load_run(path: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], list[dict]]:
    """-> (meta, config, summary, history); meta['exit_code'] is None if it never finished."""
    meta: dict[str, Any] = {"exit_code": None}
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    for rec in iter_records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            meta.update(id=rec.run.run_id, project=rec.run.project, name=rec.run.display_name,
                        group=rec.run.run_group, job_type=rec.run.job_type)
            for item in rec.run.config.update:
                config[_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                config[_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            history.append({_key(i): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for i in rec.summary.update:
                summary[_key(i)] = json.loads(i.value_json)
        elif kind == "exit":
            meta["exit_code"] = rec.exit.exit_code
    config.pop("_wandb", None)
    return meta, config, {k: v for k, v in summary.items() if not k.startswith("_")}, history
