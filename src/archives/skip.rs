//! The load/skip decision: the images an archive's `manifest.json` lists,
//! and whether the daemon already has exactly those (then the archive is
//! not loaded again). Pure: the daemon is asked through `id_of`.

use serde::Deserialize;

use super::{ManifestError, SavedImage};

/// The images a `docker save` manifest lists.
pub fn parse_manifest(bytes: &[u8]) -> Result<Vec<SavedImage>, ManifestError> {
    #[derive(Deserialize)]
    struct Entry {
        #[serde(rename = "Config")]
        config: String,
        #[serde(rename = "RepoTags", default)]
        repo_tags: Option<Vec<String>>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(bytes).map_err(ManifestError::Json)?;
    if entries.is_empty() {
        return Err(ManifestError::Empty);
    }
    entries
        .into_iter()
        .map(|e| {
            let id = config_id(&e.config).ok_or(ManifestError::Config(e.config))?;
            Ok(SavedImage {
                id,
                tags: e.repo_tags.unwrap_or_default(),
            })
        })
        .collect()
}

/// `sha256:<hex>` of `<hex>.json` (Engine ≤ 24) or `blobs/sha256/<hex>`
/// (the OCI layout of Engine 25 and later).
pub(super) fn config_id(config: &str) -> Option<String> {
    let config = config.strip_prefix("./").unwrap_or(config);
    let hex = config
        .strip_prefix("blobs/sha256/")
        .or_else(|| config.strip_suffix(".json"))?;
    let is_hex = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    is_hex.then(|| format!("sha256:{hex}"))
}

/// Whether the daemon has exactly these images: each id present and each
/// tag naming that id. `id_of` gives the id a name or id resolves to.
pub fn is_loaded(images: &[SavedImage], id_of: &mut dyn FnMut(&str) -> Option<String>) -> bool {
    !images.is_empty()
        && images.iter().all(|image| {
            let is_it = |found: Option<String>| found.as_deref() == Some(image.id.as_str());
            is_it(id_of(&image.id)) && image.tags.iter().all(|tag| is_it(id_of(tag)))
        })
}
