//! Base64 for the Docker formats (RFC 4648): the standard alphabet decoded
//! from `config.json`'s `auth`, and padded base64url encoded for
//! `X-Registry-Auth`. Pure; owns nothing else.

const STANDARD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Padded base64url, as the daemon's `X-Registry-Auth` decoder expects.
pub fn encode_url(bytes: &[u8]) -> String {
    encode(bytes, URL)
}

/// Standard padded base64 (used by tests to build fixtures).
#[cfg(test)]
pub fn encode_standard(bytes: &[u8]) -> String {
    encode(bytes, STANDARD)
}

fn encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(alphabet[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, padded or not; `None` on any other character or a
/// length no encoder produces.
pub fn decode_standard(text: &str) -> Option<Vec<u8>> {
    let text = text.as_bytes();
    let body = match text {
        [rest @ .., b'=', b'='] | [rest @ .., b'='] if text.len().is_multiple_of(4) => rest,
        _ => text,
    };
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in body {
        let v = STANDARD.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits are ignored, as Go's (non-strict) StdEncoding does.
    Some(out)
}
