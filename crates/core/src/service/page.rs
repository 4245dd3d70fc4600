//! Paging of list calls: a requested size and an opaque token in, a page and
//! the next token out.

use crate::error::{Error, Result};

/// A caller's page request as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// The requested size: 0 means the default, larger than the maximum is
    /// lowered to it, negative is refused.
    pub size: i32,
    /// The token of the previous page; empty for the first.
    pub token: String,
}

impl PageRequest {
    /// Returns the page size to use and the key after which the page starts.
    pub fn resolve(&self, default: usize, max: usize) -> Result<(usize, String)> {
        Ok((
            page_size(self.size, default, max)?,
            decode_token(&self.token)?,
        ))
    }
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items, in key order.
    pub items: Vec<T>,
    /// The token of the next page; empty when this is the last.
    pub next_token: String,
}

impl<T> Page<T> {
    /// A page of `items`; when `more` follow, the next token names the key of
    /// the last item (`key_of`).
    pub fn new(items: Vec<T>, more: bool, key_of: impl Fn(&T) -> &str) -> Page<T> {
        let next_token = match items.last() {
            Some(last) if more => encode_token(key_of(last)),
            _ => String::new(),
        };
        Page { items, next_token }
    }
}

/// What is left for a page's items under a message limit of
/// `max_message_bytes`, once the answer's own fields (the next page token
/// and the like) are counted.
pub fn byte_budget(max_message_bytes: usize) -> usize {
    max_message_bytes.saturating_sub(1024).max(1)
}

/// Cuts a page to the items that fit in `budget` bytes, counted by `size`
/// (an upper bound of each item's encoding), so that no answer can pass the
/// message limit however large its items: the longest prefix that fits, and
/// always the first item (a page is never empty while items remain). Returns
/// the items kept and whether more follow (`more`, or some were cut).
pub fn fit<T>(
    mut items: Vec<T>,
    more: bool,
    budget: usize,
    size: impl Fn(&T) -> usize,
) -> (Vec<T>, bool) {
    let mut used = 0usize;
    let keep = items
        .iter()
        .position(|item| {
            used = used.saturating_add(size(item));
            used > budget
        })
        .map_or(items.len(), |cut| cut.max(1));
    let cut = keep < items.len();
    items.truncate(keep);
    (items, more || cut)
}

/// Returns the page size to use: 0 means the default; larger than the
/// maximum is lowered to it; negative is INVALID_ARGUMENT.
fn page_size(requested: i32, default: usize, max: usize) -> Result<usize> {
    match requested {
        n if n < 0 => Err(Error::invalid_argument("page_size", "must not be negative")),
        0 => Ok(default),
        n => Ok(usize::try_from(n).unwrap_or(max).min(max)),
    }
}

/// A page token is the hex of the last key of the previous page and of the
/// first 4 bytes of its SHA-256 (under a fixed prefix): opaque to callers,
/// and a token this server did not hand out (edited, truncated, made up) is
/// refused rather than read as some key.
fn encode_token(last: &str) -> String {
    let mut t = hex::encode(last);
    t.push_str(&hex::encode(check(last)));
    t
}

fn check(key: &str) -> [u8; 4] {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"switchyard page token v1\0")
        .chain_update(key.as_bytes())
        .finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

/// Decodes a page token; empty means the first page.
fn decode_token(token: &str) -> Result<String> {
    if token.is_empty() {
        return Ok(String::new());
    }
    let refused =
        || Error::invalid_argument("page_token", "is not a token returned by this server");
    let bytes = hex::decode(token).map_err(|_| refused())?;
    let (key, sum) = bytes.split_last_chunk::<4>().ok_or_else(refused)?;
    let key = std::str::from_utf8(key).map_err(|_| refused())?;
    if key.is_empty() || check(key) != *sum {
        return Err(refused());
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_fit_their_budget_and_are_never_empty() {
        let items = vec![40usize, 40, 40, 40];
        assert_eq!(fit(items.clone(), false, 100, |n| *n), (vec![40, 40], true));
        assert_eq!(
            fit(items.clone(), false, 160, |n| *n),
            (items.clone(), false)
        );
        assert_eq!(fit(items.clone(), true, 160, |n| *n), (items.clone(), true));
        assert_eq!(
            fit(vec![500usize, 1], false, 100, |n| *n),
            (vec![500], true)
        );
        assert_eq!(
            fit(Vec::<usize>::new(), false, 100, |n| *n),
            (vec![], false)
        );
    }

    #[test]
    fn sizes_default_cap_and_refuse_negatives() {
        let r = |size| PageRequest {
            size,
            token: String::new(),
        };
        assert_eq!(r(0).resolve(100, 1000).unwrap().0, 100);
        assert_eq!(r(5000).resolve(100, 1000).unwrap().0, 1000);
        assert!(r(-1).resolve(100, 1000).is_err());
    }

    #[test]
    fn tokens_round_trip_and_foreign_ones_are_refused() {
        let page = Page::new(vec!["a", "b"], true, |s| s);
        let next = PageRequest {
            size: 0,
            token: page.next_token,
        };
        assert_eq!(next.resolve(1, 1).unwrap().1, "b");
        assert!(Page::new(vec!["a"], false, |s| s).next_token.is_empty());
        // Not hex; hex of a key without its check (what tokens used to be);
        // a real token edited by one character; too short.
        for token in [
            "zz".to_owned(),
            hex::encode("b"),
            {
                let mut t = encode_token("b");
                t.replace_range(0..1, "7");
                t
            },
            "00".into(),
        ] {
            let bad = PageRequest { size: 0, token };
            assert_eq!(
                bad.resolve(1, 1).unwrap_err().message(),
                "page_token: is not a token returned by this server",
                "{bad:?}"
            );
        }
    }
}
