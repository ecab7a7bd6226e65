//! What a client sends, as typed values: a body or a path that does not parse is refused at
//! the edge with a problem, before anything reaches the database (which would refuse a NUL
//! with an error of its own).

use plexica_plugin_sdk::Problem;
use serde::Deserialize;
use uuid::Uuid;

/// Text a person typed: trimmed, `1..=max` characters, no control characters.
fn text(value: String, what: &str, max: usize) -> Result<String, String> {
    let trimmed = value.trim();
    let length = trimmed.chars().count();
    if length == 0 {
        return Err(format!("the {what} is empty"));
    }
    if length > max {
        return Err(format!("the {what} has {length} characters; at most {max}"));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(format!("the {what} holds a control character"));
    }
    Ok(trimmed.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Name(pub String);

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        text(value, "name", 200).map(Self)
    }
}

/// An address with one `@` and something on each side of it; whether it receives mail is the
/// mail server's business.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Email(pub String);

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        let address = text(value, "email", 254)?;
        match address.split_once('@') {
            Some((local, domain))
                if !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !address.contains(char::is_whitespace) =>
            {
                Ok(Self(address))
            }
            _ => Err(format!("`{address}` is not an email address")),
        }
    }
}

/// An ISO 4217 code: three capital letters.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Currency(pub String);

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(value))
        } else {
            Err(format!(
                "`{value}` is not a currency code (three capital letters, as EUR)"
            ))
        }
    }
}

/// An amount in the currency's smallest unit, never negative.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "i64")]
pub struct Cents(pub i64);

impl TryFrom<i64> for Cents {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, String> {
        if value >= 0 {
            Ok(Self(value))
        } else {
            Err(format!("the amount {value} is negative"))
        }
    }
}

/// An amount in the currency's main unit, as a client types it (`1200`, `1200.5`): at most
/// two decimals, never negative, kept in cents. A JSON number is read from its text, so that
/// no binary fraction rounds a cent away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "serde_json::Number")]
pub struct Amount(pub Cents);

impl TryFrom<serde_json::Number> for Amount {
    type Error = String;
    fn try_from(value: serde_json::Number) -> Result<Self, String> {
        let text = value.to_string();
        let refuse = || format!("the amount {text} is not an amount with at most two decimals");
        if text.starts_with('-') {
            return Err(format!("the amount {text} is negative"));
        }
        let (units, decimals) = text.split_once('.').unwrap_or((&text, ""));
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if units.is_empty() || !digits(units) || !digits(decimals) {
            return Err(refuse());
        }
        // `1200.0` is how a float prints a whole amount; more decimals than cents hold are
        // refused rather than rounded.
        let decimals = decimals.trim_end_matches('0');
        if decimals.len() > 2 {
            return Err(refuse());
        }
        let cents_part = format!("{decimals:0<2}");
        units
            .parse::<i64>()
            .ok()
            .and_then(|units| units.checked_mul(100))
            .zip(cents_part.parse::<i64>().ok())
            .and_then(|(units, cents)| units.checked_add(cents))
            .map(|cents| Self(Cents(cents)))
            .ok_or_else(|| format!("the amount {text} is too large"))
    }
}

/// `?limit=`: how many rows a list answers, 1 to 100, 50 when not given.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct Page {
    limit: Option<i64>,
}

impl Page {
    pub const MAX: i64 = 100;

    pub fn limit(&self) -> Result<i64, Problem> {
        match self.limit {
            None => Ok(50),
            Some(limit) if (1..=Self::MAX).contains(&limit) => Ok(limit),
            Some(limit) => Err(Problem::bad_request(format!(
                "limit {limit} is not between 1 and {}",
                Self::MAX
            ))),
        }
    }
}

/// The id in a path: a UUID, or no such thing (404).
pub fn id_of(what: &str, id: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::not_found(format!("no {what} has the id `{id}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(
            Name::try_from("  Ada ".to_owned()),
            Ok(Name("Ada".to_owned()))
        );
        assert!(Name::try_from("   ".to_owned()).is_err());
        assert!(Name::try_from("a\0b".to_owned()).is_err());
        assert!(Name::try_from("x".repeat(201)).is_err());
        assert!(Name::try_from("é".repeat(200)).is_ok());
    }

    #[test]
    fn an_email_has_one_at_with_text_on_each_side() {
        assert!(Email::try_from("ada@example.com".to_owned()).is_ok());
        for bad in ["ada", "@example.com", "ada@", "a@b@c", "a da@example.com"] {
            assert!(Email::try_from(bad.to_owned()).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies_and_amounts_are_refused_when_malformed() {
        assert!(Currency::try_from("EUR".to_owned()).is_ok());
        for bad in ["eur", "EURO", "E1R", ""] {
            assert!(Currency::try_from(bad.to_owned()).is_err(), "{bad}");
        }
        assert!(Cents::try_from(-1).is_err());
        assert_eq!(Cents::try_from(0), Ok(Cents(0)));
    }

    #[test]
    fn an_amount_is_kept_in_cents_without_rounding() {
        let amount = |json: &str| {
            serde_json::from_str::<Amount>(json)
                .map(|amount| amount.0.0)
                .map_err(|e| e.to_string())
        };
        assert_eq!(amount("1200"), Ok(120_000));
        assert_eq!(amount("1200.5"), Ok(120_050));
        assert_eq!(amount("1200.50"), Ok(120_050));
        assert_eq!(amount("0.07"), Ok(7));
        assert_eq!(
            amount("1e3"),
            amount("1000"),
            "a float's text is read as written"
        );
        for bad in [
            "-1",
            "0.001",
            "1e300",
            "92233720368547758.08",
            "\"12\"",
            "null",
        ] {
            assert!(amount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_page_is_bounded() {
        let page = |limit| Page { limit };
        assert_eq!(page(None).limit().ok(), Some(50));
        assert_eq!(page(Some(100)).limit().ok(), Some(100));
        assert!(page(Some(0)).limit().is_err());
        assert!(page(Some(101)).limit().is_err());
        assert!(id_of("deal", "nope").is_err());
    }
}
