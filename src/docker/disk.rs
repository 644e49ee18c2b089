//! Engine calls about what holds disk space and what uses it: every
//! container with its image and volumes, volumes with their driver options
//! (an overlay names its lower directory there), `GET /system/df` sizes, and
//! removing an image only when nothing needs it.
//!
//! Typed calls only; what may go is `execute::retention`'s decision.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use super::api::{Docker, MAX_JSON, enc, expect_success, null_as_default};
use super::client::Body;
use super::error::Result;

/// One container of `GET /containers/json?all=1` (any state), with what it uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerUsage {
    /// Container id.
    pub id: String,
    /// The id of its image (`sha256:…`).
    pub image_id: String,
    /// The named volumes it mounts.
    pub volumes: Vec<String>,
}

/// A volume of `GET /volumes` with its driver options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct VolumeDetail {
    /// Volume name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Where the daemon keeps its files (on the daemon's host).
    #[serde(rename = "Mountpoint", default)]
    pub mountpoint: String,
    /// Driver options (`type`, `device`, `o` for a `local` mount).
    #[serde(rename = "Options", default, deserialize_with = "null_as_default")]
    pub options: BTreeMap<String, String>,
}

/// Sizes from `GET /system/df`, in bytes; `None` where the daemon does not
/// know (it says -1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Volume name → size of its content.
    pub volumes: HashMap<String, Option<u64>>,
    /// Image id → bytes only it holds (its size less the layers it shares
    /// with other images: what removing it gives back).
    pub images: HashMap<String, Option<u64>>,
}

/// What `DELETE /images/{id}` (not forced) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageRemoval {
    /// The image is gone now.
    Removed,
    /// There was no such image.
    Missing,
    /// The daemon refused (409): a container uses it, or another
    /// repository's tag names it.
    Refused,
}

impl Docker {
    /// Every container on the daemon, in any state, with its image id and
    /// the named volumes it mounts.
    pub fn container_usage(&self) -> Result<Vec<ContainerUsage>> {
        #[derive(Deserialize)]
        struct Mount {
            #[serde(rename = "Type", default)]
            kind: String,
            #[serde(rename = "Name", default)]
            name: String,
        }
        #[derive(Deserialize)]
        struct Entry {
            #[serde(rename = "Id")]
            id: String,
            #[serde(rename = "ImageID", default)]
            image_id: String,
            #[serde(rename = "Mounts", default, deserialize_with = "null_as_default")]
            mounts: Vec<Mount>,
        }
        let list: Vec<Entry> =
            self.send_json("GET", "/containers/json?all=1".into(), Body::None)?;
        Ok(list
            .into_iter()
            .map(|c| ContainerUsage {
                id: c.id,
                image_id: c.image_id,
                volumes: c
                    .mounts
                    .into_iter()
                    .filter(|m| m.kind == "volume" && !m.name.is_empty())
                    .map(|m| m.name)
                    .collect(),
            })
            .collect())
    }

    /// Volumes carrying all of `labels` (`key` or `key=value`), with their
    /// driver options.
    pub fn volume_details_by_label(&self, labels: &[&str]) -> Result<Vec<VolumeDetail>> {
        self.volumes_by_label(labels)
    }

    /// `GET /system/df`: sizes of volumes and images. The daemon walks every
    /// volume to answer, so this can take a while on a large data root.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        #[derive(Deserialize)]
        struct Usage {
            #[serde(rename = "Size", default = "unknown")]
            size: i64,
        }
        #[derive(Deserialize)]
        struct Volume {
            #[serde(rename = "Name")]
            name: String,
            #[serde(rename = "UsageData")]
            usage: Option<Usage>,
        }
        #[derive(Deserialize)]
        struct Image {
            #[serde(rename = "Id")]
            id: String,
            #[serde(rename = "Size", default = "unknown")]
            size: i64,
            #[serde(rename = "SharedSize", default = "unknown")]
            shared: i64,
        }
        #[derive(Deserialize)]
        struct Df {
            #[serde(rename = "Volumes", default, deserialize_with = "null_as_default")]
            volumes: Vec<Volume>,
            #[serde(rename = "Images", default, deserialize_with = "null_as_default")]
            images: Vec<Image>,
        }
        fn unknown() -> i64 {
            -1
        }
        let df: Df = self.send_json("GET", "/system/df".into(), Body::None)?;
        Ok(DiskUsage {
            volumes: df
                .volumes
                .into_iter()
                .map(|v| (v.name, v.usage.and_then(|u| u64::try_from(u.size).ok())))
                .collect(),
            images: df
                .images
                .into_iter()
                .map(|i| (i.id, own_bytes(i.size, i.shared)))
                .collect(),
        })
    }

    /// `DELETE /images/{id}` without force: the daemon refuses (409) while
    /// any container, running or stopped, uses the image, or while tags of
    /// other repositories name it.
    pub fn image_remove_unused(&self, id: &str) -> Result<ImageRemoval> {
        let resp = self.send(
            "DELETE",
            format!("/images/{}", enc(id)),
            Body::None,
            Some(super::api::SHORT),
            None,
        )?;
        match resp.status() {
            404 => Ok(ImageRemoval::Missing),
            409 => resp.read_limited(MAX_JSON).map(|_| ImageRemoval::Refused),
            _ => expect_success(resp)?
                .read_limited(MAX_JSON)
                .map(|_| ImageRemoval::Removed),
        }
    }
}

/// An image's own bytes from its `Size` and `SharedSize` (-1: unknown; an
/// unknown shared size counts as nothing shared).
fn own_bytes(size: i64, shared: i64) -> Option<u64> {
    let size = u64::try_from(size).ok()?;
    Some(size.saturating_sub(u64::try_from(shared).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::own_bytes;

    #[test]
    fn an_images_own_bytes_leave_out_shared_layers_and_unknown_stays_unknown() {
        assert_eq!(own_bytes(1000, 400), Some(600));
        assert_eq!(own_bytes(1000, -1), Some(1000));
        assert_eq!(own_bytes(-1, 0), None);
        assert_eq!(own_bytes(100, 400), Some(0));
    }
}
