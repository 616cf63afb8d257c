//! The text of every notification (SPEC 6), composed here and nowhere else: plain text, from
//! names, types, hints, ids, times, addresses and links. Never a secret (no token string, hash,
//! client secret or code other than a cancel link's): a mail can be read by more people than the
//! one it was meant for. Links start with the configured `public_url`, never a request's `Host`.
//!
//! Pure functions, so the wording is tested without a server.

use latchkey_core::Timestamp;
use latchkey_store::Owner;
use time::format_description::well_known::Rfc3339;

/// A mail's subject and plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailText {
    pub subject: String,
    pub body: String,
}

/// What a mail says about a token.
#[derive(Debug, Clone)]
pub struct TokenFacts<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub token_type: &'a str,
    pub hint: &'a str,
    /// Whose token: "your account", or the organisation's name and id.
    pub owner_label: &'a str,
    pub is_org: bool,
    pub expires_at: Option<Timestamp>,
    /// Who did what the mail reports, and from where ("ada@example.com from 192.0.2.1"); none
    /// for what happened on its own (a use, an expiry).
    pub by: Option<String>,
    /// The console page that shows the token, and the audit log it is in.
    pub page: String,
    pub audit: String,
}

/// The token a rotation replaced, and when it stops: for the rotation mail.
#[derive(Debug, Clone)]
pub struct Replaced<'a> {
    pub name: &'a str,
    pub hint: &'a str,
    pub id: &'a str,
    /// "at 2026-06-01T13:00:00Z", "now", "when the new token is first used (…)".
    pub ends: String,
}

impl TokenFacts<'_> {
    fn kind(&self) -> &'static str {
        if self.is_org {
            "organisation token"
        } else {
            "personal token"
        }
    }

    fn describe(&self) -> String {
        let expires = self
            .expires_at
            .map_or_else(|| "never".to_owned(), time_text);
        let mut text = format!(
            "  Name:    {}\n  Type:    {}\n  Hint:    {}\n  Id:      {}\n  Owner:   {}\n  Expires: {expires}\n",
            self.name, self.token_type, self.hint, self.id, self.owner_label
        );
        if let Some(by) = &self.by {
            text.push_str(&format!("  By:      {by}\n"));
        }
        text.push_str(&format!("\nIn the console:\n  {}\n", self.page));
        text
    }

    /// The closing lines, with the link to the audit log.
    fn footer(&self) -> String {
        format!(
            "\n-- \nLatchkey. This mail never contains a secret; if you did not expect it, check the audit log:\n  {}\n",
            self.audit
        )
    }
}

const FOOTER: &str = "\n-- \nLatchkey. This mail never contains a secret; if you did not expect it, check your audit log.\n";

pub fn time_text(t: Timestamp) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// RFC 3986 percent-encoding of a query value: everything but the unreserved characters.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The console page that creates a replacement with the same name, type and scopes.
pub fn replacement_url(
    public_url: &str,
    owner: &Owner,
    name: &str,
    token_type: &str,
    scopes: &[String],
) -> String {
    let base = public_url.trim_end_matches('/');
    let path = match owner {
        Owner::User(_) => "/credentials/new".to_owned(),
        Owner::Organisation(org) => format!("/orgs/{}/tokens/new", url_encode(org.as_str())),
    };
    format!(
        "{base}{path}?name={}&type={}&scopes={}",
        url_encode(name),
        url_encode(token_type),
        url_encode(&scopes.join(" "))
    )
}

/// Where a mail's sealed part (a cancel link's code) goes: the outbox stores the body with this
/// placeholder and the code sealed beside it; the worker fills it in at send time.
pub const SEALED_SLOT: &str = "LATCHKEY-SEALED-PART";

/// The link of a password reset mail (the code in the query string, as the cancel link's).
pub fn reset_url(public_url: &str, code: &str) -> String {
    format!(
        "{}/reset-password?code={}",
        public_url.trim_end_matches('/'),
        url_encode(code)
    )
}

/// The mail with a password reset link (asked for by someone who gave this address).
pub fn password_reset(url: &str, expires_at: Timestamp) -> MailText {
    MailText {
        subject: "Latchkey: reset your password".to_owned(),
        body: format!(
            "Someone asked to reset the password of the Latchkey account of this address.\nTo choose a new password, open this link before {} (it works once):\n{url}\nIf it was not you, ignore this mail: your password stays as it is.\n{FOOTER}",
            time_text(expires_at)
        ),
    }
}

/// The one-click cancel link. The code travels in the query string because request paths are
/// logged and query strings are not.
pub fn cancel_url(public_url: &str, code: &str) -> String {
    format!(
        "{}/cancel?code={}",
        public_url.trim_end_matches('/'),
        url_encode(code)
    )
}

pub fn token_created(
    t: &TokenFacts<'_>,
    created_at: Timestamp,
    active_from: Timestamp,
    cancel_url: Option<&str>,
    replaces: Option<&Replaced<'_>>,
) -> MailText {
    let mut body = match replaces {
        Some(old) => format!(
            "A {} was rotated at {}: a new token replaces \"{}\" ({}, {}), which {}.\n\nThe new token:\n{}",
            t.kind(),
            time_text(created_at),
            old.name,
            old.hint,
            old.id,
            old.ends,
            t.describe()
        ),
        None => format!(
            "A new {} was created at {}.\n\n{}",
            t.kind(),
            time_text(created_at),
            t.describe()
        ),
    };
    if active_from > created_at {
        body.push_str(&format!(
            "\nIt becomes active at {}; until then it does not work.\n",
            time_text(active_from)
        ));
    }
    if let Some(url) = cancel_url {
        body.push_str(&format!(
            "\nIf you did not ask for this token, cancel it before it ever works:\n  {url}\n"
        ));
    }
    body.push_str(&t.footer());
    let done = if replaces.is_some() {
        "rotated"
    } else {
        "created"
    };
    MailText {
        subject: format!("Latchkey: {} \"{}\" {done}", t.kind(), t.name),
        body,
    }
}

/// Why a token was revoked, in words. `reason` is the audit event's reason.
fn revocation_reason(reason: &str) -> &'static str {
    match reason {
        "owner" => "it was revoked by its owner",
        "deleted" => "it was deleted by an administrator of the organisation",
        "operator" => "it was revoked by the operator",
        "leak_report" => {
            "it was reported as leaked (found in public, for example in a repository or a log)"
        }
        "rotation_first_use" => {
            "it was rotated, and its replacement has now been used for the first time"
        }
        "cancelled" => "it was cancelled with the link from its creation mail",
        _ => "it was revoked",
    }
}

pub fn token_revoked(t: &TokenFacts<'_>, reason: &str, at: Timestamp) -> MailText {
    let (subject, lead) = match reason {
        "leak_report" => (
            format!("Latchkey: leaked {} \"{}\" revoked", t.kind(), t.name),
            "A leaked token was revoked",
        ),
        "deleted" => (
            format!("Latchkey: {} \"{}\" deleted", t.kind(), t.name),
            "A token was deleted",
        ),
        "cancelled" => (
            format!("Latchkey: {} \"{}\" cancelled", t.kind(), t.name),
            "A token was cancelled before it became active",
        ),
        _ => (
            format!("Latchkey: {} \"{}\" revoked", t.kind(), t.name),
            "A token was revoked",
        ),
    };
    let mut body = format!(
        "{lead} at {}: {}.\nIt no longer works.\n\n{}",
        time_text(at),
        revocation_reason(reason),
        t.describe()
    );
    if reason == "leak_report" {
        body.push_str(
            "\nAnything still using it must get a new token. Find where it was exposed and remove it.\n",
        );
    }
    body.push_str(&t.footer());
    MailText { subject, body }
}

/// The kill switch: every live token of an owner (of one type) at once.
pub fn tokens_revoked_all(owner_label: &str, token_type: Option<&str>, at: Timestamp) -> MailText {
    let what = match token_type {
        Some(t) => format!("every live token of type \"{t}\""),
        None => "every live token and OAuth grant".to_owned(),
    };
    MailText {
        subject: "Latchkey: all tokens revoked".to_owned(),
        body: format!(
            "At {}, {what} of {owner_label} was revoked at once (the kill switch).\nNone of them works any more; the audit log lists them.\n{FOOTER}",
            time_text(at)
        ),
    }
}

pub fn token_expiring(
    t: &TokenFacts<'_>,
    days: u32,
    expires_at: Timestamp,
    replacement_url: &str,
) -> MailText {
    let when = if days == 1 {
        "1 day".to_owned()
    } else {
        format!("{days} days")
    };
    MailText {
        subject: format!("Latchkey: {} \"{}\" expires in {when}", t.kind(), t.name),
        body: format!(
            "A token expires at {} (in {when} or less).\n\n{}\nCreate its replacement (same name, type and scopes):\n  {replacement_url}\n{}",
            time_text(expires_at),
            t.describe(),
            t.footer()
        ),
    }
}

pub fn token_new_address(t: &TokenFacts<'_>, ip: &str, at: Timestamp) -> MailText {
    MailText {
        subject: format!(
            "Latchkey: {} \"{}\" used from a new address",
            t.kind(),
            t.name
        ),
        body: format!(
            "A token was used from an address it had not been used from before.\n\n  Address: {ip}\n  Time:    {}\n\n{}\nIf this was not you or your systems, revoke the token now.\n{}",
            time_text(at),
            t.describe(),
            t.footer()
        ),
    }
}

/// A token's very first use (not a "new" address: it had none before).
pub fn token_first_use(t: &TokenFacts<'_>, ip: &str, at: Timestamp) -> MailText {
    MailText {
        subject: format!(
            "Latchkey: {} \"{}\" used for the first time",
            t.kind(),
            t.name
        ),
        body: format!(
            "A token was used for the first time.\n\n  Address: {ip}\n  Time:    {}\n\n{}\nIf this was not you or your systems, revoke the token now.\n{}",
            time_text(at),
            t.describe(),
            t.footer()
        ),
    }
}

/// A use refused by the token's IP allowlist, the first time from this address.
pub fn token_ip_refused(t: &TokenFacts<'_>, ip: &str, at: Timestamp) -> MailText {
    MailText {
        subject: format!(
            "Latchkey: {} \"{}\" refused from address {ip}",
            t.kind(),
            t.name
        ),
        body: format!(
            "A request with a token came from an address outside its IP allowlist and was refused.\n\n  Address: {ip}\n  Time:    {}\n\n{}\nIf this address is yours, add it to the allowlist; if not, the token may have leaked: revoke it.\n{}",
            time_text(at),
            t.describe(),
            t.footer()
        ),
    }
}

pub fn client_secret_created(
    client_name: &str,
    client_id: &str,
    secret_hint: &str,
    org_label: &str,
    at: Timestamp,
) -> MailText {
    MailText {
        subject: format!("Latchkey: new secret for the app \"{client_name}\""),
        body: format!(
            "A new client secret was made at {}.\n\n  App:    {client_name}\n  Id:     {client_id}\n  Secret: {secret_hint} (hint only)\n  Owner:  {org_label}\n\nIf nobody in your organisation did this, delete the secret.\n{FOOTER}",
            time_text(at)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::OrgId;

    fn at() -> Timestamp {
        time::macros::datetime!(2026-06-01 12:00:00 UTC)
    }

    fn facts(is_org: bool) -> TokenFacts<'static> {
        TokenFacts {
            id: "tok_1",
            name: "CI deploy",
            token_type: "api",
            hint: "lka_…abcd",
            owner_label: "your account",
            is_org,
            expires_at: Some(at() + time::Duration::days(90)),
            by: Some("ada@example.com from 192.0.2.1".to_owned()),
            page: "https://lk.test/credentials".to_owned(),
            audit: "https://lk.test/activity".to_owned(),
        }
    }

    #[test]
    fn url_encoding_keeps_only_unreserved_characters() {
        assert_eq!(url_encode("a b&c=d/é~"), "a%20b%26c%3Dd%2F%C3%A9~");
        assert_eq!(url_encode("AZaz09-._~"), "AZaz09-._~");
    }

    #[test]
    fn replacement_links_name_the_console_page_and_prefill_the_form() {
        let user = Owner::User("usr_0000000000000000000001".parse().unwrap_or_else(|e| {
            panic!("{e}");
        }));
        let scopes = vec!["read".to_owned(), "write:all".to_owned()];
        assert_eq!(
            replacement_url("https://lk.test/", &user, "CI deploy", "personal", &scopes),
            "https://lk.test/credentials/new?name=CI%20deploy&type=personal&scopes=read%20write%3Aall"
        );
        let org: OrgId = "org_0000000000000000000001"
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            replacement_url(
                "https://lk.test",
                &Owner::Organisation(org),
                "x",
                "api",
                &[]
            ),
            "https://lk.test/orgs/org_0000000000000000000001/tokens/new?name=x&type=api&scopes="
        );
    }

    #[test]
    fn cancel_links_carry_the_code_in_the_query() {
        assert_eq!(
            cancel_url("http://h:1/", "AbC123"),
            "http://h:1/cancel?code=AbC123"
        );
    }

    #[test]
    fn creation_mail_mentions_the_delay_and_the_cancel_link() {
        let later = at() + time::Duration::minutes(30);
        let mail = token_created(
            &facts(false),
            at(),
            later,
            Some("http://h/cancel?code=x"),
            None,
        );
        assert_eq!(
            mail.subject,
            "Latchkey: personal token \"CI deploy\" created"
        );
        assert!(mail.body.contains("becomes active at 2026-06-01T12:30:00Z"));
        assert!(mail.body.contains("http://h/cancel?code=x"));
        let plain = token_created(&facts(true), at(), at(), None, None);
        assert_eq!(
            plain.subject,
            "Latchkey: organisation token \"CI deploy\" created"
        );
        assert!(!plain.body.contains("cancel"));
    }

    #[test]
    fn token_mails_say_when_it_expires_who_did_it_and_link_the_console_and_the_log() {
        let mail = token_created(&facts(false), at(), at(), None, None);
        for line in [
            "  Expires: 2026-08-30T12:00:00Z",
            "  By:      ada@example.com from 192.0.2.1",
            "In the console:\n  https://lk.test/credentials",
            "check the audit log:\n  https://lk.test/activity",
        ] {
            assert!(mail.body.contains(line), "{line:?} in {}", mail.body);
        }
        let never = TokenFacts {
            expires_at: None,
            by: None,
            ..facts(false)
        };
        let mail = token_revoked(&never, "owner", at());
        assert!(mail.body.contains("  Expires: never"), "{}", mail.body);
        assert!(!mail.body.contains("By:"), "{}", mail.body);
    }

    #[test]
    fn a_rotation_mail_says_what_it_replaces_and_when_the_old_one_stops() {
        let old = Replaced {
            name: "CI deploy",
            hint: "lka_…wxyz",
            id: "tok_0",
            ends: "stops working at 2026-06-01T13:00:00Z".to_owned(),
        };
        let mail = token_created(&facts(false), at(), at(), None, Some(&old));
        assert_eq!(
            mail.subject,
            "Latchkey: personal token \"CI deploy\" rotated"
        );
        assert!(
            mail.body.contains(
                "a new token replaces \"CI deploy\" (lka_…wxyz, tok_0), which stops working at 2026-06-01T13:00:00Z"
            ),
            "{}",
            mail.body
        );
    }

    #[test]
    fn revocation_mails_say_why() {
        let leak = token_revoked(&facts(false), "leak_report", at());
        assert_eq!(
            leak.subject,
            "Latchkey: leaked personal token \"CI deploy\" revoked"
        );
        assert!(leak.body.contains("reported as leaked"));
        let ended = token_revoked(&facts(false), "rotation_first_use", at());
        assert!(ended.body.contains("replacement has now been used"));
        let deleted = token_revoked(&facts(true), "deleted", at());
        assert_eq!(
            deleted.subject,
            "Latchkey: organisation token \"CI deploy\" deleted"
        );
    }

    #[test]
    fn expiry_notices_count_days_and_link_the_replacement() {
        let mail = token_expiring(&facts(false), 1, at(), "http://h/credentials/new?name=x");
        assert_eq!(
            mail.subject,
            "Latchkey: personal token \"CI deploy\" expires in 1 day"
        );
        assert!(mail.body.contains("http://h/credentials/new?name=x"));
        let mail = token_expiring(&facts(false), 30, at(), "u");
        assert!(mail.subject.ends_with("expires in 30 days"));
    }

    #[test]
    fn other_mails() {
        let mail = token_new_address(&facts(false), "192.0.2.7", at());
        assert!(mail.body.contains("192.0.2.7"));
        let mail = token_first_use(&facts(false), "192.0.2.7", at());
        assert_eq!(
            mail.subject,
            "Latchkey: personal token \"CI deploy\" used for the first time"
        );
        assert!(!mail.body.contains("new address") && mail.body.contains("192.0.2.7"));
        let mail = token_ip_refused(&facts(true), "198.51.100.1", at());
        assert_eq!(
            mail.subject,
            "Latchkey: organisation token \"CI deploy\" refused from address 198.51.100.1"
        );
        let mail = client_secret_created("Billing", "cli_1", "lkcs_…wxyz", "Acme", at());
        assert_eq!(mail.subject, "Latchkey: new secret for the app \"Billing\"");
        assert!(mail.body.contains("lkcs_…wxyz"));
        let mail = tokens_revoked_all("your account", None, at());
        assert!(mail.body.contains("kill switch"));
    }
}
