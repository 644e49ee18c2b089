//! gzip (RFC 1952) around one deflate block (RFC 1951) with the fixed
//! Huffman codes and LZ77 matches found through a small hash chain: enough
//! to shrink an OTLP body (metric names and labels repeat) several times,
//! for a few kilobytes of code rather than a general-purpose compressor's
//! tens. Owns only compression; never decompresses. Pure.

/// Bytes the encoder looks back for matches (deflate's maximum).
const WINDOW: usize = 32 * 1024;
const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
/// Candidates tried per position: a speed/size trade-off, not a correctness one.
const MAX_PROBES: usize = 16;
const HASH_BITS: u32 = 15;

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// Bits written least significant first, as deflate packs them.
struct Bits {
    out: Vec<u8>,
    acc: u64,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, bits: u32) {
        self.acc |= u64::from(value) << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.out.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    /// A Huffman code, which deflate stores most significant bit first.
    fn code(&mut self, code: u32, len: u32) {
        self.put(code.reverse_bits() >> (32 - len), len);
    }

    fn flush(&mut self) {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.acc = 0;
        self.n = 0;
    }

    /// A literal/length symbol in the fixed code (RFC 1951 §3.2.6).
    fn symbol(&mut self, v: u32) {
        match v {
            0..=143 => self.code(0x30 + v, 8),
            144..=255 => self.code(0x190 + v - 144, 9),
            256..=279 => self.code(v - 256, 7),
            _ => self.code(0xc0 + v - 280, 8),
        }
    }

    fn matched(&mut self, len: usize, dist: usize) {
        let i = LEN_BASE.partition_point(|&b| usize::from(b) <= len) - 1;
        self.symbol(257 + i as u32);
        self.put(
            (len - usize::from(LEN_BASE[i])) as u32,
            u32::from(LEN_EXTRA[i]),
        );
        let d = DIST_BASE.partition_point(|&b| usize::from(b) <= dist) - 1;
        self.code(d as u32, 5);
        self.put(
            (dist - usize::from(DIST_BASE[d])) as u32,
            u32::from(DIST_EXTRA[d]),
        );
    }
}

fn hash(data: &[u8], i: usize) -> usize {
    let v = u32::from(data[i]) << 16 | u32::from(data[i + 1]) << 8 | u32::from(data[i + 2]);
    (v.wrapping_mul(0x9e37_79b1) >> (32 - HASH_BITS)) as usize
}

/// Raw deflate of `data`: one final block with the fixed codes.
pub fn deflate(data: &[u8]) -> Vec<u8> {
    let mut bits = Bits {
        out: Vec::with_capacity(data.len() / 3 + 16),
        acc: 0,
        n: 0,
    };
    bits.put(1, 1); // BFINAL
    bits.put(1, 2); // BTYPE = fixed Huffman
    // head[h]: latest position + 1 with hash h; prev[i % WINDOW]: the one before.
    let mut head = vec![0u32; 1 << HASH_BITS];
    let mut prev = vec![0u32; WINDOW];
    let insert = |head: &mut [u32], prev: &mut [u32], i: usize| {
        if i + MIN_MATCH <= data.len() {
            let h = hash(data, i);
            prev[i % WINDOW] = head[h];
            head[h] = i as u32 + 1;
        }
    };
    let mut i = 0;
    while i < data.len() {
        let mut best = (0usize, 0usize);
        if i + MIN_MATCH <= data.len() {
            let mut candidate = head[hash(data, i)] as usize;
            let limit = (data.len() - i).min(MAX_MATCH);
            for _ in 0..MAX_PROBES {
                if candidate == 0 {
                    break;
                }
                let at = candidate - 1;
                if i - at > WINDOW || at >= i {
                    break;
                }
                let len = data[at..]
                    .iter()
                    .zip(&data[i..i + limit])
                    .take_while(|(a, b)| a == b)
                    .count();
                if len > best.0 {
                    best = (len, i - at);
                    if len == limit {
                        break;
                    }
                }
                let next = prev[at % WINDOW] as usize;
                // Older entries only; a newer one means the slot was reused.
                if next == 0 || next > at {
                    break;
                }
                candidate = next;
            }
        }
        if best.0 >= MIN_MATCH {
            bits.matched(best.0, best.1);
            for j in i..i + best.0 {
                insert(&mut head, &mut prev, j);
            }
            i += best.0;
        } else {
            bits.symbol(u32::from(data[i]));
            insert(&mut head, &mut prev, i);
            i += 1;
        }
    }
    bits.symbol(256); // end of block
    bits.flush();
    bits.out
}

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
    out.extend(deflate(data));
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
