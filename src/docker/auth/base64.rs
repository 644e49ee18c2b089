//! Base64 for the Docker formats (RFC 4648) through `data-encoding`
//! (already linked by tungstenite): the standard alphabet decoded from
//! `config.json`'s `auth`, and padded base64url encoded for
//! `X-Registry-Auth`. Owns only the choice of alphabet and leniency.

use std::sync::LazyLock;

use data_encoding::{BASE64URL, Encoding, Specification};

/// Padded base64url, as the daemon's `X-Registry-Auth` decoder expects.
pub fn encode_url(bytes: &[u8]) -> String {
    BASE64URL.encode(bytes)
}

/// Standard padded base64 (used by tests to build fixtures).
#[cfg(test)]
pub fn encode_standard(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

/// Standard base64, padded or not; `None` on any other character or a
/// length no encoder produces.
pub fn decode_standard(text: &str) -> Option<Vec<u8>> {
    // Leftover bits are ignored, as Go's (non-strict) StdEncoding does, and
    // `docker login` writers that drop the padding are accepted.
    static PADDED: LazyLock<Encoding> = LazyLock::new(|| lenient(Some('=')));
    static UNPADDED: LazyLock<Encoding> = LazyLock::new(|| lenient(None));
    let encoding = if text.len().is_multiple_of(4) {
        &*PADDED
    } else {
        &*UNPADDED
    };
    encoding.decode(text.as_bytes()).ok()
}

fn lenient(padding: Option<char>) -> Encoding {
    let mut spec = Specification::new();
    spec.symbols
        .push_str("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/");
    spec.padding = padding;
    spec.check_trailing_bits = false;
    spec.encoding()
        .expect("the standard base64 alphabet is a valid specification")
}
