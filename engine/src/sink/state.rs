//! What the sink remembers: one compact record per accepted message (bodies only
//! when a test asks, [`super::SinkHandle::keep_bodies`]), counters, and the
//! active rules. Shared by every session, the HTTP API and
//! [`super::SinkHandle`].
//!
//! Guarantees: a message is recorded before its 2xx reply is written, so once a
//! client sees "250" the record is visible; records are ordered by a sequence
//! number that only grows (also across `SinkState::reset`), so paging with
//! `after=` never skips; locks are plain mutexes held for a few map updates and
//! never across an `.await`, which keeps up with well over 10k messages/s.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::rules::{Action, Rule, RuleError, RuleSet, RuleStage};

/// One accepted message, as recorded (the body itself is not kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedMessage {
    /// Order of acceptance, from 1; never reused.
    pub seq: u64,
    /// The SMTP connection it came over (connections are numbered from 1).
    pub connection_id: u64,
    /// The client's address: the source IP the sender bound.
    pub source_ip: IpAddr,
    /// The Message-ID header without angle brackets, if the message had one.
    pub message_id: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Size of the message as received, after dot-unstuffing.
    pub size: usize,
    /// It arrived over TLS (after STARTTLS).
    #[serde(default)]
    pub tls: bool,
    /// Its SMTP transaction's number (MAIL FROM), from 1 over every connection
    /// and never reused: a message whose number is at most `transactions_begun`
    /// read at some moment had its transaction under way (or done) by then.
    #[serde(default)]
    pub transaction: u64,
    /// When its transaction began (MAIL FROM), in unix milliseconds.
    #[serde(default)]
    pub begun_at_ms: i64,
}

/// Counters since start (or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkStats {
    /// SMTP connections accepted.
    pub connections: u64,
    /// Connections open right now.
    pub open_connections: u64,
    pub messages_accepted: u64,
    /// Scripted 4xx replies at RCPT or end of data.
    pub rejected_4xx: u64,
    /// Scripted 5xx replies at RCPT or end of data.
    pub rejected_5xx: u64,
    /// Connections dropped by a `drop_connection` rule.
    pub dropped_connections: u64,
    /// Distinct Message-IDs received.
    pub unique_message_ids: u64,
    /// Distinct Message-IDs received more than once.
    pub duplicate_message_ids: u64,
    /// Extra copies: messages whose Message-ID had been seen before.
    pub duplicate_messages: u64,
    pub messages_without_message_id: u64,
    /// Accepted messages that arrived over TLS (after STARTTLS).
    #[serde(default)]
    pub tls_messages: u64,
    /// SMTP transactions begun (MAIL FROM accepted), never reset: see
    /// [`ReceivedMessage::transaction`].
    #[serde(default)]
    pub transactions_begun: u64,
    /// Accepted messages per client source IP.
    pub per_source_ip: BTreeMap<IpAddr, u64>,
    /// Connections accepted per client source IP.
    pub connections_per_source_ip: BTreeMap<IpAddr, u64>,
    /// Most connections open at once per client source IP.
    pub peak_open_connections_per_source_ip: BTreeMap<IpAddr, u64>,
}

/// The fields of a message the session hands over for recording.
#[derive(Debug)]
pub(crate) struct Accepted {
    pub connection_id: u64,
    pub source_ip: IpAddr,
    pub message_id: Option<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub size: usize,
    pub tls: bool,
    pub transaction: u64,
    pub begun_at_ms: i64,
    /// The message as received, when bodies are kept.
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct Records {
    messages: Vec<ReceivedMessage>,
    /// Kept bodies by sequence number.
    bodies: HashMap<u64, Vec<u8>>,
    message_id_counts: HashMap<String, u32>,
    duplicate_message_ids: u64,
    duplicate_messages: u64,
    without_message_id: u64,
    tls_messages: u64,
    per_source_ip: HashMap<IpAddr, u64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct SourceConnections {
    total: u64,
    open: u64,
    peak: u64,
}

#[derive(Debug)]
pub(crate) struct SinkState {
    next_seq: AtomicU64,
    next_connection_id: AtomicU64,
    next_transaction: AtomicU64,
    rejected_4xx: AtomicU64,
    rejected_5xx: AtomicU64,
    dropped: AtomicU64,
    records: Mutex<Records>,
    sources: Mutex<HashMap<IpAddr, SourceConnections>>,
    rules: Mutex<RuleSet>,
    /// Keep the bytes of accepted messages (tests that read what was sent).
    keep_bodies: AtomicBool,
    /// Woken on every accepted message, for `wait_for_*` helpers.
    pub accepted: Notify,
}

/// A poisoned lock only means another session panicked mid-update of counters;
/// the data is still the best we have.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SinkState {
    pub fn new(rules: RuleSet) -> Self {
        SinkState {
            next_seq: AtomicU64::new(1),
            next_connection_id: AtomicU64::new(1),
            next_transaction: AtomicU64::new(1),
            rejected_4xx: AtomicU64::new(0),
            rejected_5xx: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            records: Mutex::new(Records::default()),
            sources: Mutex::new(HashMap::new()),
            rules: Mutex::new(rules),
            keep_bodies: AtomicBool::new(false),
            accepted: Notify::new(),
        }
    }

    /// A new connection from `ip`; returns its id.
    pub fn connection_opened(&self, ip: IpAddr) -> u64 {
        let mut sources = lock(&self.sources);
        let source = sources.entry(ip).or_default();
        source.total += 1;
        source.open += 1;
        source.peak = source.peak.max(source.open);
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A MAIL FROM was accepted; returns the transaction's number.
    pub fn begin_transaction(&self) -> u64 {
        self.next_transaction.fetch_add(1, Ordering::Relaxed)
    }

    pub fn connection_closed(&self, ip: IpAddr) {
        if let Some(source) = lock(&self.sources).get_mut(&ip) {
            source.open = source.open.saturating_sub(1);
        }
    }

    /// Records an accepted message; returns its sequence number.
    pub fn record(&self, message: Accepted) -> u64 {
        let seq = {
            let mut records = lock(&self.records);
            // Taken under the lock so `messages` stays sorted by seq.
            let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
            let records = &mut *records;
            match &message.message_id {
                Some(id) => {
                    let count = records.message_id_counts.entry(id.clone()).or_insert(0);
                    *count += 1;
                    if *count == 2 {
                        records.duplicate_message_ids += 1;
                    }
                    if *count >= 2 {
                        records.duplicate_messages += 1;
                    }
                }
                None => records.without_message_id += 1,
            }
            *records.per_source_ip.entry(message.source_ip).or_insert(0) += 1;
            if message.tls {
                records.tls_messages += 1;
            }
            if let Some(body) = message.body {
                records.bodies.insert(seq, body);
            }
            records.messages.push(ReceivedMessage {
                seq,
                connection_id: message.connection_id,
                source_ip: message.source_ip,
                message_id: message.message_id,
                mail_from: message.mail_from,
                rcpt_to: message.rcpt_to,
                size: message.size,
                tls: message.tls,
                transaction: message.transaction,
                begun_at_ms: message.begun_at_ms,
            });
            seq
        };
        self.accepted.notify_waiters();
        seq
    }

    /// Counts a scripted non-2xx reply by its class.
    pub fn count_rejection(&self, reply: &str) {
        match reply.as_bytes().first() {
            Some(b'4') => self.rejected_4xx.fetch_add(1, Ordering::Relaxed),
            Some(b'5') => self.rejected_5xx.fetch_add(1, Ordering::Relaxed),
            _ => return,
        };
    }

    pub fn count_drop(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    pub fn apply_rules<'r>(
        &self,
        stage: RuleStage,
        recipients: impl IntoIterator<Item = &'r str>,
    ) -> Option<Action> {
        let mut rules = lock(&self.rules);
        if rules.is_empty() {
            return None;
        }
        rules.apply(stage, recipients)
    }

    pub fn set_rules(&self, rules: Vec<Rule>) -> Result<(), RuleError> {
        *lock(&self.rules) = RuleSet::new(rules)?;
        Ok(())
    }

    pub fn rules(&self) -> Vec<Rule> {
        lock(&self.rules).rules().to_vec()
    }

    pub fn accepted_count(&self) -> u64 {
        lock(&self.records).messages.len() as u64
    }

    pub fn stats(&self) -> SinkStats {
        let sources = lock(&self.sources).clone();
        let records = lock(&self.records);
        SinkStats {
            connections: sources.values().map(|s| s.total).sum(),
            open_connections: sources.values().map(|s| s.open).sum(),
            messages_accepted: records.messages.len() as u64,
            rejected_4xx: self.rejected_4xx.load(Ordering::Relaxed),
            rejected_5xx: self.rejected_5xx.load(Ordering::Relaxed),
            dropped_connections: self.dropped.load(Ordering::Relaxed),
            unique_message_ids: records.message_id_counts.len() as u64,
            duplicate_message_ids: records.duplicate_message_ids,
            duplicate_messages: records.duplicate_messages,
            messages_without_message_id: records.without_message_id,
            tls_messages: records.tls_messages,
            transactions_begun: self.next_transaction.load(Ordering::Relaxed) - 1,
            per_source_ip: records
                .per_source_ip
                .iter()
                .map(|(k, v)| (*k, *v))
                .collect(),
            connections_per_source_ip: sources.iter().map(|(k, s)| (*k, s.total)).collect(),
            peak_open_connections_per_source_ip: sources
                .iter()
                .map(|(k, s)| (*k, s.peak))
                .collect(),
        }
    }

    pub fn set_keep_bodies(&self, keep: bool) {
        self.keep_bodies.store(keep, Ordering::Relaxed);
    }

    pub fn keeps_bodies(&self) -> bool {
        self.keep_bodies.load(Ordering::Relaxed)
    }

    /// The kept body of message `seq`.
    pub fn body(&self, seq: u64) -> Option<Vec<u8>> {
        lock(&self.records).bodies.get(&seq).cloned()
    }

    /// Every record, in order.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        lock(&self.records).messages.clone()
    }

    /// Up to `limit` records with `seq > after`, in order.
    pub fn messages_after(&self, after: u64, limit: usize) -> Vec<ReceivedMessage> {
        let records = lock(&self.records);
        let start = records.messages.partition_point(|m| m.seq <= after);
        records.messages[start..]
            .iter()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Message-IDs received more than once, sorted.
    pub fn duplicate_ids(&self) -> Vec<String> {
        let records = lock(&self.records);
        let mut ids: Vec<String> = records
            .message_id_counts
            .iter()
            .filter(|(_, count)| **count > 1)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Forgets records, counters and rule use counts; keeps the rules, the
    /// sequence numbers and the open-connection gauges.
    pub fn reset(&self) {
        *lock(&self.records) = Records::default();
        for source in lock(&self.sources).values_mut() {
            *source = SourceConnections {
                total: 0,
                open: source.open,
                peak: source.open,
            };
        }
        self.rejected_4xx.store(0, Ordering::Relaxed);
        self.rejected_5xx.store(0, Ordering::Relaxed);
        self.dropped.store(0, Ordering::Relaxed);
        lock(&self.rules).reset_uses();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(ip: [u8; 4], id: Option<&str>) -> Accepted {
        Accepted {
            connection_id: 1,
            source_ip: IpAddr::from(ip),
            message_id: id.map(str::to_owned),
            mail_from: "s@a.test".into(),
            rcpt_to: vec!["r@b.test".into()],
            size: 10,
            tls: false,
            transaction: 1,
            begun_at_ms: 0,
            body: None,
        }
    }

    #[test]
    fn counts_duplicates_and_sources() {
        let state = SinkState::new(RuleSet::default());
        let ip = state.connection_opened(IpAddr::from([127, 0, 0, 2]));
        assert_eq!(ip, 1);
        state.record(accepted([127, 0, 0, 2], Some("a@x")));
        state.record(accepted([127, 0, 0, 2], Some("a@x")));
        state.record(accepted([127, 0, 0, 3], Some("a@x")));
        state.record(accepted([127, 0, 0, 3], Some("b@x")));
        state.record(accepted([127, 0, 0, 3], None));
        let stats = state.stats();
        assert_eq!(stats.messages_accepted, 5);
        assert_eq!(stats.unique_message_ids, 2);
        assert_eq!(stats.duplicate_message_ids, 1);
        assert_eq!(stats.duplicate_messages, 2);
        assert_eq!(stats.messages_without_message_id, 1);
        assert_eq!(stats.per_source_ip[&IpAddr::from([127, 0, 0, 3])], 3);
        assert_eq!(stats.connections, 1);
        assert_eq!(state.duplicate_ids(), ["a@x"]);

        let page = state.messages_after(2, 2);
        assert_eq!(page.iter().map(|m| m.seq).collect::<Vec<_>>(), [3, 4]);

        let json = serde_json::to_value(&stats).unwrap();
        assert_eq!(json["per_source_ip"]["127.0.0.3"], 3);
        let back: SinkStats = serde_json::from_value(json).unwrap();
        assert_eq!(back, stats);

        state.reset();
        let stats = state.stats();
        assert_eq!(stats.messages_accepted, 0);
        assert_eq!(stats.open_connections, 1);
        assert_eq!(state.record(accepted([127, 0, 0, 2], None)), 6);
    }
}
