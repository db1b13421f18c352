//! The rows of a lead import as its parser ([`crate::csv_leads`],
//! [`crate::json_leads`]) produces them: numbered from 0, valid leads held until
//! the caller takes them as a batch for the database (an address repeated within
//! a batch is a `duplicate` here; across batches the database says so), refused
//! rows kept with why.

use std::collections::HashSet;

use penguin_engine::store::leads::NewLead;

/// A row refused, with why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct RejectedLead {
    /// The 0-based row: the index in `leads`, or the CSV data row (the header
    /// not counted).
    pub row: usize,
    /// What is wrong, or `duplicate`.
    pub reason: String,
}

/// The reason given for an address the import already has.
pub const DUPLICATE: &str = "duplicate";

#[derive(Debug, Default)]
pub struct LeadRows {
    next_row: usize,
    /// Valid leads not yet taken, with their row numbers.
    pending: Vec<(usize, NewLead)>,
    /// Emails in `pending`.
    pending_emails: HashSet<String>,
    /// Rows refused since the caller last took them.
    rejected: Vec<RejectedLead>,
}

impl LeadRows {
    /// The number the next row gets.
    pub fn next_row(&self) -> usize {
        self.next_row
    }

    /// Numbers the next row: a lead to import, or why it is refused.
    pub fn push(&mut self, lead: Result<NewLead, String>) {
        let row = self.next_row;
        self.next_row += 1;
        match lead {
            Ok(lead) if self.pending_emails.insert(lead.email.clone()) => {
                self.pending.push((row, lead));
            }
            Ok(_) => self.rejected.push(RejectedLead {
                row,
                reason: DUPLICATE.into(),
            }),
            Err(reason) => self.rejected.push(RejectedLead { row, reason }),
        }
    }

    /// How many valid leads wait to be taken.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Takes every waiting lead (distinct emails) with its row number.
    pub fn take_batch(&mut self) -> (Vec<usize>, Vec<NewLead>) {
        self.pending_emails.clear();
        std::mem::take(&mut self.pending).into_iter().unzip()
    }

    /// Takes the rows refused so far.
    pub fn take_rejected(&mut self) -> Vec<RejectedLead> {
        std::mem::take(&mut self.rejected)
    }
}
