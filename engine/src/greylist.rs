//! Greylisting: a receiving server's "not yet, come back in a few minutes" to a
//! new (sender, recipient) pair. It says nothing about the sender's reputation
//! or rate, so it defers its recipient only (with a short first retry) and is no
//! signal for reply rules or the health breakers; the IP actors count it per
//! site, and only many recipients of one site greylisted within a window count
//! as throttling (`[delivery.greylist]`).
//!
//! [`is_greylisting`] is pure and cheap: called for every deferral.

use crate::smtp::{DeliveryOutcome, Stage};

/// Whether `outcome` is a greylisting deferral: a 4xx reply to RCPT or after
/// DATA whose text says `greylist`/`graylist` (`greylisted` included), or says
/// `try again later` with the enhanced code `4.7.1` (postgrey, sqlgrey, Exim and
/// rspamd answer so). Replies before RCPT (greeting, EHLO, MAIL) are about the
/// connection or the sender, never greylisting.
pub fn is_greylisting(outcome: &DeliveryOutcome) -> bool {
    let DeliveryOutcome::Deferred {
        code: Some(code),
        enhanced,
        reply,
        stage,
    } = outcome
    else {
        return false;
    };
    if !(400..500).contains(code) || !matches!(stage, Stage::RcptTo | Stage::DataEnd) {
        return false;
    }
    let text = reply.to_ascii_lowercase();
    if text.contains("greylist") || text.contains("graylist") {
        return true;
    }
    let code_471 = enhanced.as_deref() == Some("4.7.1") || text.contains(" 4.7.1 ");
    code_471 && text.contains("try again later")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deferred(code: u16, enhanced: Option<&str>, reply: &str, stage: Stage) -> DeliveryOutcome {
        DeliveryOutcome::Deferred {
            code: Some(code),
            enhanced: enhanced.map(Into::into),
            reply: reply.into(),
            stage,
        }
    }

    #[test]
    fn greylisting_replies() {
        let yes = [
            deferred(
                451,
                Some("4.7.1"),
                "451 4.7.1 Greylisted, please try again later",
                Stage::RcptTo,
            ),
            deferred(
                450,
                Some("4.2.0"),
                "450 4.2.0 <a@b.test>: Recipient address rejected: Greylisted, see http://postgrey.schweikert.ch/",
                Stage::RcptTo,
            ),
            deferred(451, None, "451 Graylisting in action", Stage::DataEnd),
            deferred(
                451,
                Some("4.7.1"),
                "451 4.7.1 Please try again later",
                Stage::RcptTo,
            ),
        ];
        for outcome in &yes {
            assert!(is_greylisting(outcome), "{outcome:?}");
        }
    }

    #[test]
    fn throttling_and_other_stages_are_not_greylisting() {
        let no = [
            // Throttling, not greylisting: no greylist words, no 4.7.1.
            deferred(
                451,
                Some("4.7.500"),
                "451 4.7.500 Server busy. Please try again later",
                Stage::RcptTo,
            ),
            deferred(
                421,
                Some("4.7.0"),
                "421 4.7.0 Try again later, closing connection. (EHLO)",
                Stage::Ehlo,
            ),
            // Right words, wrong stage.
            deferred(
                451,
                Some("4.7.1"),
                "451 4.7.1 Greylisted, please try again later",
                Stage::MailFrom,
            ),
        ];
        for outcome in &no {
            assert!(!is_greylisting(outcome), "{outcome:?}");
        }
        let bounced = DeliveryOutcome::Bounced {
            code: 550,
            enhanced: Some("5.7.1".into()),
            reply: "550 5.7.1 greylisted forever".into(),
            stage: Stage::RcptTo,
        };
        assert!(!is_greylisting(&bounced));
    }
}
