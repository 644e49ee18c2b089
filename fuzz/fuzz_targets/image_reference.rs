//! Image references (`docker::reference`): parse → Display → parse is a
//! fixpoint; `with_mirrors` never panics and what it returns is itself a
//! reference that parses back to the same value (it is what gets pulled);
//! `sidecar_volume_name` never panics and yields only `[a-zA-Z0-9_.-]`.
//!
//! Input lines: reference, repo digest, image id, then `key value` mirror
//! entries.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use oz_agent_worker::docker::reference::{ImageRef, check_mirrors, sidecar_volume_name};

fn assert_fixpoint(r: &ImageRef) {
    let shown = r.to_string();
    let again = ImageRef::parse(&shown);
    assert_eq!(again.as_ref(), Ok(r), "{shown:?} does not parse back");
    assert_eq!(again.map(|a| a.to_string()), Ok(shown));
    // What the pull sends must name the same image too.
    let pulled = format!("{}:{}", r.name(), r.tag_or_digest());
    let pulled = if r.is_digest() {
        format!("{}@{}", r.name(), r.tag_or_digest())
    } else {
        pulled
    };
    assert_eq!(ImageRef::parse(&pulled).as_ref(), Ok(r));
    let _ = (r.familiar_name(), r.credential_key(), r.is_docker_hub());
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let reference = lines.next().unwrap_or("");
    let repo_digest = lines.next().unwrap_or("");
    let image_id = lines.next().unwrap_or("");
    let mirrors: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();

    let parsed = ImageRef::parse(reference);
    match &parsed {
        Ok(r) => assert_fixpoint(r),
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let mirrors_ok = check_mirrors(&mirrors);
    if let Err(e) = &mirrors_ok {
        let _ = e.to_string();
    }
    if let Ok(r) = &parsed {
        match r.with_mirrors(&mirrors) {
            Ok(m) => assert_fixpoint(&m),
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }

    let digests: Vec<String> = if repo_digest.is_empty() {
        Vec::new()
    } else {
        vec![repo_digest.to_owned()]
    };
    if let Some(name) = sidecar_volume_name(reference, &digests, image_id) {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')),
            "volume name {name:?}"
        );
    }
});
