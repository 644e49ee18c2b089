//! Shared by the split-invariance targets: derives where to cut a payload
//! from the fuzz input itself, so libFuzzer explores the split points too.

/// Splits `data` into the pieces to feed and returns them.
///
/// Layout: byte 0 picks the mode (`% 16`): 15 feeds one byte at a time,
/// otherwise that many cut bytes follow, each scaled to a position in the
/// payload (the rest of the input). Positions are sorted, so pieces keep
/// their order and may be empty.
pub fn pieces(data: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return (Vec::new(), data);
    };
    let mode = usize::from(mode % 16);
    if mode == 15 {
        return (rest.chunks(1).collect(), rest);
    }
    let cuts_len = mode.min(rest.len());
    let (cuts, payload) = rest.split_at(cuts_len);
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|&b| usize::from(b) * (payload.len() + 1) / 256)
        .collect();
    at.sort_unstable();
    let mut out = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for cut in at {
        out.push(&payload[start..cut]);
        start = cut;
    }
    out.push(&payload[start..]);
    (out, payload)
}
