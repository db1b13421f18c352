//! Pure validation of request fields, shared by the route files. Every function
//! either returns the value to store or an [`AppError`] (422 `invalid_request`)
//! that names the field. No I/O: checks that need the database (an IP's owner, a
//! timezone) live in the handlers, after these.

use std::collections::HashSet;
use std::net::IpAddr;

use penguin_engine::domain::{InputError, check_header_text};
use penguin_engine::message::TemplateError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::AppError;

/// Longest name (tenant, campaign, sender display name), in bytes.
pub const MAX_NAME: usize = 200;
/// Longest subject template, in bytes (RFC 5322 line limit).
pub const MAX_SUBJECT: usize = 998;
/// Longest text or HTML template, in bytes.
pub const MAX_BODY_TEMPLATE: usize = 1024 * 1024;
/// Most IPs in one campaign's pool.
pub const MAX_CAMPAIGN_IPS: usize = 256;
/// Longest lead field name and most fields per lead.
pub const MAX_FIELD_NAME: usize = 128;
pub const MAX_FIELDS: usize = 200;
/// Longest lead field string value, in bytes.
pub const MAX_FIELD_VALUE: usize = 64 * 1024;

/// Text that goes into a header or a name: not blank, no CR/LF/NUL, bounded.
pub fn header_text(field: &str, value: &str, max_len: usize) -> Result<(), AppError> {
    if value.trim().is_empty() {
        return Err(AppError::invalid_field(field, &InputError::Empty));
    }
    check_header_text(value, max_len).map_err(|e| AppError::invalid_field(field, &e))
}

/// A message body template: not blank, no NUL (Postgres text cannot hold it), bounded.
pub fn body_template(field: &str, value: &str) -> Result<(), AppError> {
    if value.trim().is_empty() {
        return Err(AppError::invalid_field(field, &InputError::Empty));
    }
    if value.len() > MAX_BODY_TEMPLATE {
        return Err(AppError::invalid_field(
            field,
            &InputError::TooLong(MAX_BODY_TEMPLATE),
        ));
    }
    if value.contains('\0') {
        return Err(AppError::invalid(format!("{field} must not contain NUL")));
    }
    Ok(())
}

/// A campaign template refused at creation: 422, the message opening with the
/// field (`subject`, `text`, `html`) and naming the limit it broke or the
/// construct the allowlist refused.
pub fn template_error(error: TemplateError) -> AppError {
    match error.part() {
        // Already reads `subject: the "~" operator is not allowed…`.
        Some(_) if matches!(error, TemplateError::Refused { .. }) => {
            AppError::invalid(error.to_string())
        }
        Some(part) if error.is_budget() => AppError::invalid(format!(
            "{part}: {error} (dry run without lead data, see [templates])"
        )),
        Some(part) => AppError::invalid(format!("{part}: {error}")),
        None => AppError::invalid(error.to_string()),
    }
}

/// An address an SMTP IP may bind: not unspecified, not multicast.
pub fn ip_address(value: &str) -> Result<IpAddr, AppError> {
    let address: IpAddr = value
        .parse()
        .map_err(|_| AppError::invalid(format!("address {value:?} is not an IP address")))?;
    if address.is_unspecified() || address.is_multicast() {
        return Err(AppError::invalid(format!(
            "address {address} cannot be a sending address"
        )));
    }
    Ok(address)
}

/// A fully qualified host name for HELO/EHLO, returned lower-cased.
pub fn hostname(field: &str, value: &str) -> Result<String, AppError> {
    let bad = || AppError::invalid(format!("{field} must be a fully qualified host name"));
    if value.is_empty() || value.len() > 253 {
        return Err(bad());
    }
    let labels: Vec<&str> = value.split('.').collect();
    if labels.len() < 2 {
        return Err(bad());
    }
    let label_ok = |label: &&str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !labels.iter().all(label_ok) {
        return Err(bad());
    }
    Ok(value.to_ascii_lowercase())
}

/// An IANA timezone name's shape (whether it exists is asked of Postgres).
pub fn timezone_shape(field: &str, value: &str) -> Result<(), AppError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '_' | '-' | '+'));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(format!(
            "{field} {value:?} is not a timezone"
        )))
    }
}

/// A warm-up schedule name's shape (the schema's `^[a-z0-9_-]{1,64}$`).
pub fn schedule_name(field: &str, value: &str) -> Result<(), AppError> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(AppError::invalid(format!(
            "{field} {value:?} is not a schedule name (1-64 of a-z, 0-9, _ and -)"
        )))
    }
}

/// Most days of a warm-up schedule, and most messages of one of its days.
pub const MAX_SCHEDULE_DAYS: usize = 365;
pub const MAX_DAILY_VOLUME: i64 = 10_000_000;

/// A schedule's `daily_volumes`: 1..=[`MAX_SCHEDULE_DAYS`] values, each
/// 1..=[`MAX_DAILY_VOLUME`]. Returns them as the schema stores them.
pub fn daily_volumes(values: &[i64]) -> Result<Vec<i32>, AppError> {
    if values.is_empty() || values.len() > MAX_SCHEDULE_DAYS {
        return Err(AppError::invalid(format!(
            "daily_volumes must have 1 to {MAX_SCHEDULE_DAYS} values (one per day), not {}",
            values.len()
        )));
    }
    values
        .iter()
        .enumerate()
        .map(|(day, &volume)| {
            if (1..=MAX_DAILY_VOLUME).contains(&volume) {
                Ok(volume as i32)
            } else {
                Err(AppError::invalid(format!(
                    "daily_volumes[{day}] is {volume}: each day must be 1 to {MAX_DAILY_VOLUME} messages"
                )))
            }
        })
        .collect()
}

/// The local hours an IP sends in, `[start, end)`: `start` 0..=23, `end` 1..=24,
/// `start < end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActiveHours {
    pub start: i64,
    pub end: i64,
}

/// Checks [`ActiveHours`]; returns them as `(start, end)`.
pub fn active_hours(hours: &ActiveHours) -> Result<(u8, u8), AppError> {
    if !(0..=23).contains(&hours.start) {
        return Err(AppError::invalid(
            "active_hours.start must be an hour 0 to 23",
        ));
    }
    if !(1..=24).contains(&hours.end) {
        return Err(AppError::invalid(
            "active_hours.end must be an hour 1 to 24",
        ));
    }
    if hours.start >= hours.end {
        return Err(AppError::invalid(
            "active_hours.start must be before active_hours.end (hours of one local day)",
        ));
    }
    Ok((hours.start as u8, hours.end as u8))
}

/// Longest reason given for pausing something by hand.
pub const MAX_REASON: usize = 200;

/// A reason given by hand: not blank, at most [`MAX_REASON`] characters, no
/// control characters (it is shown in logs and dashboards).
pub fn reason(field: &str, value: &str) -> Result<String, AppError> {
    if value.trim().is_empty() {
        return Err(AppError::invalid_field(field, &InputError::Empty));
    }
    if value.chars().count() > MAX_REASON {
        return Err(AppError::invalid(format!(
            "{field} must be at most {MAX_REASON} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid(format!(
            "{field} must not contain control characters (line breaks, tabs, NUL)"
        )));
    }
    Ok(value.trim().to_string())
}

/// When a campaign may send: between `start` and `end` (`HH:MM`, 24 h; `end`
/// before `start` crosses midnight), on `days` (`mon`…`sun`, default every day),
/// in `timezone` (default: each IP's own timezone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendWindow {
    /// `HH:MM`.
    #[schema(example = "09:00")]
    pub start: String,
    /// `HH:MM`.
    #[schema(example = "17:30")]
    pub end: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn minutes_of(field: &str, value: &str) -> Result<u32, AppError> {
    let bad = || AppError::invalid(format!("{field} must be HH:MM (00:00-23:59)"));
    let (h, m) = value.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Checks a send window's shape (its timezone's existence is asked of Postgres).
pub fn send_window(window: &SendWindow) -> Result<(), AppError> {
    let start = minutes_of("send_window.start", &window.start)?;
    let end = minutes_of("send_window.end", &window.end)?;
    if start == end {
        return Err(AppError::invalid("send_window.start and end must differ"));
    }
    if let Some(days) = &window.days {
        let mut seen = HashSet::new();
        if days.is_empty() {
            return Err(AppError::invalid("send_window.days must not be empty"));
        }
        for day in days {
            if !DAYS.contains(&day.as_str()) || !seen.insert(day) {
                return Err(AppError::invalid(format!(
                    "send_window.days: {day:?} is not one of mon..sun or is repeated"
                )));
            }
        }
    }
    if let Some(timezone) = &window.timezone {
        timezone_shape("send_window.timezone", timezone)?;
    }
    Ok(())
}

/// A lead's template fields: absent or a JSON object of scalars (string, number,
/// boolean, null). Returns the object to store, or why the row is refused.
pub fn lead_fields(fields: Option<Value>) -> Result<Value, String> {
    let map = match fields {
        None | Some(Value::Null) => return Ok(Value::Object(Map::new())),
        Some(Value::Object(map)) => map,
        Some(_) => return Err("fields must be a JSON object".to_string()),
    };
    if map.len() > MAX_FIELDS {
        return Err(format!("fields has more than {MAX_FIELDS} entries"));
    }
    for (name, value) in &map {
        if name.is_empty() || name.len() > MAX_FIELD_NAME || name.contains('\0') {
            return Err(format!(
                "field name {name:?} must be 1-{MAX_FIELD_NAME} bytes without NUL"
            ));
        }
        match value {
            Value::String(text) if text.contains('\0') => {
                return Err(format!("field {name:?} must not contain NUL"));
            }
            Value::String(text) if text.len() > MAX_FIELD_VALUE => {
                return Err(format!(
                    "field {name:?} is longer than {MAX_FIELD_VALUE} bytes"
                ));
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(format!(
                    "field {name:?} must be a string, number, boolean or null"
                ));
            }
            _ => {}
        }
    }
    Ok(Value::Object(map))
}

/// Longest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

/// The request's `Idempotency-Key` header, if any: 1 to 255 visible ASCII
/// characters, given once.
pub fn idempotency_key(headers: &axum::http::HeaderMap) -> Result<Option<String>, AppError> {
    let mut values = headers.get_all("idempotency-key").iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AppError::invalid("Idempotency-Key is given more than once"));
    }
    let bytes = value.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY {
        return Err(AppError::invalid(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} characters"
        )));
    }
    if !bytes.iter().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::invalid(
            "Idempotency-Key must be visible ASCII characters without spaces",
        ));
    }
    Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn header_text_refuses_blank_breaks_and_length() {
        assert!(header_text("name", "Spring", MAX_NAME).is_ok());
        for bad in ["", "  ", "a\rb", "a\nb", "a\0b"] {
            assert!(header_text("name", bad, MAX_NAME).is_err(), "{bad:?}");
        }
        assert!(header_text("name", &"x".repeat(MAX_NAME + 1), MAX_NAME).is_err());
    }

    #[test]
    fn hostnames_and_addresses() {
        assert_eq!(
            hostname("helo_name", "Mail.Example.com").unwrap(),
            "mail.example.com"
        );
        for bad in ["", "localhost", "a..b", "-a.b", "a b.c", "a.b\r\n"] {
            assert!(hostname("helo_name", bad).is_err(), "{bad:?}");
        }
        assert!(ip_address("127.0.0.5").is_ok());
        assert!(ip_address("2001:db8::1").is_ok());
        for bad in ["", "0.0.0.0", "224.0.0.1", "300.1.1.1", "example.com"] {
            assert!(ip_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn schedules_hours_and_reasons() {
        assert!(schedule_name("name", "slow-ramp_2").is_ok());
        for bad in ["", "Slow", "a b", &"x".repeat(65)] {
            assert!(schedule_name("name", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            daily_volumes(&[1, 10_000_000]).unwrap(),
            vec![1, 10_000_000]
        );
        for bad in [vec![], vec![0], vec![5, -1], vec![10_000_001], vec![1; 366]] {
            assert!(daily_volumes(&bad).is_err(), "{bad:?}");
        }
        let hours = |start, end| active_hours(&ActiveHours { start, end });
        assert_eq!(hours(0, 24).unwrap(), (0, 24));
        assert_eq!(hours(8, 18).unwrap(), (8, 18));
        for (start, end) in [(-1, 5), (24, 24), (5, 5), (9, 8), (0, 0), (0, 25)] {
            assert!(hours(start, end).is_err(), "{start}..{end}");
        }
        assert_eq!(reason("reason", " blocklisted ").unwrap(), "blocklisted");
        for bad in ["", "  ", "a\nb", "a\tb", "a\u{0}b", &"é".repeat(201)] {
            assert!(reason("reason", bad).is_err(), "{bad:?}");
        }
        assert!(reason("reason", &"é".repeat(200)).is_ok());
    }

    #[test]
    fn send_windows() {
        let window = |start: &str, end: &str| SendWindow {
            start: start.into(),
            end: end.into(),
            days: None,
            timezone: None,
        };
        assert!(send_window(&window("09:00", "17:30")).is_ok());
        assert!(send_window(&window("22:00", "06:00")).is_ok());
        for (start, end) in [("9:00", "17:00"), ("09:00", "24:00"), ("09:00", "09:00")] {
            assert!(send_window(&window(start, end)).is_err());
        }
        let mut days = window("09:00", "17:00");
        days.days = Some(vec!["mon".into(), "mon".into()]);
        assert!(send_window(&days).is_err());
    }

    #[test]
    fn lead_fields_are_flat_objects() {
        assert_eq!(lead_fields(None).unwrap(), json!({}));
        assert!(lead_fields(Some(json!({"a": "x", "n": 1, "b": true, "z": null}))).is_ok());
        assert!(lead_fields(Some(json!([1]))).is_err());
        assert!(lead_fields(Some(json!({"a": {"b": 1}}))).is_err());
        assert!(lead_fields(Some(json!({"a": [1]}))).is_err());
        assert!(lead_fields(Some(json!({"a": "x\u{0}"}))).is_err());
    }

    #[test]
    fn idempotency_key_is_one_visible_ascii_value() {
        use axum::http::{HeaderMap, HeaderValue};
        let with = |values: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append("idempotency-key", HeaderValue::from_bytes(value).unwrap());
            }
            idempotency_key(&headers)
        };
        assert_eq!(with(&[]).unwrap(), None);
        assert_eq!(with(&[b"start-42"]).unwrap().as_deref(), Some("start-42"));
        let longest = "k".repeat(MAX_IDEMPOTENCY_KEY);
        assert!(with(&[longest.as_bytes()]).is_ok());
        let too_long = "k".repeat(MAX_IDEMPOTENCY_KEY + 1);
        for bad in [&b""[..], b"a b", b"\xe9t\xe9", too_long.as_bytes()] {
            assert!(with(&[bad]).is_err(), "{bad:?}");
        }
        assert!(with(&[b"a", b"b"]).is_err(), "given twice");
    }
}
