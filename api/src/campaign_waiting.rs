//! A campaign's `waiting_reason` and `next_send_at` (`GET /v1/campaigns/{id}`),
//! decided from [`WaitFacts`] (`penguin_engine::store::waiting`, which reads the
//! send window and daily cap with the engine's own SQL arithmetic). Pure: no
//! clock, no database, so every case is unit-tested here.
//!
//! Only a `running` campaign with jobs left (waiting or in flight) waits for
//! anything; the first reason that holds, in this order, is shown:
//!
//! 1. `daily_cap`: today's starts (campaign-local day) reached the cap; next
//!    send at the next local day's first window opening.
//! 2. `send_window`: the window is closed; next send at its next opening.
//! 3. `ips_paused`: every IP of the pool is paused; next send when the first
//!    automatic pause ends (null when they wait for a resume by hand).
//! 4. `ip_allowance`: nothing is due or in flight and the first waiting job is
//!    `pending` with a later `run_at` — set when every IP of the pool used its
//!    hourly or daily allowance (or is outside its active hours); next send at
//!    that `run_at`.
//!
//! Otherwise no reason: `next_send_at` is now while jobs are due or in flight,
//! or the first waiting job's later `run_at` (a retry backoff).

use penguin_engine::domain::CampaignStatus;
use penguin_engine::store::waiting::WaitFacts;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// Why a running campaign's jobs are not being sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WaitingReason {
    /// Outside the campaign's `send_window`.
    SendWindow,
    /// The campaign's `daily_cap` is used for its local day.
    DailyCap,
    /// Every IP of the campaign is paused.
    IpsPaused,
    /// Every IP of the campaign used its hourly or daily allowance.
    IpAllowance,
}

/// `(waiting_reason, next_send_at)` of a campaign in `status` at `now`.
pub fn waiting(
    status: CampaignStatus,
    facts: &WaitFacts,
    now: OffsetDateTime,
) -> (Option<WaitingReason>, Option<OffsetDateTime>) {
    if status != CampaignStatus::Running || (facts.first_waiting.is_none() && !facts.in_flight) {
        return (None, None);
    }
    if facts.cap_used {
        return (Some(WaitingReason::DailyCap), facts.next_day_open);
    }
    if !facts.window_open {
        return (Some(WaitingReason::SendWindow), facts.window_next);
    }
    if facts.ips_paused {
        return (Some(WaitingReason::IpsPaused), facts.ips_resume);
    }
    match facts.first_waiting {
        Some((at, pending)) if at > now && !facts.in_flight => {
            let reason = pending.then_some(WaitingReason::IpAllowance);
            (reason, Some(at))
        }
        _ => (None, Some(now)),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const NOW: OffsetDateTime = datetime!(2026-12-09 10:00 UTC);

    fn sending() -> WaitFacts {
        WaitFacts {
            window_open: true,
            window_next: Some(NOW),
            cap_used: false,
            next_day_open: Some(datetime!(2026-12-10 00:00 UTC)),
            ips_paused: false,
            ips_resume: None,
            first_waiting: Some((datetime!(2026-12-09 09:00 UTC), true)),
            in_flight: true,
        }
    }

    #[test]
    fn a_sending_campaign_waits_for_nothing_and_sends_now() {
        assert_eq!(
            waiting(CampaignStatus::Running, &sending(), NOW),
            (None, Some(NOW))
        );
    }

    #[test]
    fn only_a_running_campaign_with_jobs_left_waits() {
        for status in [
            CampaignStatus::Paused,
            CampaignStatus::Draft,
            CampaignStatus::Completed,
        ] {
            assert_eq!(waiting(status, &sending(), NOW), (None, None));
        }
        let done = WaitFacts {
            first_waiting: None,
            in_flight: false,
            cap_used: true,
            ..sending()
        };
        assert_eq!(waiting(CampaignStatus::Running, &done, NOW), (None, None));
    }

    #[test]
    fn a_used_cap_comes_first_and_waits_for_the_next_local_day() {
        let facts = WaitFacts {
            cap_used: true,
            window_open: false,
            ips_paused: true,
            ..sending()
        };
        assert_eq!(
            waiting(CampaignStatus::Running, &facts, NOW),
            (Some(WaitingReason::DailyCap), facts.next_day_open)
        );
    }

    #[test]
    fn a_closed_window_waits_for_its_next_opening() {
        let opening = datetime!(2026-12-09 21:00 UTC);
        let facts = WaitFacts {
            window_open: false,
            window_next: Some(opening),
            ips_paused: true,
            ..sending()
        };
        assert_eq!(
            waiting(CampaignStatus::Running, &facts, NOW),
            (Some(WaitingReason::SendWindow), Some(opening))
        );
    }

    #[test]
    fn paused_ips_wait_for_the_first_automatic_resume() {
        let resume = datetime!(2026-12-09 12:00 UTC);
        let facts = WaitFacts {
            ips_paused: true,
            ips_resume: Some(resume),
            ..sending()
        };
        assert_eq!(
            waiting(CampaignStatus::Running, &facts, NOW),
            (Some(WaitingReason::IpsPaused), Some(resume))
        );
    }

    #[test]
    fn pending_jobs_postponed_by_the_allowance_wait_for_it() {
        let later = datetime!(2026-12-09 11:00 UTC);
        let facts = WaitFacts {
            first_waiting: Some((later, true)),
            in_flight: false,
            ..sending()
        };
        assert_eq!(
            waiting(CampaignStatus::Running, &facts, NOW),
            (Some(WaitingReason::IpAllowance), Some(later))
        );
        // A retry backoff (`deferred`) is no reason, only a later time.
        let deferred = WaitFacts {
            first_waiting: Some((later, false)),
            ..facts
        };
        assert_eq!(
            waiting(CampaignStatus::Running, &deferred, NOW),
            (None, Some(later))
        );
    }
}
