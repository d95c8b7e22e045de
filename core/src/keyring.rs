//! A secret and the one it replaces, so that a secret rotates without refusing anything.
//!
//! Everything is signed with the current key; a token, ticket, receipt or request
//! signature is accepted under the current key, then under the previous one. An operator
//! adds the new secret as current with the old one as previous, waits until nothing
//! signed under the old one is still in use, and then drops the previous (the procedure:
//! docs/runbook.md, "Rotating a secret").
//!
//! Trying both keys needs nothing from the signer: shopper tokens come from an identity
//! service that knows no key ids, and a second HMAC is spent only on what the current key
//! refuses.

use std::fmt;

/// Which key of a [`KeyRing`] accepted a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyUsed {
    /// The key everything is signed with now.
    Current,
    /// The key being rotated out.
    Previous,
}

/// The current key and, while a rotation is under way, the previous one.
#[derive(Clone, PartialEq, Eq)]
pub struct KeyRing {
    current: Vec<u8>,
    previous: Option<Vec<u8>>,
}

impl KeyRing {
    /// A ring of `current` and an optional `previous`; a previous equal to the current or
    /// empty is no previous.
    ///
    /// ```
    /// use flashgate_core::keyring::KeyRing;
    /// let ring = KeyRing::new(b"new-secret", Some(b"old-secret".as_slice()));
    /// assert_eq!(ring.current(), b"new-secret");
    /// assert_eq!(ring.previous(), Some(b"old-secret".as_slice()));
    /// assert_eq!(KeyRing::new(b"same", Some(b"same".as_slice())).previous(), None);
    /// ```
    pub fn new(current: &[u8], previous: Option<&[u8]>) -> Self {
        Self {
            current: current.to_vec(),
            previous: previous
                .filter(|p| !p.is_empty() && *p != current)
                .map(<[u8]>::to_vec),
        }
    }

    /// A ring of one key (no rotation under way).
    pub fn single(current: &[u8]) -> Self {
        Self::new(current, None)
    }

    /// The key to sign and issue with.
    pub fn current(&self) -> &[u8] {
        &self.current
    }

    /// The key being rotated out, if any.
    pub fn previous(&self) -> Option<&[u8]> {
        self.previous.as_deref()
    }

    /// The first key, current then previous, that `accepts`; `None` when neither does.
    ///
    /// ```
    /// use flashgate_core::keyring::{KeyRing, KeyUsed};
    /// let ring = KeyRing::new(b"new", Some(b"old".as_slice()));
    /// assert_eq!(ring.find(|k| k == b"new"), Some(KeyUsed::Current));
    /// assert_eq!(ring.find(|k| k == b"old"), Some(KeyUsed::Previous));
    /// assert_eq!(ring.find(|k| k == b"third"), None);
    /// ```
    pub fn find(&self, mut accepts: impl FnMut(&[u8]) -> bool) -> Option<KeyUsed> {
        if accepts(&self.current) {
            return Some(KeyUsed::Current);
        }
        self.previous
            .as_deref()
            .filter(|p| accepts(p))
            .map(|_| KeyUsed::Previous)
    }

    /// The ring of keys derived from each of these by `derive` (a ticket or receipt key
    /// from the edge secret), so that what was signed under a derived previous key is
    /// still accepted.
    pub fn derive<K: AsRef<[u8]>>(&self, derive: impl Fn(&[u8]) -> K) -> KeyRing {
        let previous = self.previous.as_deref().map(&derive);
        KeyRing::new(
            derive(&self.current).as_ref(),
            previous.as_ref().map(AsRef::as_ref),
        )
    }
}

/// Never prints a key: only whether a previous one is held.
impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_key_is_tried_first_and_the_previous_only_after() {
        let ring = KeyRing::new(b"new", Some(b"old".as_slice()));
        let mut tried = Vec::new();
        assert_eq!(
            ring.find(|k| {
                tried.push(k.to_vec());
                false
            }),
            None
        );
        assert_eq!(tried, [b"new".to_vec(), b"old".to_vec()]);
        tried.clear();
        assert_eq!(
            ring.find(|k| {
                tried.push(k.to_vec());
                true
            }),
            Some(KeyUsed::Current)
        );
        assert_eq!(tried, [b"new".to_vec()]);
    }

    #[test]
    fn without_a_previous_only_the_current_key_accepts() {
        for ring in [
            KeyRing::single(b"new"),
            KeyRing::new(b"new", Some(b"".as_slice())),
            KeyRing::new(b"new", Some(b"new".as_slice())),
        ] {
            assert_eq!(ring.previous(), None);
            assert_eq!(ring.find(|k| k == b"new"), Some(KeyUsed::Current));
            assert_eq!(ring.find(|k| k != b"new"), None);
        }
    }

    #[test]
    fn derived_rings_keep_both_keys_apart() {
        let ring =
            KeyRing::new(b"new", Some(b"old".as_slice())).derive(|k| [b"ticket:", k].concat());
        assert_eq!(ring.current(), b"ticket:new");
        assert_eq!(ring.previous(), Some(b"ticket:old".as_slice()));
        let single = KeyRing::single(b"new").derive(|k| [b"ticket:", k].concat());
        assert_eq!(single.previous(), None);
    }

    #[test]
    fn debug_prints_no_key() {
        let printed = format!(
            "{:?}",
            KeyRing::new(b"new-secret", Some(b"old-secret".as_slice()))
        );
        assert!(!printed.contains("secret"), "{printed}");
        assert!(printed.contains("previous: true"), "{printed}");
    }
}
