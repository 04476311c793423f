"""Attachments (附件): files of a resource of format file, stored by SHA-256 in chunks, read by a grant,
on a real exchange and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
import urllib3
from minio import Minio
from pydantic import ValidationError
from typer.testing import CliRunner

from exchange.object_store import ObjectStore, ObjectStoreError, ObjectStoreSettings
from exchange.retention import keep_compacting
from exchange.settings import Settings
from gdx.cli import app
from gdx.protocol import ResourceSpec
from tests.support.aio import run
from tests.support.exchange import RunningExchange, start_exchange
from tests.support.postgres import PostgresServer, free_port
from tests.support.samples import batch, credit_code, licence_scan_entry, population_entry, unique_code

PURPOSE = "市场主体许可审批核验"
# A PDF a few chunks long (the exchange stores 1 MiB chunks): its bytes after the header are random.
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + os.urandom(3 * 1024 * 1024 + 12_345) + b"\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(2000)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def scans(exchange: RunningExchange) -> str:
    """A conditional resource of licence scans, and zjg-wjw granted it for PURPOSE."""
    code = unique_code("zjg-scjgj", "licence-scan")
    provider = exchange.client("zjg-scjgj")
    assert provider.post("/v1/resources", json=licence_scan_entry(code)).status_code == 201
    asked = exchange.client("zjg-wjw").post("/v1/requests", json={"resource": code, "purpose": PURPOSE})
    assert asked.status_code == 201, asked.text
    approved = provider.post(f"/v1/requests/{asked.json()['id']}/approve", json={})
    assert approved.status_code == 200, approved.text
    return code


def put(exchange: RunningExchange, code: str, data: bytes, digest: str | None = None, who: str = "zjg-scjgj") -> Any:
    def pieces() -> Iterator[bytes]:  # sent chunked, in pieces that do not line up with the stored chunks
        for start in range(0, len(data), 300_000):
            yield data[start : start + 300_000]

    return exchange.client(who).put(f"/v1/resources/{code}/files/{digest or sha(data)}", content=pieces())


def record(n: int, scan: str, version: int = 1) -> dict[str, Any]:
    row = {"credit_code": credit_code(n), "licence_no": f"320582{n:09d}", "issued": "2026-03-01", "scan": scan}
    return {"op": "upsert", "key": row["credit_code"], "row": row, "source_version": version,
            "source_commit_time": "2026-12-01T08:00:00+08:00"}  # fmt: skip


def audit(exchange: RunningExchange, code: str, action: str) -> list[dict[str, Any]]:
    entries = exchange.client("bob").get("/v1/audit", params={"resource": code, "action": action})
    assert entries.status_code == 200, entries.text
    return list(entries.json())


def test_a_file_goes_in_by_its_digest_and_comes_out_whole_to_a_granted_consumer(
    exchange: RunningExchange, scans: str
) -> None:
    stored = put(exchange, scans, PDF)
    assert stored.status_code == 201, stored.text
    assert stored.json()["bytes"] == len(PDF)
    assert stored.json()["media_type"] == "application/pdf"
    assert stored.json()["new"] is True
    again = put(exchange, scans, PDF)
    assert again.status_code == 200
    assert again.json()["new"] is False

    pushed = exchange.client("zjg-scjgj").post(f"/v1/resources/{scans}/changes", json=batch(record(1, sha(PDF))))
    assert pushed.status_code == 200, pushed.text
    page = exchange.client("zjg-wjw").get(f"/v1/resources/{scans}/changes", params={"purpose": PURPOSE}).json()
    named = page["changes"][0]["row"]["scan"]

    with exchange.client("zjg-wjw").stream(
        "GET", f"/v1/resources/{scans}/files/{named}", params={"purpose": PURPOSE}
    ) as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/pdf"
        assert answer.headers["content-length"] == str(len(PDF))
        received = b"".join(answer.iter_bytes())
    assert sha(received) == named
    downloads = audit(exchange, scans, "file_download")
    assert [(e["actor"], e["purpose"], e["scope"]["sha256"]) for e in downloads] == [("zjg-wjw", PURPOSE, named)]
    uploads = audit(exchange, scans, "file_upload")
    assert [e["scope"]["new"] for e in uploads] == [True, False]


def test_bytes_other_than_the_digest_says_store_nothing(exchange: RunningExchange, scans: str) -> None:
    cut = PDF[: len(PDF) // 2]
    refused = put(exchange, scans, cut, digest=sha(PDF))
    assert refused.status_code == 422
    assert refused.json()["error"] == "digest_mismatch"
    assert f"{len(cut):,}" in refused.json()["message"]
    # Nothing of it was kept: the file is unknown, and a record naming it is refused.
    missing = exchange.client("zjg-scjgj").head(f"/v1/resources/{scans}/files/{sha(PDF)}")
    assert missing.status_code == 404
    pushed = exchange.client("zjg-scjgj").post(f"/v1/resources/{scans}/changes", json=batch(record(2, sha(PDF))))
    assert pushed.status_code == 422
    assert pushed.json()["error"] == "file_not_uploaded"
    assert credit_code(2) in pushed.json()["message"]
    assert [e["outcome"] for e in audit(exchange, scans, "file_upload")] == ["refused"]


def test_a_file_of_a_type_the_catalog_does_not_list_is_refused(exchange: RunningExchange, scans: str) -> None:
    text = "营业执照\n".encode() * 100
    refused = put(exchange, scans, text)
    assert refused.status_code == 415
    assert "application/pdf, image/jpeg, image/png" in refused.json()["message"]
    docx_like = b"PK\x03\x04" + os.urandom(500)
    assert put(exchange, scans, docx_like).status_code == 415
    png = put(exchange, scans, PNG)
    assert png.status_code == 201
    assert png.json()["media_type"] == "image/png"


def test_only_the_provider_uploads_and_only_a_grant_reads(exchange: RunningExchange, scans: str) -> None:
    assert put(exchange, scans, PNG).status_code == 201
    path = f"/v1/resources/{scans}/files/{sha(PNG)}"
    assert put(exchange, scans, PNG, who="zjg-wjw").status_code == 403
    assert exchange.client("zjg-gaj").get(path, params={"purpose": PURPOSE}).status_code == 403
    assert exchange.client("zjg-wjw").get(path, params={"purpose": "另一个目的"}).status_code == 403
    assert exchange.client("zjg-wjw").get(path).status_code == 422  # no purpose
    assert exchange.client("zjg-scjgj").get(path).status_code == 200  # the provider needs none
    looked = exchange.client("zjg-scjgj").head(path)
    assert looked.status_code == 200
    assert looked.headers["content-length"] == str(len(PNG))
    assert [e["scope"]["sha256"] for e in audit(exchange, scans, "file_check")] == [sha(PNG)]
    assert [e["actor"] for e in audit(exchange, scans, "file_download") if e["outcome"] == "refused"] == [
        "zjg-gaj", "zjg-wjw", "zjg-wjw",
    ]  # fmt: skip

    # A file of another resource is not this one's, even with the same bytes stored.
    other = unique_code("zjg-scjgj", "licence-scan")
    assert exchange.client("zjg-scjgj").post("/v1/resources", json=licence_scan_entry(other)).status_code == 201
    assert exchange.client("zjg-scjgj").get(f"/v1/resources/{other}/files/{sha(PNG)}").status_code == 404


def test_a_grant_without_the_file_field_reads_records_but_not_files(exchange: RunningExchange) -> None:
    code = unique_code("zjg-scjgj", "licence-scan")
    provider = exchange.client("zjg-scjgj")
    assert provider.post("/v1/resources", json=licence_scan_entry(code)).status_code == 201
    asked = exchange.client("zjg-wjw").post("/v1/requests", json={"resource": code, "purpose": PURPOSE})
    approved = provider.post(f"/v1/requests/{asked.json()['id']}/approve", json={"fields": ["licence_no"]})
    assert approved.status_code == 200, approved.text
    assert put(exchange, code, PNG).status_code == 201
    refused = exchange.client("zjg-wjw").get(f"/v1/resources/{code}/files/{sha(PNG)}", params={"purpose": PURPOSE})
    assert refused.status_code == 403
    assert "'scan'" in refused.json()["message"]


def test_records_name_their_files_by_digest_or_are_refused(exchange: RunningExchange, scans: str) -> None:
    bad = record(3, "not-a-digest")
    refused = exchange.client("zjg-scjgj").post(f"/v1/resources/{scans}/changes", json=batch(bad))
    assert refused.status_code == 422
    assert refused.json()["error"] == "invalid_file_digest"
    table = unique_code("zjg-gaj")
    assert exchange.client("zjg-gaj").post("/v1/resources", json=population_entry(table)).status_code == 201
    not_files = exchange.client("zjg-gaj").put(f"/v1/resources/{table}/files/{sha(PNG)}", content=PNG)
    assert not_files.status_code == 422
    assert not_files.json()["error"] == "not_a_file_resource"


def test_a_file_resource_declares_its_file_field_and_types() -> None:
    with pytest.raises(ValidationError, match="file_field"):
        ResourceSpec.model_validate(licence_scan_entry("zjg-scjgj.scan", file_field=None))
    with pytest.raises(ValidationError, match="file_types"):
        ResourceSpec.model_validate(licence_scan_entry("zjg-scjgj.scan", file_types=[]))
    with pytest.raises(ValidationError, match="other than the primary key"):
        ResourceSpec.model_validate(licence_scan_entry("zjg-scjgj.scan", file_field="credit_code"))
    with pytest.raises(ValidationError, match="format file"):
        ResourceSpec.model_validate(population_entry("zjg-gaj.p", file_types=["application/pdf"]))
    with pytest.raises(ValidationError, match="pattern"):
        ResourceSpec.model_validate(licence_scan_entry("zjg-scjgj.scan", file_types=["pdf"]))


def test_a_desk_uploads_files_then_their_records_and_a_consumer_downloads_one(
    exchange: RunningExchange, scans: str, tmp_path: Path
) -> None:
    def identity(who: str) -> list[str]:
        return ["--exchange", exchange.url, "--cert", str(exchange.pki / f"{who}.crt"),
                "--key", str(exchange.pki / f"{who}.key"), "--ca", str(exchange.pki / "ca.crt")]  # fmt: skip

    runner = CliRunner()
    scan, note = tmp_path / "营业执照.pdf", tmp_path / "说明.txt"
    scan.write_bytes(PDF)
    note.write_text("不是扫描件", encoding="utf-8")
    put_both = runner.invoke(app, ["file", "put", scans, str(scan), str(note), *identity("zjg-scjgj")])
    assert put_both.exit_code == 1, put_both.output  # the text file is refused, the scan stored
    assert f"{sha(PDF)}" in put_both.output
    assert "application/pdf" in put_both.output
    assert "refused (415)" in put_both.output

    template = exchange.client("zjg-scjgj").get(f"/v1/resources/{scans}/template.csv")
    header, types = template.content.decode("utf-8-sig").splitlines()[:2]
    assert header.split(",")[-2] == "*scan（扫描件（文件的 SHA-256））"
    assert "gdx file put" in types.split(",")[-2]
    # A record naming a file not uploaded refuses the whole template; named right, it applies.
    header = "credit_code,licence_no,issued,scan\n"
    sheet = tmp_path / "records.csv"
    sheet.write_text(header + f"{credit_code(7)},320582000000007,2026-03-01,{sha(b'other')}\n", encoding="utf-8")
    refused = runner.invoke(app, ["upload", scans, str(sheet), *identity("zjg-scjgj")])
    assert refused.exit_code == 1, refused.output
    assert "not uploaded" in refused.output
    sheet.write_text(header + f"{credit_code(7)},320582000000007,2026-03-01,{sha(PDF)}\n", encoding="utf-8")
    applied = runner.invoke(app, ["upload", scans, str(sheet), *identity("zjg-scjgj")])
    assert applied.exit_code == 0, applied.output

    target = tmp_path / "received.pdf"
    got = runner.invoke(app, ["file", "get", scans, sha(PDF), "--purpose", PURPOSE, "-o", str(target),
                              *identity("zjg-wjw")])  # fmt: skip
    assert got.exit_code == 0, got.output
    assert target.read_bytes() == PDF
    wrong = runner.invoke(app, ["file", "get", scans, sha(PDF), "--purpose", "别的目的", "-o", str(tmp_path / "x"),
                                *identity("zjg-wjw")])  # fmt: skip
    assert wrong.exit_code == 1
    assert "403" in wrong.output
    assert not (tmp_path / "x").exists()
    assert not (tmp_path / "x.part").exists()


@pytest.fixture(scope="module")
def object_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStoreSettings]:
    """An S3-compatible server on loopback with a bucket. No MinIO or Ceph runs here (no container
    registry, no Debian package): the server is moto's, which speaks the S3 REST API over HTTP."""
    port = free_port()
    log = (tmp_path_factory.mktemp("s3") / "moto.log").open("wb")
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-p", str(port)],
                              stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    settings = ObjectStoreSettings(f"http://127.0.0.1:{port}", "gdx-files", "gdx-test", "gdx-test-secret",
                                   prefix="exchange/", region="us-east-1")  # fmt: skip
    client = Minio(f"127.0.0.1:{port}", "gdx-test", "gdx-test-secret", secure=False, region="us-east-1")
    deadline = time.monotonic() + 30
    while True:
        try:
            client.make_bucket("gdx-files")
            break
        except urllib3.exceptions.HTTPError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.2)
    yield settings
    server.terminate()
    server.wait(10)
    log.close()


def test_files_kept_in_an_object_store_go_in_and_out_the_same_way(
    pg: PostgresServer, object_store: ObjectStoreSettings, tmp_path: Path
) -> None:
    s3 = object_store
    exchange = start_exchange(pg, tmp_path, dbname="exchange_s3", s3_endpoint=s3.endpoint, s3_bucket=s3.bucket,
                              s3_prefix=s3.prefix, s3_region=s3.region, s3_access_key=s3.access_key,
                              s3_secret_key=s3.secret_key)  # fmt: skip
    try:
        code = unique_code("zjg-scjgj", "licence-scan")
        provider = exchange.client("zjg-scjgj")
        assert provider.post("/v1/resources", json=licence_scan_entry(code, "unconditional")).status_code == 201
        assert put(exchange, code, PDF[: len(PDF) // 2], digest=sha(PDF)).status_code == 422  # nothing stored
        stored = put(exchange, code, PDF)
        assert stored.status_code == 201, stored.text
        assert put(exchange, code, PDF).status_code == 200
        client = Minio(urlsplit(s3.endpoint).netloc, s3.access_key, s3.secret_key, secure=False, region=s3.region)
        objects = [o.object_name for o in client.list_objects(s3.bucket, prefix=s3.prefix, recursive=True)]
        assert objects == [f"exchange/{sha(PDF)[:2]}/{sha(PDF)}"]  # once, after its bytes were checked
        with psycopg.connect(exchange.database_url) as conn:
            kept = conn.execute("SELECT location, chunks FROM file_blob").fetchall()
            rows = conn.execute("SELECT count(*) FROM file_chunk").fetchone()
        assert kept == [("s3", 0)]
        assert rows == (0,)

        assert exchange.client("zjg-wjw").post(f"/v1/resources/{code}/subscriptions",
                                               json={"purpose": PURPOSE}).status_code == 201  # fmt: skip
        with exchange.client("zjg-wjw").stream("GET", f"/v1/resources/{code}/files/{sha(PDF)}",
                                               params={"purpose": PURPOSE}) as answer:  # fmt: skip
            assert answer.status_code == 200
            assert sha(b"".join(answer.iter_bytes())) == sha(PDF)

        # No record names it: a round of the exchange's compaction (no retention) takes its object away.
        run(_one_compaction(exchange.database_url, ObjectStore(s3)))
        assert list(client.list_objects(s3.bucket, prefix=s3.prefix, recursive=True)) == []
        assert exchange.client("zjg-scjgj").get(f"/v1/resources/{code}/files/{sha(PDF)}").status_code == 404
    finally:
        exchange.stop()


async def _one_compaction(database_url: str, objects: ObjectStore) -> None:
    stop = asyncio.Event()
    rounds = asyncio.create_task(keep_compacting(database_url, dt.timedelta(0), 0.1, stop, objects))
    await asyncio.sleep(1)
    stop.set()
    await rounds


def test_an_object_store_half_configured_or_missing_stops_the_start(
    object_store: ObjectStoreSettings, tmp_path: Path
) -> None:
    half = Settings("postgresql://x/y", tmp_path, tmp_path, tmp_path, s3_bucket="gdx-files", s3_endpoint="http://h:1")
    with pytest.raises(ObjectStoreError, match="access key and secret key"):
        half.object_store()
    with pytest.raises(ObjectStoreError, match=r"'nowhere' at .* does not exist"):
        ObjectStore(ObjectStoreSettings(object_store.endpoint, "nowhere", "gdx-test", "gdx-test-secret")).check()
    with pytest.raises(ObjectStoreError, match="not an http"):
        ObjectStore(ObjectStoreSettings("s3.example.gov.cn", "gdx-files", "k", "s"))
