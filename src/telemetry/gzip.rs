//! gzip (RFC 1952) for OTLP bodies (metric names and labels repeat, so
//! they shrink several times): `miniz_oxide`'s deflate, already linked for
//! reading `.tar.gz` image archives, inside gzip's header and trailer. Owns
//! only compression; never decompresses. Pure.

/// Deflate's level: zlib's default, the usual speed/size balance.
const LEVEL: u8 = 6;

const CRC_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut n = 0;
    while n < 256 {
        let mut c = n as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n] = c;
        n += 1;
    }
    table
};

/// CRC-32 (ISO 3309), as gzip's trailer carries it.
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8)
    })
}

/// A gzip member holding `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    // Magic, deflate, no flags, no mtime (reproducible), no extra flags, OS unknown.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend(miniz_oxide::deflate::compress_to_vec(data, LEVEL));
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflate(gz: &[u8]) -> Vec<u8> {
        assert_eq!(&gz[..3], &[0x1f, 0x8b, 8]);
        let body = &gz[10..gz.len() - 8];
        let out = miniz_oxide::inflate::decompress_to_vec(body).expect("valid deflate");
        let crc = u32::from_le_bytes(gz[gz.len() - 8..gz.len() - 4].try_into().unwrap());
        let size = u32::from_le_bytes(gz[gz.len() - 4..].try_into().unwrap());
        assert_eq!(crc, crc32(&out));
        assert_eq!(size as usize, out.len());
        out
    }

    #[test]
    fn crc_matches_the_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn round_trips_through_an_independent_inflater() {
        let mut seed = 0x1234_5678u32;
        let mut random = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        let noise: Vec<u8> = (0..70_000).map(|_| random() as u8).collect();
        let mut text = Vec::new();
        for i in 0..3000 {
            text.extend_from_slice(
                format!("oz_worker_task_failures_total{{phase=\"backend\",reason=\"{i}\"}} 0\n")
                    .as_bytes(),
            );
        }
        let cases: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"a".to_vec(),
            b"ab".to_vec(),
            b"abcabcabcabc".to_vec(),
            vec![0; 100_000],
            vec![255; 259],
            noise.clone(),
            text.clone(),
            [noise.as_slice(), text.as_slice(), noise.as_slice()].concat(),
        ];
        for case in cases {
            assert_eq!(inflate(&gzip(&case)), case, "len {}", case.len());
        }
        assert!(
            gzip(&text).len() * 5 < text.len(),
            "repetitive text shrinks"
        );
    }

    #[test]
    fn every_length_and_distance_code_is_used_correctly() {
        for len in 3..=258usize {
            for dist in [1usize, 2, 5, 300, 1025, 24577, 32768] {
                let mut data: Vec<u8> = (0..dist).map(|i| (i * 7 % 251) as u8).collect();
                let start = data.len() - dist;
                for k in 0..len {
                    let b = data[start + k];
                    data.push(b);
                }
                data.push(0xfe);
                assert_eq!(inflate(&gzip(&data)), data, "len {len} dist {dist}");
            }
        }
    }
}
