//! The Kinesis operations: request shapes, validation (before the client is
//! called), and response shapes as in the Kinesis API reference.

use base64::Engine;
use basin_client::streams::{
    self as streams, Position, PutEntry, PutOutcome, RetentionChange, StreamClient, pb,
};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::ApiError;

pub const ARN_PREFIX: &str = "arn:aws:kinesis:basin-local:000000000000:stream/";
const DEFAULT_SHARD_COUNT: u32 = 4;
const MAX_LIMIT: i64 = 10_000;
/// What closed shards report as their `EndingSequenceNumber`: the master does
/// not track a shard's last sequence number, and the SDKs only test presence.
const CLOSED_SHARD_END: u64 = u64::MAX;

pub fn stream_arn(name: &str) -> String {
    format!("{ARN_PREFIX}{name}")
}

/// Runs one operation on a JSON request body.
pub async fn dispatch(client: &StreamClient, op: &str, body: &[u8]) -> Result<Value, ApiError> {
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::serialization(format!("malformed JSON request: {e}")))?
    };
    if !input.is_object() {
        return Err(ApiError::serialization(
            "the request body must be a JSON object",
        ));
    }
    match op {
        "CreateStream" => create_stream(client, parse(input)?).await,
        "DeleteStream" => delete_stream(client, parse(input)?).await,
        "DescribeStream" => describe_stream(client, parse(input)?).await,
        "DescribeStreamSummary" => describe_stream_summary(client, parse(input)?).await,
        "ListStreams" => list_streams(client, parse(input)?).await,
        "ListShards" => list_shards(client, parse(input)?).await,
        "PutRecord" => put_record(client, parse(input)?).await,
        "PutRecords" => put_records(client, parse(input)?).await,
        "GetShardIterator" => get_shard_iterator(client, parse(input)?).await,
        "GetRecords" => get_records(client, parse(input)?).await,
        "IncreaseStreamRetentionPeriod" => {
            retention(client, parse(input)?, RetentionChange::Increase).await
        }
        "DecreaseStreamRetentionPeriod" => {
            retention(client, parse(input)?, RetentionChange::Decrease).await
        }
        "SplitShard" => split_shard(client, parse(input)?).await,
        "MergeShards" => merge_shards(client, parse(input)?).await,
        "UpdateShardCount" => update_shard_count(client, parse(input)?).await,
        other => Err(ApiError::new(
            "UnknownOperationException",
            format!("unknown operation {other:?}"),
        )),
    }
}

fn parse<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::serialization(e.to_string()))
}

use super::validate::*;

// ------------------------------------------------------------------ shapes

fn status(info: &pb::StreamInfo) -> String {
    if info.status.is_empty() {
        "ACTIVE".to_string()
    } else {
        info.status.clone()
    }
}

fn retention_hours(info: &pb::StreamInfo) -> u64 {
    if info.retention_hours > 0 {
        u64::from(info.retention_hours)
    } else if info.retention_ms > 0 {
        info.retention_ms.div_ceil(3_600_000)
    } else {
        24
    }
}

fn creation_timestamp(info: &pb::StreamInfo) -> f64 {
    info.created_ms as f64 / 1000.0
}

/// Numeric order for `shardId-000000000012`-style ids (shorter first, then text).
fn shard_order(id: &str) -> (usize, &str) {
    (id.len(), id)
}

fn sorted_shards(info: &pb::StreamInfo) -> Vec<&pb::ShardInfo> {
    let mut shards: Vec<&pb::ShardInfo> = info.shards.iter().collect();
    shards.sort_by(|a, b| shard_order(&a.shard_id).cmp(&shard_order(&b.shard_id)));
    shards
}

fn shard_json(s: &pb::ShardInfo) -> Value {
    let mut seq_range = json!({ "StartingSequenceNumber": "0" });
    if !s.open {
        seq_range["EndingSequenceNumber"] = json!(CLOSED_SHARD_END.to_string());
    }
    let mut v = json!({
        "ShardId": s.shard_id,
        "HashKeyRange": { "StartingHashKey": s.start_hash, "EndingHashKey": s.end_hash },
        "SequenceNumberRange": seq_range,
    });
    if !s.parent.is_empty() {
        v["ParentShardId"] = json!(s.parent);
    }
    if !s.adjacent_parent.is_empty() {
        v["AdjacentParentShardId"] = json!(s.adjacent_parent);
    }
    v
}

fn enhanced_monitoring() -> Value {
    json!([{ "ShardLevelMetrics": [] }])
}

// ------------------------------------------------------------------ streams

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateStreamInput {
    stream_name: Option<String>,
    shard_count: Option<i64>,
}

async fn create_stream(client: &StreamClient, i: CreateStreamInput) -> Result<Value, ApiError> {
    let name = required(i.stream_name, "streamName")?;
    validate_stream_name(&name)?;
    let shards = match i.shard_count {
        Some(n) => check_range(n, 1, 100_000, "shardCount")? as u32,
        None => DEFAULT_SHARD_COUNT,
    };
    client.create(&name, shards, 0, 0).await?;
    tracing::info!(stream = %name, shards, "kinesis CreateStream");
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

async fn delete_stream(client: &StreamClient, i: StreamInput) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    client.delete(&name).await?;
    tracing::info!(stream = %name, "kinesis DeleteStream");
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeStreamInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    limit: Option<i64>,
    exclusive_start_shard_id: Option<String>,
}

async fn describe_stream(client: &StreamClient, i: DescribeStreamInput) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let limit = check_range(i.limit.unwrap_or(100), 1, MAX_LIMIT, "limit")? as usize;
    let info = client.describe(&name).await?;
    let after = i.exclusive_start_shard_id;
    let candidates: Vec<&pb::ShardInfo> = sorted_shards(&info)
        .into_iter()
        .filter(|s| match &after {
            Some(a) => shard_order(&s.shard_id) > shard_order(a),
            None => true,
        })
        .collect();
    let has_more = candidates.len() > limit;
    let shards: Vec<Value> = candidates
        .iter()
        .take(limit)
        .map(|s| shard_json(s))
        .collect();
    Ok(json!({
        "StreamDescription": {
            "StreamName": info.name,
            "StreamARN": stream_arn(&info.name),
            "StreamStatus": status(&info),
            "StreamModeDetails": { "StreamMode": "PROVISIONED" },
            "Shards": shards,
            "HasMoreShards": has_more,
            "RetentionPeriodHours": retention_hours(&info),
            "StreamCreationTimestamp": creation_timestamp(&info),
            "EnhancedMonitoring": enhanced_monitoring(),
            "EncryptionType": "NONE",
        }
    }))
}

async fn describe_stream_summary(client: &StreamClient, i: StreamInput) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let info = client.describe(&name).await?;
    let open = info.shards.iter().filter(|s| s.open).count();
    Ok(json!({
        "StreamDescriptionSummary": {
            "StreamName": info.name,
            "StreamARN": stream_arn(&info.name),
            "StreamStatus": status(&info),
            "StreamModeDetails": { "StreamMode": "PROVISIONED" },
            "RetentionPeriodHours": retention_hours(&info),
            "StreamCreationTimestamp": creation_timestamp(&info),
            "EnhancedMonitoring": enhanced_monitoring(),
            "EncryptionType": "NONE",
            "OpenShardCount": open,
            "ConsumerCount": info.consumers.len(),
        }
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListStreamsInput {
    limit: Option<i64>,
    exclusive_start_stream_name: Option<String>,
    next_token: Option<String>,
}

async fn list_streams(client: &StreamClient, i: ListStreamsInput) -> Result<Value, ApiError> {
    let limit = check_range(i.limit.unwrap_or(100), 1, MAX_LIMIT, "limit")? as usize;
    let after = match (&i.next_token, i.exclusive_start_stream_name) {
        (Some(t), _) => Some(un_b64_token(t)?),
        (None, e) => e,
    };
    let mut names = client.list().await?;
    names.sort();
    let candidates: Vec<String> = names
        .into_iter()
        .filter(|n| after.as_ref().is_none_or(|a| n > a))
        .collect();
    let has_more = candidates.len() > limit;
    let page: Vec<String> = candidates.into_iter().take(limit).collect();
    let mut out = json!({ "StreamNames": page, "HasMoreStreams": has_more });
    if has_more && let Some(last) = page.last() {
        out["NextToken"] = json!(b64_token(last));
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ShardFilter {
    #[serde(rename = "Type")]
    kind: Option<String>,
    shard_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListShardsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    next_token: Option<String>,
    exclusive_start_shard_id: Option<String>,
    max_results: Option<i64>,
    shard_filter: Option<ShardFilter>,
}

const SHARDS_TOKEN: &str = "ListShards";

async fn list_shards(client: &StreamClient, i: ListShardsInput) -> Result<Value, ApiError> {
    let limit = check_range(i.max_results.unwrap_or(1000), 1, MAX_LIMIT, "maxResults")? as usize;
    let (name, after) = match &i.next_token {
        Some(t) => {
            let text = un_b64_token(t)?;
            let mut parts = text.splitn(3, '\n');
            let (Some(SHARDS_TOKEN), Some(stream), Some(shard)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(ApiError::invalid_argument("NextToken is not valid"));
            };
            if let Some(n) = &i.stream_name
                && n != stream
            {
                return Err(ApiError::invalid_argument(
                    "NextToken was issued for another stream",
                ));
            }
            (stream.to_string(), Some(shard.to_string()))
        }
        None => (
            stream_name(i.stream_name, i.stream_arn)?,
            i.exclusive_start_shard_id,
        ),
    };
    let info = client.describe(&name).await?;
    let mut open_only = false;
    let mut after_filter: Option<String> = None;
    if let Some(f) = i.shard_filter {
        match f.kind.as_deref() {
            Some("AT_LATEST") => open_only = true,
            Some("AFTER_SHARD_ID") => {
                after_filter = Some(f.shard_id.ok_or_else(|| {
                    ApiError::invalid_argument(
                        "ShardFilter of type AFTER_SHARD_ID requires a ShardId",
                    )
                })?)
            }
            Some("AT_TRIM_HORIZON" | "FROM_TRIM_HORIZON" | "AT_TIMESTAMP" | "FROM_TIMESTAMP") => {}
            Some(other) => {
                return Err(constraint(
                    "shardFilter.type",
                    Some(other),
                    "satisfy enum value set: [AFTER_SHARD_ID, AT_TRIM_HORIZON, FROM_TRIM_HORIZON, \
                     AT_LATEST, AT_TIMESTAMP, FROM_TIMESTAMP]",
                ));
            }
            None => return Err(null_error("shardFilter.type")),
        }
    }
    let candidates: Vec<&pb::ShardInfo> = sorted_shards(&info)
        .into_iter()
        .filter(|s| !open_only || s.open)
        .filter(|s| {
            [&after, &after_filter]
                .into_iter()
                .flatten()
                .all(|a| shard_order(&s.shard_id) > shard_order(a))
        })
        .collect();
    let has_more = candidates.len() > limit;
    let page: Vec<&pb::ShardInfo> = candidates.into_iter().take(limit).collect();
    let mut out = json!({ "Shards": page.iter().map(|s| shard_json(s)).collect::<Vec<_>>() });
    if has_more && let Some(last) = page.last() {
        out["NextToken"] = json!(b64_token(&format!(
            "{SHARDS_TOKEN}\n{name}\n{}",
            last.shard_id
        )));
    }
    Ok(out)
}

// ------------------------------------------------------------------ records

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    data: Option<String>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

fn entry(
    data: Option<String>,
    key: Option<String>,
    explicit: Option<String>,
    prefix: &str,
) -> Result<PutEntry, ApiError> {
    let data_member = format!("{prefix}data");
    let key_member = format!("{prefix}partitionKey");
    let data = decode_data(&required(data, &data_member)?, &data_member)?;
    let partition_key = required(key, &key_member)?;
    validate_partition_key(&partition_key, &key_member)?;
    if let Some(h) = &explicit {
        parse_hash_key(h, &format!("{prefix}explicitHashKey"))?;
    }
    Ok(PutEntry {
        partition_key,
        explicit_hash_key: explicit,
        data,
    })
}

async fn put_record(client: &StreamClient, i: PutRecordInput) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let e = entry(i.data, i.partition_key, i.explicit_hash_key, "")?;
    let mut outcomes = client.put_records(&name, vec![e]).await?;
    match outcomes.pop() {
        Some(PutOutcome::Ok { shard_id, seq }) => Ok(json!({
            "ShardId": shard_id,
            "SequenceNumber": seq.to_string(),
            "EncryptionType": "NONE",
        })),
        Some(PutOutcome::Failed { code, message }) => {
            Err(streams::StreamError { code, message }.into())
        }
        None => Err(ApiError::internal("the put returned no outcome")),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsEntry {
    data: Option<String>,
    partition_key: Option<String>,
    explicit_hash_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    records: Option<Vec<PutRecordsEntry>>,
}

async fn put_records(client: &StreamClient, i: PutRecordsInput) -> Result<Value, ApiError> {
    let records = required(i.records, "records")?;
    if records.is_empty() {
        return Err(constraint(
            "records",
            None,
            "have length greater than or equal to 1",
        ));
    }
    if records.len() > streams::MAX_PUT_RECORDS {
        return Err(constraint(
            "records",
            None,
            &format!(
                "have length less than or equal to {}",
                streams::MAX_PUT_RECORDS
            ),
        ));
    }
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let mut entries = Vec::with_capacity(records.len());
    let mut total = 0usize;
    for (n, r) in records.into_iter().enumerate() {
        let e = entry(
            r.data,
            r.partition_key,
            r.explicit_hash_key,
            &format!("records.{}.member.", n + 1),
        )?;
        total += e.data.len() + e.partition_key.len();
        entries.push(e);
    }
    if total > streams::MAX_PUT_BYTES {
        return Err(ApiError::validation(format!(
            "Records size exceeds {} MB limit",
            streams::MAX_PUT_BYTES / (1024 * 1024)
        )));
    }
    let count = entries.len();
    let outcomes = client.put_records(&name, entries).await?;
    if outcomes.len() != count {
        return Err(ApiError::internal(format!(
            "the put returned {} outcomes for {count} records",
            outcomes.len()
        )));
    }
    let mut failed = 0usize;
    let results: Vec<Value> = outcomes
        .into_iter()
        .map(|o| match o {
            PutOutcome::Ok { shard_id, seq } => {
                json!({ "SequenceNumber": seq.to_string(), "ShardId": shard_id })
            }
            PutOutcome::Failed { code, message } => {
                failed += 1;
                json!({ "ErrorCode": code.kinesis_name(), "ErrorMessage": message })
            }
        })
        .collect();
    Ok(json!({
        "FailedRecordCount": failed,
        "Records": results,
        "EncryptionType": "NONE",
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetShardIteratorInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_id: Option<String>,
    shard_iterator_type: Option<String>,
    starting_sequence_number: Option<String>,
    timestamp: Option<Value>,
}

async fn get_shard_iterator(
    client: &StreamClient,
    i: GetShardIteratorInput,
) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let shard = required(i.shard_id, "shardId")?;
    if shard.is_empty() || shard.len() > 128 {
        return Err(constraint(
            "shardId",
            Some(shard.as_str()),
            "have length between 1 and 128",
        ));
    }
    let kind = required(i.shard_iterator_type, "shardIteratorType")?;
    let seq = |t: &str| -> Result<u64, ApiError> {
        match &i.starting_sequence_number {
            Some(s) => parse_seq(s, "startingSequenceNumber"),
            None => Err(ApiError::invalid_argument(format!(
                "StartingSequenceNumber is required for ShardIteratorType {t}"
            ))),
        }
    };
    let pos = match kind.as_str() {
        "TRIM_HORIZON" => Position::TrimHorizon,
        "LATEST" => Position::Latest,
        "AT_SEQUENCE_NUMBER" => Position::At(seq("AT_SEQUENCE_NUMBER")?),
        "AFTER_SEQUENCE_NUMBER" => Position::After(seq("AFTER_SEQUENCE_NUMBER")?),
        "AT_TIMESTAMP" => match &i.timestamp {
            Some(t) => Position::AtTimestamp(parse_timestamp_ms(t, "Timestamp")?),
            None => {
                return Err(ApiError::invalid_argument(
                    "Must specify timestampInMillis parameter for iterator of type AT_TIMESTAMP.",
                ));
            }
        },
        other => {
            return Err(constraint(
                "shardIteratorType",
                Some(other),
                "satisfy enum value set: [AFTER_SEQUENCE_NUMBER, AT_SEQUENCE_NUMBER, \
                 AT_TIMESTAMP, TRIM_HORIZON, LATEST]",
            ));
        }
    };
    let start = client.resolve(&name, &shard, pos).await?;
    let token = streams::iterator::encode(&name, &shard, start, basin_common::now_ms());
    Ok(json!({ "ShardIterator": token }))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRecordsInput {
    shard_iterator: Option<String>,
    limit: Option<i64>,
}

async fn get_records(client: &StreamClient, i: GetRecordsInput) -> Result<Value, ApiError> {
    let token = required(i.shard_iterator, "shardIterator")?;
    if token.is_empty() || token.len() > 512 {
        return Err(constraint(
            "shardIterator",
            None,
            "have length between 1 and 512",
        ));
    }
    let limit = check_range(i.limit.unwrap_or(MAX_LIMIT), 1, MAX_LIMIT, "limit")? as u32;
    let (stream, shard, seq) = streams::iterator::decode(&token, basin_common::now_ms())?;
    let resp = client.get_records(&stream, &shard, seq, limit).await?;
    let records: Vec<Value> = resp
        .records
        .iter()
        .map(|r| {
            json!({
                "SequenceNumber": r.seq.to_string(),
                "ApproximateArrivalTimestamp": r.arrival_ms as f64 / 1000.0,
                "Data": B64.encode(&r.data),
                "PartitionKey": r.partition_key,
            })
        })
        .collect();
    let mut out = json!({
        "Records": records,
        "MillisBehindLatest": resp.millis_behind.max(0),
    });
    if resp.shard_end {
        // A closed shard read to its end: no next iterator; name the children.
        let info = client.describe(&stream).await?;
        let children: Vec<Value> = sorted_shards(&info)
            .into_iter()
            .filter(|s| s.parent == shard || s.adjacent_parent == shard)
            .map(|s| {
                let parents: Vec<&str> = [s.parent.as_str(), s.adjacent_parent.as_str()]
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .collect();
                json!({
                    "ShardId": s.shard_id,
                    "ParentShards": parents,
                    "HashKeyRange": { "StartingHashKey": s.start_hash, "EndingHashKey": s.end_hash },
                })
            })
            .collect();
        out["ChildShards"] = json!(children);
    } else {
        out["NextShardIterator"] = json!(streams::iterator::encode(
            &stream,
            &shard,
            resp.next_seq,
            basin_common::now_ms()
        ));
    }
    Ok(out)
}

// ------------------------------------------------------------------ admin

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RetentionInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    retention_period_hours: Option<i64>,
}

async fn retention(
    client: &StreamClient,
    i: RetentionInput,
    change: RetentionChange,
) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let hours = required(i.retention_period_hours, "retentionPeriodHours")?;
    let hours = check_range(hours, 1, 8760, "retentionPeriodHours")? as u32;
    client.set_retention(&name, hours, change).await?;
    tracing::info!(stream = %name, hours, ?change, "kinesis retention change");
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SplitShardInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_to_split: Option<String>,
    new_starting_hash_key: Option<String>,
}

async fn split_shard(client: &StreamClient, i: SplitShardInput) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let shard = required(i.shard_to_split, "shardToSplit")?;
    let key = required(i.new_starting_hash_key, "newStartingHashKey")?;
    let key = parse_hash_key(&key, "newStartingHashKey")?;
    client.split(&name, &shard, key).await?;
    tracing::info!(stream = %name, shard = %shard, "kinesis SplitShard");
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MergeShardsInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_to_merge: Option<String>,
    adjacent_shard_to_merge: Option<String>,
}

async fn merge_shards(client: &StreamClient, i: MergeShardsInput) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let shard = required(i.shard_to_merge, "shardToMerge")?;
    let adjacent = required(i.adjacent_shard_to_merge, "adjacentShardToMerge")?;
    client.merge(&name, &shard, &adjacent).await?;
    tracing::info!(stream = %name, shard = %shard, adjacent = %adjacent, "kinesis MergeShards");
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateShardCountInput {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    target_shard_count: Option<i64>,
    scaling_type: Option<String>,
}

async fn update_shard_count(
    client: &StreamClient,
    i: UpdateShardCountInput,
) -> Result<Value, ApiError> {
    let name = stream_name(i.stream_name, i.stream_arn)?;
    let target = required(i.target_shard_count, "targetShardCount")?;
    let target = check_range(target, 1, 100_000, "targetShardCount")? as u32;
    let scaling = required(i.scaling_type, "scalingType")?;
    if scaling != "UNIFORM_SCALING" {
        return Err(constraint(
            "scalingType",
            Some(scaling.as_str()),
            "satisfy enum value set: [UNIFORM_SCALING]",
        ));
    }
    let before = client.describe(&name).await?;
    let current = before.shards.iter().filter(|s| s.open).count();
    client.update_shard_count(&name, target).await?;
    tracing::info!(stream = %name, current, target, "kinesis UpdateShardCount");
    Ok(json!({
        "StreamName": name,
        "CurrentShardCount": current,
        "TargetShardCount": target,
        "StreamARN": stream_arn(&name),
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hash_keys() {
        assert_eq!(parse_hash_key("0", "k").unwrap(), 0);
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211455", "k").unwrap(),
            u128::MAX
        );
        assert_eq!(
            parse_hash_key("340282366920938463463374607431768211456", "k")
                .unwrap_err()
                .code,
            "InvalidArgumentException"
        );
        for bad in [
            "",
            "01",
            "-1",
            "1a",
            "1111111111111111111111111111111111111111",
        ] {
            assert_eq!(
                parse_hash_key(bad, "k").unwrap_err().code,
                "ValidationException",
                "{bad}"
            );
        }
    }

    #[test]
    fn data_and_keys() {
        assert_eq!(&decode_data("aGVsbG8=", "data").unwrap()[..], b"hello");
        assert_eq!(&decode_data("aGVsbG8", "data").unwrap()[..], b"hello");
        assert_eq!(
            decode_data("not base64!", "data").unwrap_err().code,
            "SerializationException"
        );
        let big = B64.encode(vec![0u8; streams::MAX_RECORD_BYTES + 1]);
        assert_eq!(
            decode_data(&big, "data").unwrap_err().code,
            "ValidationException"
        );
        let max = B64.encode(vec![0u8; streams::MAX_RECORD_BYTES]);
        assert!(decode_data(&max, "data").is_ok());
        assert!(validate_partition_key("", "partitionKey").is_err());
        assert!(validate_partition_key(&"k".repeat(256), "partitionKey").is_ok());
        assert!(validate_partition_key(&"k".repeat(257), "partitionKey").is_err());
    }

    #[test]
    fn names_and_timestamps() {
        assert_eq!(
            stream_name(None, Some(stream_arn("abc"))).unwrap(),
            "abc".to_string()
        );
        assert!(stream_name(Some("bad name".into()), None).is_err());
        assert!(stream_name(None, None).is_err());
        assert_eq!(parse_timestamp_ms(&json!(1.5), "t").unwrap(), 1500);
        assert_eq!(parse_timestamp_ms(&json!(2), "t").unwrap(), 2000);
        assert_eq!(parse_timestamp_ms(&json!("3.25"), "t").unwrap(), 3250);
        assert!(parse_timestamp_ms(&json!([1]), "t").is_err());
        assert_eq!(un_b64_token(&b64_token("x\ny")).unwrap(), "x\ny");
        assert!(shard_order("shardId-000000000002") < shard_order("shardId-000000000010"));
    }
}
