//! Domain identifiers. Each can only be built through `parse`, so an invalid id cannot
//! exist past the boundary that parsed it.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdError {
    /// Which kind of id was expected (`user_id`, `event_id`, `order_id`).
    pub kind: &'static str,
}

impl fmt::Display for IdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}", self.kind)
    }
}

impl std::error::Error for IdError {}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $allowed:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Whether `s` is a valid id: 1–64 characters of the allowed set.
            pub fn is_valid(s: &str) -> bool {
                let allowed: fn(u8) -> bool = $allowed;
                (1..=64).contains(&s.len()) && s.bytes().all(allowed)
            }

            /// Parses and validates an id ([`Self::is_valid`]).
            pub fn parse(s: &str) -> Result<Self, IdError> {
                if Self::is_valid(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdError { kind: $kind })
                }
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A shopper: the JWT `sub`, `[A-Za-z0-9_-]{1,64}`.
    UserId,
    "user_id",
    |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
);
id_type!(
    /// An event slug, `[a-z0-9-]{1,64}`.
    EventId,
    "event_id",
    |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
);
id_type!(
    /// An order, minted by the origin when stock is reserved, `[A-Za-z0-9_-]{1,64}`.
    OrderId,
    "order_id",
    |b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn event_ids_are_lowercase_slugs() {
        assert!(EventId::parse("phone-2026").is_ok());
        for bad in ["", "Phone", "a_b", "a b", "a/b", &"x".repeat(65)] {
            assert!(EventId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn user_ids_allow_underscore_and_case() {
        assert!(UserId::parse("User_42-a").is_ok());
        assert!(UserId::parse(&"u".repeat(64)).is_ok());
        for bad in ["", "a.b", "a b", "ü", &"u".repeat(65)] {
            assert!(UserId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<EventId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<EventId>("\"NO\"").is_err());
    }

    proptest! {
        #[test]
        fn parsed_user_ids_round_trip(s in "[A-Za-z0-9_-]{1,64}") {
            let id = UserId::parse(&s).expect("valid by construction");
            prop_assert_eq!(id.as_str(), s.as_str());
        }

        #[test]
        fn user_ids_never_contain_separators(s in ".{0,80}") {
            if let Ok(id) = UserId::parse(&s) {
                prop_assert!(!id.as_str().contains(['|', '.', '\n', ':']));
            }
        }
    }
}
