//! The budget one template render runs under, and the writer that enforces its
//! output cap.
//!
//! [`RenderBudget`] comes from `[templates]` (`penguin_config::TemplatesConfig`).
//! Fuel is minijinja's instruction counter: set on the template's
//! [`minijinja::Environment`], it stops a render after that many instructions
//! (per template part), so no loop runs forever, even after its caller stopped
//! waiting. [`CappedWriter`] is what each part renders into: past its limit the
//! write fails (`render_captured_to`), minijinja stops at once, and [`CappedWriter::exceeded`] tells the
//! caller that the limit, not something else, ended the render.

use std::io;

use penguin_config::TemplatesConfig;

/// Limits of one render of a campaign template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenderBudget {
    /// Most minijinja instructions per template part.
    pub fuel: u64,
    /// Longest subject after rendering, in bytes.
    pub max_subject_bytes: usize,
    /// Longest text or HTML part after rendering, in bytes.
    pub max_part_bytes: usize,
}

impl From<&TemplatesConfig> for RenderBudget {
    fn from(config: &TemplatesConfig) -> Self {
        RenderBudget {
            fuel: config.fuel,
            max_subject_bytes: config.max_subject_bytes,
            max_part_bytes: config.max_part_bytes,
        }
    }
}

impl Default for RenderBudget {
    /// The `[templates]` defaults.
    fn default() -> Self {
        RenderBudget::from(&TemplatesConfig::default())
    }
}

/// An in-memory sink that refuses to grow past `limit` bytes.
#[derive(Debug)]
pub(crate) struct CappedWriter {
    buf: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl CappedWriter {
    pub(crate) fn new(limit: usize) -> Self {
        CappedWriter {
            buf: Vec::new(),
            limit,
            exceeded: false,
        }
    }

    /// Whether a write was refused for passing the limit.
    pub(crate) fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// What was written. minijinja writes only `str` pieces, so the bytes are
    /// UTF-8; a lossy conversion keeps this total anyway.
    pub(crate) fn into_string(self) -> String {
        String::from_utf8(self.buf)
            .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
    }
}

impl io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len().saturating_add(data.len()) > self.limit {
            self.exceeded = true;
            return Err(io::Error::other("template output limit reached"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn writes_up_to_the_limit_and_no_further() {
        let mut writer = CappedWriter::new(5);
        writer.write_all(b"abc").unwrap();
        writer.write_all(b"de").unwrap();
        assert!(!writer.exceeded());
        assert!(writer.write_all(b"f").is_err());
        assert!(writer.exceeded());
        assert_eq!(writer.into_string(), "abcde");
    }

    #[test]
    fn default_budget_is_the_config_default() {
        let budget = RenderBudget::default();
        assert_eq!(budget.max_subject_bytes, 998);
        assert_eq!(budget.max_part_bytes, 2 * 1024 * 1024);
    }
}
