//! The job payload stored in Redis lists: compact, versioned bincode.
//!
//! Written by the Feeder, read by Tenant and Ip actors. Every stored version keeps
//! decoding forever: a new field means a new variant (`V2`), never a change to `V1`.
//! The types stay free of serde `tag`, `flatten` and `skip*`, which bincode cannot carry.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::domain::Band;

/// What one Redis list element holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobPayload {
    V1(JobV1),
}

/// Version 1: everything a delivery needs besides the campaign (cached per node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobV1 {
    pub job_id: Uuid,
    pub tenant_id: Uuid,
    pub campaign_id: Uuid,
    pub priority: i32,
    /// Normalised recipient address.
    pub recipient: String,
    /// The lead's template fields as a JSON object text (bincode cannot carry
    /// `serde_json::Value`, which needs `deserialize_any`).
    pub fields_json: String,
    /// Attempts made before this one.
    pub attempts: i32,
    /// When the job became due (unix ms): the start of its pick-up latency.
    pub due_ms: i64,
}

#[derive(Debug, Error)]
pub enum PayloadError {
    #[error("payload does not decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("payload does not encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("payload has {0} trailing bytes")]
    Trailing(usize),
}

impl JobPayload {
    pub fn encode(&self) -> Result<Vec<u8>, PayloadError> {
        Ok(bincode::serde::encode_to_vec(
            self,
            bincode::config::standard(),
        )?)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, PayloadError> {
        let (payload, read) =
            bincode::serde::decode_from_slice(bytes, bincode::config::standard())?;
        if read != bytes.len() {
            return Err(PayloadError::Trailing(bytes.len() - read));
        }
        Ok(payload)
    }

    /// The latest shape, whatever version was stored.
    pub fn into_job(self) -> JobV1 {
        match self {
            JobPayload::V1(job) => job,
        }
    }

    /// The latest shape, borrowed.
    pub fn job(&self) -> &JobV1 {
        match self {
            JobPayload::V1(job) => job,
        }
    }

    pub fn job_id(&self) -> Uuid {
        self.job().job_id
    }
}

impl JobV1 {
    pub fn band(&self) -> Band {
        Band::of(self.priority)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> JobPayload {
        JobPayload::V1(JobV1 {
            job_id: Uuid::from_u128(0x0102),
            tenant_id: Uuid::from_u128(0x0304),
            campaign_id: Uuid::from_u128(0x0506),
            priority: 100,
            recipient: "ann@example.com".into(),
            fields_json: r#"{"name":"Ann"}"#.into(),
            attempts: 1,
            due_ms: 1_700_000_000_000,
        })
    }

    #[test]
    fn round_trips() {
        let bytes = sample().encode().unwrap();
        assert_eq!(JobPayload::decode(&bytes).unwrap(), sample());
    }

    #[test]
    fn v1_fixture_keeps_decoding() {
        // Bytes written by version 1 of the engine. Never change this fixture:
        // if it stops decoding, jobs already in Redis would be lost on upgrade.
        let fixture = include_bytes!("../fixtures/job_payload_v1.bin");
        assert_eq!(JobPayload::decode(fixture).unwrap(), sample());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(JobPayload::decode(&[0xff, 0xff, 0xff]).is_err());
        let mut bytes = sample().encode().unwrap();
        bytes.push(0);
        assert!(matches!(
            JobPayload::decode(&bytes),
            Err(PayloadError::Trailing(1))
        ));
    }
}
