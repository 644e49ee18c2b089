//! SHA-256 as lower-case hex, through `ring` (already linked by rustls): the
//! names of docker context directories (`contexts/meta/<sha256(name)>`) and
//! the execution keys of ownership claims. Owns nothing else.

use data_encoding::HEXLOWER;
use ring::digest::{SHA256, digest};

/// The SHA-256 digest of `data` as 64 lower-case hex digits.
pub fn hex_digest(data: &[u8]) -> String {
    HEXLOWER.encode(digest(&SHA256, data).as_ref())
}

#[cfg(test)]
mod tests {
    use super::hex_digest;

    #[test]
    fn nist_vectors() {
        assert_eq!(
            hex_digest(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex_digest(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn docker_context_name() {
        // `printf remote | sha256sum`: the directory the docker CLI uses for a context "remote".
        assert_eq!(
            hex_digest(b"remote"),
            "b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a"
        );
    }
}
