//! Error fingerprints: dead letters that failed for the same reason group together, whatever
//! ids, numbers or names the message carries.

use sha2::{Digest, Sha256};

/// `class` + normalised `message` + `stage`, hashed to 16 hex digits.
pub fn fingerprint(class: &str, message: &str, stage: &str) -> String {
    let digest = Sha256::digest(format!("{class}\n{stage}\n{}", normalise(message)).as_bytes());
    hex::encode(&digest[..8])
}

/// The message with what varies between occurrences replaced: quoted values by `<v>`, UUIDs
/// and other hexadecimal ids by `<id>`, numbers by `<n>`.
pub fn normalise(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, '"' | '\'' | '`') {
            // A quoted value, up to its closing quote; an unclosed quote is kept as it is.
            let rest: String = chars.clone().collect();
            if let Some(end) = rest.find(c) {
                out.push_str("<v>");
                for _ in 0..=rest[..end].chars().count() {
                    chars.next();
                }
                continue;
            }
            out.push(c);
            continue;
        }
        if c.is_ascii_alphanumeric() {
            let mut word = String::from(c);
            while let Some(&next) = chars.peek() {
                if next.is_ascii_alphanumeric() || next == '-' || next == '_' {
                    word.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push_str(&normalise_word(&word));
            continue;
        }
        out.push(c);
    }
    out
}

fn normalise_word(word: &str) -> String {
    let hex_digits = word.chars().filter(char::is_ascii_hexdigit).count();
    let only_hex = word.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    if only_hex && hex_digits >= 8 && word.chars().any(|c| c.is_ascii_digit()) {
        return "<id>".to_owned();
    }
    // Each run of digits becomes `<n>`, so `bench-000042` and `bench-7` group together.
    let mut out = String::with_capacity(word.len());
    let mut in_digits = false;
    for c in word.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push_str("<n>");
            }
            in_digits = true;
        } else {
            in_digits = false;
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_numbers_and_quoted_values_do_not_split_a_group() {
        let a =
            "parked behind dead letter 0193b1f2-7c4d-7a10-9e2f-3a4b5c6d7e8f: key `plugin:a` at 12";
        let b =
            "parked behind dead letter 0193b1f2-0000-7a10-9e2f-aaaaaaaaaaaa: key `plugin:b` at 7";
        assert_eq!(normalise(a), normalise(b));
        assert_eq!(
            fingerprint("retryable", a, "parked"),
            fingerprint("retryable", b, "parked")
        );
    }

    #[test]
    fn class_stage_and_wording_do_split_a_group() {
        let message = "error returned from database: transient fault";
        let base = fingerprint("retryable", message, "handler");
        assert_ne!(base, fingerprint("permanent", message, "handler"));
        assert_ne!(base, fingerprint("retryable", message, "envelope"));
        assert_ne!(
            base,
            fingerprint("retryable", "unknown magic byte", "handler")
        );
    }
}
