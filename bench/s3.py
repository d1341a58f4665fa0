"""`python -m bench.s3`: the digest of a 1 GiB object read from an S3 server.

Signoff's `ArtifactSource.digest` (what `signoff submit --mlflow` and `signoff digest` run: GetObject's
body streamed in chunks and hashed, nothing kept) beside boto3's `download_file` of the same object
to /dev/null (what `aws s3 cp` does: its transfer manager), interleaved, in the same run, against
the same server: moto in server mode on a free port (tests/s3_server.py), started and stopped here.
`download_file` runs as one GetObject (multipart threshold above the size), the same single stream
Signoff reads; with `--ranged` also with its defaults (8 MiB ranged GETs on 10 threads), off by
default because moto reads the whole object for every range: 256 MiB took 12 s that way against
1 s as one GET, and the time grows with the square of the size. The faster is the reference. Reported as a
throughput ratio, best of each (goal: at least 0.9), with the speed of sha256 alone on the same
machine in the same rounds: a digest cannot be faster than its hash, and on a machine whose cores
the S3 server also needs, reading and hashing share them. Fails (non-zero) rather than print a partial
figure.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import time
import uuid
from pathlib import Path

from bench.infra import ROOT
from shared.sources import ArtifactSource, S3Config
from tests.s3_server import ACCESS_KEY, REGION, SECRET_KEY, s3_server

GiB = 2**30
WORK = ROOT / ".data" / "bench" / "s3"


def upload(client, bucket: str, key: str, size: int) -> str:  # noqa: ANN001 - boto3's client type
    """`size` bytes of incompressible data (one random MiB repeated); their sha256."""
    block = os.urandom(2**20)
    digest = hashlib.sha256()
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)
    parts, part_size = [], 64 * 2**20
    for number in range(1, size // part_size + 1):
        body = block * (part_size // len(block))
        digest.update(body)
        etag = client.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number,
                                  Body=body)["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})
    return digest.hexdigest()


async def measure(endpoint: str, size: int, rounds: int, with_ranged: bool) -> dict:
    import boto3

    os.environ.update({"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                       "AWS_DEFAULT_REGION": REGION})
    client = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    bucket, key = f"bench-{uuid.uuid4().hex[:12]}", "models/large.bin"
    client.create_bucket(Bucket=bucket)
    print(f"uploading {size / GiB:.2f} GiB to moto ...", flush=True)
    expected = upload(client, bucket, key, size)
    WORK.mkdir(parents=True, exist_ok=True)
    source = ArtifactSource(roots=(), s3_prefixes=(f"s3://{bucket}/",), max_bytes=2 * GiB, timeout=1200,
                            workdir=WORK, s3=S3Config(endpoint_url=endpoint, region=REGION))
    from boto3.s3.transfer import TransferConfig

    single = TransferConfig(multipart_threshold=size + 1)
    ours, theirs, ranged, hashing = [], [], [], []
    block = os.urandom(8 * 2**20)
    for number in range(rounds):
        if with_ranged:
            start = time.perf_counter()
            client.download_file(bucket, key, os.devnull)
            ranged.append(time.perf_counter() - start)
        start = time.perf_counter()
        client.download_file(bucket, key, os.devnull, Config=single)
        theirs.append(time.perf_counter() - start)
        start = time.perf_counter()
        digested = await source.digest(f"s3://{bucket}/{key}")
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        in_memory = hashlib.sha256()
        for _ in range(size // len(block)):
            in_memory.update(block)
        hashing.append(time.perf_counter() - start)
        if digested.sha256 != expected or digested.size != size:
            raise SystemExit("the digest differs from the uploaded bytes: not a benchmark, a bug")
        also = f", {ranged[-1]:.2f} s (ranged)" if ranged else ""
        print(f"  round {number + 1}: download_file {theirs[-1]:.2f} s (one GET){also}; "
              f"signoff digest {ours[-1]:.2f} s; sha256 alone {hashing[-1]:.2f} s", flush=True)
    best_ours, best_theirs = min(ours), min(theirs + ranged)
    return {"size_bytes": size, "rounds": rounds,
            "signoff_digest_s": [round(t, 3) for t in ours], "download_file_one_get_s": [round(t, 3) for t in theirs],
            "download_file_ranged_s": [round(t, 3) for t in ranged],
            "signoff_MiB_s": round(size / best_ours / 2**20, 1),
            "download_file_MiB_s": round(size / best_theirs / 2**20, 1),
            "sha256_in_memory_MiB_s": round(size / min(hashing) / 2**20, 1),
            "ratio": round(best_theirs / best_ours, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="object size (MiB, a multiple of 64)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--ranged", action="store_true", help="also time download_file's ranged default")
    parser.add_argument("--json", type=Path, default=ROOT / ".data" / "bench" / "s3.json",
                        help="also write the figures here")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    with s3_server(log=WORK / "moto.log") as server:
        result = asyncio.run(measure(server.endpoint_url, args.size_mib * 2**20, args.rounds, args.ranged))
    print(f"\ndigest of {result['size_bytes'] / GiB:.2f} GiB from S3 (moto): signoff {result['signoff_MiB_s']} MiB/s, "
          f"boto3 download_file to /dev/null (the faster way) {result['download_file_MiB_s']} MiB/s "
          f"-> ratio {result['ratio']} (goal >= 0.9); sha256 alone {result['sha256_in_memory_MiB_s']} MiB/s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
