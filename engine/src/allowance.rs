//! How much one IP may send: its daily allowance (warm-up day's volume, or the
//! configured volume of a warm IP, times its health factor), spread evenly over its
//! active hours, capped per hour. Pure arithmetic; the Ip actor enforces it with
//! Redis counters ([`crate::queue::counters`]) and the API shows it.

/// The limits of one IP for one of its local days.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayPlan {
    /// Messages the whole day may carry; `None` = unlimited.
    pub daily: Option<u32>,
    /// Active hours of the IP-local day: `[start, end)`, 0..=24.
    pub active_start: u8,
    pub active_end: u8,
    /// Most messages in any one hour besides the spread; `None` = no extra cap.
    pub hourly_cap: Option<u32>,
}

/// The volume a schedule gives for `day` (1-based; the last value is the ceiling).
pub fn schedule_volume(daily_volumes: &[i32], day: i32) -> u32 {
    let Some(last) = daily_volumes.len().checked_sub(1) else {
        return 0;
    };
    let index = (day.max(1) as usize - 1).min(last);
    daily_volumes[index].max(0) as u32
}

/// The daily allowance: the schedule's volume for the IP's warm-up day, or
/// `warm_volume` (0 = unlimited) without a schedule, times `factor` (health).
pub fn daily_allowance(
    schedule: Option<&[i32]>,
    warmup_day: i32,
    warm_volume: u32,
    factor: f64,
) -> Option<u32> {
    let base = match schedule {
        Some(volumes) => schedule_volume(volumes, warmup_day),
        None if warm_volume == 0 => return None,
        None => warm_volume,
    };
    Some(scale(base, factor))
}

/// `value × factor`, rounded down, but never below 1 for a positive value (a
/// halved tiny allowance still sends).
pub fn scale(value: u32, factor: f64) -> u32 {
    if value == 0 {
        return 0;
    }
    ((value as f64 * factor.clamp(0.0, 1.0)).floor() as u32).max(1)
}

impl DayPlan {
    /// The number of active hours.
    pub fn active_hours(&self) -> u32 {
        u32::from(self.active_end.saturating_sub(self.active_start))
    }

    /// How many messages local hour `hour` (0..24) may carry; `None` = unlimited.
    /// The spread gives active hour `i` of `n` `floor(D(i+1)/n) - floor(Di/n)`, so
    /// the hours add up to the day exactly; hours outside the active ones get 0.
    pub fn hour_quota(&self, hour: u8) -> Option<u32> {
        if hour < self.active_start || hour >= self.active_end {
            return Some(0);
        }
        let spread = self.daily.map(|daily| {
            let n = u64::from(self.active_hours());
            let i = u64::from(hour - self.active_start);
            let d = u64::from(daily);
            (d * (i + 1) / n - d * i / n) as u32
        });
        match (spread, self.hourly_cap) {
            (Some(spread), Some(cap)) => Some(spread.min(cap)),
            (spread, cap) => spread.or(cap),
        }
    }

    /// The first local hour at or after `hour` with a positive quota, if any today.
    pub fn next_open_hour(&self, hour: u8) -> Option<u8> {
        (hour..24).find(|h| self.hour_quota(*h) != Some(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(daily: Option<u32>, start: u8, end: u8, cap: Option<u32>) -> DayPlan {
        DayPlan {
            daily,
            active_start: start,
            active_end: end,
            hourly_cap: cap,
        }
    }

    #[test]
    fn the_spread_adds_up_to_the_day_exactly() {
        for daily in [0, 1, 7, 50, 175_000, 299_999] {
            for (start, end) in [(0, 24), (8, 18), (23, 24), (9, 17)] {
                let p = plan(Some(daily), start, end, None);
                let total: u32 = (0..24).map(|h| p.hour_quota(h).unwrap()).sum();
                assert_eq!(total, daily, "daily {daily} over {start}..{end}");
                let quotas: Vec<u32> = (start..end).map(|h| p.hour_quota(h).unwrap()).collect();
                let (lo, hi) = (quotas.iter().min().unwrap(), quotas.iter().max().unwrap());
                assert!(hi - lo <= 1, "even spread: {quotas:?}");
            }
        }
    }

    #[test]
    fn inactive_hours_carry_nothing() {
        let p = plan(Some(100), 8, 18, None);
        assert_eq!(p.hour_quota(7), Some(0));
        assert_eq!(p.hour_quota(18), Some(0));
        assert_eq!(p.hour_quota(8), Some(10));
        assert_eq!(p.next_open_hour(0), Some(8));
        assert_eq!(p.next_open_hour(18), None);
    }

    #[test]
    fn the_hourly_cap_bounds_the_spread() {
        assert_eq!(plan(Some(2400), 0, 24, Some(60)).hour_quota(3), Some(60));
        assert_eq!(plan(None, 0, 24, Some(60)).hour_quota(3), Some(60));
        assert_eq!(plan(None, 0, 24, None).hour_quota(3), None);
    }

    #[test]
    fn allowance_follows_the_schedule_then_its_ceiling() {
        let ramp = [50, 100, 200];
        assert_eq!(daily_allowance(Some(&ramp), 1, 0, 1.0), Some(50));
        assert_eq!(daily_allowance(Some(&ramp), 3, 0, 1.0), Some(200));
        assert_eq!(daily_allowance(Some(&ramp), 40, 0, 1.0), Some(200));
        assert_eq!(daily_allowance(Some(&ramp), 2, 0, 0.5), Some(50));
        assert_eq!(daily_allowance(None, 1, 0, 1.0), None);
        assert_eq!(daily_allowance(None, 1, 1000, 0.5), Some(500));
        assert_eq!(scale(1, 0.25), 1, "a tiny allowance still sends");
    }
}
