//! The `Master` gRPC service: thin handlers over [`crate::namenode`].

mod cluster;
mod fs;

use basin_proto as pb;
use basin_proto::master_server::Master;
use tonic::{Request, Response, Status};

use crate::jobtracker::rpc as jobs;
use crate::namenode::Namenode;
use crate::streams::rpc as streams;
use crate::warehouse::rpc as warehouse;

pub struct MasterService {
    pub nn: Namenode,
}

type R<T> = Result<Response<T>, Status>;

fn count<T>(op: &'static str, r: Result<T, Status>) -> R<T> {
    metrics::counter!("basin_master_rpc_total", "op" => op, "ok" => if r.is_ok() { "true" } else { "false" }).increment(1);
    r.map(Response::new)
}

#[tonic::async_trait]
impl Master for MasterService {
    async fn mkdir(&self, r: Request<pb::MkdirRequest>) -> R<pb::Empty> {
        count("mkdir", fs::mkdir(&self.nn, r.into_inner()).await)
    }
    async fn list(&self, r: Request<pb::PathRequest>) -> R<pb::ListResponse> {
        count("list", fs::list(&self.nn, r.into_inner()))
    }
    async fn stat(&self, r: Request<pb::PathRequest>) -> R<pb::StatResponse> {
        count("stat", fs::stat(&self.nn, r.into_inner()))
    }
    async fn delete(&self, r: Request<pb::DeleteRequest>) -> R<pb::Empty> {
        count("delete", fs::delete(&self.nn, r.into_inner()).await)
    }
    async fn rename(&self, r: Request<pb::RenameRequest>) -> R<pb::Empty> {
        count("rename", fs::rename(&self.nn, r.into_inner()).await)
    }
    async fn set_replication(
        &self,
        r: Request<pb::SetReplicationRequest>,
    ) -> R<pb::SetReplicationResponse> {
        count(
            "setrep",
            fs::set_replication(&self.nn, r.into_inner()).await,
        )
    }
    async fn summary(&self, r: Request<pb::PathRequest>) -> R<pb::ContentSummary> {
        count("summary", fs::summary(&self.nn, r.into_inner()))
    }
    async fn create_file(&self, r: Request<pb::CreateFileRequest>) -> R<pb::CreateFileResponse> {
        count("create", fs::create_file(&self.nn, r.into_inner()).await)
    }
    async fn add_block(&self, r: Request<pb::AddBlockRequest>) -> R<pb::AddBlockResponse> {
        count("add_block", fs::add_block(&self.nn, r.into_inner()).await)
    }
    async fn extra_targets(
        &self,
        r: Request<pb::ExtraTargetsRequest>,
    ) -> R<pb::ExtraTargetsResponse> {
        count("extra_targets", fs::extra_targets(&self.nn, r.into_inner()))
    }
    async fn complete_file(&self, r: Request<pb::CompleteFileRequest>) -> R<pb::FileStatus> {
        count(
            "complete",
            fs::complete_file(&self.nn, r.into_inner()).await,
        )
    }
    async fn abandon_file(&self, r: Request<pb::AbandonFileRequest>) -> R<pb::Empty> {
        count("abandon", fs::abandon_file(&self.nn, r.into_inner()).await)
    }
    async fn renew_lease(&self, r: Request<pb::RenewLeaseRequest>) -> R<pb::Empty> {
        count(
            "renew_lease",
            fs::renew_lease(&self.nn, r.into_inner()).await,
        )
    }
    async fn fsck(&self, r: Request<pb::FsckRequest>) -> R<pb::FsckResponse> {
        count("fsck", fs::fsck(&self.nn, r.into_inner()))
    }
    async fn cluster_status(&self, _r: Request<pb::Empty>) -> R<pb::ClusterStatusResponse> {
        count("cluster_status", cluster::cluster_status(&self.nn))
    }
    async fn decommission(
        &self,
        r: Request<pb::DecommissionRequest>,
    ) -> R<pb::DecommissionResponse> {
        count(
            "decommission",
            cluster::decommission(&self.nn, r.into_inner()).await,
        )
    }
    async fn register(&self, r: Request<pb::RegisterRequest>) -> R<pb::RegisterResponse> {
        count(
            "register",
            cluster::register(&self.nn, r.into_inner()).await,
        )
    }
    async fn heartbeat(&self, r: Request<pb::HeartbeatRequest>) -> R<pb::HeartbeatResponse> {
        count(
            "heartbeat",
            cluster::heartbeat(&self.nn, r.into_inner()).await,
        )
    }
    async fn submit_job(&self, r: Request<pb::SubmitJobRequest>) -> R<pb::SubmitJobResponse> {
        count("submit_job", jobs::submit(&self.nn, r.into_inner()).await)
    }
    async fn get_job(&self, r: Request<pb::JobRequest>) -> R<pb::JobStatus> {
        count("get_job", jobs::get(&self.nn, r.into_inner()))
    }
    async fn list_jobs(&self, _r: Request<pb::Empty>) -> R<pb::ListJobsResponse> {
        count("list_jobs", jobs::list(&self.nn))
    }
    async fn kill_job(&self, r: Request<pb::JobRequest>) -> R<pb::JobStatus> {
        count("kill_job", jobs::kill(&self.nn, r.into_inner()).await)
    }
    async fn task_done(&self, r: Request<pb::TaskDoneRequest>) -> R<pb::Empty> {
        count("task_done", jobs::task_done(&self.nn, r.into_inner()).await)
    }
    async fn block_report(&self, r: Request<pb::BlockReportRequest>) -> R<pb::Empty> {
        count(
            "block_report",
            cluster::block_report(&self.nn, r.into_inner()),
        )
    }
    async fn create_stream(&self, r: Request<pb::CreateStreamRequest>) -> R<pb::StreamInfo> {
        count(
            "create_stream",
            streams::create(&self.nn, r.into_inner()).await,
        )
    }
    async fn delete_stream(&self, r: Request<pb::StreamRequest>) -> R<pb::Empty> {
        count(
            "delete_stream",
            streams::delete(&self.nn, r.into_inner()).await,
        )
    }
    async fn describe_stream(&self, r: Request<pb::StreamRequest>) -> R<pb::StreamInfo> {
        count(
            "describe_stream",
            streams::describe(&self.nn, &r.into_inner().name),
        )
    }
    async fn list_streams(&self, _r: Request<pb::Empty>) -> R<pb::ListStreamsResponse> {
        count("list_streams", streams::list(&self.nn))
    }
    async fn split_shard(&self, r: Request<pb::SplitShardRequest>) -> R<pb::StreamInfo> {
        count(
            "split_shard",
            streams::split(&self.nn, r.into_inner()).await,
        )
    }
    async fn merge_shards(&self, r: Request<pb::MergeShardsRequest>) -> R<pb::StreamInfo> {
        count(
            "merge_shards",
            streams::merge(&self.nn, r.into_inner()).await,
        )
    }
    async fn update_shard_count(
        &self,
        r: Request<pb::UpdateShardCountRequest>,
    ) -> R<pb::StreamInfo> {
        count(
            "update_shard_count",
            streams::update_shard_count(&self.nn, r.into_inner()).await,
        )
    }
    async fn set_retention(&self, r: Request<pb::RetentionRequest>) -> R<pb::StreamInfo> {
        count(
            "set_retention",
            streams::set_retention(&self.nn, r.into_inner()).await,
        )
    }
    async fn register_consumer(
        &self,
        r: Request<pb::RegisterConsumerRequest>,
    ) -> R<pb::StreamInfo> {
        count(
            "register_consumer",
            streams::register_consumer(&self.nn, r.into_inner()).await,
        )
    }
    async fn update_isr(&self, r: Request<pb::UpdateIsrRequest>) -> R<pb::Empty> {
        count(
            "update_isr",
            streams::update_isr(&self.nn, r.into_inner()).await,
        )
    }
    async fn group_heartbeat(
        &self,
        r: Request<pb::GroupHeartbeatRequest>,
    ) -> R<pb::GroupHeartbeatResponse> {
        count(
            "group_heartbeat",
            streams::group_heartbeat(&self.nn, r.into_inner()).await,
        )
    }
    async fn register_compute(
        &self,
        r: Request<pb::RegisterComputeRequest>,
    ) -> R<pb::RegisterComputeResponse> {
        count(
            "register_compute",
            warehouse::register_compute(&self.nn, r.into_inner()).await,
        )
    }
    async fn get_catalog(&self, _r: Request<pb::Empty>) -> R<pb::WhCatalog> {
        count("get_catalog", warehouse::catalog(&self.nn))
    }
    async fn create_table(&self, r: Request<pb::CreateTableRequest>) -> R<pb::Empty> {
        count(
            "create_table",
            warehouse::create_table(&self.nn, r.into_inner()).await,
        )
    }
    async fn drop_table(&self, r: Request<pb::DropTableRequest>) -> R<pb::Empty> {
        count(
            "drop_table",
            warehouse::drop_table(&self.nn, r.into_inner()).await,
        )
    }
    async fn commit_segments(&self, r: Request<pb::CommitSegmentsRequest>) -> R<pb::Empty> {
        count(
            "commit_segments",
            warehouse::commit_segments(&self.nn, r.into_inner()).await,
        )
    }
    async fn record_load_errors(&self, r: Request<pb::RecordLoadErrorsRequest>) -> R<pb::Empty> {
        count(
            "record_load_errors",
            warehouse::record_load_errors(&self.nn, r.into_inner()).await,
        )
    }
    async fn record_snapshot(&self, r: Request<pb::RecordSnapshotRequest>) -> R<pb::Empty> {
        count(
            "record_snapshot",
            warehouse::record_snapshot(&self.nn, r.into_inner()).await,
        )
    }
    async fn delete_snapshot(&self, r: Request<pb::DeleteSnapshotRequest>) -> R<pb::Empty> {
        count(
            "delete_snapshot",
            warehouse::delete_snapshot(&self.nn, r.into_inner()).await,
        )
    }
    async fn rename_table(&self, r: Request<pb::RenameTableRequest>) -> R<pb::Empty> {
        count(
            "rename_table",
            warehouse::rename_table(&self.nn, r.into_inner()).await,
        )
    }
    async fn create_view(&self, r: Request<pb::CreateViewRequest>) -> R<pb::Empty> {
        count(
            "create_view",
            warehouse::create_view(&self.nn, r.into_inner()).await,
        )
    }
    async fn drop_view(&self, r: Request<pb::DropViewRequest>) -> R<pb::Empty> {
        count(
            "drop_view",
            warehouse::drop_view(&self.nn, r.into_inner()).await,
        )
    }
    async fn create_schema(&self, r: Request<pb::CreateSchemaRequest>) -> R<pb::Empty> {
        count(
            "create_schema",
            warehouse::create_schema(&self.nn, r.into_inner()).await,
        )
    }
    async fn drop_schema(&self, r: Request<pb::DropSchemaRequest>) -> R<pb::Empty> {
        count(
            "drop_schema",
            warehouse::drop_schema(&self.nn, r.into_inner()).await,
        )
    }
    async fn create_user(&self, r: Request<pb::CreateUserRequest>) -> R<pb::Empty> {
        count(
            "create_user",
            warehouse::create_user(&self.nn, r.into_inner()).await,
        )
    }
    async fn alter_user(&self, r: Request<pb::AlterUserRequest>) -> R<pb::Empty> {
        count(
            "alter_user",
            warehouse::alter_user(&self.nn, r.into_inner()).await,
        )
    }
    async fn drop_user(&self, r: Request<pb::DropUserRequest>) -> R<pb::Empty> {
        count(
            "drop_user",
            warehouse::drop_user(&self.nn, r.into_inner()).await,
        )
    }
    async fn report_bad_block(&self, r: Request<pb::BadBlockRequest>) -> R<pb::Empty> {
        count(
            "bad_block",
            cluster::report_bad_block(&self.nn, r.into_inner()),
        )
    }
}
