//! Base64 for the Docker formats (RFC 4648) through `data-encoding`
//! (already linked by tungstenite): the standard alphabet decoded from
//! `config.json`'s `auth`, and padded base64url encoded for
//! `X-Registry-Auth`. Owns only the choice of alphabet and padding.
//!
//! Only `data-encoding`'s built-in encodings are used: they are constants,
//! so the optimiser keeps only the 6-bit paths (a specification built at
//! run time links every width, ≈ 20 KB more). Their one difference from
//! Go's lenient decoder: non-zero leftover bits (which no encoder writes)
//! are refused.

use data_encoding::{BASE64, BASE64_NOPAD, BASE64URL};

/// Padded base64url, as the daemon's `X-Registry-Auth` decoder expects.
pub fn encode_url(bytes: &[u8]) -> String {
    BASE64URL.encode(bytes)
}

/// Standard padded base64 (used by tests to build fixtures).
#[cfg(test)]
pub fn encode_standard(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

/// Standard base64, padded or not (some `config.json` writers drop the
/// padding); `None` on any other character or a length no encoder produces.
pub fn decode_standard(text: &str) -> Option<Vec<u8>> {
    let encoding = if text.len().is_multiple_of(4) {
        &BASE64
    } else {
        &BASE64_NOPAD
    };
    encoding.decode(text.as_bytes()).ok()
}
