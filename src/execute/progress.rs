//! What a long pull or sidecar copy has done so far, in the words of its
//! progress lines: layers and bytes done of the total, the rate, and the
//! closing summary.
//!
//! Owns the reading of the Docker pull stream's layer statuses
//! ([`PullTally`]), the counting of copied bytes ([`CopyTally`]), the
//! at-most-every-10-s rule ([`Throttle`]) and the number formats. Pure:
//! callers pass the clock in and do the logging.

use std::time::{Duration, Instant};

/// Progress lines are at most this often.
pub const EVERY: Duration = Duration::from_secs(10);

/// Says when the next progress line is due.
#[derive(Debug, Clone, Copy)]
pub struct Throttle {
    last: Instant,
    every: Duration,
}

impl Throttle {
    /// The first line is due `every` after `start`.
    pub fn new(start: Instant, every: Duration) -> Throttle {
        Throttle { last: start, every }
    }

    /// True (and the clock restarts) when a line is due at `now`; the
    /// second value is the time since the last line.
    pub fn due(&mut self, now: Instant) -> Option<Duration> {
        let since = now.saturating_duration_since(self.last);
        if since >= self.every {
            self.last = now;
            Some(since)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Layer {
    total: Option<u64>,
    downloaded: u64,
    done: bool,
    present: bool,
}

/// The layers of one pull, from the daemon's progress lines.
#[derive(Debug, Clone, Default)]
pub struct PullTally {
    /// In the order the daemon named them (an image has tens of layers, not thousands).
    layers: Vec<(String, Layer)>,
    /// Bytes at the previous progress line, for the rate.
    reported: u64,
}

impl PullTally {
    /// Takes one line of the pull stream.
    pub fn observe(&mut self, status: &str, id: &str, current: Option<u64>, total: Option<u64>) {
        if id.is_empty() {
            return;
        }
        if !matches!(
            status,
            "Pulling fs layer"
                | "Waiting"
                | "Downloading"
                | "Verifying Checksum"
                | "Download complete"
                | "Extracting"
                | "Pull complete"
                | "Already exists"
                | "Retrying"
        ) {
            // "Pulling from …" (id is the tag), digests, statuses of no layer.
            return;
        }
        let i = match self.layers.iter().position(|(l, _)| l == id) {
            Some(i) => i,
            None => {
                self.layers.push((id.to_owned(), Layer::default()));
                self.layers.len() - 1
            }
        };
        let layer = &mut self.layers[i].1;
        match status {
            "Downloading" => {
                if let Some(t) = total.filter(|&t| t > 0) {
                    layer.total = Some(t);
                }
                if let Some(c) = current {
                    layer.downloaded = layer.downloaded.max(c);
                }
            }
            "Download complete" | "Verifying Checksum" | "Extracting" => {
                if let Some(t) = layer.total {
                    layer.downloaded = t;
                }
            }
            "Pull complete" => {
                if let Some(t) = layer.total {
                    layer.downloaded = t;
                }
                layer.done = true;
            }
            "Already exists" => {
                layer.done = true;
                layer.present = true;
            }
            _ => {}
        }
    }

    /// Bytes downloaded so far.
    pub fn bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|(_, l)| l)
            .map(|l| l.downloaded)
            .sum()
    }

    /// The progress line (`layers a/b, x of y, rate`) after `since` since the last.
    pub fn line(&mut self, image: &str, since: Duration) -> String {
        let done = self
            .layers
            .iter()
            .map(|(_, l)| l)
            .filter(|l| l.done)
            .count();
        let to_download: Vec<&Layer> = self
            .layers
            .iter()
            .map(|(_, l)| l)
            .filter(|l| !l.present)
            .collect();
        let total: u64 = to_download.iter().filter_map(|l| l.total).sum();
        let unknown = to_download.iter().filter(|l| l.total.is_none()).count();
        let bytes = self.bytes();
        let rate = rate(bytes.saturating_sub(self.reported), since);
        self.reported = bytes;
        let mut out = format!(
            "pulling image {image}: {done}/{} layers, {} of {}, {rate}",
            self.layers.len(),
            size(bytes),
            size(total)
        );
        if unknown > 0 {
            out.push_str(&format!(
                " (size of {unknown} layer{} not known yet)",
                if unknown == 1 { "" } else { "s" }
            ));
        }
        out
    }

    /// The closing line of a pull that took `took`.
    pub fn summary(&self, image: &str, took: Duration) -> String {
        if self.layers.is_empty() {
            return format!(
                "pulled image {image} in {}: already up to date",
                seconds(took)
            );
        }
        let present = self
            .layers
            .iter()
            .map(|(_, l)| l)
            .filter(|l| l.present)
            .count();
        let bytes = self.bytes();
        let mut layers = format!("{} layers", self.layers.len());
        if present > 0 {
            layers.push_str(&format!(" ({present} already present)"));
        }
        format!(
            "pulled image {image} in {}: {layers}, {} downloaded, {}",
            seconds(took),
            size(bytes),
            rate(bytes, took)
        )
    }
}

/// Bytes of a sidecar copy.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopyTally {
    /// Bytes copied so far.
    pub bytes: u64,
    reported: u64,
}

impl CopyTally {
    /// Counts `n` more bytes.
    pub fn add(&mut self, n: usize) {
        self.bytes += n as u64;
    }

    /// The progress line after `since` since the last.
    pub fn line(&mut self, image: &str, volume: &str, since: Duration) -> String {
        let r = rate(self.bytes - self.reported, since);
        self.reported = self.bytes;
        format!(
            "copying sidecar image {image} into volume {volume}: {} so far, {r}",
            size(self.bytes)
        )
    }

    /// The closing line of a copy that took `took`.
    pub fn summary(&self, image: &str, volume: &str, took: Duration) -> String {
        format!(
            "copied sidecar image {image} into volume {volume}: {} in {}, {}",
            size(self.bytes),
            seconds(took),
            rate(self.bytes, took)
        )
    }
}

/// Decimal units, as the docker CLI shows sizes: `980 B`, `45.2 MB`.
/// (Integer arithmetic: precision float formatting costs kilobytes of code.)
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut unit = 0;
    let mut scale: u128 = 1000;
    // Rounded to tenths, moving up a unit when that reads 1000.0.
    let mut tenths = (u128::from(bytes) * 10 + scale / 2) / scale;
    while tenths >= 10_000 && unit < UNITS.len() - 1 {
        unit += 1;
        scale *= 1000;
        tenths = (u128::from(bytes) * 10 + scale / 2) / scale;
    }
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// Bytes per second over `over`: `2.5 MB/s`.
pub fn rate(bytes: u64, over: Duration) -> String {
    let millis = over.as_millis();
    if millis == 0 {
        return "—/s".into();
    }
    let per_second = u128::from(bytes) * 1000 / millis;
    format!("{}/s", size(per_second.min(u128::from(u64::MAX)) as u64))
}

/// Tenths of a second: `32.1s`.
pub fn seconds(d: Duration) -> String {
    let tenths = (d.as_millis() + 50) / 100;
    format!("{}.{}s", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_docker_cli() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1000), "1.0 kB");
        assert_eq!(size(45_200_000), "45.2 MB");
        assert_eq!(size(999_960), "1.0 MB");
        assert_eq!(size(120_000_000_000), "120.0 GB");
    }

    #[test]
    fn the_throttle_allows_one_line_per_period() {
        let t0 = Instant::now();
        let mut t = Throttle::new(t0, EVERY);
        assert_eq!(t.due(t0 + Duration::from_secs(9)), None);
        assert_eq!(t.due(t0 + Duration::from_secs(10)), Some(EVERY));
        assert_eq!(t.due(t0 + Duration::from_secs(15)), None);
        assert_eq!(
            t.due(t0 + Duration::from_secs(22)),
            Some(Duration::from_secs(12))
        );
    }

    #[test]
    fn a_pull_is_tallied_from_the_daemon_statuses() {
        let mut p = PullTally::default();
        p.observe("Pulling from library/app", "1.0", None, None);
        p.observe("Already exists", "base", None, None);
        p.observe("Pulling fs layer", "a", None, None);
        p.observe("Pulling fs layer", "b", None, None);
        p.observe("Downloading", "a", Some(20_000_000), Some(50_000_000));
        assert_eq!(
            p.line("r/app:1.0", Duration::from_secs(10)),
            "pulling image r/app:1.0: 1/3 layers, 20.0 MB of 50.0 MB, 2.0 MB/s (size of 1 layer not known yet)"
        );
        p.observe("Downloading", "b", Some(1_000_000), Some(70_000_000));
        p.observe("Download complete", "a", None, None);
        p.observe("Pull complete", "a", None, None);
        assert_eq!(
            p.line("r/app:1.0", Duration::from_secs(10)),
            "pulling image r/app:1.0: 2/3 layers, 51.0 MB of 120.0 MB, 3.1 MB/s"
        );
        p.observe("Downloading", "b", Some(70_000_000), Some(70_000_000));
        p.observe("Pull complete", "b", None, None);
        p.observe("Digest: sha256:abc", "", None, None);
        assert_eq!(p.bytes(), 120_000_000);
        assert_eq!(
            p.summary("r/app:1.0", Duration::from_secs(32)),
            "pulled image r/app:1.0 in 32.0s: 3 layers (1 already present), 120.0 MB downloaded, 3.8 MB/s"
        );
    }

    #[test]
    fn a_pull_of_nothing_new_says_so() {
        assert_eq!(
            PullTally::default().summary("a:1", Duration::from_millis(120)),
            "pulled image a:1 in 0.1s: already up to date"
        );
    }

    #[test]
    fn a_copy_counts_bytes() {
        let mut c = CopyTally::default();
        c.add(5_000_000);
        assert_eq!(
            c.line("side:1", "vol", Duration::from_secs(10)),
            "copying sidecar image side:1 into volume vol: 5.0 MB so far, 500.0 kB/s"
        );
        c.add(5_000_000);
        assert_eq!(
            c.summary("side:1", "vol", Duration::from_secs(4)),
            "copied sidecar image side:1 into volume vol: 10.0 MB in 4.0s, 2.5 MB/s"
        );
    }
}
