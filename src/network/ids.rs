//! What names a channel across TaskManagers: the producer's result partition (job, execution
//! attempt, producing vertex and subtask) and the consuming subtask, which is the index of the
//! subpartition it reads (Flink's `ResultPartitionID` + subpartition index).

use std::fmt;

/// One producer subtask's output in one execution attempt of a job. A restarted job uses a new
/// attempt, so a channel of the failed attempt can never be mistaken for one of the new.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResultPartitionId {
    pub job_id: String,
    /// The execution attempt of the job (the restart count), as the JobManager numbers it.
    pub attempt: u32,
    /// The producing vertex: its index in the job's pipeline.
    pub producer_vertex: u32,
    pub producer_subtask: u32,
}

impl ResultPartitionId {
    pub fn new(
        job_id: impl Into<String>,
        attempt: u32,
        producer_vertex: u32,
        producer_subtask: u32,
    ) -> ResultPartitionId {
        ResultPartitionId {
            job_id: job_id.into(),
            attempt,
            producer_vertex,
            producer_subtask,
        }
    }
}

impl fmt::Display for ResultPartitionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "job {} attempt {} vertex {} subtask {}",
            self.job_id, self.attempt, self.producer_vertex, self.producer_subtask
        )
    }
}

/// One producer → consumer channel: the partition and the consumer subtask (= subpartition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelId {
    pub partition: ResultPartitionId,
    pub consumer_subtask: u32,
}

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} → consumer {}", self.partition, self.consumer_subtask)
    }
}
