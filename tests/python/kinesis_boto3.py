#!/usr/bin/env python3
"""Drives Basin's Kinesis JSON API with a stock boto3 client.

    python3 tests/python/kinesis_boto3.py http://127.0.0.1:PORT

Creates stream `boto` (2 shards), waits for ACTIVE, lists the shards, puts 21
records (PutRecords + PutRecord), reads them all back from TRIM_HORIZON,
checks the server's validation errors, and deletes the stream. Prints `OK`
on success; exits non-zero with a message on any mismatch.
"""

import datetime
import sys
import time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

STREAM = "boto"
MAX_HASH = 2**128 - 1
DEADLINE_S = 60


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def client(endpoint, validate=True):
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="basin",
        aws_secret_access_key="basin-secret",
        config=Config(
            retries={"mode": "standard", "max_attempts": 5},
            connect_timeout=5,
            read_timeout=60,
            parameter_validation=validate,
        ),
    )


def error_code(fn, *args, **kwargs):
    """Calls fn and returns the AWS error code it raised (None if it did not raise)."""
    try:
        fn(*args, **kwargs)
    except ClientError as e:
        return e.response.get("Error", {}).get("Code"), e.response.get("Error", {}).get("Message", "")
    return None, ""


def wait_active(k):
    start = time.time()
    last = None
    while time.time() - start < DEADLINE_S:
        try:
            d = k.describe_stream(StreamName=STREAM)["StreamDescription"]
            last = d["StreamStatus"]
            if last == "ACTIVE":
                return d
        except ClientError as e:
            last = e.response["Error"]["Code"]
        time.sleep(0.2)
    fail(f"stream {STREAM} not ACTIVE after {DEADLINE_S}s (last: {last})")


def main():
    if len(sys.argv) != 2:
        fail("usage: kinesis_boto3.py ENDPOINT_URL")
    endpoint = sys.argv[1]
    k = client(endpoint)

    # ---- create, describe
    k.create_stream(StreamName=STREAM, ShardCount=2)
    d = wait_active(k)
    check(d["StreamName"] == STREAM, f"StreamName {d['StreamName']}")
    check(d["StreamARN"].endswith(f":stream/{STREAM}"), f"StreamARN {d['StreamARN']}")
    check(isinstance(d["StreamCreationTimestamp"], datetime.datetime),
          f"StreamCreationTimestamp {d['StreamCreationTimestamp']!r}")
    check(d["RetentionPeriodHours"] >= 1, f"RetentionPeriodHours {d['RetentionPeriodHours']}")
    check(d["HasMoreShards"] is False, "HasMoreShards")
    check(len(d["Shards"]) == 2, f"DescribeStream shards: {d['Shards']}")
    summary = k.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
    check(summary["OpenShardCount"] == 2, f"summary {summary}")
    check(STREAM in k.list_streams()["StreamNames"], "ListStreams lacks the stream")

    code, _ = error_code(k.describe_stream, StreamName="no-such-stream-xyz")
    check(code == "ResourceNotFoundException", f"describe of a missing stream: {code}")
    code, _ = error_code(k.create_stream, StreamName=STREAM, ShardCount=2)
    check(code == "ResourceInUseException", f"second create: {code}")

    # ---- shards cover the hash space
    shards = k.list_shards(StreamName=STREAM)["Shards"]
    check(len(shards) == 2, f"ListShards: {shards}")
    ranges = sorted(
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in shards
    )
    check(ranges[0][0] == 0, f"first range starts at {ranges[0][0]}")
    check(ranges[-1][1] == MAX_HASH, f"last range ends at {ranges[-1][1]}")
    for (a_start, a_end), (b_start, _) in zip(ranges, ranges[1:]):
        check(a_start <= a_end and a_end + 1 == b_start, f"hash ranges not contiguous: {ranges}")
    for s in shards:
        check("StartingSequenceNumber" in s["SequenceNumberRange"], f"shard {s}")
    shard_ids = [s["ShardId"] for s in shards]

    page1 = k.list_shards(StreamName=STREAM, MaxResults=1)
    check(len(page1["Shards"]) == 1 and "NextToken" in page1, f"ListShards page 1: {page1}")
    page2 = k.list_shards(NextToken=page1["NextToken"], MaxResults=1)
    check(len(page2["Shards"]) == 1 and "NextToken" not in page2, f"ListShards page 2: {page2}")
    check({page1["Shards"][0]["ShardId"], page2["Shards"][0]["ShardId"]} == set(shard_ids),
          "ListShards pages do not cover the shards")

    # ---- put 20 + 1 records
    keys = [f"pk-{i}" for i in range(7)]
    expected = {}  # data -> (partition key, shard id, sequence number)
    batch = [
        {"Data": f"record-{i:02d}".encode(), "PartitionKey": keys[i % len(keys)]}
        for i in range(20)
    ]
    pending = batch
    for _ in range(10):
        resp = k.put_records(StreamName=STREAM, Records=pending)
        check(len(resp["Records"]) == len(pending), f"PutRecords results: {resp}")
        retry = []
        for rec, res in zip(pending, resp["Records"]):
            if "ErrorCode" in res:
                check(res["ErrorCode"] == "ProvisionedThroughputExceededException",
                      f"PutRecords failure: {res}")
                retry.append(rec)
            else:
                check(res["ShardId"] in shard_ids, f"unknown shard {res['ShardId']}")
                int(res["SequenceNumber"])
                expected[rec["Data"]] = (rec["PartitionKey"], res["ShardId"], res["SequenceNumber"])
        check(resp["FailedRecordCount"] == len(retry), f"FailedRecordCount {resp}")
        pending = retry
        if not pending:
            break
        time.sleep(0.5)
    check(not pending, f"{len(pending)} records still failing")

    one = k.put_record(StreamName=STREAM, Data=b"single-record", PartitionKey="pk-single")
    check(one["ShardId"] in shard_ids, f"PutRecord: {one}")
    expected[b"single-record"] = ("pk-single", one["ShardId"], one["SequenceNumber"])
    check(len(expected) == 21, f"{len(expected)} records put")

    by_key = {}
    for data, (pk, shard, _) in expected.items():
        by_key.setdefault(pk, set()).add(shard)
    check(all(len(s) == 1 for s in by_key.values()), f"one key in several shards: {by_key}")

    # ---- read everything back from TRIM_HORIZON
    got = {}  # data -> (partition key, shard id, sequence number)
    iterators = {
        s: k.get_shard_iterator(StreamName=STREAM, ShardId=s, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        for s in shard_ids
    }
    last_seq = {s: -1 for s in shard_ids}
    start = time.time()
    while len(got) < len(expected):
        if time.time() - start > DEADLINE_S:
            fail(f"read {len(got)} of {len(expected)} records in {DEADLINE_S}s")
        for s in shard_ids:
            it = iterators[s]
            if it is None:
                continue
            resp = k.get_records(ShardIterator=it, Limit=7)
            check("MillisBehindLatest" in resp, f"GetRecords lacks MillisBehindLatest: {resp}")
            for r in resp["Records"]:
                seq = int(r["SequenceNumber"])
                check(seq > last_seq[s], f"sequence numbers not increasing in {s}")
                last_seq[s] = seq
                check(isinstance(r["ApproximateArrivalTimestamp"], datetime.datetime),
                      f"ApproximateArrivalTimestamp {r['ApproximateArrivalTimestamp']!r}")
                check(r["Data"] not in got, f"record read twice: {r['Data']!r}")
                got[r["Data"]] = (r["PartitionKey"], s, r["SequenceNumber"])
            iterators[s] = resp.get("NextShardIterator")
            check(iterators[s] is not None, f"open shard {s} ended its iterator")
        time.sleep(0.1)
    for data, want in expected.items():
        check(got.get(data) == want, f"record {data!r}: put {want}, read {got.get(data)}")
    check(set(got) == set(expected), f"unexpected records: {set(got) - set(expected)}")
    for s in shard_ids:
        resp = k.get_records(ShardIterator=iterators[s])
        check(resp["Records"] == [], f"extra records in {s}: {resp['Records']}")

    # AT_SEQUENCE_NUMBER / AFTER_SEQUENCE_NUMBER / LATEST
    pk, shard, seq = expected[b"single-record"]
    it = k.get_shard_iterator(StreamName=STREAM, ShardId=shard,
                              ShardIteratorType="AT_SEQUENCE_NUMBER",
                              StartingSequenceNumber=seq)["ShardIterator"]
    recs = k.get_records(ShardIterator=it)["Records"]
    check(recs and recs[0]["Data"] == b"single-record", f"AT_SEQUENCE_NUMBER read {recs[:1]}")
    it = k.get_shard_iterator(StreamName=STREAM, ShardId=shard,
                              ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                              StartingSequenceNumber=seq)["ShardIterator"]
    recs = k.get_records(ShardIterator=it)["Records"]
    check(all(r["Data"] != b"single-record" for r in recs), "AFTER_SEQUENCE_NUMBER re-read the record")
    it = k.get_shard_iterator(StreamName=STREAM, ShardId=shard,
                              ShardIteratorType="LATEST")["ShardIterator"]
    recs = k.get_records(ShardIterator=it)["Records"]
    check(recs == [], f"LATEST read old records: {recs}")

    # ---- the server's validation
    code, msg = error_code(k.put_record, StreamName=STREAM, Data=b"x" * (1024 * 1024 + 1),
                           PartitionKey="big")
    check(code == "ValidationException", f"1 MiB + 1 byte PutRecord: {code} {msg}")
    code, msg = error_code(
        k.put_records,
        StreamName=STREAM,
        Records=[{"Data": b"x", "PartitionKey": "k"} for _ in range(501)],
    )
    check(code == "ValidationException", f"501-record PutRecords: {code} {msg}")
    check("less than or equal to 500" in msg, f"501-record PutRecords message: {msg}")
    raw = client(endpoint, validate=False)
    code, msg = error_code(raw.put_record, StreamName=STREAM, Data=b"x", PartitionKey="")
    check(code == "ValidationException", f"empty partition key: {code} {msg}")
    code, msg = error_code(k.get_records, ShardIterator="not-an-iterator")
    check(code in ("InvalidArgumentException", "ExpiredIteratorException"),
          f"GetRecords with a bad iterator: {code} {msg}")

    # ---- delete
    k.delete_stream(StreamName=STREAM)
    start = time.time()
    while True:
        code, _ = error_code(k.describe_stream, StreamName=STREAM)
        if code == "ResourceNotFoundException":
            break
        if time.time() - start > DEADLINE_S:
            fail(f"stream still there {DEADLINE_S}s after DeleteStream ({code})")
        time.sleep(0.2)
    check(STREAM not in k.list_streams()["StreamNames"], "ListStreams still lists the stream")
    print("OK")


if __name__ == "__main__":
    main()
