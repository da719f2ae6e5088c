//! The one table from our typed errors to Kafka error codes. Handlers never pick codes for these errors
//! themselves. Nothing on the produce path maps to UNKNOWN_SERVER_ERROR: clients treat it as retriable with
//! unknown outcome, which breaks idempotence guarantees in some of them (Redpanda #5356).

use kafka_protocol::ResponseError;

use crate::config::ConfigError;
use crate::controller::cluster::AlterPartitionError;
use crate::controller::ControllerError;
use crate::group::runtime::CoordinatorError;
use crate::log::LogError;
use crate::partition::producer_state::SequenceError;
use crate::partition::PartitionError;
use crate::txn::TxnError;

pub trait KafkaCode {
    fn kafka_code(&self) -> ResponseError;

    fn error_code(&self) -> i16 {
        self.kafka_code().code()
    }
}

impl KafkaCode for LogError {
    fn kafka_code(&self) -> ResponseError {
        match self {
            LogError::CorruptMessage(_) => ResponseError::CorruptMessage,
            LogError::RecordTooLarge { .. } => ResponseError::MessageTooLarge,
            LogError::UnsupportedCompression(_) => ResponseError::UnsupportedCompressionType,
            LogError::InvalidRecord(_) => ResponseError::InvalidRecord,
            LogError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
            LogError::Io(_) => ResponseError::KafkaStorageError,
        }
    }
}

impl KafkaCode for TxnError {
    fn kafka_code(&self) -> ResponseError {
        match self {
            TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            TxnError::ProducerFenced => ResponseError::ProducerFenced,
            TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
            TxnError::InvalidTxnState => ResponseError::InvalidTxnState,
            TxnError::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
            TxnError::NotCoordinator => ResponseError::NotCoordinator,
            TxnError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
            TxnError::NotAvailable => ResponseError::CoordinatorNotAvailable,
            TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        }
    }
}

impl KafkaCode for SequenceError {
    fn kafka_code(&self) -> ResponseError {
        match self {
            SequenceError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
            SequenceError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        }
    }
}

impl KafkaCode for PartitionError {
    fn kafka_code(&self) -> ResponseError {
        match self {
            PartitionError::Log(e) => e.kafka_code(),
            PartitionError::Sequence(e) => e.kafka_code(),
            PartitionError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas,
            PartitionError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            PartitionError::UnknownLeaderEpoch { .. } => ResponseError::UnknownLeaderEpoch,
            PartitionError::BatchCount(_) | PartitionError::MissingRecords => ResponseError::InvalidRecord,
            PartitionError::FlushTask(_) => ResponseError::KafkaStorageError,
            PartitionError::NotLeaderOrFollower { .. } => ResponseError::NotLeaderOrFollower,
            // Kafka: a replica missing from the assignment under a matching epoch may be one the leader has
            // not learnt of yet (a reassignment), so the follower retries; without an epoch it cannot tell.
            PartitionError::UnknownReplica { request_had_epoch: true, .. } => ResponseError::UnknownLeaderEpoch,
            PartitionError::UnknownReplica { request_had_epoch: false, .. } => ResponseError::NotLeaderOrFollower,
            PartitionError::NotEnoughReplicasAfterAppend { .. } => ResponseError::NotEnoughReplicasAfterAppend,
            PartitionError::RequestTimedOut => ResponseError::RequestTimedOut,
            PartitionError::OffsetNotAvailable { .. } => ResponseError::OffsetNotAvailable,
            PartitionError::CoordinatorFenced { .. } => ResponseError::TransactionCoordinatorFenced,
            PartitionError::InvalidTxnState { .. } => ResponseError::InvalidTxnState,
        }
    }
}

impl KafkaCode for ConfigError {
    fn kafka_code(&self) -> ResponseError {
        ResponseError::InvalidConfig
    }
}

impl KafkaCode for ControllerError {
    fn kafka_code(&self) -> ResponseError {
        match self {
            ControllerError::TopicExists(_) => ResponseError::TopicAlreadyExists,
            ControllerError::UnknownTopic(_) => ResponseError::UnknownTopicOrPartition,
            ControllerError::UnknownTopicId(_) => ResponseError::UnknownTopicId,
            ControllerError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
            ControllerError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            ControllerError::InvalidReplicationFactor { .. } => ResponseError::InvalidReplicationFactor,
            ControllerError::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            ControllerError::InvalidConfig(e) => e.kafka_code(),
            ControllerError::NullConfigValues(_) => ResponseError::InvalidConfig,
            ControllerError::TopicDeletionDisabled => ResponseError::TopicDeletionDisabled,
            ControllerError::InvalidRequest(_) => ResponseError::InvalidRequest,
            ControllerError::Io(_) => ResponseError::KafkaStorageError,
            ControllerError::NotController(_) => ResponseError::NotController,
            ControllerError::Remote { code, .. } => ResponseError::try_from_code(*code).unwrap_or(ResponseError::UnknownServerError),
            ControllerError::AlterPartition(e) => match e {
                AlterPartitionError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
                AlterPartitionError::NotLeader(_) => ResponseError::NotLeaderOrFollower,
                AlterPartitionError::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
                AlterPartitionError::InvalidUpdateVersion { .. } => ResponseError::InvalidUpdateVersion,
                AlterPartitionError::InvalidIsr(_) => ResponseError::IneligibleReplica,
            },
            ControllerError::StaleBrokerEpoch(_) => ResponseError::StaleBrokerEpoch,
            ControllerError::ElectionNotNeeded => ResponseError::ElectionNotNeeded,
            ControllerError::PreferredLeaderNotAvailable(_) => ResponseError::PreferredLeaderNotAvailable,
            ControllerError::EligibleLeadersNotAvailable(_) => ResponseError::EligibleLeadersNotAvailable,
            ControllerError::NoReassignmentInProgress(_) => ResponseError::NoReassignmentInProgress,
        }
    }
}

impl KafkaCode for CoordinatorError {
    fn kafka_code(&self) -> ResponseError {
        match self {
            CoordinatorError::NotCoordinator => ResponseError::NotCoordinator,
            CoordinatorError::LoadInProgress => ResponseError::CoordinatorLoadInProgress,
            CoordinatorError::NotAvailable => ResponseError::CoordinatorNotAvailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_path_errors_have_specific_codes() {
        let errors: Vec<PartitionError> = vec![
            LogError::CorruptMessage("crc".into()).into(),
            LogError::RecordTooLarge { size: 2, max: 1 }.into(),
            LogError::UnsupportedCompression(7).into(),
            LogError::Io(std::io::Error::other("disk")).into(),
            SequenceError::OutOfOrderSequence { producer_id: 1, expected: 1, got: 3 }.into(),
            PartitionError::NotEnoughReplicas { isr: 1, min: 2 },
            PartitionError::BatchCount(2),
            PartitionError::NotLeaderOrFollower { leader: 2, leader_epoch: 1 },
            PartitionError::NotEnoughReplicasAfterAppend { isr: 1, min: 2 },
            PartitionError::RequestTimedOut,
            PartitionError::InvalidTxnState { producer_id: 1 },
        ];
        let codes: Vec<i16> = errors.iter().map(|e| e.error_code()).collect();
        assert_eq!(codes, vec![2, 10, 76, 56, 45, 19, 87, 6, 20, 7, 48]);
        assert!(!codes.contains(&ResponseError::UnknownServerError.code()));
    }
}
